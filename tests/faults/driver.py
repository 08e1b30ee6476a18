"""The fault suite's driver: load a whole stack while its parts are killed, then check that
nothing was lost, nothing ran twice where it must not, and every page ends at the truth.

    /usr/bin/python3 tests/faults/driver.py [--seconds 30] [--clients 5] [--seed N] [--keep]

The stack (tests/stack.py): lighttpd with the FastCGI handler, the relay, and two workers behind
the stack's ZeroMQ hub, with short intervals (lease 3 s, heartbeat 300 ms, scan 200 ms).

Load: `clients` sessions submit sleep tasks (100..3000 ms, 1..10 steps) and a few exec `steps`
tasks, at least 500 in 30 s (the same rate over a longer run).  A submission the handler or
lighttpd did not answer is sent again with the same Idempotency-Key until it is answered 202 or
200.  Each client holds a WebSocket through lighttpd, reconnects when it drops, records every
message with its receive time, and (as the client library does) lists its tasks over REST
after every `connected` and `resync`, keeping the copy of each task with the higher seq.

Faults, every 2-3 s: kill -9 of a worker, the relay or the FastCGI handler, each started again
at once as a supervisor would (lighttpd starts a new handler itself), and once each: kill -9 of
lighttpd, and a worker frozen (SIGSTOP) past its lease while it runs a task, then thawed.

After the faults, with deadlines: every answered task is in the store and final, succeeded
(a task may fail only when every one of its attempts was lost to a fault); each client's view
equals the store; events of a task arrive in seq order, never an older attempt after a newer
one; a killed worker's tasks run again within lease_ms + 2 s (p99); the frozen worker writes
nothing about its task once thawed (checks.py).  `run()` returns a Result with the summary
table and the failed checks; the command prints the table and exits 1 when a check failed.
"""
import argparse
import asyncio
import http.client
import itertools
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from stack import FINAL, Stack, wait_for  # noqa: E402
from checks import analyse  # noqa: E402

import websockets  # noqa: E402
import zmq  # noqa: E402
import zmq.asyncio  # noqa: E402

LEASE_MS = 3000  # [worker] lease_ms of the stack
WORKER_SETTINGS = {"concurrency": 32, "lease_ms": LEASE_MS, "heartbeat_ms": 300,
                   "scan_interval_ms": 200, "stale_after_ms": LEASE_MS,
                   "progress_interval_ms": 50}
MARKED = {  # tests/faults/types/marked: a slow exec type whose every line names its worker
    "label": "Count slowly, naming the worker",
    "command": os.path.join(HERE, "types", "marked"),
    "timeout_ms": 60000,
    "param.count": "integer min=1 max=100 default=10",
    "param.step_ms": "integer min=10 max=5000 default=300",
}
TASKS_PER_30S = 500  # submissions at least, per 30 s of faults
FAULT_GAP_S = (2.0, 3.0)  # seconds between two faults
KILLED = ("worker", "relay", "fcgi")  # what a fault kills, each in turn in a shuffled order
FREEZE_TASK = {"type": "marked", "params": {"count": 20, "step_ms": 300}}
FREEZE_WATCH_S = 2.5  # after SIGCONT, how long the store and the pages are watched
FREEZE_TRIES = 25  # stops inside a store write (thawed at once) before one is kept anyway
SUBMIT_GIVE_UP_S = 60.0  # a submission still unanswered after this fails the run
RETRY_PAUSE_S = 0.05  # between two tries of a submission or a listing
RECONNECT_PAUSE_S = 0.1  # before a dropped WebSocket reconnects
PROBE_WAIT_S = 3.0  # for a probe to show a new WebSocket's subscription reached the workers
DRAIN_S = 120.0  # after the faults, for every task to reach a final state
CONVERGE_S = 20.0  # then, for every client's view to equal the store


def now():
    return time.time()


def store_write_locks(pid, database):
    """The write locks process pid holds on the database's files (the database, -wal, -shm and
    the handler's -queue), as /proc/PID/fdinfo lists them: POSIX, OFD and flock locks."""
    held = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return held
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if not target.startswith(database):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                lines = [line for line in f if line.startswith("lock:")]
        except OSError:
            continue
        held += [f"{os.path.basename(target)}: {line.split(':', 1)[1].strip()}"
                 for line in lines if "->" not in line and " WRITE " in line]
    return held


class Client:
    """One session: its submissions, the messages its WebSockets received, and its view of
    its tasks (the copy with the highest seq from events, REST lists and submission answers)."""

    def __init__(self, index, session):
        self.index = index
        self.client_id = session["client_id"]
        self.token = session["token"]
        self.lock = threading.Lock()
        self.submissions = []  # every submission, answered or not
        self.tasks = {}  # task id -> submission, for those answered 202/200
        self.events = []  # (receive time, connection number, message): task events, resyncs
        self.view = {}  # task id -> task object
        self.starts = {}  # task id -> {attempt: started_at} from every copy of the task seen
        self.connections = 0
        self.drops = 0
        self.lists = 0
        self.unconfirmed = 0  # connections whose probe never came back
        self.errors = []  # unexpected exceptions of its WebSocket loop
        self.probes = {}  # probe number -> future, while a new connection waits for one

    def merge(self, task):
        with self.lock:
            if task.get("attempts") and task.get("started_at"):
                self.starts.setdefault(task["id"], {}).setdefault(task["attempts"],
                                                                  task["started_at"])
            known = self.view.get(task["id"])
            if known is None or task["seq"] > known["seq"]:
                self.view[task["id"]] = task

    def snapshot(self):
        with self.lock:
            return dict(self.view)

    def pending(self):
        """Ids of answered tasks not final in the view."""
        with self.lock:
            return {i for i in self.tasks
                    if self.view.get(i, {}).get("status") not in FINAL}


class InFlight:
    """How many submissions are waiting for their answer now."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    def __enter__(self):
        with self.lock:
            self.count += 1

    def __exit__(self, *exc):
        with self.lock:
            self.count -= 1


def submit(stack, client, body, give_up_at, flight=None):
    """Send body until it is answered 202 or 200, with one Idempotency-Key for every try."""
    flight = flight or InFlight()
    key = uuid.uuid4().hex
    record = {"key": key, "body": body, "tries": [], "task": None, "error": None, "at": now()}
    with client.lock:
        client.submissions.append(record)
    while True:
        try:
            with flight:
                status, _, answer = stack.request("POST", "/api/tasks", body, client.token,
                                                  headers={"Idempotency-Key": key}, timeout=5)
            record["tries"].append((now(), status, (answer or {}).get("id")))
            if status in (200, 202) and answer:
                record["task"] = answer
                with client.lock:
                    client.tasks[answer["id"]] = record
                client.merge(answer)
                return record
            if status < 500 and status not in (408, 429):
                record["error"] = f"answered {status}: {answer}"
                return record
        except (OSError, http.client.HTTPException) as error:
            record["tries"].append((now(), None, type(error).__name__))
        if now() > give_up_at:
            record["error"] = f"no answer in {SUBMIT_GIVE_UP_S:.0f} s"
            return record
        time.sleep(RETRY_PAUSE_S)


def choose_task(rng):
    if rng.random() < 0.06:
        return {"type": "steps", "params": {"count": rng.randint(1, 10), "note": "faults"}}
    return {"type": "sleep", "params": {"duration_ms": rng.randint(100, 3000),
                                        "steps": rng.randint(1, 10)}}


def list_tasks(stack, client, give_up_at):
    """The client's tasks over REST, newest first, page after page until every task not yet
    final in the view was listed (None when the API did not answer in time)."""
    wanted, found, before = client.pending(), [], None
    while True:
        path = "/api/tasks?limit=200" + (f"&before={before}" if before else "")
        try:
            status, _, page = stack.request("GET", path, token=client.token, timeout=5)
        except (OSError, http.client.HTTPException):
            status, page = None, None
        if status != 200 or not page:
            if now() > give_up_at:
                return None
            time.sleep(RETRY_PAUSE_S)
            continue
        found.extend(page["tasks"])
        wanted -= {task["id"] for task in page["tasks"]}
        before = page.get("next_before")
        if not before or not wanted:
            return found


class Listener:
    """Every client's WebSocket through lighttpd, in one asyncio loop on its own thread."""

    def __init__(self, run):
        self.run = run
        self.stack = run.stack
        self.thread = threading.Thread(target=self._main, name="listener", daemon=True)
        self.ready = threading.Event()
        self.loop = None
        self.closing = None
        self.probe_numbers = itertools.count()
        self.error = None

    def start(self):
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the WebSocket loop did not start")

    def stop(self):
        if self.loop:
            self.loop.call_soon_threadsafe(self.closing.set)
        self.thread.join(15)

    def _main(self):
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported by the run, never silent
            self.error = repr(error)
            self.ready.set()

    async def _serve(self):
        self.loop = asyncio.get_running_loop()
        self.closing = asyncio.Event()
        self.pub = zmq.asyncio.Context.instance().socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.connect(self.stack.publish_endpoint)
        followers = [asyncio.create_task(self._follow(c)) for c in self.run.clients]
        self.ready.set()
        await self.closing.wait()
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        self.pub.close(0)

    def urls(self, client):
        """The WebSocket URLs client tries, the next one each time a connection drops."""
        return [f"ws://127.0.0.1:{self.stack.http_port}/ws"]

    def on_connection(self, client, number, url):
        """Called when client's connection number to url is open (a hook for other drivers)."""

    async def _follow(self, client):
        urls = self.urls(client)
        auth = json.dumps({"type": "auth", "token": client.token})  # the first message
        for turn in itertools.count():
            if self.closing.is_set():
                break
            url = urls[turn % len(urls)]
            try:
                async with websockets.connect(url, open_timeout=5, close_timeout=1,
                                              max_size=2**22) as ws:
                    await ws.send(auth)
                    client.connections += 1
                    number = client.connections
                    self.on_connection(client, number, url)
                    async for text in ws:
                        self._on_message(client, number, now(), json.loads(text))
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException):
                pass  # the relay or lighttpd went away, or is not back yet
            except Exception as error:  # anything else: counted, and the client goes on
                client.errors.append(repr(error))
            client.drops += 1
            await asyncio.sleep(RECONNECT_PAUSE_S)

    def _on_message(self, client, number, at, message):
        kind = message.get("type")
        if kind == "probe":
            for future in client.probes.values():
                if not future.done():
                    future.set_result(True)
            return
        if kind in ("task", "resync", "connected"):
            client.events.append((at, number, message))
        if kind == "connected":
            asyncio.create_task(self._resync(client, confirm=True))
        elif kind == "resync":
            asyncio.create_task(self._resync(client, confirm=False))
        elif kind == "task":
            client.merge(message["task"])
            self.run.freezer.on_event(message, at)

    async def _resync(self, client, confirm):
        """List the client's tasks over REST; on a new connection, first publish probes until
        one arrives, so the relay's subscription has reached the workers and nothing published
        after the listing can be missed."""
        if confirm:
            future = self.loop.create_future()
            number = next(self.probe_numbers)
            client.probes[number] = future
            deadline = self.loop.time() + PROBE_WAIT_S
            try:
                while not future.done() and self.loop.time() < deadline:
                    probe = json.dumps({"type": "probe", "n": number}).encode()
                    await self.pub.send_multipart([client.client_id.encode(), probe])
                    try:
                        await asyncio.wait_for(asyncio.shield(future), 0.05)
                    except asyncio.TimeoutError:
                        pass
            finally:
                client.probes.pop(number, None)
            if not future.done():
                client.unconfirmed += 1
        tasks = await self.loop.run_in_executor(None, list_tasks, self.stack, client, now() + 10)
        client.lists += 1
        for task in tasks or []:
            client.merge(task)


class Freezer:
    """The frozen worker: SIGSTOP just after an event of its task arrived (so none of its
    messages is in flight), held past the lease, SIGCONT, then the store and the pages are
    watched for anything the thawed worker says about the task it lost."""

    def __init__(self, run):
        self.run = run
        self.armed = None  # {"task", "attempt", "pgid"} while waiting for the event
        self.stopped = threading.Event()
        self.record = None

    def on_event(self, message, at):
        """Called by the listener for every task event (on its thread).  A worker stopped
        inside a write to the store would hold SQLite's write lock for as long as it is frozen
        and stall every other writer, the worker that should take its task back included: then
        it is thawed at once and stopped again after the task's next event."""
        armed = self.armed
        if armed and message["task"]["id"] == armed["task"] and \
                message["task"].get("attempts") == armed["attempt"]:
            os.killpg(armed["pgid"], signal.SIGSTOP)
            stopped_at = now()
            locks = store_write_locks(armed["pgid"], self.run.database)
            if locks and armed["tries"] < FREEZE_TRIES:
                os.killpg(armed["pgid"], signal.SIGCONT)
                armed["tries"] += 1
                armed["locks"].append(locks)
                return
            self.armed = None
            armed["stopped_at"] = stopped_at
            armed["after_event"] = (message["event"], message["seq"], at)
            armed["locked"] = locks
            self.stopped.set()

    def freeze(self):
        run, stack = self.run, self.run.stack
        client = run.clients[0]
        record = self.record = {"kind": "freeze", "at": now(), "done": False}
        sub = submit(stack, client, FREEZE_TASK, now() + SUBMIT_GIVE_UP_S)
        if not sub["task"]:
            record["problem"] = f"its task was not accepted: {sub['error']}"
            return
        task_id = record["task"] = sub["task"]["id"]

        def running():
            row = run.task_row(task_id)
            return row if row and row["status"] == "running" and row.get("worker_id") else None
        try:
            row = wait_for(running, 15, "the freeze task to run")
        except TimeoutError:
            record["problem"] = "its task never ran"
            return
        names = [n for n in stack.worker_names if stack.worker_id(n) == row["worker_id"]]
        if not names:
            record["problem"] = f"no running worker has id {row['worker_id']}"
            return
        name, pid = names[0], stack.processes[names[0]].pid
        record.update(worker=name, pid=pid, worker_id=row["worker_id"], attempt=row["attempts"])
        armed = {"task": task_id, "attempt": row["attempts"], "pgid": pid, "tries": 0,
                 "locks": []}
        self.armed = armed
        if not self.stopped.wait(10):
            self.armed = None
            record["problem"] = (f"no event of its task arrived to freeze on (stopped and "
                                 f"thawed {armed['tries']} times inside a store write)")
            return
        run.frozen_pgid = pid
        try:
            record.update(stopped_at=armed["stopped_at"], after_event=armed["after_event"],
                          thawed_in_write=armed["tries"], locked=armed["locked"],
                          locks_seen=armed["locks"][:3])
            # Hold past the lease, and on until a newer attempt runs elsewhere (bounded), so
            # the thawed worker meets a task that someone else holds now.
            hold = armed["stopped_at"] + (run.lease_ms + 1000) / 1000
            time.sleep(max(0.0, hold - now()))
            try:
                wait_for(lambda: (lambda r: r and r["attempts"] > record["attempt"] and
                                  r["status"] == "running")(run.task_row(task_id)),
                         max(0.1, armed["stopped_at"] + run.lease_ms / 1000 + 5 - now()),
                         "a newer attempt of the frozen task")
                record["newer_running_at_cont"] = True
            except TimeoutError:
                record["newer_running_at_cont"] = False
            record["row_at_cont"] = run.task_row(task_id)
        finally:
            os.killpg(pid, signal.SIGCONT)
            run.frozen_pgid = None
        record["cont_at"] = now()
        record["held_s"] = record["cont_at"] - record["stopped_at"]
        snapshots = []
        while now() < record["cont_at"] + FREEZE_WATCH_S:  # a bounded window: what must not happen
            snapshots.append((now(), run.task_row(task_id)))
            time.sleep(0.02)
        record["snapshots"] = snapshots
        record["done"] = True


class Run:
    """One run of the suite: the stack, the clients, the faults and what they left behind."""

    def __init__(self, seconds=30.0, clients=5, seed=None, build=None, out=None):
        self.seconds = seconds
        self.client_count = clients
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.rng = random.Random(self.seed)
        self.build = build
        self.out = out or sys.stdout
        self.faults = []  # {"kind", "at", ...}
        self.deaths = []  # {"name", "worker_id", "at", "lost": [(task id, attempt)]}
        self.unexpected = []  # processes that exited without being told to
        self.problems = []  # the run's own troubles (a deadline missed), reported as failures
        self.frozen_pgid = None
        self.flight = InFlight()  # submissions waiting for an answer
        self.freezer = Freezer(self)
        self.columns = None

    def log(self, text):
        print(f"[faults {now() - self.t0:7.2f}s] {text}", file=self.out, flush=True)

    # -- the store, read-only ----------------------------------------------------------

    def task_row(self, task_id):
        if self.columns is None:
            self.columns = [c[1] for c in self.stack.store_query("PRAGMA table_info(tasks)")]
        rows = self.stack.store_query("SELECT * FROM tasks WHERE id = ?", (task_id,))
        return dict(zip(self.columns, rows[0])) if rows else None

    def all_rows(self):
        if self.columns is None:
            self.columns = [c[1] for c in self.stack.store_query("PRAGMA table_info(tasks)")]
        for _ in range(50):
            rows = self.stack.store_query("SELECT * FROM tasks")
            if rows or not self.answered():
                break
            time.sleep(RETRY_PAUSE_S)  # the store was busy: try again
        return {row[self.columns.index("id")]: dict(zip(self.columns, row)) for row in rows}

    def answered(self):
        return {i: c for c in self.clients for i in list(c.tasks)}

    # -- the run -------------------------------------------------------------------------

    def execute(self):
        self.t0 = now()
        self.lease_ms = LEASE_MS
        self.stack = Stack(build=self.build, workers=2, worker_settings=WORKER_SETTINGS,
                           types={"marked": MARKED})
        self.database = os.path.join(self.stack.var, "taskwire.db")
        self.stack.start()
        self.log(f"stack in {self.stack.tmp}, seed {self.seed}, lease {self.lease_ms} ms")
        try:
            self.clients = [Client(i, self.stack.session()) for i in range(self.client_count)]
            self.listener = Listener(self)
            self.listener.start()
            self.load_and_faults()
            self.drain()
        finally:
            if self.frozen_pgid:
                os.killpg(self.frozen_pgid, signal.SIGCONT)
            if getattr(self, "listener", None):
                self.listener.stop()
            self.final_rows = self.all_rows()
            self.stack.close()
            self.leftovers = list(self.stack.leftovers)
            self.sanitizer = self.stack.sanitizer_reports()
        return self

    def load_and_faults(self):
        minimum = math.ceil(TASKS_PER_30S * self.seconds / 30 / self.client_count)
        self.minimum_tasks = minimum * self.client_count
        self.load_start = now()
        self.load_end = self.load_start + self.seconds
        rate = minimum / self.seconds  # per client and second
        submitters = [threading.Thread(target=self.submitter, args=(c, minimum, rate),
                                       name=f"client{c.index}", daemon=True)
                      for c in self.clients]
        for thread in submitters:
            thread.start()
        self.fault_loop()
        self.supervise()
        for thread in submitters:
            thread.join(max(1.0, self.load_end + SUBMIT_GIVE_UP_S - now()))
            if thread.is_alive():
                self.problems.append(f"{thread.name} was still submitting after the deadline")
        self.log(f"load done: {len(self.answered())} tasks answered")

    def submitter(self, client, minimum, rate):
        rng = random.Random(self.seed * 31 + client.index)
        count = 0
        while now() < self.load_end or count < minimum:
            due = self.load_start + count / rate
            if now() < due and now() < self.load_end:
                time.sleep(min(due, self.load_end) - now())  # the pace of the load
                continue
            submit(self.stack, client, choose_task(rng), now() + SUBMIT_GIVE_UP_S, self.flight)
            count += 1

    def fault_loop(self):
        rng = self.rng
        freeze_at = self.load_start + rng.uniform(0.15, 0.3) * self.seconds
        lighttpd_at = self.load_start + rng.uniform(0.45, 0.75) * self.seconds
        froze = lighttpd_killed = False
        bag = []  # the kinds in a shuffled order, each once before any comes again
        next_at = self.load_start + rng.uniform(*FAULT_GAP_S)
        while True:
            if next_at >= self.load_end:
                break
            time.sleep(max(0.0, next_at - now()))  # the schedule of the faults
            self.supervise()
            if not froze and now() >= freeze_at:
                froze = True
                self.log("freeze: SIGSTOP a worker running the freeze task")
                self.freezer.freeze()
                self.faults.append(self.freezer.record)
                self.log(f"freeze: {self.describe_freeze()}")
            elif not lighttpd_killed and now() >= lighttpd_at:
                lighttpd_killed = True
                self.kill_lighttpd()
            else:
                if not bag:
                    bag = rng.sample(KILLED, len(KILLED))
                getattr(self, "kill_" + bag.pop())()
            next_at = now() + rng.uniform(*FAULT_GAP_S)

    def describe_freeze(self):
        record = self.freezer.record
        if record.get("problem"):
            return "not done: " + record["problem"]
        return (f"{record['worker']} held {record['held_s']:.2f} s with task "
                f"{record['task']} attempt {record['attempt']}; newer attempt running at "
                f"SIGCONT: {record['newer_running_at_cont']}; stopped inside a store write "
                f"and thawed first: {record['thawed_in_write']} times {record['locks_seen']}")

    def kill_worker(self):
        stack = self.stack
        name = self.rng.choice(stack.worker_names)
        worker_id = stack.worker_id(name)
        at = now()
        stack.kill_worker(name)
        lost = [(r[0], r[1]) for r in stack.store_query(
            "SELECT id, attempts FROM tasks WHERE status = 'running' AND worker_id = ?",
            (worker_id,))] if worker_id else []
        self.deaths.append({"name": name, "worker_id": worker_id, "at": at, "lost": lost})
        self.faults.append({"kind": "worker", "name": name, "at": at, "lost": len(lost)})
        stack.start_worker(name)
        self.log(f"kill -9 {name}: {len(lost)} tasks were running on it; restarted")

    def kill_relay(self):
        at = now()
        self.stack.kill_relay()
        self.stack.start_relay()
        self.faults.append({"kind": "relay", "at": at})
        self.log("kill -9 relay; restarted")

    def kill_fcgi(self):
        stack = self.stack
        try:
            wait_for(stack.fcgi_pids, 10, "a FastCGI handler to kill")
        except TimeoutError:
            self.problems.append("lighttpd did not start a new FastCGI handler within 10 s")
            return
        # Kill it while a submission waits, so that some answer is lost on the way (bounded:
        # the load may be between two submissions for a moment).
        try:
            wait_for(lambda: self.flight.count > 0, 1, "a submission in flight")
            during = True
        except TimeoutError:
            during = False
        at = now()
        pids = stack.kill_fcgi()
        self.faults.append({"kind": "fcgi", "at": at, "pids": pids, "during_submission": during})
        try:
            wait_for(lambda: set(stack.fcgi_pids()) - set(pids), 10, "lighttpd's new handler")
        except TimeoutError:
            self.problems.append("lighttpd did not start a new FastCGI handler within 10 s")
        self.log(f"kill -9 FastCGI handler {pids}; lighttpd started another in "
                 f"{now() - at:.2f} s")

    def kill_lighttpd(self):
        at = now()
        self.stack.kill_server()
        self.stack.start_server()
        self.faults.append({"kind": "lighttpd", "at": at})
        self.log(f"kill -9 lighttpd (and its handler); restarted in {now() - at:.2f} s")

    def supervise(self):
        """Start again whatever exited without being told to (a supervisor's job)."""
        stack = self.stack
        for name in stack.worker_names + ["relay", stack.server.name, "zmq-hub"]:
            process = stack.processes.get(name)
            if process is None or process.poll() is None:
                continue
            self.unexpected.append({"name": name, "status": process.returncode, "at": now(),
                                    "after_freeze": name == self.freezer.record.get("worker")
                                    if self.freezer.record else False})
            self.log(f"{name} exited by itself (status {process.returncode}); restarting")
            stack.processes.pop(name)
            if name in stack.worker_names:
                stack.start_worker(name)
            elif name == "relay":
                stack.start_relay()
            elif name == "zmq-hub":
                stack.start_hub()
            else:
                stack.stop_server()
                stack.start_server()

    def drain(self):
        """Wait, with deadlines, for every task to end and every client to know it."""
        answered = self.answered()
        start = now()

        def unfinished():
            rows = self.stack.store_query("SELECT id, status FROM tasks WHERE status NOT IN "
                                          "('succeeded', 'failed', 'cancelled')")
            return [task_id for task_id, _ in rows if task_id in answered]
        try:
            wait_for(lambda: not unfinished(), DRAIN_S, "every task to reach a final state")
        except TimeoutError:
            left = unfinished()
            self.problems.append(f"{len(left)} tasks not final {DRAIN_S:.0f} s after the faults "
                                 f"ended, e.g. {left[:3]}")
        self.log(f"drained in {now() - start:.1f} s")
        rows = self.all_rows()

        def diverging():
            out = []
            for client in self.clients:
                view = client.snapshot()
                for task_id in list(client.tasks):
                    row = rows.get(task_id)
                    if row and (view.get(task_id, {}).get("seq"), view.get(task_id, {}).get(
                            "status")) != (row["seq"], row["status"]):
                        out.append((client.index, task_id))
            return out
        try:
            wait_for(lambda: not diverging(), CONVERGE_S, "every client's view to match")
        except TimeoutError:
            pass  # reported by the check
        self.log(f"views settled in {now() - start:.1f} s")


def dump(the_run):
    """What a failed run saw, beside the stack's logs."""
    tmp = the_run.stack.tmp
    with open(os.path.join(tmp, "faults-events.jsonl"), "w") as f:
        for client in the_run.clients:
            for at, number, message in client.events:
                f.write(json.dumps({"client": client.index, "at": at, "connection": number,
                                    "message": message}) + "\n")
    freeze = dict(the_run.freezer.record or {})
    freeze.pop("snapshots", None)
    with open(os.path.join(tmp, "faults-run.json"), "w") as f:
        json.dump({"seed": the_run.seed, "faults": the_run.faults, "deaths": the_run.deaths,
                   "freeze": freeze, "unexpected": the_run.unexpected,
                   "clients": [c.client_id for c in the_run.clients]}, f, indent=1,
                  default=str)


def run(seconds=30.0, clients=5, seed=None, build=None, keep=False, out=None):
    """Run the suite; returns a Result (failures, numbers, summary).  The stack's directory
    is removed unless a check failed or keep is set."""
    the_run = Run(seconds=seconds, clients=clients, seed=seed, build=build, out=out)
    try:
        the_run.execute()
    except BaseException:
        if getattr(the_run, "stack", None):
            the_run.stack.close()
            if getattr(the_run, "clients", None):
                dump(the_run)
            print(the_run.stack.logs(), file=the_run.out)
        raise
    result = analyse(the_run)
    if result.failures or keep:
        dump(the_run)
        result.summary += (f"\nstack directory kept: {the_run.stack.tmp} (faults-run.json: "
                           "the faults and deaths; faults-events.jsonl: every message)")
    else:
        shutil.rmtree(the_run.stack.tmp, ignore_errors=True)
    return result


def main():
    parser = argparse.ArgumentParser(description="taskwire's fault suite")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of faults")
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--build", help="folder of the programs (default $TASKWIRE_BUILD)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = run(args.seconds, args.clients, args.seed, args.build, args.keep)
    print(result.summary, flush=True)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
