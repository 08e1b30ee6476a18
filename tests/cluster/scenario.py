"""The cluster test: taskwire on nine hosts (network namespaces on one bridge, net.py) under load
while hosts fail, then every task accounted for.

    /usr/bin/python3 tests/cluster/scenario.py     (as root; `make test-cluster`)

Hosts (10.77.0.0/24): db (PostgreSQL, tests/pg.py), web1 and web2 (lighttpd + the FastCGI
handler), work1..work3 (a worker pool each, its events socket connected to both relays by
[zmq] relays), relay1 and relay2 (a relay each, its ingress bound on [relay] events_listen), and
client, where this driver itself runs (it moves into that namespace before any thread starts):
CLIENTS pages each submit through web1 or web2 (the other when one does not answer) and hold a
WebSocket to relay1 or relay2 from a list of both (the other when one drops).  Every process is
started with tests/stack.py (one Stack per host), the pages are the fault suite's
(tests/faults/driver.py: its Client, submit, listing and WebSocket loop) and so are the checks
(tests/faults/checks.py).

TASKS tasks from CLIENTS pages, and meanwhile, once each, with a measured recovery:
  (a) every process of work1 killed (kill -9): its running tasks run again elsewhere;
  (b) work2 cut off (its link down) for longer than its lease, then back: its tasks' new
      attempts stand, and nothing of the old attempts is written or seen after;
  (c) relay1 killed: its pages reconnect through relay2 and resync;
  (d) PostgreSQL restarted: the handlers answer 503 meanwhile, and nothing answered 202 is lost.
Then, with deadlines: every accepted task in the store, final and succeeded; each page's last
state of each task equals the store; per-task events in seq order at every page.  Prints the
recovery table and the checks; exits 1 when a check failed.
"""
import os
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(TESTS, "faults"))
from net import CIDR, Network  # noqa: E402
from stack import FINAL, Stack, wait_for  # noqa: E402
import checks  # noqa: E402
import driver as faults  # noqa: E402

HOSTS = {"db": 2, "web1": 11, "web2": 12, "work1": 21, "work2": 22, "work3": 23,
         "relay1": 31, "relay2": 32, "client": 50}
WEBS, WORKERS, RELAYS = ("web1", "web2"), ("work1", "work2", "work3"), ("relay1", "relay2")
INGRESS_PORT = 5574  # [relay] events_listen's port on each relay host
LEASE_MS = 3000
WORKER_SETTINGS = {"concurrency": 16, "lease_ms": LEASE_MS, "heartbeat_ms": 300,
                   "scan_interval_ms": 1000, "stale_after_ms": LEASE_MS,
                   "progress_interval_ms": 50}
TASKS = 1000
CLIENTS = 20
LOAD_S = 45.0  # the submissions are spread over this long
FAULTS_AT = {"a": 6.0, "b": 14.0, "c": 26.0, "d": 34.0}  # seconds into the load
PG_DOWN_S = 3.0  # how long PostgreSQL stays down
RECOVER_S = 30.0  # deadline of each recovery
DRAIN_S = 120.0  # after the load, for every task to be final
CONVERGE_S = 20.0  # then for every page's view to equal the store
CANCEL_BOUND_S = 0.5  # a cancel reaches the host that runs the task (~250 ms, with slack)
ROW_COLUMNS = ("id", "client_id", "status", "seq", "attempts", "errors", "result", "message",
               "worker_id", "started_at", "max_attempts")


def now():
    return time.time()


class Web:
    """What the pages' code needs of a stack: REST through web1 or web2 (each page starts with
    one, and a request the first does not answer goes to the other), the publish endpoint for
    the probes (work3's, never a fault's), and the relays' URLs."""

    def __init__(self, webs, relays, publish_endpoint):
        self.webs = webs
        self.relay_urls = [relay.relay_ws for relay in relays]
        self.publish_endpoint = publish_endpoint
        self.local = threading.local()

    def request(self, *args, **kwargs):
        first = getattr(self.local, "first", 0)
        for i in range(len(self.webs)):
            web = self.webs[(first + i) % len(self.webs)]
            try:
                return web.request(*args, **kwargs)
            except OSError:
                if i == len(self.webs) - 1:
                    raise
        raise AssertionError("unreachable")


class Listener(faults.Listener):
    """The fault suite's WebSocket loop, each page on relay1 or relay2 from the list of both:
    when its connection drops it takes the next one."""

    def urls(self, client):
        urls = self.stack.relay_urls
        first = client.index % len(urls)
        return urls[first:] + urls[:first]

    def on_connection(self, client, number, url):
        client.relays.append((now(), number, url))

    async def _resync(self, client, confirm):
        await super()._resync(client, confirm)
        client.list_times.append(now())


class NoFreezer:
    """The fault suite's listener reports events to its freezer; here nobody freezes."""

    def on_event(self, message, at):
        pass


class Cluster:
    def __init__(self, build=None, seed=None):
        self.build = build
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.rng = random.Random(self.seed)
        self.net = Network(HOSTS)
        self.stacks = {}
        self.postgres = None
        self.failures = []
        self.recoveries = []  # (fault, what was measured, seconds)
        self.facts = {}
        self.freezer = NoFreezer()
        self.lease_ms = LEASE_MS

    # -- hosts ---------------------------------------------------------------------------

    def host_stack(self, host, **settings):
        stack = Stack(build=self.build, address=self.net.address(host),
                      namespace=self.net.netns(host), store_url=self.url, secret=self.secret,
                      worker_settings=WORKER_SETTINGS, types={"marked": faults.MARKED},
                      **settings)
        self.stacks[host] = stack
        return stack

    def start(self):
        from pg import Postgres
        self.net.create()
        self.net.enter("client")
        self.postgres = Postgres(address=self.net.address("db"),
                                 namespace=self.net.namespace("db"), network=CIDR)
        self.url = self.postgres.create_database("cluster")
        self.secret = os.urandom(32)
        ingress = {r: f"tcp://{self.net.address(r)}:{INGRESS_PORT}" for r in RELAYS}
        for relay in RELAYS:
            self.host_stack(relay, server=None, worker=False,
                            relay_settings={"events_listen": ingress[relay],
                                            "connect_rate_exempt": self.net.address("client")}
                            ).start_relay()
        for worker in WORKERS:
            self.host_stack(worker, server=None,
                            zmq_settings={"relays": " ".join(ingress.values())}).start_worker()
        for web in WEBS:
            self.host_stack(web, worker=False).start_server()
        # Every worker's events reach both relays before the pages come.
        for relay in RELAYS:
            wait_for(lambda: self.relay_log(relay).count("event=upstream_connected") >=
                     len(WORKERS), 20, f"{relay} to hear every worker")

    def close(self):
        """Stop everything and remove the network; the hosts' directories go too unless a check
        failed (their logs are then kept for the report)."""
        import shutil
        for stack in self.stacks.values():
            stack.close()
            if not self.failures:
                shutil.rmtree(stack.tmp, ignore_errors=True)
        if self.postgres:
            self.postgres.destroy()
        self.net.destroy()

    # -- the store -----------------------------------------------------------------------

    def rows(self, where="", parameters=()):
        try:
            found = self.postgres.query(self.url, f"SELECT {', '.join(ROW_COLUMNS)} FROM tasks "
                                        + where, parameters)
        except RuntimeError:
            return None  # the server is down (the restart)
        return {row[0]: dict(zip(ROW_COLUMNS, row)) for row in found}

    def worker_id(self, host):
        return self.stacks[host].worker_id("worker")

    def running_on(self, host):
        """{task id: attempt} of the tasks host's worker runs now."""
        rows = self.rows("WHERE status = 'running' AND worker_id = ?", (self.worker_id(host),))
        return {i: r["attempts"] for i, r in (rows or {}).items()}

    def taken_over(self, lost):
        """True once every task of lost ({id: attempt}) runs a newer attempt or is final."""
        rows = self.rows("WHERE id IN (SELECT unnest(string_to_array(?, ',')))",
                         (",".join(lost),)) or {}
        return all(i in rows and (rows[i]["attempts"] > a or rows[i]["status"] in FINAL)
                   for i, a in lost.items())

    # -- the load ------------------------------------------------------------------------

    def answered(self):
        return {i: c for c in self.clients for i in list(c.tasks)}

    def load(self, client, count, give_up_at):
        rng = random.Random(self.seed + client.index)
        self.web.local.first = client.index % len(self.web.webs)
        gap = LOAD_S / count
        for n in range(count):
            if rng.random() < 0.1:
                body = {"type": "marked", "params": {"count": 4, "step_ms": 250}}
            else:
                body = {"type": "sleep", "params": {"duration_ms": rng.randint(200, 1500),
                                                    "steps": rng.randint(1, 5)}}
            faults.submit(self.web, client, body, give_up_at)
            time.sleep(max(0.0, client.started + (n + 1) * gap - now()))

    def measure(self, fault, what, start, done, deadline=RECOVER_S):
        try:
            wait_for(done, deadline, what)
            self.recoveries.append((fault, what, now() - start))
        except TimeoutError:
            self.recoveries.append((fault, what, None))
            self.failures.append(f"({fault}) {what}: not within {deadline:.0f} s")

    def cancel_across_hosts(self):
        """A task running on a worker host, cancelled through the web host that did not take it:
        how long until its worker has stopped it (the cancel's NOTIFY reaches that host)."""
        web1, web2 = self.stacks["web1"], self.stacks["web2"]
        token = web1.session()["token"]
        task = web1.submit(token, "sleep", {"duration_ms": 30000, "steps": 30})
        web1.wait_status(token, task["id"], ("running",), 10)
        at = now()
        status, body = web2.cancel(token, task["id"])
        if status != 202:
            self.failures.append(f"the cancel across hosts answered {status}: {body}")
            return
        self.measure("-", "cancel through web2 of a task running elsewhere: cancelled", at,
                     lambda: (web2.task(token, task["id"]) or {}).get("status") == "cancelled")
        took = self.recoveries[-1][2]
        if took is not None and took > CANCEL_BOUND_S:
            self.failures.append(f"the cancel across hosts took {took:.3f} s, over "
                                 f"{CANCEL_BOUND_S} s")

    def busy(self, host):
        """host's running tasks, once it runs at least one (so the fault has something to
        lose), or {} when it ran none within the deadline."""
        try:
            return wait_for(lambda: self.running_on(host), 10, f"{host} to run a task")
        except TimeoutError:
            self.failures.append(f"{host} ran no task to lose")
            return {}

    def fault_a(self):
        lost = self.busy("work1")
        at = now()
        self.stacks["work1"].kill_worker()
        self.facts["a"] = {"lost": len(lost)}
        self.measure("a", f"work1 killed: its {len(lost)} running tasks run again elsewhere",
                     at, lambda: self.taken_over(lost))
        # Started again as its supervisor would: both relays hear it, neither restarted.
        heard = {r: self.relay_log(r).count("event=upstream_connected") for r in RELAYS}
        started = now()
        self.stacks["work1"].start_worker()
        self.measure("a", "work1 restarted: connected in to both relays", started,
                     lambda: all(self.relay_log(r).count("event=upstream_connected") > heard[r]
                                 for r in RELAYS))

    def relay_log(self, relay):
        with open(os.path.join(self.stacks[relay].tmp, "relay.log"), errors="replace") as f:
            return f.read()

    def fault_b(self):
        self.busy("work2")  # it runs something to lose
        pid = self.stacks["work2"].processes["worker"].pid
        at = now()
        self.net.link("work2", False)
        # What it held once cut off: a task it finished between a look before the cut and the
        # cut itself ended on its first attempt, as it should.
        lost = self.running_on("work2")
        if not lost:
            self.failures.append("(b) work2 held no task when cut off")
        self.measure("b", f"work2 cut off: its {len(lost)} running tasks run again elsewhere",
                     at, lambda: self.taken_over(lost), deadline=LEASE_MS / 1000 + RECOVER_S)
        time.sleep(max(0.0, at + LEASE_MS / 1000 + 1.0 - now()))  # longer than its lease
        self.net.link("work2", True)
        self.facts["b"] = {"lost": lost, "pid": pid, "up_at": now(), "cut_at": at}
        self.measure("b", "work2 back: its worker heartbeats again", now(),
                     lambda: (self.rows("WHERE false") is not None and
                              self.postgres.query(self.url, "SELECT 1 FROM workers WHERE pid = ? "
                                                  "AND heartbeat_at > ?", (pid, int(now() * 1000)
                                                                           - 1000))))

    def fault_c(self):
        relay1 = self.stacks["relay1"].relay_ws
        on_relay1 = [c for c in self.clients if c.relays and c.relays[-1][2] == relay1]
        at = now()
        self.stacks["relay1"].kill_relay()
        self.facts["c"] = {"pages": len(on_relay1)}

        def resynced():
            return all(any(t >= at and url != relay1 for t, _, url in c.relays) and
                       c.lists_after(at) for c in on_relay1)
        self.measure("c", f"relay1 killed: its {len(on_relay1)} pages on relay2 and listed",
                     at, resynced)

    def fault_d(self):
        at = now()
        self.postgres.stop()
        time.sleep(PG_DOWN_S)
        self.postgres.start()
        back = now()
        self.facts["d"] = {"down_at": at, "up_at": back}

        def answering():
            return all(web.request("GET", "/api/health")[0] == 200 for web in self.web.webs)
        self.measure("d", "PostgreSQL restarted: health 200 on both web hosts", back, answering)

        def accepting():
            return any(t >= back and status == 202 for c in self.clients for s in c.submissions
                       for t, status, _ in s["tries"])
        self.measure("d", "PostgreSQL restarted: a submission answered 202", back, accepting)

    def run(self):
        self.start()
        webs = [self.stacks[w] for w in WEBS]
        self.web = Web(webs, [self.stacks[r] for r in RELAYS],
                       self.stacks["work3"].publish_endpoint)
        self.stack = self.web  # what the fault suite's Listener calls the REST side
        self.clients = []
        for index in range(CLIENTS):
            client = faults.Client(index, webs[index % 2].session())
            client.relays = []  # (time, connection number, relay URL) of each connection
            client.list_times = []
            self.clients.append(client)
        self.listener = Listener(self)
        self.listener.start()
        wait_for(lambda: all(c.lists for c in self.clients), 20, "every page's first listing")
        self.cancel_across_hosts()
        t0 = now()
        give_up_at = t0 + LOAD_S + faults.SUBMIT_GIVE_UP_S
        threads = []
        for client in self.clients:
            client.started = t0
            thread = threading.Thread(target=self.load, args=(client, TASKS // CLIENTS,
                                                              give_up_at), daemon=True)
            thread.start()
            threads.append(thread)
        for fault in "abcd":
            time.sleep(max(0.0, t0 + FAULTS_AT[fault] - now()))
            getattr(self, f"fault_{fault}")()
        for thread in threads:
            thread.join(give_up_at - now() + 5)
        answered = self.answered()
        try:
            wait_for(lambda: (lambda rows: rows is not None and all(
                i in rows and rows[i]["status"] in FINAL for i in answered))(self.rows()),
                DRAIN_S, "every task to be final")
        except TimeoutError as error:
            self.failures.append(str(error))
        rows = self.rows() or {}

        def converged():
            return all(c.snapshot().get(i, {}).get("seq") == rows[i]["seq"]
                       for c in self.clients for i in c.tasks if i in rows)
        try:
            wait_for(converged, CONVERGE_S, "every page's view to equal the store")
        except TimeoutError:
            pass  # client_checks names the pages that differ
        self.listener.stop()
        self.final_rows = rows
        return self.check(answered, rows)

    # -- the checks ----------------------------------------------------------------------

    def check(self, answered, rows):
        fail, numbers = self.failures.append, {}
        if self.listener.error:
            fail(f"the WebSocket loop died: {self.listener.error}")
        checks.submission_checks(self.clients, rows, answered, TASKS, fail, numbers)
        checks.store_checks(answered, rows, fail, numbers)
        failed = [r for i, r in rows.items() if i in answered and r["status"] != "succeeded"]
        if failed:
            fail(f"{len(failed)} tasks did not succeed, e.g. {failed[:3]}")
        checks.client_checks(self.clients, rows, fail, numbers)
        self.check_cut(rows)
        answers = [t for c in self.clients for s in c.submissions for t in s["tries"]]
        down = self.facts.get("d", {})
        refused = [t for t in answers if t[1] == 503 and down and
                   down["down_at"] <= t[0] <= down["up_at"] + RECOVER_S]
        other = [t for t in answers if t[1] is not None and t[1] >= 500 and t[1] != 503]
        numbers["refused_503"] = len(refused)
        if down and not refused:
            fail("(d) no submission was answered 503 while PostgreSQL was down")
        if other:
            fail(f"{len(other)} submissions answered 5xx other than 503, e.g. {other[:3]}")
        for stack in self.stacks.values():
            bad = stack.sanitizer_reports()
            if bad:
                fail(f"sanitizer reports: {bad[:5]}")
        self.numbers = numbers
        return self.failures

    def check_cut(self, rows):
        """(b): each task work2 held when cut off has a newer attempt as its final state, no
        state of it in the store comes from work2's old attempt (its marked tasks name their
        worker), and no page heard of the old attempt once work2 was back."""
        cut = self.facts.get("b")
        if not cut:
            self.failures.append("(b) the cut never happened")
            return
        pid, up_at = cut["pid"], cut["up_at"]
        for task_id, attempt in cut["lost"].items():
            row = rows.get(task_id) or {}
            if row.get("attempts", 0) <= attempt:
                self.failures.append(f"(b) task {task_id}: no attempt after {attempt} ({row})")
            if checks.marked_by(row.get("result"), pid) and row.get("attempts") == attempt:
                self.failures.append(f"(b) task {task_id}: the old attempt's result was stored")
            if checks.errors_of(row, attempt) > 1:  # the take-back's entry, and no other
                self.failures.append(f"(b) task {task_id}: the old attempt wrote its end too")
        heard = [(c.index, m["task"]["id"]) for c in self.clients for at, _, m in c.events
                 if m.get("type") == "task" and at >= up_at and
                 cut["lost"].get(m["task"]["id"]) == m["task"].get("attempts")]
        self.facts["b"]["heard_after"] = len(heard)
        if heard:
            self.failures.append(f"(b) {len(heard)} events of old attempts reached pages after "
                                 f"work2 came back, e.g. {heard[:3]}")

    def report(self):
        lines = [f"cluster test: {len(HOSTS)} hosts, {CLIENTS} pages, {TASKS} tasks, lease "
                 f"{LEASE_MS} ms, seed {self.seed}", "",
                 "fault  recovery                                                      seconds",
                 "-----  ------------------------------------------------------------  -------"]
        for fault, what, seconds in self.recoveries:
            lines.append(f"{'(' + fault + ')' if fault != '-' else '   '}    {what[:60].ljust(60)}  "
                         + ("-" if seconds is None else f"{seconds:7.2f}"))
        n = getattr(self, "numbers", {})
        lines += ["", f"final states: {n.get('statuses')}; submissions {n.get('submissions')} "
                  f"(retried {n.get('retried')}, answered 503 while the store was down "
                  f"{n.get('refused_503')}); events {n.get('events')} on "
                  f"{n.get('connections')} connections, {n.get('lists')} listings; "
                  f"seq regressions {n.get('regressions')}, repeated {n.get('duplicate_events')},"
                  f" older attempt after newer {n.get('older_attempt')}; (b) events of old "
                  f"attempts after the cut ended {self.facts.get('b', {}).get('heard_after')}",
                  "verdict: " + ("PASS" if not self.failures else
                                 f"FAIL ({len(self.failures)} checks)")]
        lines += [f"  FAIL: {f}" for f in self.failures]
        return "\n".join(lines)


def lists_after(client, at):
    return any(t >= at for t in client.list_times)


faults.Client.lists_after = lists_after


def run(build=None, seed=None):
    """Run the scenario; (failures, report text)."""
    cluster = Cluster(build=build, seed=seed)
    try:
        failures = cluster.run()
    except BaseException:
        failures = None
        raise
    finally:
        report = cluster.report()
        if failures is None or failures:
            for stack in cluster.stacks.values():
                print(stack.logs()[-4000:], file=sys.stderr)
        cluster.close()
    return failures, report


def main():
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    failures, report = run(os.environ.get("TASKWIRE_BUILD"))
    print(report)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
