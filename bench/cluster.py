#!/usr/bin/python3
"""cluster.py: taskwire scaled out, measured end to end: tasks per second with 1, 2 and 3 worker
hosts on PostgreSQL, SQLite against PostgreSQL on one host, and the CPU of every process.

    /usr/bin/python3 bench/cluster.py [--quick] [--runs N] [--topologies pg-1,pg-2,...]
                                      [--scenarios drain,e2e] [--jobs N] [--rate R --seconds S]

As root (`make bench-cluster`): every host is a network namespace on one bridge, made by
tests/cluster/net.py with a prefix and a /24 of this benchmark's own (`twb-`, 10.78.0.0/24),
so a `make test-cluster` running at the same time (`twc-`, 10.77.0.0/24) is never touched.  Each
host's processes are started by tests/stack.py (one Stack per host), PostgreSQL by tests/pg.py
with fsync and synchronous_commit on (the product's durability, not the tests' fsync off), and
this driver moves into the client host's namespace before any of its threads starts, so every
submission, tap and WebSocket crosses the bridge.  All the hosts share this machine's cores.

Topologies (each run starts its processes afresh, on a new database):

  pg-1, pg-2, pg-3  db (PostgreSQL), web1 (lighttpd + taskwire.fcgi), relay1 (its ingress bound
                    on [relay] events_listen), work1..workN (a pool each, [worker] concurrency
                    16, its events connected to relay1 by [zmq] relays), client (this driver)
  sqlite-1          solo: everything on one host, the store SQLite (the default)
  pg-local          solo again, with PostgreSQL on it: the backends compared without a network

Scenarios (the no-op task: `sleep` with duration_ms 0 and steps 1, as bench/jobs/run.py's):

  drain  --jobs tasks (20,000) through web1's POST /api/tasks over 32 keep-alive connections
         while no worker runs, then every worker host's pool started at once: tasks/s from that
         start to the last `succeeded` event on a ZeroMQ tap of every pool's events endpoint;
         then the store: every task answered 202 is there, succeeded, on its first attempt
  e2e    --rate tasks/s (1,000) for --seconds (20), open loop from 32 client ids, while the
         workers run: p50/p99 from the submit call to the `started` and to the final event at
         a WebSocket of the task's client id on relay1, and whether the system kept up

Over each measured window (the drain: from starting the pools to the last task final; e2e: the
submissions), the CPU of every process from /proc/PID/stat (utime + stime, and the children it
reaped), summed per role and host (PostgreSQL's processes per host), as percent of one core, and
the machine's own from /proc/stat.  Rounds alternate the topologies (--runs, 3; the tables show
medians).  The report goes to bench/results/cluster-DATE.md (raw JSON to cluster-DATE.raw) and
stdout.  Everything it made (namespaces, processes, clusters, directories) is removed at the end,
also on failure and on Ctrl-C; a failed run's logs are kept and named.
"""
import argparse
import datetime
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))

# The job-queue benchmark (its keep-alive client, its WebSocket watcher, its latency figures),
# loaded by path: this directory's run.py is the relay benchmark's.
_jobs_spec = importlib.util.spec_from_file_location("jobs_bench",
                                                    os.path.join(HERE, "jobs", "run.py"))
jobs = importlib.util.module_from_spec(_jobs_spec)
_jobs_spec.loader.exec_module(jobs)
from net import Network  # noqa: E402
from pg import PG_BIN, Postgres  # noqa: E402
from stack import Stack, wait_for  # noqa: E402

PREFIX = "twb-"  # of every namespace this benchmark makes (the cluster test's is twc-)
NETWORK = "10.78.0"  # the hosts' /24 (the cluster test's is 10.77.0)
HOSTS = {"db": 2, "web1": 11, "work1": 21, "work2": 22, "work3": 23, "relay1": 31, "solo": 40,
         "client": 50}
WORKER_HOSTS = ("work1", "work2", "work3")
INGRESS_PORT = 5574  # relay1's [relay] events_listen port
TOPOLOGIES = {  # name: (worker hosts, where PostgreSQL runs or None for SQLite)
    "pg-1": (1, "db"), "pg-2": (2, "db"), "pg-3": (3, "db"),
    "sqlite-1": (1, None), "pg-local": (1, "solo")}
SCENARIOS = ("drain", "e2e")
CONCURRENCY = 16  # [worker] concurrency of every pool
DRAIN_JOBS = 20000
RATE = 1000
SECONDS = 20
RUNS = 3
QUICK = {"jobs": 2000, "rate": 200, "seconds": 5}  # --quick: a smoke run
SUBMITTERS = 32  # drain: keep-alive connections (threads) submitting, a client id each
# e2e: client ids, each a keep-alive connection (a thread, one call at a time) and a WebSocket:
# at 1,000 tasks/s the schedule holds while a submit call takes under 32 ms.
E2E_CLIENTS = 32
SETTLE_S = 30  # e2e: after the last submission, how long the last tasks may take to be final
KEPT_UP_BACKLOG_S = 1.0  # e2e: kept up = every task final within this of the last submission
KEPT_UP_LAG_S = 1.0  # ... and no submission this late against its schedule
QUIET_S = 0.5  # drain: a tap quiet this long while the store says all succeeded is the end
PG_SETTINGS = {"max_connections": 200}  # 3 pools of 19 connections, handlers, checks
TICK = os.sysconf("SC_CLK_TCK")
PYTHON = "/usr/bin/python3"
# The product's defaults, not the tests' short intervals: a key set to None is left out of the
# config (tests/stack.py), so the programs' own default applies.
WORKER_SETTINGS = {"concurrency": CONCURRENCY, "progress_interval_ms": None,
                   "scan_interval_ms": None, "heartbeat_ms": None, "stale_after_ms": None,
                   "cancel_grace_ms": None, "lease_ms": None}
RELAY_DEFAULTS = {"ping_interval": None, "ping_timeout": None, "ring": None,
                  "max_message": None, "max_connections": None,
                  "max_connections_per_client": None, "connect_rate": None,
                  "connect_burst": None}
# The benchmark measures the path, not the limits: the per-client queue and submission rate
# are lifted (each submission still reads and writes its bucket).
HTTP_SETTINGS = {"max_queued": jobs.TW_MAX_QUEUED_LIFTED, "submit_rate": 1000000,
                 "submit_burst": 1000000}
DURABILITY = ("PostgreSQL 15 with fsync on and synchronous_commit on (the server's defaults, "
              "set explicitly): a task's row is committed, its WAL flushed to disk, before its "
              "202, and every claim and final state of the pools commits the same way; SQLite "
              "(sqlite-1) syncs its WAL before the 202, its pool commits with synchronous=NORMAL")


def now():
    return time.monotonic_ns()


def log(text):
    print(text, flush=True)


# ---- CPU ----

def proc_table():
    """{pid: (ppid, comm, CPU ticks)} of every process: utime + stime + cutime + cstime, so a
    child that exits and is reaped within a window stays counted in its parent."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        head, _, rest = text.rpartition(")")
        fields = rest.split()
        try:
            table[int(entry)] = (int(fields[1]), head.partition("(")[2],
                                 sum(int(x) for x in fields[11:15]))
        except (IndexError, ValueError):
            continue
    return table


def descendants(table, roots):
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [p for p in roots if p in table]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, []))
    return out


def machine_ticks():
    """Busy ticks of the whole machine (every core): all of /proc/stat's cpu line but idle and
    iowait."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return sum(values[:8]) - values[3] - values[4]


class Group:
    """Processes of one role on one host: roots() gives their pids when asked (a pool started
    within the window is counted from its start); whole: with every descendant; comm: only
    those (of the tree) whose name is, or with skip, is not, this."""

    def __init__(self, host, role, roots, whole=True, comm=None, skip=False):
        self.host, self.role, self.roots = host, role, roots
        self.whole, self.comm, self.skip = whole, comm, skip

    @property
    def label(self):
        return f"{self.host} {self.role}"

    def ticks(self, table):
        roots = [p for p in self.roots() if p]
        pids = descendants(table, roots) if self.whole else {p for p in roots if p in table}
        if self.comm is not None:
            pids = {p for p in pids if (table[p][1] == self.comm) != self.skip}
        return sum(table[p][2] for p in pids)


class CpuMeter:
    """CPU of each group, and of the machine, between start() and stop()."""

    def __init__(self, groups):
        self.groups = groups

    def snapshot(self):
        table = proc_table()
        return time.monotonic(), machine_ticks(), [g.ticks(table) for g in self.groups]

    def start(self):
        self.first = self.snapshot()

    def stop(self):
        """{"window_s", "machine": % of one core, "processes": {label: % of one core}}."""
        (t0, m0, g0), (t1, m1, g1) = self.first, self.snapshot()
        span = max(t1 - t0, 1e-9)
        share = lambda ticks: 100.0 * ticks / TICK / span  # noqa: E731
        return {"window_s": span, "machine": share(m1 - m0),
                "processes": {g.label: share(b - a) for g, a, b in zip(self.groups, g0, g1)}}


# ---- hosts and topologies ----

class Bench:
    """The network, the PostgreSQL clusters (one per host that holds one, made on first use and
    kept for the whole benchmark, a new database for each run) and the arguments."""

    def __init__(self, args):
        self.args = args
        self.net = Network(HOSTS, prefix=PREFIX, network=NETWORK)
        self.clusters = {}
        self.kept = []  # directories of failed runs, kept for their logs
        self.load = [jobs.loadavg(), None]

    def start(self):
        self.net.create()
        self.net.enter("client")

    def cluster(self, host):
        if host not in self.clusters:
            self.clusters[host] = Postgres(address=self.net.address(host),
                                           namespace=self.net.namespace(host),
                                           network=self.net.cidr, durable=True,
                                           settings=PG_SETTINGS)
        return self.clusters[host]

    def close(self):
        for cluster in self.clusters.values():
            cluster.destroy()
        self.clusters = {}
        self.net.destroy()


class Topology:
    """One run's hosts: the stacks of web, relay and worker hosts (one Stack for all three on
    the solo host), on a database of their own."""

    def __init__(self, bench, name):
        self.bench, self.name = bench, name
        self.net = bench.net
        self.worker_count, self.pg_host = TOPOLOGIES[name]
        self.solo = name in ("sqlite-1", "pg-local")
        self.stacks = {}
        self.cluster = self.url = None
        self.secret = os.urandom(32)
        self.watcher = None  # the e2e WebSocket watcher, counted as the driver's
        self.failed = False

    @property
    def web_host(self):
        return "solo" if self.solo else "web1"

    @property
    def relay_host(self):
        return "solo" if self.solo else "relay1"

    @property
    def worker_hosts(self):
        return ["solo"] if self.solo else list(WORKER_HOSTS[:self.worker_count])

    @property
    def web(self):
        return self.stacks[self.web_host]

    @property
    def relay(self):
        return self.stacks[self.relay_host]

    def stack(self, host, **settings):
        stack = Stack(build=self.bench.args.build, address=self.net.address(host),
                      namespace=self.net.netns(host), store_url=self.url,
                      store=None if self.url else "sqlite", secret=self.secret,
                      worker_settings=WORKER_SETTINGS, http_settings=HTTP_SETTINGS, **settings)
        self.stacks[host] = stack
        return stack

    def start(self):
        """Every process but the pools (start_pools())."""
        if self.pg_host:
            self.cluster = self.bench.cluster(self.pg_host)
            # A Stack on PostgreSQL asks Postgres.shared() for its queries' helper: this one,
            # rather than a throwaway cluster of its own beside it.
            Postgres._shared = self.cluster
            self.url = self.cluster.create_database("bench")
        exempt = self.net.address("client")
        if self.solo:
            self.stack("solo", worker=False,
                       relay_settings=dict(RELAY_DEFAULTS, connect_rate_exempt=exempt))
            self.web.start_server()
            self.relay.start_relay()
            return
        ingress = f"tcp://{self.net.address('relay1')}:{INGRESS_PORT}"
        self.stack("relay1", server=None, worker=False,
                   relay_settings=dict(RELAY_DEFAULTS, events_listen=ingress,
                                       connect_rate_exempt=exempt)).start_relay()
        self.stack("web1", worker=False).start_server()
        for host in self.worker_hosts:
            self.stack(host, server=None, zmq_settings={"relays": ingress})

    def start_pools(self):
        """Start every worker host's pool at once (each waits for its heartbeat in the store,
        or for health on the solo host)."""
        errors = []

        def start(stack):
            try:
                stack.start_worker()
            except (RuntimeError, TimeoutError, OSError) as error:
                errors.append(error)
        threads = [threading.Thread(target=start, args=(self.stacks[h],))
                   for h in self.worker_hosts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"a pool did not start: {errors[0]}")

    def wait_relay_hears_pools(self):
        """Until the relay's ingress has connected every pool (so a page hears them all)."""
        path = os.path.join(self.relay.tmp, "relay.log")

        def heard():
            with open(path, errors="replace") as f:
                return f.read().count("event=upstream_connected") >= len(self.worker_hosts)
        wait_for(heard, 20, f"{self.relay_host}'s relay to hear every pool")

    def events_endpoints(self):
        return [self.stacks[h].events_endpoint for h in self.worker_hosts]

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.cluster.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def groups(self):
        """The CPU groups: PostgreSQL's processes, lighttpd, the handler, the relay, each pool,
        and the driver (this process and its WebSocket watcher)."""
        def pid_of(host, name):
            return lambda: [p.pid for n, p in self.stacks[host].processes.items() if n == name]
        groups = []
        if self.pg_host:
            groups.append(Group(self.pg_host, "postgres", lambda: [self.postmaster_pid()]))
        web = self.web_host
        groups += [Group(web, "lighttpd", pid_of(web, "lighttpd"), comm="taskwire.fcgi",
                         skip=True),
                   Group(web, "handler", pid_of(web, "lighttpd"), comm="taskwire.fcgi"),
                   Group(self.relay_host, "relay", pid_of(self.relay_host, "relay"))]
        groups += [Group(h, "pool", pid_of(h, "worker")) for h in self.worker_hosts]
        groups += [Group("client", "driver", lambda: [os.getpid()], whole=False),
                   Group("client", "watcher",
                         lambda: [self.watcher.proc.pid] if self.watcher else [])]
        return groups

    def tasks(self):
        """{id: (status, attempts)} of every task in the store."""
        rows = self.web.store_query("SELECT id, status, attempts FROM tasks")
        return {row[0]: (row[1], row[2]) for row in rows}

    def store_check(self, answered):
        """The store against the ids answered 202: counts, lost, not succeeded, run twice."""
        rows = self.tasks()
        counts = {}
        for status, _ in rows.values():
            counts[status] = counts.get(status, 0) + 1
        lost = [i for i in answered if i not in rows]
        unfinished = [i for i in answered if i in rows and rows[i][0] != "succeeded"]
        again = [i for i in answered if i in rows and (rows[i][1] or 0) > 1]
        return {"counts": counts, "lost": len(lost), "not_succeeded": len(unfinished),
                "attempts_over_1": len(again), "extra": len(set(rows) - set(answered))}

    def close(self):
        """Stop every process; drop the run's database (and checkpoint, so the next run does
        not pay for this one's writes); remove the hosts' directories (--keep keeps a failed
        run's, and names them; without it their logs' tails go to stderr)."""
        for stack in self.stacks.values():
            stack.close()
            if self.failed and self.bench.args.keep:
                self.bench.kept.append(stack.tmp)
                continue
            if self.failed:
                print(stack.logs()[-3000:], file=sys.stderr)
            shutil.rmtree(stack.tmp, ignore_errors=True)
        if self.url:
            name = self.url.rsplit("dbname=", 1)[1]
            try:
                self.cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                self.cluster.psql("CHECKPOINT")
            except RuntimeError as error:
                log(f"  (dropping {name}: {error})")
        if Postgres._shared is self.cluster:
            Postgres._shared = None


# ---- the scenarios ----

def submit_all(web, clients, jobs_count, params):
    """Submit jobs_count tasks spread over clients (a thread each); the ids answered 202."""
    ids, errors, lock = [], [], threading.Lock()
    share = [jobs_count // len(clients) + (1 if k < jobs_count % len(clients) else 0)
             for k in range(len(clients))]

    def enqueue(client, n):
        mine = []
        for _ in range(n):
            status, body = client.submit(params)
            if status == 202:
                mine.append(body["id"])
            else:
                errors.append((status, body))
        with lock:
            ids.extend(mine)
    threads = [threading.Thread(target=enqueue, args=(c, n)) for c, n in zip(clients, share)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} submissions refused, e.g. {errors[0]}")
    return ids


def check_params(client, params):
    status, body = client.submit(params)
    if status != 202:
        raise RuntimeError(f"POST /api/tasks of sleep {json.dumps(params)} answered {status}: "
                           f"{json.dumps(body)}")
    return body["id"]


class Tap:
    """A ZeroMQ SUB of everything on every pool's events endpoint: the first `started` and
    each task's `succeeded`, timed as they arrive.  It connects before the pools bind (ZeroMQ
    retries), but what a pool publishes before the subscription reaches it is not sent: the
    store has the last word on the count."""

    def __init__(self, endpoints, expect):
        import zmq
        self.zmq = zmq
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, 0)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 2)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        for endpoint in endpoints:
            self.socket.connect(endpoint)
        self.expect = expect
        self.succeeded, self.other = set(), 0
        self.first_start = self.last_final = self.last_event = 0
        self.done = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.is_set():
            if not self.socket.poll(200):
                continue
            frames = self.socket.recv_multipart()
            t = self.last_event = now()
            payload = frames[-1]
            if b'"started"' in payload and not self.first_start:
                self.first_start = t
            if b'"succeeded"' in payload or b'"failed"' in payload or b'"cancelled"' in payload:
                message = json.loads(payload)
                if message.get("type") != "task":
                    continue
                event = message.get("event")
                if event == "succeeded":
                    self.succeeded.add(message["task"]["id"])
                    self.last_final = t
                    if len(self.succeeded) >= self.expect:
                        self.done.set()
                elif event in ("failed", "cancelled"):
                    self.other += 1

    def close(self):
        self.stopping.set()
        self.thread.join()
        self.socket.close(0)
        self.context.term()


def drain(topology, count, params):
    topology.start()
    web = topology.web
    clients = [jobs.TaskwireClient(web.http_port, host=web.address) for _ in range(SUBMITTERS)]
    answered = [check_params(clients[0], params)]
    t = now()
    answered += submit_all(web, clients, count - 1, params)
    enqueue_s = (now() - t) / 1e9
    tap = Tap(topology.events_endpoints(), count)
    try:
        cpu = CpuMeter(topology.groups())
        cpu.start()
        t0 = now()
        topology.start_pools()
        deadline = time.monotonic() + max(60, count / 50)
        finished = False
        while not finished and time.monotonic() < deadline:
            finished = tap.done.wait(QUIET_S)
            if not finished and tap.last_event and now() - tap.last_event > QUIET_S * 1e9:
                done = topology.web.store_query(
                    "SELECT count(*) FROM tasks WHERE status = 'succeeded'")
                finished = bool(done) and done[0][0] >= count  # the tap missed the first
        usage = cpu.stop()
    finally:
        tap.close()
    result = {"jobs": count, "enqueue_s": enqueue_s, "finished": finished,
              "tap_succeeded": len(tap.succeeded), "tap_other": tap.other, "cpu": usage}
    result.update(topology.store_check(answered))
    if finished and tap.last_final:
        result.update(seconds=max((tap.last_final - t0) / 1e9, 1e-6),
                      busy_seconds=max((tap.last_final - (tap.first_start or t0)) / 1e9, 1e-6),
                      first_start_ms=((tap.first_start or t0) - t0) / 1e6)
    return result


def e2e(topology, rate, seconds, params):
    topology.start()
    topology.start_pools()
    topology.wait_relay_hears_pools()
    web = topology.web
    total = round(rate * seconds)
    clients = [jobs.TaskwireClient(web.http_port, host=web.address) for _ in range(E2E_CLIENTS)]
    answered = [check_params(clients[0], params)]
    # The check's task is final before the watcher connects: it is not among those counted.
    wait_for(lambda: topology.tasks().get(answered[0], ("",))[0] == "succeeded", 20,
             "the first task to succeed")
    out = os.path.join(topology.relay.tmp, "watch.json")
    topology.watcher = jobs.Child(
        "watcher", [PYTHON, os.path.join(HERE, "jobs", "tw_watch.py"),
                    json.dumps({"url": topology.relay.relay_ws,
                                "tokens": [c.token for c in clients], "expect": total,
                                "out": out})],
        os.path.join(topology.relay.tmp, "watch.log"))
    topology.watcher.need_event("ready", 30)
    cpu = CpuMeter(topology.groups())
    cpu.start()
    start = now()
    submit, ack, errors, lag = jobs.submit_open_loop(clients, total, rate, params, start)
    usage = cpu.stop()
    topology.watcher.wait_event("done", SETTLE_S)
    topology.watcher.stop()
    with open(out) as f:
        got = json.load(f)
    result = jobs.steady_result(total, {"submit": submit, "ack": ack}, got["start"],
                                got["final"], {"errors": len(errors),
                                               "max_lag_ms": lag / 1e6})
    final = [got["final"][i] for i in submit if i in got["final"]]
    backlog_s = (max(final) - max(submit.values())) / 1e9 if final and submit else None
    result.update(rate=rate, seconds=seconds, backlog_s=backlog_s, cpu=usage,
                  ws_failed=got.get("failed", 0), ws_closed=got.get("closed", []),
                  submit_rate=(len(submit) / ((max(submit.values()) - start) / 1e9)
                               if len(submit) > 1 else None))
    result["kept_up"] = bool(result["final"] == total and result["submitted"] == total and
                             backlog_s is not None and backlog_s <= KEPT_UP_BACKLOG_S and
                             lag / 1e9 <= KEPT_UP_LAG_S)
    result.update(topology.store_check(answered + list(submit)))
    return result


# ---- the report ----

def fmt(value, digits=0):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def drain_ok(r):
    return ("error" not in r and r.get("finished") and "seconds" in r and not r["lost"] and
            not r["not_succeeded"] and r["counts"].get("succeeded", 0) >= r["jobs"])


def e2e_ok(r):
    return "error" not in r and r["final"] >= r["jobs"] and not r["lost"] and \
        not r["not_succeeded"]


OK = {"drain": drain_ok, "e2e": e2e_ok}


def why(r):
    if "error" in r:
        return r["error"]
    if "rate" in r:
        return (f"{r['final']:,} of {r['jobs']:,} final at a WebSocket ({r['submitted']:,} "
                f"submitted, {r['errors']} refused; store: {r['lost']} lost, "
                f"{r['not_succeeded']} not succeeded)")
    return (f"unfinished: {r['counts'].get('succeeded', 0):,} of {r['jobs']:,} succeeded, "
            f"{r['lost']} lost, {r['not_succeeded']} not succeeded")


def machine_us(r):
    """Microseconds of the machine's CPU (every core, every process) per task of a drain."""
    return r["cpu"]["machine"] / 100 * r["cpu"]["window_s"] / r["jobs"] * 1e6


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cpu_row(name, good):
    """The CPU columns of a topology: medians over its good runs."""
    if not good:
        return None
    labels = list(good[0]["cpu"]["processes"])
    m = {label: median([r["cpu"]["processes"].get(label) for r in good]) for label in labels}
    role = lambda r: [v for label, v in m.items()  # noqa: E731
                      if label.endswith(" " + r) and v is not None]
    pools = " + ".join(fmt(v) for v in role("pool"))
    listed = sum(v for v in m.values() if v is not None)
    return (f"| {name} | {fmt(sum(role('postgres'))) if role('postgres') else '-'} | "
            f"{fmt(sum(role('lighttpd')))} | {fmt(sum(role('handler')))} | "
            f"{fmt(sum(role('relay')))} | {pools} | "
            f"{fmt(sum(role('driver')) + sum(role('watcher')))} | {fmt(listed)} | "
            f"{fmt(median([r['cpu']['machine'] for r in good]))} |")


CPU_HEAD = ["| topology | PostgreSQL | lighttpd | handler | relay | pools | driver | sum | "
            "machine |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]


def report(bench, results, stamp):
    a = bench.args
    runs = f"median of {a.runs} runs" if a.runs > 1 else "one run"
    lines = [f"# Scaling out: worker hosts on PostgreSQL, {stamp}", "",
             "Measured with `" + " ".join(["/usr/bin/python3", "bench/cluster.py"] + sys.argv[1:])
             + f"` ({runs} of each topology and scenario, in alternating rounds).", "",
             f"- Machine: {jobs.machine()}; load average {bench.load[0]} at the start, "
             f"{bench.load[1]} at the end (1, 5, 15 min; other work on the machine shows here).",
             f"- Hosts are network namespaces on one bridge ({PREFIX}*, {NETWORK}.0/24) of this "
             f"one machine: every host shares its {os.cpu_count()} cores, so more worker hosts "
             f"add no CPU here; the curve shows what each added host costs and where the cores "
             f"run out, not what separate machines would reach.",
             f"- pg-N: db (PostgreSQL), web1 (lighttpd + taskwire.fcgi, 1 process, [http] "
             f"threads 2), relay1 (its ingress bound, the pools connected in), work1..workN (a "
             f"pool each, concurrency {CONCURRENCY}), client (this driver). sqlite-1 and "
             f"pg-local: all of it on one host, SQLite (the default store) or PostgreSQL. Other "
             f"keys at the product's defaults; the per-client queue and submission rate lifted.",
             f"- Durability: {DURABILITY}.",
             f"- Drain: {a.jobs:,} no-op tasks (`sleep`, duration_ms 0, steps 1) submitted "
             f"over {SUBMITTERS} keep-alive connections while no pool runs, then every pool "
             f"started at once; tasks/s from that start to the last `succeeded` event on a "
             f"ZeroMQ tap of the pools (\"busy\": from the first `started`); then the store: "
             f"every task answered 202 there, succeeded.",
             f"- End to end: {a.rate:,g} tasks/s for {a.seconds:g} s "
             f"({round(a.rate * a.seconds):,} tasks) from {E2E_CLIENTS} client ids on a fixed "
             f"schedule while the pools run; latency from the submit call to the `started` and "
             f"the final event at a WebSocket of the task's client id on the relay. Kept up: "
             f"every task final within {KEPT_UP_BACKLOG_S:g} s of the last submission and no "
             f"submission over {KEPT_UP_LAG_S:g} s late on its schedule.",
             "- CPU: percent of one core over the measured window (the drain: from starting "
             "the pools to the end; end to end: the submissions), from /proc/PID/stat (utime + "
             "stime with reaped children), PostgreSQL's processes summed per host; \"driver\" "
             "is this harness (submissions, tap) and its WebSocket watcher; \"machine\" is "
             f"/proc/stat's busy time of all cores ({100 * os.cpu_count()}% = every core busy).",
             ""]
    names = a.topologies
    if "drain" in a.scenarios:
        lines += ["## Drain", "",
                  "| topology | worker hosts | tasks/s | busy tasks/s | first task after ms | "
                  "enqueue tasks/s | machine CPU us per task | runs with every task succeeded | "
                  "tasks run twice |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        cpu = []
        for n in names:
            rs = results[n].get("drain", [])
            good = [r for r in rs if drain_ok(r)]
            bad = next((r for r in rs if not drain_ok(r)), None)
            if not good:
                lines.append(f"| {n} | {TOPOLOGIES[n][0]} | {why(bad) if bad else '-'} | | | "
                             f"| | 0 of {len(rs)} | |")
                continue
            note = f"; {why(bad)}" if bad else ""
            lines.append(
                f"| {n} | {TOPOLOGIES[n][0]} | "
                f"{fmt(median([r['jobs'] / r['seconds'] for r in good]))} | "
                f"{fmt(median([r['jobs'] / r['busy_seconds'] for r in good]))} | "
                f"{fmt(median([r['first_start_ms'] for r in good]))} | "
                f"{fmt(median([r['jobs'] / r['enqueue_s'] for r in good]))} | "
                f"{fmt(median([machine_us(r) for r in good]))} | "
                f"{len(good)} of {len(rs)}{note} | "
                f"{fmt(median([r['attempts_over_1'] for r in good]))} |")
            cpu.append(cpu_row(n, good))
        lines += ["", "CPU over the drain, % of one core:", ""] + CPU_HEAD + \
            [row for row in cpu if row] + [""]
    if "e2e" in a.scenarios:
        lines += [f"## End to end: {a.rate:,g} tasks/s for {a.seconds:g} s", "",
                  "| topology | started p50 ms | started p99 ms | final p50 ms | final p99 ms | "
                  "submit p50 ms | final tasks/s | backlog at the end s | max schedule lag ms | "
                  "kept up | runs with every task final |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
        cpu = []
        for n in names:
            rs = results[n].get("e2e", [])
            good = [r for r in rs if e2e_ok(r)]
            bad = next((r for r in rs if not e2e_ok(r)), None)
            if not good:
                lines.append(f"| {n} | {why(bad) if bad else '-'} | | | | | | | | no | "
                             f"0 of {len(rs)} |")
                continue
            note = f"; {why(bad)}" if bad else ""
            m = {k: median([r[k] for r in good]) for k in
                 ("start_p50", "start_p99", "final_p50", "final_p99", "ack_p50", "final_per_s",
                  "backlog_s", "max_lag_ms")}
            kept = sum(1 for r in rs if r.get("kept_up"))
            lines.append(f"| {n} | {fmt(m['start_p50'], 2)} | {fmt(m['start_p99'], 2)} | "
                         f"{fmt(m['final_p50'], 2)} | {fmt(m['final_p99'], 2)} | "
                         f"{fmt(m['ack_p50'], 2)} | {fmt(m['final_per_s'])} | "
                         f"{fmt(m['backlog_s'], 2)} | {fmt(m['max_lag_ms'], 1)} | "
                         f"{'yes' if kept == len(rs) else f'{kept} of {len(rs)} runs'} | "
                         f"{len(good)} of {len(rs)}{note} |")
            cpu.append(cpu_row(n, good))
        lines += ["", "CPU over the submissions, % of one core:", ""] + CPU_HEAD + \
            [row for row in cpu if row] + [""]
    lines += ["Versions:", "",
              f"- taskwire: the build in {os.path.relpath(a.build, ROOT)}/, tree at "
              f"{git_rev()}",
              f"- PostgreSQL {deb('postgresql-15')}, SQLite {deb('libsqlite3-0')}, lighttpd "
              f"{deb('lighttpd')}, libzmq {deb('libzmq5')}, libwebsockets {deb('libwebsockets17')}",
              ""]
    return "\n".join(lines)


def deb(package):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                       text=True)
    return r.stdout.strip() or "?"


def git_rev():
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no",
                            "--", "common", "fcgi", "worker", "relay"],
                           capture_output=True, text=True).stdout.strip()
    return rev + (" with uncommitted changes" if dirty else "")


def summary(r):
    """One line of a run's figures for the progress log."""
    if "error" in r:
        return r["error"]
    cpu = r["cpu"]
    top = ", ".join(f"{label} {v:.0f}%" for label, v in
                    sorted(cpu["processes"].items(), key=lambda kv: -kv[1]) if v >= 1)
    if "rate" in r:
        return (f"{r['final']:,}/{r['jobs']:,} final, started p50/p99 {fmt(r['start_p50'], 2)}/"
                f"{fmt(r['start_p99'], 2)} ms, final p50/p99 {fmt(r['final_p50'], 2)}/"
                f"{fmt(r['final_p99'], 2)} ms, backlog {fmt(r['backlog_s'], 2)} s, kept up "
                f"{'yes' if r['kept_up'] else 'no'}; store {r['counts']}; CPU machine "
                f"{cpu['machine']:.0f}%: {top}")
    rate = r["jobs"] / r["seconds"] if r.get("seconds") else None
    return (f"{fmt(rate)} tasks/s ({r['jobs']:,} in {fmt(r.get('seconds'), 2)} s, enqueued at "
            f"{fmt(r['jobs'] / r['enqueue_s'])}/s); store {r['counts']}, lost {r['lost']}, run "
            f"twice {r['attempts_over_1']}; CPU machine {cpu['machine']:.0f}%: {top}")


# ---- main ----

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--topologies", default=",".join(TOPOLOGIES),
                    help=f"comma-separated, of {', '.join(TOPOLOGIES)}")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="drain, e2e or both")
    ap.add_argument("--jobs", type=int, default=DRAIN_JOBS, help="drain: tasks submitted")
    ap.add_argument("--rate", type=float, default=RATE, help="e2e: tasks submitted per second")
    ap.add_argument("--seconds", type=float, default=SECONDS, help="e2e: for this long")
    ap.add_argument("--runs", type=int, default=RUNS,
                    help=f"rounds, each topology once per round and scenario; the tables show "
                         f"medians (default {RUNS}, 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {QUICK['jobs']:,} tasks, {QUICK['rate']} tasks/s for "
                         f"{QUICK['seconds']} s, one round")
    ap.add_argument("--build", default=os.environ.get("TASKWIRE_BUILD",
                                                      os.path.join(ROOT, "build")),
                    help="taskwire's programs (default $TASKWIRE_BUILD, else build/)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                    help="where cluster-DATE.md and cluster-DATE.raw go")
    ap.add_argument("--keep", action="store_true",
                    help="keep a failed run's directories (configs, logs) and name them")
    args = ap.parse_args()
    if args.quick:
        args.jobs, args.rate, args.seconds = QUICK["jobs"], QUICK["rate"], QUICK["seconds"]
        if "--runs" not in sys.argv:
            args.runs = 1
    args.build = os.path.abspath(args.build)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.topologies = [t for t in args.topologies.split(",") if t]
    for t in args.topologies:
        if t not in TOPOLOGIES:
            sys.exit(f"cluster.py: unknown topology {t}; known: {', '.join(TOPOLOGIES)}")
    for s in args.scenarios:
        if s not in SCENARIOS:
            sys.exit(f"cluster.py: unknown scenario {s}; known: {', '.join(SCENARIOS)}")
    if args.jobs < 2 or args.rate <= 0 or args.seconds <= 0 or args.runs < 1:
        sys.exit("cluster.py: --jobs must be at least 2, --rate, --seconds and --runs positive")
    if os.geteuid() != 0:
        sys.exit("cluster.py: needs root (network namespaces: ip netns)")
    for program in ("taskwire.fcgi", "taskwire-worker", "taskwire-relay"):
        if not os.access(os.path.join(args.build, program), os.X_OK):
            sys.exit(f"cluster.py: {args.build}/{program} is missing: run `make all` first")
    if not os.access(os.path.join(PG_BIN, "initdb"), os.X_OK):
        sys.exit(f"cluster.py: {PG_BIN}/initdb is missing: install postgresql")
    # SIGTERM unwinds like Ctrl-C, through every finally below (SIGINT too when started from a
    # shell that ignores it in the background).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    params = dict(jobs.TW_SLEEP)
    bench = Bench(args)
    results = {t: {} for t in args.topologies}
    started = time.monotonic()
    try:
        bench.start()
        log(f"scale-out benchmark: {jobs.machine()}; hosts {PREFIX}* on {NETWORK}.0/24")
        for round_ in range(args.runs):
            for scenario in args.scenarios:
                for name in args.topologies:
                    log(f"round {round_ + 1}, {scenario}: {name} (load {jobs.loadavg()}) ...")
                    topology = Topology(bench, name)
                    t = time.monotonic()
                    r = None
                    try:
                        if scenario == "drain":
                            r = drain(topology, args.jobs, params)
                        else:
                            r = e2e(topology, args.rate, args.seconds, params)
                    except (RuntimeError, TimeoutError, OSError, KeyError, ValueError,
                            AssertionError) as error:
                        # Its first line: a process's logs follow it (stderr, or --keep).
                        first = str(error).strip().split("\n")[0][:300]
                        r = {"error": f"failed: {type(error).__name__}: {first}"}
                    finally:
                        jobs.Child.stop_all()
                        # Interrupted (r None): nothing to report, nothing kept.
                        topology.failed = r is not None and not OK[scenario](r)
                        topology.close()
                    r["wall_s"] = time.monotonic() - t
                    results[name].setdefault(scenario, []).append(r)
                    log(f"  {summary(r)} ({r['wall_s']:.0f} s)")
    finally:
        jobs.Child.stop_all()
        bench.close()
    bench.load[1] = jobs.loadavg()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"cluster-{stamp}.md")
    text = report(bench, results, stamp)
    with open(path, "w") as f:
        f.write(text)
    with open(os.path.join(args.out, f"cluster-{stamp}.raw"), "w") as f:
        json.dump(results, f)
    log("\n" + text)
    log(f"wrote {path} ({time.monotonic() - started:.0f} s in all)")
    failed = [n for n, by in results.items() for s, rs in by.items() for r in rs
              if not OK[s](r)]
    if failed:
        log(f"failed: {', '.join(sorted(set(failed)))}" +
            (f"; logs kept in {' '.join(bench.kept)}" if bench.kept else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("cluster.py: interrupted; everything it started is stopped and removed")
