# The fault suite (tests/faults/): a stack of lighttpd, the relay and two workers under load while
# its parts are killed and a worker is frozen past its lease; then every task must be accounted
# for.  FAULT_SECONDS sets how long faults go on (default 30; the whole run stays under 5 minutes
# at the default).
FAULT_SECONDS ?= 30
TEST_SAN += test-faults

.PHONY: test-faults
test-faults: all
	TASKWIRE_BUILD=$(BUILD) FAULT_SECONDS=$(FAULT_SECONDS) /usr/bin/python3 -m pytest -q -s \
		-p no:cacheprovider tests/faults
