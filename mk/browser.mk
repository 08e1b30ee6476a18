# The task monitor and the client library in Debian's Chromium, driven by playwright-core from
# npm (tests/browser/, `npm ci` from the committed lock file; no browser is downloaded).
BROWSER_DIR := tests/browser
# Node may come from elsewhere than Debian (its npm then conflicts with Debian's): install
# Debian's only where the commands are missing.
DEBS_TEST += chromium $(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm)
TEST_SAN += test-browser

.PHONY: test-browser
$(BROWSER_DIR)/node_modules/.package-lock.json: $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund

test-browser: all $(BROWSER_DIR)/node_modules/.package-lock.json
	cd $(BROWSER_DIR) && TASKWIRE_BUILD=$(CURDIR)/$(BUILD) node --test --test-reporter=spec monitor.test.mjs admin.test.mjs board.test.mjs
