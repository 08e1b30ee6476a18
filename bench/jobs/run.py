#!/usr/bin/python3
"""run.py: taskwire's job-queue benchmark beside BullMQ, graphile-worker, pg-boss and Celery.

The same no-op jobs on each system in one run, each set up at its best, each row with the
durability it gives.

Scenarios (each on a fresh store: Redis, a PostgreSQL cluster or a taskwire stack):

  drain   enqueue --jobs (20,000) while no worker runs, then start the worker: jobs/s from the
          worker's start to the last job final (and from the first job's start)
  steady  submit --rate (500) jobs/s for --seconds (20): p50/p99 from the submit call to the
          job's start and to its final notification

Every worker runs 16 jobs at once in one process.  Redis, PostgreSQL and taskwire's web server,
handler and relay run on core 0 (taskset -c 0); workers, producers, listeners and this harness
on core 1.  The stores and stacks are started here on free loopback ports in temporary
directories and stopped at the end, also on failure.  A run that did not finish every job says
so in its row.  The table goes to bench/results/jobs-DATE.md (raw JSON to jobs-DATE.raw).

usage: /usr/bin/python3 bench/jobs/run.py [--peers a,b] [--jobs N] [--rate R --seconds S]
                                          [--quick] [--scenarios drain,steady] [--runs N]
"""
import argparse
import datetime
import http.client
import importlib.util
import inspect
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))

# The relay benchmark's helpers (its process tree walk, its description of the machine), loaded
# by path: this file is "run.py" too.
_relay_bench_spec = importlib.util.spec_from_file_location(
    "relay_bench", os.path.join(ROOT, "bench", "run.py"))
relay_bench = importlib.util.module_from_spec(_relay_bench_spec)
_relay_bench_spec.loader.exec_module(relay_bench)
tree, machine = relay_bench.tree, relay_bench.machine
from stack import Stack, free_port  # noqa: E402

STORE_CPU = 0  # Redis, PostgreSQL, taskwire's web server, handler and relay
CLIENT_CPU = 1  # workers, producers, listeners, this harness
CONCURRENCY = 16  # jobs at once per worker process
PG_BIN = "/usr/lib/postgresql/15/bin"
NODE = shutil.which("node") or "/usr/bin/node"
PYTHON = "/usr/bin/python3"
DRAIN_JOBS = 20000
RATE = 500
SECONDS = 20
QUICK = {"jobs": 1000, "rate": 100, "seconds": 3}  # --quick: about 10 s per system
RUNS = 3  # rounds: this machine's other work moves single runs by a factor of two or more
SETTLE_S = 30  # after the last submission, how long the last jobs may take to become final
TW_SUBMITTERS = 32  # drain: HTTP connections (threads) enqueueing, one client id each
TW_STEADY_CLIENTS = 16  # steady: client ids, each with a connection (thread) and a WebSocket
TW_MAX_QUEUED = 1000  # the handler's default [http] max_queued per client
TW_MAX_QUEUED_LIFTED = 100000000  # the largest [http] max_queued the config takes
TW_SLEEP = {"duration_ms": 0, "steps": 1}  # a no-op task (--tw-duration-ms changes it)
REDIS_DEFAULT_SAVE = "3600 1 300 100 60 10000"  # Redis 7's built-in snapshot schedule


def now():
    return time.monotonic_ns()


def log(text):
    print(text, flush=True)


# ---- processes ----

class Child:
    """A process this harness started (in a session of its own, pinned to a core), whose
    stdout JSON lines are read as events; stopped with its whole group."""

    live = []

    def __init__(self, name, cmd, log_path, cpu=None, cwd=None, env=None, events=True):
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu)] + cmd
        self.name = name
        self.events = []
        self.cond = threading.Condition()
        logf = open(log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE if events else logf, stderr=logf,
                                     start_new_session=True)
        logf.close()
        self.log_path = log_path
        Child.live.append(self)
        if events:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        with open(self.log_path, "ab") as logf:
            for line in self.proc.stdout:
                logf.write(line)
                logf.flush()
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                with self.cond:
                    self.events.append(event)
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_event(self, name, timeout):
        """The first event called name, or None once timeout passes or the process exits."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events:
                    if event.get("event") == name:
                        return event
                    if event.get("event") == "error":
                        raise RuntimeError(f"{self.name}: {event.get('message')}")
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.cond.wait(min(left, 0.5))

    def need_event(self, name, timeout):
        event = self.wait_event(name, timeout)
        if event is None:
            raise RuntimeError(f"{self.name} gave no '{name}' within {timeout:.0f} s "
                               f"(exit {self.proc.poll()}); see {self.log_path}")
        return event

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{self.name} did not finish within {timeout:.0f} s; "
                               f"see {self.log_path}")

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if self in Child.live:
            Child.live.remove(self)

    @classmethod
    def stop_all(cls):
        for child in list(cls.live):
            child.stop(timeout=5)


def run_quiet(cmd, **kwargs):
    r = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r.stdout


def pin_tree(pid, cpu):
    """Pin every thread of pid and of its descendants to cpu."""
    for p in tree([pid]):
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                os.sched_setaffinity(int(tid), {cpu})
        except OSError:
            pass


TICK = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by process trees (children that exited and were reaped included)."""

    def __init__(self, pids):
        self.pids = pids
        self.start = self.read()

    def read(self):
        total = 0
        for pid in tree(self.pids):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            except (OSError, IndexError, ValueError):
                pass
        return total / TICK

    def used(self):
        return self.read() - self.start


# ---- stores ----

class Redis:
    """redis-server on a free loopback port with a temp dir: Redis's default persistence (RDB
    snapshots on its built-in schedule), or appendonly yes + appendfsync always."""

    def __init__(self, tmp, aof):
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=tmp)
        self.port = free_port()
        conf = os.path.join(self.dir, "redis.conf")
        with open(conf, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\nprotected-mode yes\ndir {self.dir}\n"
                    f"logfile {self.dir}/redis.log\ndaemonize no\n")
            if aof:
                f.write("appendonly yes\nappendfsync always\n")
        self.child = Child("redis-server", ["redis-server", conf],
                           os.path.join(self.dir, "stdout.log"), cpu=STORE_CPU, events=False)
        deadline = time.monotonic() + 20
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                             capture_output=True, text=True).stdout.strip() != "PONG":
            if time.monotonic() > deadline or self.child.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start; see {self.dir}/redis.log")
            time.sleep(0.05)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def pids(self):
        return [self.child.proc.pid]

    def stop(self):
        self.child.stop()


class Postgres:
    """A throwaway PostgreSQL 15 cluster: initdb into a temp dir, pg_ctl on a free port with
    its socket in that dir, default settings (fsync on, synchronous_commit on)."""

    live = []

    def __init__(self, tmp):
        self.dir = tempfile.mkdtemp(prefix="pg-", dir=tmp)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:  # initdb refuses root: the cluster is the postgres user's
            shutil.chown(self.dir, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        run_quiet(self.as_user + [f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust",
                                  "-U", "postgres", "--no-sync"])
        self.started = True  # from here on stop() runs pg_ctl stop, also if start failed
        Postgres.live.append(self)
        run_quiet(["taskset", "-c", str(STORE_CPU)] + self.as_user + [
            f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "postgres.log"),
            "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=''", "-w", "start"])

    @property
    def url(self):
        return f"postgres://postgres@{self.dir.replace('/', '%2F')}:{self.port}/postgres"

    def pids(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return [int(f.readline())]

    def stop(self):
        if self.started:
            self.started = False
            subprocess.run(self.as_user + [f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "fast",
                                           "-w", "stop"], capture_output=True)
        if self in Postgres.live:
            Postgres.live.remove(self)

    @classmethod
    def stop_all(cls):
        for pg in list(cls.live):
            pg.stop()


# ---- results ----

def pct(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency_ms(submit, arrived):
    """Milliseconds from each job's submit call to its arrival time, for the jobs in both."""
    return [(arrived[k] - t) / 1e6 for k, t in submit.items() if k in arrived]


# ---- peers ----

class Peer:
    """One system under test.  Subclasses set up its store, worker, producer and listener."""

    name = label = durability = setup = "?"
    short = "?"  # the durability in a few words, for the table
    family = "?"  # its line in the report's versions

    def __init__(self, bench):
        self.bench = bench
        self.tmp = None

    def logfile(self, what):
        return os.path.join(self.tmp, what + ".log")

    def fresh(self, scenario):
        self.tmp = tempfile.mkdtemp(prefix=f"{self.name}-{scenario}-", dir=self.bench.tmp)
        os.chmod(self.tmp, 0o755)  # a PostgreSQL cluster below it belongs to postgres


class NodePeer(Peer):
    """A Node.js library (bench/jobs/NAME.mjs) on Redis or PostgreSQL."""

    script = "?"
    env = {}

    def store_start(self):
        raise NotImplementedError

    def options(self):
        raise NotImplementedError

    def store_stop(self):
        self.store.stop()

    def node(self, role, what, **opts):
        return Child(f"{self.name} {role}", [NODE, os.path.join(HERE, self.script), role,
                                             json.dumps(dict(self.options(), **opts))],
                     self.logfile(what), cpu=CLIENT_CPU, cwd=HERE,
                     env=dict(os.environ, **self.env))

    def counts(self):
        c = self.node("counts", "counts")
        event = c.need_event("counts", 30)
        c.wait(30)
        return event

    # listener: a process of its own that sees the final notifications (BullMQ), or None when
    # the worker itself sees them (graphile-worker, pg-boss)
    def listener(self, expect):
        return None

    def worker(self, expect, out):
        return self.node("work", "worker", expect=expect, out=out)

    def enqueue(self, jobs):
        c = self.node("enqueue", "enqueue", jobs=jobs)
        event = c.need_event("enqueued", 600)
        c.wait(60)
        return event

    def produce(self, rate, seconds, out):
        return self.node("produce", "producer", rate=rate, seconds=seconds, out=out)

    def drain(self, jobs):
        self.store_start()
        try:
            enq = self.enqueue(jobs)
            store_cpu = CpuMeter(self.store.pids())
            t0 = now()
            worker = self.worker(jobs, os.path.join(self.tmp, "worker.json"))
            worker_cpu = CpuMeter([worker.proc.pid])
            done = worker.wait_event("done", max(60, jobs / 50))
            cpu = {"store_cpu_s": store_cpu.used(), "worker_cpu_s": worker_cpu.used()}
            counts = self.counts()
            worker.stop()
            return dict(self.drain_result(jobs, enq, t0, done, counts), **cpu)
        finally:
            self.store_stop()

    def drain_result(self, jobs, enq, t0, done, counts):
        result = {"jobs": jobs, "enqueue_s": enq["seconds"], "counts": counts,
                  "finished": bool(done), "completed": self.completed(counts, jobs)}
        if done:
            result.update(seconds=(done["last_final"] - t0) / 1e9,
                          busy_seconds=(done["last_final"] - done["first_start"]) / 1e9,
                          first_start_ms=(done["first_start"] - t0) / 1e6)
        return result

    def completed(self, counts, jobs):
        return counts.get("completed", 0)

    def steady(self, rate, seconds):
        self.store_start()
        try:
            total = round(rate * seconds)
            self.prepare()
            wout = os.path.join(self.tmp, "worker.json")
            worker = self.worker(total, wout)
            worker.need_event("ready", 60)
            lout = os.path.join(self.tmp, "listener.json")
            listener = self.listener(total)
            if listener:
                listener.need_event("ready", 30)
            pout = os.path.join(self.tmp, "producer.json")
            producer = self.produce(rate, seconds, pout)
            produced = producer.need_event("produced", seconds + 120)
            producer.wait(60)
            (listener or worker).wait_event("done", SETTLE_S)
            worker.stop()
            if listener:
                listener.stop()
            with open(pout) as f:
                sent = json.load(f)
            with open(wout) as f:
                work = json.load(f)
            final = work["final"]
            if listener:
                with open(lout) as f:
                    final = json.load(f)["final"]
            return steady_result(total, sent, work["start"], final, produced)
        finally:
            self.store_stop()

    def prepare(self):
        """Anything the store needs before a worker and a producer start on it."""


class BullMQ(NodePeer):
    name = "bullmq"
    family = "BullMQ"
    label = "BullMQ (Redis default persistence)"
    script = "bullmq.mjs"
    aof = False
    short = "Redis RDB snapshots"
    durability = (f"Redis RDB snapshots on its default schedule (save {REDIS_DEFAULT_SAVE}), "
                  f"no AOF: an added or completed job is in memory only until the next "
                  f"snapshot; a crash of Redis or the OS loses what came after it")
    setup = "Worker concurrency 16; addBulk of 1,000 for the drain, add() per job steady"

    def store_start(self):
        self.store = Redis(self.tmp, self.aof)

    def options(self):
        return {"port": self.store.port}

    def listener(self, expect):
        # Steady only: the drain counts completions in the worker (its "completed" event), as
        # QueueEvents would only add work to Redis there.
        return self.node("listen", "listener", expect=expect,
                         out=os.path.join(self.tmp, "listener.json"))



class BullMQAof(BullMQ):
    name = "bullmq-aof"
    label = "BullMQ (Redis appendfsync always)"
    aof = True
    short = "Redis AOF, fsync always"
    durability = ("Redis AOF, appendonly yes + appendfsync always: every write is in the AOF "
                  "on disk before Redis replies")


class Graphile(NodePeer):
    name = "graphile"
    family = "graphile-worker"
    label = "graphile-worker"
    script = "graphile.mjs"
    env = {"NO_LOG_SUCCESS": "1"}
    short = "PostgreSQL, synchronous_commit on"
    durability = ("PostgreSQL, fsync on, synchronous_commit on (the default): each add and "
                  "each completion is in the WAL on disk before it returns")
    setup = ("concurrency 16, localQueue size 200, completeJobBatchDelay 0; addJobs of 1,000 "
             "for the drain, addJob() per job steady; final = its DELETE of the job returned")

    def store_start(self):
        self.store = Postgres(self.tmp)

    def options(self):
        return {"db": self.store.url}

    def prepare(self):
        self.enqueue(0)  # the schema (graphile-worker migrates on first use)

    def completed(self, counts, jobs):
        return jobs - counts["left"]  # graphile-worker deletes a job once it completes


class PgBoss(Graphile):
    name = "pgboss"
    family = "pg-boss"
    label = "pg-boss (16 loops)"
    shape = {"loops": 16, "batch": 50}
    script = "pgboss.mjs"
    env = {}
    setup = ("16 work() loops, batchSize 50 run one after another, polling every 0.5 s (its "
             "minimum), loops started 31 ms apart, a loop whose batch came back full calls "
             "notifyWorker() on itself to fetch again at once; insert of 1,000 for the drain, "
             "send() per job steady; final = its UPDATE to completed returned")

    def completed(self, counts, jobs):
        return counts.get("completed", 0)

    def worker(self, expect, out):
        return self.node("work", "worker", expect=expect, out=out, **self.shape)


class PgBossBatch(PgBoss):
    name = "pgboss-batch"
    label = "pg-boss (1 loop, batch 200)"
    shape = {"loops": 1, "batch": 200}
    setup = ("one work() loop, batchSize 200 with 16 of its jobs running at once, polling every "
             "0.5 s, notifyWorker() on itself after a full batch; otherwise as pg-boss above")


class Celery(Peer):
    """Celery with the Redis broker and the Redis result backend (one Redis, default
    persistence); the task returns when it started, the result backend's PUBLISH is the
    completion signal."""

    name = "celery-prefork"
    family = "Celery"
    label = "Celery (prefork, -c 16)"
    pool = "prefork"
    short = "Redis RDB snapshots, acked on receipt"
    durability = (f"broker and results in one Redis with its default persistence (RDB "
                  f"snapshots, save {REDIS_DEFAULT_SAVE}, no AOF); a task is acked when the "
                  f"worker takes it (acks_late off, the default), so one running when its "
                  f"worker dies is not run again")
    setup = ("worker -c 16 --pool POOL --without-gossip --without-mingle --without-heartbeat, "
             "prefetch multiplier 4 (default); apply_async per job on one connection; final "
             "= the result backend's notification (redis PUBLISH)")

    def __init__(self, bench):
        super().__init__(bench)
        self.setup = self.setup.replace("POOL", self.pool)

    def env(self):
        return dict(os.environ, BENCH_REDIS_URL=self.store.url,
                    PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def py(self, role, what, **opts):
        return Child(f"celery {role}", [PYTHON, os.path.join(HERE, "celery_peer.py"), role,
                                        json.dumps(opts)],
                     self.logfile(what), cpu=CLIENT_CPU, cwd=HERE, env=self.env())

    def worker(self):
        return Child("celery worker", [PYTHON, "-m", "celery", "-A", "celery_peer", "worker",
                                       "--pool", self.pool, "-c", str(CONCURRENCY),
                                       "--without-gossip", "--without-mingle",
                                       "--without-heartbeat", "-l", "WARNING"],
                     self.logfile("worker"), cpu=CLIENT_CPU, cwd=HERE, env=self.env())

    def counts(self):
        c = self.py("counts", "counts")
        event = c.need_event("counts", 30)
        c.wait(30)
        return event

    def drain(self, jobs):
        self.store = Redis(self.tmp, aof=False)
        try:
            out = os.path.join(self.tmp, "listener.json")
            listener = self.py("listen", "listener", expect=jobs, out=out)
            listener.need_event("ready", 30)
            c = self.py("enqueue", "enqueue", jobs=jobs)
            enq = c.need_event("enqueued", 600)
            c.wait(60)
            store_cpu = CpuMeter(self.store.pids())
            t0 = now()
            worker = self.worker()
            worker_cpu = CpuMeter([worker.proc.pid])
            done = listener.wait_event("done", max(60, jobs / 50))
            cpu = {"store_cpu_s": store_cpu.used(), "worker_cpu_s": worker_cpu.used()}
            worker.stop()
            listener.stop()
            counts = self.counts()
            with open(out) as f:
                got = json.load(f)
            result = {"jobs": jobs, "enqueue_s": enq["seconds"], "counts": counts,
                      "finished": bool(done), "completed": got["count"], **cpu}
            if done:
                result.update(seconds=(done["last_final"] - t0) / 1e9,
                              busy_seconds=(done["last_final"] - done["first_start"]) / 1e9,
                              first_start_ms=(done["first_start"] - t0) / 1e6)
            return result
        finally:
            self.store.stop()

    def steady(self, rate, seconds):
        self.store = Redis(self.tmp, aof=False)
        try:
            total = round(rate * seconds)
            worker = self.worker()
            worker.need_event("ready", 60)
            lout = os.path.join(self.tmp, "listener.json")
            listener = self.py("listen", "listener", expect=total, out=lout)
            listener.need_event("ready", 30)
            pout = os.path.join(self.tmp, "producer.json")
            producer = self.py("produce", "producer", rate=rate, seconds=seconds, out=pout)
            produced = producer.need_event("produced", seconds + 120)
            producer.wait(60)
            listener.wait_event("done", SETTLE_S)
            listener.stop()
            worker.stop()
            with open(pout) as f:
                sent = json.load(f)
            with open(lout) as f:
                got = json.load(f)
            return steady_result(total, sent, got["start"], got["final"], produced)
        finally:
            self.store.stop()


class CeleryThreads(Celery):
    name = "celery-threads"
    label = "Celery (threads, -c 16)"
    pool = "threads"


def submit_open_loop(clients, total, rate, params, start):
    """Submit total tasks of params at rate a second from start (now()'s ns) on a fixed
    schedule (open loop: a slow call does not delay the next), task i by clients[i % n], each
    client on a thread of its own.  Returns (submit, ack, errors, max_lag_ns): the submit
    call's time and its 202's of each task id, the other answers as (status, body), and how
    late on its schedule the latest call started."""
    submit, ack, errors, lag = {}, {}, [], [0]

    def produce(k, client):
        for i in range(k, total, len(clients)):
            due = start + i * 1e9 / rate
            wait = due - now()
            if wait > 0:
                time.sleep(wait / 1e9)
            t = now()
            lag[0] = max(lag[0], t - due)
            status, body = client.submit(params)
            if status == 202:
                ack[body["id"]] = now()
                submit[body["id"]] = t
            else:
                errors.append((status, body))
    threads = [threading.Thread(target=produce, args=(k, c)) for k, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return submit, ack, errors, lag[0]


def steady_result(total, sent, start, final, produced):
    submit = sent["submit"]
    started = latency_ms(submit, start)
    finals = latency_ms(submit, final)
    acks = latency_ms(submit, sent.get("ack", {}))
    last = max((final[k] for k in submit if k in final), default=0)
    span = (last - min(submit.values())) / 1e9 if last else 0
    return {"jobs": total, "submitted": len(submit), "started": len(started),
            "final_per_s": len(finals) / span if span > 0 else None,
            "final": len(finals), "errors": produced.get("errors", 0),
            "max_lag_ms": produced.get("max_lag_ms"),
            "start_p50": pct(started, 0.5), "start_p99": pct(started, 0.99),
            "final_p50": pct(finals, 0.5), "final_p99": pct(finals, 0.99),
            "ack_p50": pct(acks, 0.5), "ack_p99": pct(acks, 0.99)}


# ---- taskwire ----

class TaskwireClient:
    """One client id: a session token and one keep-alive HTTP connection to the web server
    (on host, loopback by default)."""

    def __init__(self, port, host="127.0.0.1"):
        self.host = host
        self.port = port
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        status, body = self.post("/api/session", None)
        if status != 201:
            raise RuntimeError(f"POST /api/session answered {status}: {body}")
        self.token = body["token"]

    def post(self, path, body, token=None):
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        for attempt in (0, 1):
            try:
                self.conn.request("POST", path, data, headers)
                r = self.conn.getresponse()
                text = r.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()  # the server closed the idle keep-alive connection
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt:
                    raise
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return r.status, parsed

    def submit(self, params):
        return self.post("/api/tasks", {"type": "sleep", "params": params}, self.token)


class Taskwire(Peer):
    name = "taskwire"
    family = "taskwire"
    label = "taskwire"
    short = "SQLite, WAL synced before the 202"
    durability = ("SQLite WAL: a task is on disk before its 202 (the WAL synced after the commit, "
                  "one sync shared by concurrent submissions); the worker's claims and final "
                  "states commit with synchronous=NORMAL (a process crash loses none, an OS "
                  "crash can undo the last, which runs that task again)")
    setup = ("one worker, concurrency 16; lighttpd + taskwire.fcgi (1 process); POST /api/tasks "
             "of sleep duration_ms DURATION, steps 1; started / final = the WebSocket events "
             "(steady), `succeeded` on a ZeroMQ tap of the events endpoint (drain)")

    def __init__(self, bench):
        super().__init__(bench)
        self.params = dict(TW_SLEEP, duration_ms=bench.args.tw_duration_ms)
        self.setup = self.setup.replace("DURATION", str(self.params["duration_ms"]))

    def stack(self, worker):
        kwargs = {"worker": worker, "worker_settings": {"concurrency": CONCURRENCY}}
        # A Stack that takes [http] keys lifts the per-client queue limit for the drain (the
        # drain spreads its jobs over enough client ids to stay under the default anyway) and
        # the per-client submission rate: the benchmark measures the path (the bucket is
        # still kept), not the limits.
        if "http_settings" in inspect.signature(Stack.__init__).parameters:
            kwargs["http_settings"] = {"max_queued": TW_MAX_QUEUED_LIFTED,
                                       "submit_rate": 1000000, "submit_burst": 1000000}
        stack = Stack(build=self.bench.args.build, **kwargs, **self.store_kwargs())
        stack.start()
        for name, child in stack.processes.items():
            pin_tree(child.pid, CLIENT_CPU if name.startswith("worker") else STORE_CPU)
        return stack

    def store_kwargs(self):
        return {}  # the default store: SQLite in the stack's own directory

    def check_params(self, client):
        status, body = client.submit(self.params)
        if status != 202:
            raise Pending(f"POST /api/tasks of sleep {json.dumps(self.params)} answered "
                          f"{status}: {json.dumps(body)}")
        return body["id"]

    def drain(self, jobs):
        stack = self.stack(worker=False)
        import zmq
        ctx = zmq.Context()
        tap = ctx.socket(zmq.SUB)
        try:
            clients = [TaskwireClient(stack.http_port)
                       for _ in range(max(TW_SUBMITTERS, -(-jobs // TW_MAX_QUEUED) + 1))]
            ids = {self.check_params(clients[0])}
            share = [(jobs - 1) // len(clients) + (1 if k < (jobs - 1) % len(clients) else 0)
                     for k in range(len(clients))]
            errors = []
            lock = threading.Lock()

            def enqueue(client, n):
                mine = []
                for _ in range(n):
                    status, body = client.submit(self.params)
                    if status == 202:
                        mine.append(body["id"])
                    else:
                        errors.append((status, body))
                with lock:
                    ids.update(mine)
            t = now()
            threads = [threading.Thread(target=enqueue, args=(c, n)) for c, n in zip(clients, share)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            enqueue_s = (now() - t) / 1e9
            if errors:
                raise RuntimeError(f"{len(errors)} submissions refused, e.g. {errors[0]}")
            # The tap: every event on the worker's XPUB, counted as it arrives.  It connects
            # within milliseconds of the worker binding, but events published before its
            # subscription arrives are not sent to it: the store has the last word on the count.
            tap.setsockopt(zmq.RCVHWM, 0)
            tap.setsockopt(zmq.RECONNECT_IVL, 2)
            tap.setsockopt(zmq.SUBSCRIBE, b"")
            tap.connect(stack.events_endpoint)
            seen = {"succeeded": set(), "started": set(), "other": 0}
            times = {"first_start": 0, "last_final": 0, "last_event": 0}
            done = threading.Event()
            stop = threading.Event()

            def watch():
                # The peers count their drain in their own worker process (BullMQ's "completed"
                # handler) or on the database's side; taskwire's worker has no such hook, so
                # this tap, which parses every started and succeeded event, runs beside the
                # store on its core rather than taking the workers' core from the worker.
                os.sched_setaffinity(0, {STORE_CPU})
                while not stop.is_set():
                    if not tap.poll(200):
                        continue
                    _, payload = tap.recv_multipart()
                    t_in = times["last_event"] = now()
                    if b'"succeeded"' in payload or b'"started"' in payload or \
                            b'"failed"' in payload or b'"cancelled"' in payload:
                        message = json.loads(payload)
                        event, task_id = message.get("event"), message["task"]["id"]
                        if event == "started":
                            if not times["first_start"]:
                                times["first_start"] = t_in
                            seen["started"].add(task_id)
                        elif event == "succeeded":
                            seen["succeeded"].add(task_id)
                            times["last_final"] = t_in
                            if len(seen["succeeded"]) >= jobs:
                                done.set()
                        elif event in ("failed", "cancelled"):
                            seen["other"] += 1
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            store_cpu = CpuMeter([p.pid for name, p in stack.processes.items()
                                  if not name.startswith("worker")])
            t0 = now()
            stack.start_worker()
            worker_cpu = CpuMeter([stack.processes["worker"].pid])
            pin_tree(stack.processes["worker"].pid, CLIENT_CPU)
            deadline = time.monotonic() + max(60, jobs / 50)
            finished = False
            while not finished and time.monotonic() < deadline:
                finished = done.wait(0.5)
                if not finished and times["last_event"] and \
                        now() - times["last_event"] > 500e6 and \
                        task_counts(stack).get("succeeded", 0) >= jobs:
                    finished = True  # quiet for 0.5 s and all final: the tap missed the first
            cpu = {"store_cpu_s": store_cpu.used(), "worker_cpu_s": worker_cpu.used()}
            stop.set()
            watcher.join()
            counts = task_counts(stack)
            result = {"jobs": jobs, "enqueue_s": enqueue_s, "counts": counts,
                      "finished": finished, "completed": counts.get("succeeded", 0),
                      "tap_succeeded": len(seen["succeeded"]), **cpu}
            if times["last_final"] and counts.get("succeeded", 0) >= jobs:
                result.update(seconds=(times["last_final"] - t0) / 1e9,
                              busy_seconds=(times["last_final"] - times["first_start"]) / 1e9,
                              first_start_ms=(times["first_start"] - t0) / 1e6,
                              finished=True)
            return result
        finally:
            tap.close(0)
            ctx.term()
            stack.close()

    def steady(self, rate, seconds):
        stack = self.stack(worker=True)
        try:
            total = round(rate * seconds)
            clients = [TaskwireClient(stack.http_port) for _ in range(TW_STEADY_CLIENTS)]
            self.check_params(clients[0])
            wout = os.path.join(self.tmp, "watch.json")
            watcher = Child("taskwire watch", [PYTHON, os.path.join(HERE, "tw_watch.py"),
                                               json.dumps({"url": f"ws://127.0.0.1:{stack.http_port}/ws",
                                                           "tokens": [c.token for c in clients],
                                                           "expect": total, "out": wout})],
                            self.logfile("watch"), cpu=CLIENT_CPU)
            watcher.need_event("ready", 30)
            submit, ack, errors, lag = submit_open_loop(clients, total, rate, self.params, now())
            watcher.wait_event("done", SETTLE_S)
            watcher.stop()
            with open(wout) as f:
                got = json.load(f)
            produced = {"errors": len(errors), "max_lag_ms": lag / 1e6}
            result = steady_result(total, {"submit": submit, "ack": ack}, got["start"],
                                   got["final"], produced)
            result["failed"] = got.get("failed", 0)
            result["ws_closed"] = got.get("closed", [])
            return result
        finally:
            stack.close()


class TaskwirePg(Taskwire):
    name = "taskwire-pg"
    family = "taskwire"
    label = "taskwire (PostgreSQL)"
    short = "PostgreSQL, committed before the 202"
    durability = ("PostgreSQL 15 with its defaults (fsync on, synchronous_commit on): a task is "
                  "committed, its WAL flushed, before its 202; the worker's claims and final "
                  "states commit the same way")
    setup = Taskwire.setup.replace("lighttpd", "the store on a throwaway PostgreSQL cluster on "
                                   "core 0 (the harness's, as for graphile-worker); lighttpd")

    def store_kwargs(self):
        self.pg = Postgres(self.tmp)
        return {"store_url": self.pg.url}

    def drain(self, jobs):
        try:
            return super().drain(jobs)
        finally:
            self.pg.stop()

    def steady(self, rate, seconds):
        try:
            return super().steady(rate, seconds)
        finally:
            self.pg.stop()


class Pending(Exception):
    """taskwire cannot run the no-op job yet (the build refuses its parameters)."""


def task_counts(stack):
    """{status: count} of the stack's tasks, read from its database (read-only)."""
    if stack.store_url:
        return dict(stack.store_query("SELECT status, count(*) FROM tasks GROUP BY status"))
    db = sqlite3.connect(f"file:{os.path.join(stack.var, 'taskwire.db')}?mode=ro", uri=True,
                         timeout=10)
    try:
        return dict(db.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall())
    finally:
        db.close()


PEERS = {p.name: p for p in (Taskwire, TaskwirePg, BullMQ, BullMQAof, Graphile, PgBoss, PgBossBatch,
                             Celery, CeleryThreads)}


# ---- the run ----

class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="taskwire-jobs-")
        self.load = [loadavg(), None]
        os.chmod(self.tmp, 0o755)  # the postgres user reaches its cluster's directory


def versions(build):
    def npm(pkg):
        try:
            with open(os.path.join(HERE, "node_modules", pkg, "package.json")) as f:
                return json.load(f)["version"]
        except OSError:
            return "?"

    def deb(pkg):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                           text=True)
        return r.stdout.strip() or "?"
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no",
                            "--", "common", "fcgi", "worker", "relay"],
                           capture_output=True, text=True).stdout.strip()
    node = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "taskwire": f"the build in {os.path.relpath(build, ROOT)}/, tree at {rev}"
                    + (" with uncommitted changes" if dirty else "") + f" (sqlite3 {deb('libsqlite3-0')}, lighttpd {deb('lighttpd')})",
        "BullMQ": f"bullmq {npm('bullmq')}, ioredis {npm('ioredis')}, redis-server "
                  f"{deb('redis-server')}, Node {node}",
        "graphile-worker": f"graphile-worker {npm('graphile-worker')}, pg {npm('pg')}, "
                           f"PostgreSQL {deb('postgresql-15')}",
        "pg-boss": f"pg-boss {npm('pg-boss')}, pg {npm('pg')}, PostgreSQL {deb('postgresql-15')}",
        "Celery": f"celery {deb('python3-celery')}, kombu {deb('python3-kombu')}, redis-py "
                  f"{deb('python3-redis')}, Python {platform.python_version()}",
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt(value, digits=1):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def drain_metrics(r):
    """The drain's figures of one run, or None when it did not finish every job."""
    if "error" in r or not r.get("finished") or "seconds" not in r or \
            (r.get("completed") or 0) < r["jobs"]:
        return None
    return {"rate": r["jobs"] / r["seconds"], "busy_rate": r["jobs"] / r["busy_seconds"],
            "first_ms": r["first_start_ms"], "enqueue_rate": r["jobs"] / r["enqueue_s"],
            "store_us": r["store_cpu_s"] * 1e6 / r["jobs"],
            "worker_us": r["worker_cpu_s"] * 1e6 / r["jobs"]}


STEADY_KEYS = ("start_p50", "start_p99", "final_p50", "final_p99", "ack_p50", "max_lag_ms",
               "final_per_s")


def steady_metrics(r):
    """The steady run's figures, or None when a job never became final."""
    if "error" in r or r["final"] < r["jobs"] or r["submitted"] < r["jobs"]:
        return None
    return {k: r[k] for k in STEADY_KEYS}


def median_of(runs, metrics):
    """(median of each figure over the runs that finished, how many did, the first failure)."""
    good = [m for m in map(metrics, runs) if m]
    bad = next((r for r in runs if not metrics(r)), None)
    if not good:
        return None, 0, bad
    return {k: statistics.median(m[k] for m in good) for k in good[0]}, len(good), bad


def failure(r):
    if "error" in r:
        return r["error"]
    if "submitted" in r:
        return (f"{r['final']:,} of {r['jobs']:,} final ({r['submitted']:,} submitted, "
                f"{r['errors']} refused)")
    return f"unfinished: {r.get('completed')} of {r['jobs']:,} completed"


def report(bench, names, results, stamp):
    a = bench.args
    runs = f"median of {a.runs} runs" if a.runs > 1 else "one run"
    lines = [f"# Job queues side by side, {stamp}", "",
             f"Measured with `/usr/bin/python3 bench/jobs/run.py {' '.join(sys.argv[1:])}`"
             .rstrip() + f" ({runs} per system).", "",
             f"- Machine: {machine()}; load average {bench.load[0]} at the start, "
             f"{bench.load[1]} at the end (1, 5, 15 min; other work on the machine shows here).",
             f"- Redis, PostgreSQL and taskwire's lighttpd, handler and relay on core "
             f"{STORE_CPU} (`taskset -c {STORE_CPU}`); every worker, producer and listener on "
             f"core {CLIENT_CPU}. One worker process per system, {CONCURRENCY} jobs at once.",
             f"- Drain: {a.jobs:,} no-op jobs enqueued while no worker runs, then the worker "
             f"started; jobs/s over the time from starting the worker process to the last "
             f"job final (\"busy\": from the first job's start instead); CPU per job is the "
             f"store's (Redis, PostgreSQL; taskwire's web server, handler and relay) and the "
             f"worker's CPU time over that window divided by the jobs (taskwire's worker "
             f"writes its SQLite store itself, so its store work is in the worker's column).",
             f"- Steady: {a.rate:,g} jobs/s for {a.seconds:g} s ({round(a.rate * a.seconds):,} "
             f"jobs), one submit call per job on a fixed schedule; latency from the submit call "
             f"to the job's start in the worker and to its final notification; \"submit\" is "
             f"the submit call's own time; \"final jobs/s\" the jobs final over the time from "
             f"the first submission to the last final (below the rate: the system fell "
             f"behind, and its latencies measure the queue it built up).",
             ""]
    if "drain" in a.scenarios:
        lines += ["## Drain", "",
                  "| system | jobs/s | busy jobs/s | first job after ms | enqueue jobs/s | "
                  "CPU us per job, store / worker | runs with every job done | durability "
                  "(below) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for n in names:
            rs = results[n].get("drain", [])
            m, ok, bad = median_of(rs, drain_metrics)
            label, durability = PEERS[n].label, PEERS[n].short
            if not m:
                lines.append(f"| {label} | {failure(bad)} | | | | | 0 of {len(rs)} | "
                             f"{durability} |")
                continue
            note = f"; {failure(bad)}" if bad else ""
            lines.append(f"| {label} | {fmt(m['rate'], 0)} | {fmt(m['busy_rate'], 0)} | "
                         f"{fmt(m['first_ms'], 0)} | {fmt(m['enqueue_rate'], 0)} | "
                         f"{fmt(m['store_us'], 0)} / {fmt(m['worker_us'], 0)} | "
                         f"{ok} of {len(rs)}{note} | {durability} |")
        lines.append("")
    if "steady" in a.scenarios:
        lines += ["## Steady", "",
                  "| system | start p50 ms | start p99 ms | final p50 ms | final p99 ms | "
                  "submit p50 ms | final jobs/s | runs with every job final | max schedule "
                  "lag ms |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for n in names:
            rs = results[n].get("steady", [])
            m, ok, bad = median_of(rs, steady_metrics)
            label = PEERS[n].label
            if not m:
                lines.append(f"| {label} | {failure(bad)} | | | | | | 0 of {len(rs)} | |")
                continue
            note = f"; {failure(bad)}" if bad else ""
            lines.append(f"| {label} | {fmt(m['start_p50'], 2)} | {fmt(m['start_p99'], 2)} | "
                         f"{fmt(m['final_p50'], 2)} | {fmt(m['final_p99'], 2)} | "
                         f"{fmt(m['ack_p50'], 2)} | {fmt(m['final_per_s'], 0)} | "
                         f"{ok} of {len(rs)}{note} | "
                         f"{fmt(m['max_lag_ms'], 1)} |")
        lines.append("")
    lines += ["## Setup of each system", ""]
    for n in names:
        lines.append(f"- {PEERS[n].label}: {PEERS[n](bench).setup}.")
    lines += ["", "## Durability of each system", ""]
    for n in names:
        lines.append(f"- {PEERS[n].label}: {PEERS[n].durability}.")
    lines += ["", "Versions:", ""]
    shown = {PEERS[n].family for n in names}
    for k, v in versions(a.build).items():
        if k in shown:
            lines.append(f"- {k}: {v}")
    return "\n".join(lines) + "\n"


def on_signal(sig, frame):
    raise SystemExit(128 + sig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"comma-separated, of {', '.join(PEERS)}")
    ap.add_argument("--scenarios", default="drain,steady", help="drain, steady or both")
    ap.add_argument("--jobs", type=int, default=DRAIN_JOBS, help="drain: jobs enqueued")
    ap.add_argument("--rate", type=float, default=RATE, help="steady: jobs submitted per second")
    ap.add_argument("--seconds", type=float, default=SECONDS, help="steady: for this long")
    ap.add_argument("--runs", type=int, default=RUNS,
                    help=f"rounds, each system once per round; the table shows medians "
                         f"(default {RUNS}, 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {QUICK['jobs']:,} jobs, {QUICK['rate']} jobs/s for "
                         f"{QUICK['seconds']} s (about 10 s per system)")
    ap.add_argument("--tw-duration-ms", type=int, default=TW_SLEEP["duration_ms"],
                    help="taskwire's sleep duration_ms (0, the no-op, unless the build refuses it)")
    ap.add_argument("--build", default=os.environ.get("TASKWIRE_BUILD", os.path.join(ROOT, "build")),
                    help="taskwire's programs (default $TASKWIRE_BUILD, else build/)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                    help="where jobs-DATE.md and jobs-DATE.raw go")
    args = ap.parse_args()
    if args.quick:
        args.jobs, args.rate, args.seconds = QUICK["jobs"], QUICK["rate"], QUICK["seconds"]
        if "--runs" not in sys.argv:
            args.runs = 1
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    names = [n for n in args.peers.split(",") if n]
    for n in names:
        if n not in PEERS:
            sys.exit(f"run.py: unknown peer {n}; known: {', '.join(PEERS)}")
    if any(issubclass(PEERS[n], NodePeer) for n in names) and \
            not os.path.isdir(os.path.join(HERE, "node_modules")):
        sys.exit("run.py: bench/jobs/node_modules is missing: run `make bench-jobs` "
                 "(or `cd bench/jobs && npm ci`)")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    os.sched_setaffinity(0, {CLIENT_CPU})
    bench = Bench(args)
    log(f"job-queue benchmark: {machine()}; logs in {bench.tmp}")
    results = {n: {} for n in names}
    try:
        for round_ in range(args.runs):
            for scenario in args.scenarios:
                for n in names:
                    peer = PEERS[n](bench)
                    peer.fresh(scenario)
                    log(f"round {round_ + 1}, {scenario}: {n} (load {loadavg()}) ...")
                    t = time.monotonic()
                    try:
                        if scenario == "drain":
                            r = peer.drain(args.jobs)
                        else:
                            r = peer.steady(args.rate, args.seconds)
                    except Pending as why:
                        r = {"error": f"pending: {why}"}
                    except (RuntimeError, OSError, KeyError, ValueError) as error:
                        r = {"error": f"failed: {error}"}
                    finally:
                        stop_everything()
                    r["wall_s"] = time.monotonic() - t
                    results[n].setdefault(scenario, []).append(r)
                    log(f"  {json.dumps(r)}")
    finally:
        stop_everything()
    bench.load[1] = loadavg()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"jobs-{stamp}.md")
    with open(path, "w") as f:
        f.write(report(bench, names, results, stamp))
    with open(os.path.join(args.out, f"jobs-{stamp}.raw"), "w") as f:
        json.dump(results, f)
    log(f"wrote {path}")
    failed = [n for n in names for rs in results[n].values() for r in rs
              if "error" in r and not r["error"].startswith("pending")]
    if not failed:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    else:
        log(f"failed: {', '.join(sorted(set(failed)))}; logs kept in {bench.tmp}")
    return 1 if failed else 0


def stop_everything():
    Child.stop_all()
    Postgres.stop_all()


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_everything()
