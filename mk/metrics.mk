# Metrics and the service manager: the relay's and the pool's Prometheus endpoints
# (common/metrics.c, relay/scrape.c, worker/scrape.c), sd_notify (common/notify.c), and their
# test against Debian's promtool and a real Prometheus (tests/integration/test_metrics.py,
# part of make test-integration).
DEBS_BUILD += libsystemd-dev
DEBS_TEST += prometheus
# The pool serves its metrics through libwebsockets, as the relay does.
WORKER_LIBS += $(call libs,libwebsockets libsystemd) -lm
RELAY_LIBS += $(call libs,libsystemd) -lm
LDLIBS += $(call libs,libsystemd) -lm
