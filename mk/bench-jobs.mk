# ---- bench/jobs/: the job-queue benchmark, taskwire beside BullMQ, graphile-worker, pg-boss
# and Celery ----
# `make bench-jobs` installs what the peers need (Debian packages; npm ci from the committed
# lock file into bench/jobs/node_modules), builds taskwire, runs the whole comparison (drain
# and steady on every system, about 10 minutes) and writes bench/results/jobs-DATE.md.
# JOBS_ARGS passes options to bench/jobs/run.py, e.g. `make bench-jobs JOBS_ARGS=--quick`
# (a smoke run of about 10 s per system) or JOBS_ARGS='--peers taskwire,bullmq --runs 3'.
# Not part of `make test`.
JOBS_DIR := bench/jobs
JOBS_ARGS ?=
DEBS_JOBS := redis-server postgresql python3-celery python3-redis python3-zmq \
	python3-websockets lighttpd util-linux \
	$(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm)

.PHONY: bench-jobs bench-jobs-deps
$(JOBS_DIR)/node_modules/.package-lock.json: $(JOBS_DIR)/package-lock.json
	cd $(JOBS_DIR) && npm ci --no-audit --no-fund

bench-jobs-deps:
	@tools/debs.sh $(DEBS_BUILD) $(DEBS_JOBS)

bench-jobs: bench-jobs-deps
	$(MAKE) all $(JOBS_DIR)/node_modules/.package-lock.json
	/usr/bin/python3 $(JOBS_DIR)/run.py --build $(BUILD) $(JOBS_ARGS)
