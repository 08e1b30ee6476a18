# taskwire: one non-recursive Makefile.  `make run` and `make test` install what they need.
# Objects live under build/ (build/san/ with SAN=1); source lists are named file by file.

SAN ?= 0
ifeq ($(SAN),1)
BUILD := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT := -O1 -g
else
BUILD := build
SANFLAGS :=
OPT := -O2 -g
endif

CC ?= cc
PKGS := libwebsockets libzmq jansson sqlite3 libpq openssl inih liburing
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
CFLAGS += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(SANFLAGS) -MMD -MP -Icommon \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += $(SANFLAGS)
LDLIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lfcgi -lwslay -lpthread
# Each program links only what it uses (the unit tests and the rest take LDLIBS).
libs = $(shell pkg-config --libs $(1) 2>/dev/null)
FCGI_LIBS := $(call libs,libzmq jansson sqlite3 libpq openssl inih) -lfcgi -lpthread
WORKER_LIBS := $(call libs,libzmq jansson sqlite3 libpq openssl inih) -lpthread
RELAY_LIBS := $(call libs,libwebsockets libzmq jansson openssl inih liburing) -lwslay

COMMON_SRC := common/jsontext.c common/metrics.c common/httpreply.c common/adminkey.c common/notify.c common/cli.c common/errors.c common/log.c common/clock.c common/config.c common/token.c \
	common/store.c common/store_sqlite.c common/store_pg.c common/tasktype.c common/protocol.c common/origin.c common/bucket.c common/wire.c
COMMON_SRC += common/curve.c common/channel.c
COMMON_SRC += common/presence_wire.c
FCGI_SRC := fcgi/main.c fcgi/acceptors.c fcgi/intake.c fcgi/app.c fcgi/request.c fcgi/reply.c fcgi/router.c fcgi/tasks.c
FCGI_SRC += fcgi/cors.c fcgi/publish.c
FCGI_SRC += fcgi/presence.c
WORKER_SRC := worker/main.c worker/pool.c worker/slot.c worker/job.c worker/job_sleep.c \
	worker/retry.c worker/scrape.c \
	worker/job_exec.c
COMMON_SRC += common/zap.c
WORKER_SRC += worker/wake.c
WORKER_SRC += worker/history.c
FCGI_SRC += fcgi/history.c
WORKER_SRC += worker/presence.c
UNIT_TESTS_RELAY := tests/unit/relay/test_route.c tests/unit/relay/test_receive.c \
	tests/unit/relay/test_send.c
UNIT_TESTS_RELAY += tests/unit/relay/test_throttle.c tests/unit/relay/test_subscription.c
UNIT_TESTS_RELAY += tests/unit/relay/test_roster.c tests/unit/relay/test_cookie.c
UNIT_TESTS_RELAY += tests/unit/relay/test_lwspoll.c
UNIT_TESTS_WORKER := tests/unit/worker/test_job_exec.c tests/unit/worker/test_retry.c
UNIT_TESTS_WORKER += tests/unit/worker/test_wake.c
UNIT_TESTS += tests/unit/common/test_zap.c
UNIT_TESTS_FCGI := tests/unit/fcgi/test_intake.c
RELAY_SRC := relay/main.c relay/relay.c relay/protocol.c relay/session.c relay/receive.c relay/send.c relay/loop.c \
	relay/route.c relay/ingress.c relay/listener.c relay/scrape.c relay/subscription.c
RELAY_SRC += relay/throttle.c
RELAY_SRC += relay/roster.c relay/upstream.c relay/cookie.c relay/lwspoll.c

UNIT_TESTS := tests/unit/common/test_errors.c tests/unit/common/test_token.c \
	tests/unit/common/test_config.c tests/unit/common/test_store.c \
	tests/unit/common/test_tasktype.c tests/unit/common/test_origin.c \
	tests/unit/common/test_bucket.c tests/unit/common/test_metrics.c \
	tests/unit/common/test_store_pg.c tests/unit/common/test_store_sqlite.c \
	tests/unit/common/test_clock.c \
	tests/unit/common/test_jsontext.c tests/unit/common/test_wire.c
UNIT_TESTS += tests/unit/common/test_curve.c tests/unit/common/test_channel.c
UNIT_TESTS += tests/unit/common/test_presence_wire.c
UNIT_TESTS += $(UNIT_TESTS_RELAY) $(UNIT_TESTS_WORKER) $(UNIT_TESTS_FCGI)

COMMON_LIB := $(BUILD)/libtaskwire-common.a
FCGI_BIN := $(BUILD)/taskwire.fcgi
WORKER_BIN := $(BUILD)/taskwire-worker
RELAY_BIN := $(BUILD)/taskwire-relay
PROGRAMS := $(FCGI_BIN) $(WORKER_BIN) $(RELAY_BIN)
UNIT_BINS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(UNIT_TESTS))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
# Recursive: mk/*.mk add sources after this line, and their dependency files count too.
ALL_OBJ = $(call obj,$(COMMON_SRC) $(FCGI_SRC) $(WORKER_SRC) $(RELAY_SRC))

DEBS_BUILD := gcc make pkg-config libfcgi-dev libwebsockets-dev libzmq3-dev libjansson-dev \
	libsqlite3-dev libpq-dev libssl-dev libinih-dev liburing-dev libwslay-dev
DEBS_RUN := lighttpd curl
DEBS_TEST := libcmocka-dev python3-pytest python3-websockets python3-zmq lighttpd apache2 \
	libapache2-mod-fcgid postgresql

# Further parts of the build live in mk/*.mk: each may add to DEBS_TEST and name its test
# targets in TEST_SAN (run against the sanitizer build) or TEST_PLAIN (the optimised build).
TEST_SAN :=
TEST_PLAIN :=
-include $(sort $(wildcard mk/*.mk))

.PHONY: all run test test-unit test-integration test-integration-pg test-integration-pg-all deps deps-test lint check check-deps clean
.DEFAULT_GOAL := all

all: $(PROGRAMS)

# Install missing Debian packages (as root, or through sudo).  A no-op when all are present.
deps:
	@tools/debs.sh $(DEBS_BUILD) $(DEBS_RUN)
deps-test:
	@tools/debs.sh $(DEBS_BUILD) $(DEBS_TEST)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(COMMON_LIB): $(call obj,$(COMMON_SRC))
	@rm -f $@
	ar rcs $@ $^

$(FCGI_BIN): $(call obj,$(FCGI_SRC)) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(FCGI_LIBS)
$(WORKER_BIN): $(call obj,$(WORKER_SRC)) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(WORKER_LIBS)
$(RELAY_BIN): $(call obj,$(RELAY_SRC)) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(RELAY_LIBS)

# test_wire interrupts zmq_msg_recv where it wants (a wrapper of its own).
$(BUILD)/tests/unit/common/test_wire: LDFLAGS += -Wl,--wrap=zmq_msg_recv

# A unit test may #include the .c it tests, so it links only the common library.
$(BUILD)/tests/%: tests/%.c $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-missing-prototypes -I. -o $@ $< $(COMMON_LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

run: deps all
	@tools/run.sh $(BUILD)

test: deps-test
	$(MAKE) SAN=1 all $(patsubst tests/%.c,build/san/tests/%,$(UNIT_TESTS))
	$(MAKE) SAN=1 test-unit test-integration test-integration-pg $(TEST_SAN)
	$(MAKE) bench-smoke $(TEST_PLAIN)

# The store's PostgreSQL tests run on a throwaway cluster (tests/pg.py), stopped afterwards.
test-unit: $(UNIT_BINS)
	@/usr/bin/python3 tests/pg.py run -- tools/unit.sh $(UNIT_BINS)

test-integration: all
	TASKWIRE_BUILD=$(BUILD) /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

# The durable engine's tests again with the store on PostgreSQL (a throwaway cluster, tests/pg.py);
# tests/integration/test_store_pg.py (an outage, two hosts on one database) runs in both targets.
test-integration-pg: all
	TASKWIRE_BUILD=$(BUILD) TASKWIRE_TEST_STORE=postgresql /usr/bin/python3 -m pytest -q \
		-p no:cacheprovider tests/integration/test_durable.py tests/integration/test_store_pg.py \
		tests/integration/test_history.py

# The whole integration suite on PostgreSQL (about 9 minutes more; not in `make test`): the
# tests of what only SQLite has (its disk's faults, nudges over ZeroMQ) say so and skip.
test-integration-pg-all: all
	TASKWIRE_BUILD=$(BUILD) TASKWIRE_TEST_STORE=postgresql /usr/bin/python3 -m pytest -q \
		-p no:cacheprovider tests/integration

# The programs meet only over ZeroMQ and the store: no program includes another's headers,
# and common/ includes none of theirs.
check-deps:
	@! grep -nE '#include "\.\./(fcgi|worker|relay|cli)/' common/*.[ch] fcgi/*.[ch] worker/*.[ch] \
		relay/*.[ch] cli/*.[ch]
	@echo "check-deps: OK"

lint: check-deps
	@/usr/bin/python3 tools/check-errors.py
	clang-format --dry-run --Werror common/*.[ch] fcgi/*.[ch] worker/*.[ch] relay/*.[ch] cli/*.[ch]
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
		--inline-suppr -Icommon common fcgi worker relay cli

check: lint test

clean:
	rm -rf build

-include $(ALL_OBJ:.o=.d)

# ---- bench/: the relay benchmark (load generator, FastCGI ceiling, comparison harness) ----
# `make bench` installs the peers (Debian packages, npm ci), runs every scenario and writes
# bench/results/DATE.md and docs/PERFORMANCE.md; `make bench-smoke` is a 10-second check of
# taskwire alone (every published message delivered).  Binaries go to build/bench/.
BENCH_BUILD := build/bench
BENCH_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) $(shell pkg-config --cflags libzmq openssl)
LOADGEN_SRC := bench/loadgen.c bench/publisher.c bench/hist.c
BENCH_BINS := $(BENCH_BUILD)/loadgen $(BENCH_BUILD)/hello.fcgi

.PHONY: bench bench-smoke bench-bins bench-million
bench-bins: $(BENCH_BINS)
$(BENCH_BUILD)/loadgen: $(LOADGEN_SRC) bench/hist.h bench/publisher.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $(LOADGEN_SRC) $(shell pkg-config --libs libzmq openssl)
$(BENCH_BUILD)/hello.fcgi: bench/hello.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lfcgi

bench: all bench-bins
	/usr/bin/python3 bench/run.py --build $(BUILD) --doc
bench-smoke: all bench-bins
	/usr/bin/python3 bench/run.py --build $(BUILD) --smoke
# A million idle connections on this one machine (about 10 GiB of memory, several minutes).
bench-million: all bench-bins
	/usr/bin/python3 bench/run.py --build $(BUILD) --peers taskwire --scenarios million
