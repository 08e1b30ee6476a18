# ---- bench/cluster.py: the scale-out benchmark ----
# `make bench-cluster` (as root: ip netns) builds taskwire and measures tasks per second end to
# end with 1, 2 and 3 worker hosts on PostgreSQL (fsync and synchronous_commit on), and SQLite
# against PostgreSQL on one host, with the CPU of every process; each host is a network
# namespace on this machine (twb-*, 10.78.0.0/24: never the cluster test's twc-*).  Writes
# bench/results/cluster-DATE.md.  CLUSTER_ARGS passes options to bench/cluster.py, e.g.
# `make bench-cluster CLUSTER_ARGS=--quick` (a smoke run) or
# CLUSTER_ARGS='--topologies pg-1,pg-3 --scenarios drain --runs 5'.  Not part of `make test`.
CLUSTER_ARGS ?=
DEBS_CLUSTER := postgresql lighttpd iproute2 util-linux python3-zmq python3-websockets

.PHONY: bench-cluster bench-cluster-deps
bench-cluster-deps:
	@tools/debs.sh $(DEBS_BUILD) $(DEBS_CLUSTER)

bench-cluster: bench-cluster-deps
	$(MAKE) all
	/usr/bin/python3 bench/cluster.py --build $(BUILD) $(CLUSTER_ARGS)
