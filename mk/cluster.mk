# The cluster test (tests/cluster/): nine hosts as network namespaces on a bridge of their own
# (db, web1, web2, work1-3, relay1, relay2, client) under 1,000 tasks while a worker host dies,
# another is cut off past its lease, a relay dies and PostgreSQL restarts.  Needs root (ip netns);
# about two minutes.
DEBS_TEST += iproute2
TEST_PLAIN += test-cluster

.PHONY: test-cluster
test-cluster: all
	TASKWIRE_BUILD=$(BUILD) /usr/bin/python3 -m pytest -q -s -p no:cacheprovider tests/cluster
