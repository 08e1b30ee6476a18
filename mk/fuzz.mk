# libFuzzer harnesses (tests/fuzz/): one per parser of outside input, built with Debian's
# clang-14 under -fsanitize=fuzzer,address,undefined into build/fuzz/ (its own objects, whatever
# SAN says).  A harness may #include the .c it tests; it links the fuzz-built archives of the
# rest, from which only the members it needs are taken.
# `make fuzz-smoke` (part of `make test`) runs every harness for FUZZ_SMOKE_SECONDS on a copy of
# its seed corpus in build/fuzz/smoke/ and fails on any crash, leak or timeout.
# `make fuzz` runs a campaign of FUZZ_SECONDS per harness (one after another) on a working
# corpus kept in build/fuzz/corpus/; `make fuzz FUZZ_TARGETS=token` runs one.
FUZZ_CC ?= clang-14
FUZZ_BUILD := build/fuzz
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 6
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) $(FUZZ_SAN) -MMD -MP -Icommon -I. \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# -timeout: seconds one input may take; -rss_limit_mb: memory of the process.
FUZZ_RUN_FLAGS := -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
DEBS_TEST += clang-14 libclang-rt-14-dev
TEST_PLAIN += fuzz-smoke

FUZZ_NAMES := token config rest exec_lines relay_ingress pool_intake ws_frames jsontext zap
FUZZ_BINS := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_NAMES))

fuzz_obj = $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(1))
FUZZ_COMMON_LIB := $(FUZZ_BUILD)/libcommon.a
FUZZ_FCGI_LIB := $(FUZZ_BUILD)/libfcgi.a
FUZZ_WORKER_LIB := $(FUZZ_BUILD)/libworker.a
FUZZ_RELAY_LIB := $(FUZZ_BUILD)/librelay.a
FUZZ_LIBS := $(FUZZ_FCGI_LIB) $(FUZZ_WORKER_LIB) $(FUZZ_RELAY_LIB) $(FUZZ_COMMON_LIB)

.PHONY: fuzz fuzz-smoke fuzz-bins
fuzz-bins: $(FUZZ_BINS)

# The program code, instrumented for coverage (fuzzer-no-link) as well as sanitized.
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_COMMON_LIB): $(call fuzz_obj,$(COMMON_SRC))
$(FUZZ_FCGI_LIB): $(call fuzz_obj,$(filter-out fcgi/main.c,$(FCGI_SRC)))
$(FUZZ_WORKER_LIB): $(call fuzz_obj,$(filter-out worker/main.c,$(WORKER_SRC)))
$(FUZZ_RELAY_LIB): $(call fuzz_obj,$(filter-out relay/main.c,$(RELAY_SRC)))
$(FUZZ_LIBS):
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_LIBS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wno-missing-prototypes -fsanitize=fuzzer -o $@ $< \
		$(FUZZ_LIBS) $(FUZZ_SAN) $(LDLIBS)

# Each run starts from a fresh copy of the seeds, so the smoke never writes into the tree.
fuzz-smoke: $(FUZZ_BINS)
	@set -e; for name in $(FUZZ_NAMES); do \
		rm -rf $(FUZZ_BUILD)/smoke/$$name && mkdir -p $(FUZZ_BUILD)/smoke/$$name \
			$(FUZZ_BUILD)/artifacts && \
		cp tests/fuzz/corpus/$$name/* $(FUZZ_BUILD)/smoke/$$name/ && \
		dict=tests/fuzz/$$name.dict; [ -f $$dict ] && dict=-dict=$$dict || dict=; \
		echo "fuzz-smoke: $$name for $(FUZZ_SMOKE_SECONDS) s"; \
		if ! $(FUZZ_BUILD)/fuzz_$$name $(FUZZ_RUN_FLAGS) $$dict \
			-max_total_time=$(FUZZ_SMOKE_SECONDS) \
			-artifact_prefix=$(FUZZ_BUILD)/artifacts/$$name- \
			$(FUZZ_BUILD)/smoke/$$name >$(FUZZ_BUILD)/smoke/$$name.log 2>&1; then \
			tail -n 60 $(FUZZ_BUILD)/smoke/$$name.log; \
			echo "fuzz-smoke: $$name FAILED (log $(FUZZ_BUILD)/smoke/$$name.log)"; exit 1; \
		fi; \
		grep -E '^#[0-9]+[[:space:]]+DONE' \
			$(FUZZ_BUILD)/smoke/$$name.log | tr '\n' ' '; echo; \
	done; echo "fuzz-smoke: every harness ran clean"

# A campaign: new inputs accumulate in build/fuzz/corpus/NAME (seeded from the tree once).
fuzz: $(FUZZ_BINS)
	@set -e; for name in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$name $(FUZZ_BUILD)/artifacts && \
		cp -n tests/fuzz/corpus/$$name/* $(FUZZ_BUILD)/corpus/$$name/ && \
		dict=tests/fuzz/$$name.dict; [ -f $$dict ] && dict=-dict=$$dict || dict=; \
		echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
		status=0; $(FUZZ_BUILD)/fuzz_$$name $(FUZZ_RUN_FLAGS) $$dict \
			-max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$name- \
			$(FUZZ_BUILD)/corpus/$$name >$(FUZZ_BUILD)/$$name.log 2>&1 || status=$$?; \
		grep -E '^#[0-9]+[[:space:]]+DONE|^stat::|SUMMARY|^artifact_prefix|Test unit written' \
			$(FUZZ_BUILD)/$$name.log || true; \
		[ $$status = 0 ] || { echo "fuzz: $$name FAILED (log $(FUZZ_BUILD)/$$name.log)"; \
			exit 1; }; \
	done

-include $(wildcard $(FUZZ_BUILD)/obj/*/*.d $(FUZZ_BUILD)/*.d)
