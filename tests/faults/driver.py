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
nothing about its task once thawed.  `run()` returns a Result with the summary table and the
failed checks; the command prints the table and exits 1 when a check failed.
"""
import argparse
import asyncio
import http.client
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from stack import FINAL, Stack, wait_for  # noqa: E402

import websockets  # noqa: E402
import zmq  # noqa: E402
import zmq.asyncio  # noqa: E402

LEASE_MS = 3000  # [worker] lease_ms of the stack
# The worker settings wanted.  A key the worker does not know (lease_ms before the durable
# engine) is left out; stale_after_ms, the old engine's "worker is dead" threshold, is the
# lease's stand-in meanwhile.
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
FREEZE_TASK = {"type": "marked", "params": {"count": 20, "step_ms": 300}}
FREEZE_WATCH_S = 2.5  # after SIGCONT, how long the store and the pages are watched
FREEZE_TRIES = 25  # stops inside a store write (thawed at once) before one is kept anyway
RERUN_SLACK_MS = 2000  # a lost task runs again within lease_ms + this (p99)
SUBMIT_GIVE_UP_S = 60.0  # a submission still unanswered after this fails the run
RETRY_PAUSE_S = 0.05  # between two tries of a submission or a listing
RECONNECT_PAUSE_S = 0.1  # before a dropped WebSocket reconnects
PROBE_WAIT_S = 3.0  # for a probe to show a new WebSocket's subscription reached the workers
DRAIN_S = 120.0  # after the faults, for every task to reach a final state
CONVERGE_S = 20.0  # then, for every client's view to equal the store
DEFAULT_MAX_ATTEMPTS = 3  # when the store has no max_attempts column


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


def percentile(values, p):
    """Nearest-rank percentile of values (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def accepted_worker_settings(build, wanted):
    """(settings, left out): wanted, less the keys `taskwire-worker -n` calls unknown (they are
    set to None, which the stack leaves out of the config)."""
    settings, left_out = dict(wanted), []
    for _ in range(len(wanted) + 1):
        stack = Stack(build=build, worker=False, worker_settings=settings, types={"marked": MARKED})
        try:
            check = subprocess.run([stack._binary("taskwire-worker"), "-n", "-c",
                                    stack.config_path], capture_output=True, text=True, timeout=60)
        finally:
            shutil.rmtree(stack.tmp, ignore_errors=True)
        if check.returncode == 0:
            return settings, left_out
        unknown = re.search(r"unknown key '([^']+)' in section \[worker\]", check.stderr)
        if not unknown or unknown.group(1) not in settings or settings[unknown.group(1)] is None:
            raise RuntimeError(f"the worker refuses the fault suite's config: {check.stderr}")
        settings[unknown.group(1)] = None
        left_out.append(unknown.group(1))
    raise RuntimeError("the worker refuses every setting")


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
        self.connections = 0
        self.drops = 0
        self.lists = 0
        self.unconfirmed = 0  # connections whose probe never came back
        self.errors = []  # unexpected exceptions of its WebSocket loop
        self.probes = {}  # probe number -> future, while a new connection waits for one

    def merge(self, task):
        with self.lock:
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

    async def _follow(self, client):
        url = f"ws://127.0.0.1:{self.stack.http_port}/ws?token={client.token}"
        while not self.closing.is_set():
            try:
                async with websockets.connect(url, open_timeout=5, close_timeout=1,
                                              max_size=2**22) as ws:
                    client.connections += 1
                    number = client.connections
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
        settings, self.left_out = accepted_worker_settings(self.build, WORKER_SETTINGS)
        self.lease_ms = LEASE_MS if "lease_ms" not in self.left_out else settings["stale_after_ms"]
        self.stack = Stack(build=self.build, workers=2, worker_settings=settings,
                           types={"marked": MARKED})
        self.database = os.path.join(self.stack.var, "taskwire.db")
        self.stack.start()
        self.log(f"stack in {self.stack.tmp}, seed {self.seed}, lease {self.lease_ms} ms"
                 + (f" (the worker does not know {', '.join(self.left_out)})"
                    if self.left_out else ""))
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
                getattr(self, "kill_" + rng.choice(("worker", "relay", "fcgi")))()
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


# -- the checks --------------------------------------------------------------------------


class Result:
    def __init__(self, run):
        self.run = run
        self.failures = []
        self.numbers = {}
        self.summary = ""


def analyse(run):
    result = Result(run)
    fail, numbers = result.failures.append, result.numbers
    rows = run.final_rows
    clients = run.clients
    answered = run.answered()
    owner = {task_id: client for client in clients for task_id in client.tasks}
    fail_if = lambda condition, text: fail(text) if condition else None  # noqa: E731

    if run.listener.error:
        fail(f"the WebSocket loop died: {run.listener.error}")
    for problem in run.problems:
        fail(problem)

    # Submissions.
    submissions = [s for c in clients for s in c.submissions]
    unanswered = [s for s in submissions if not s["task"]]
    retried = [s for s in submissions if len(s["tries"]) > 1]
    replayed = [s for s in submissions if s["task"] and s["tries"][-1][1] == 200]
    numbers.update(tasks=len(answered), submissions=len(submissions), retried=len(retried),
                   tries=sum(len(s["tries"]) for s in submissions), replayed=len(replayed))
    fail_if(unanswered, f"{len(unanswered)} submissions never answered 202/200, e.g. "
            f"{[(s['body']['type'], s['error']) for s in unanswered[:3]]}")
    minimum = math.ceil(TASKS_PER_30S * run.seconds / 30 / run.client_count) * run.client_count
    fail_if(len(answered) < minimum, f"only {len(answered)} tasks answered, {minimum} wanted")
    split = [s for s in submissions if len({t[2] for t in s["tries"] if t[1] in (200, 202)}) > 1]
    fail_if(split, f"{len(split)} Idempotency-Keys answered with more than one task")
    ids_by_client = {}
    for row in rows.values():
        ids_by_client.setdefault(row["client_id"], set()).add(row["id"])
    duplicates = sum(len(ids_by_client.get(c.client_id, set()) - set(c.tasks)) for c in clients)
    numbers["duplicates"] = duplicates
    fail_if(duplicates, f"{duplicates} tasks in the store that no submission was answered with "
            "(a retried submission made a second task: is Idempotency-Key honoured?)")

    # The store's final states.
    missing = [i for i in answered if i not in rows]
    fail_if(missing, f"{len(missing)} answered tasks are not in the store, e.g. {missing[:3]}")
    statuses = {}
    for task_id in answered:
        if task_id in rows:
            statuses[rows[task_id]["status"]] = statuses.get(rows[task_id]["status"], 0) + 1
    numbers["statuses"] = statuses
    open_tasks = statuses.get("queued", 0) + statuses.get("running", 0)
    fail_if(open_tasks, f"{open_tasks} tasks left queued or running")

    lost_attempts = {}  # task id -> attempts lost to a fault we made
    for death in run.deaths:
        for task_id, attempt in death["lost"]:
            lost_attempts.setdefault(task_id, set()).add(attempt)
    freeze = run.freezer.record or {}
    if freeze.get("attempt"):
        lost_attempts.setdefault(freeze["task"], set()).add(freeze["attempt"])
    exhausted, bad = [], []
    for task_id in answered:
        row = rows.get(task_id)
        if not row or row["status"] == "succeeded":
            continue
        budget = row.get("max_attempts") or DEFAULT_MAX_ATTEMPTS
        if row["attempts"] >= budget and lost_attempts.get(task_id, set()) >= \
                set(range(1, row["attempts"] + 1)):
            exhausted.append(task_id)
        else:
            bad.append(row)
    numbers["exhausted"] = len(exhausted)
    numbers["retried_tasks"] = sum(1 for i in answered if rows.get(i, {}).get("attempts", 0) > 1)
    fail_if(bad, f"{len(bad)} tasks did not succeed, e.g. " + "; ".join(
        f"{r['id']} {r['status']} attempts={r['attempts']} error={r['error']!r}" for r in bad[:3]))

    # Each client's events and view.
    regressions, duplicate_events, older_attempt, queued_late, events = [], [], [], [], 0
    final_seen, final_after = 0, []
    diverging = []
    for client in clients:
        per_task = {}
        for at, number, message in client.events:
            if message.get("type") != "task":
                continue
            events += 1
            task = message["task"]
            seen = per_task.setdefault(task["id"], {"seq": 0, "attempt": 0, "count": 0})
            if message["seq"] < seen["seq"]:
                regressions.append((task["id"], seen["seq"], message["seq"]))
            elif message["seq"] == seen["seq"]:
                duplicate_events.append((task["id"], message["event"], message["seq"]))
            if task.get("attempts", 0) < seen["attempt"]:
                older_attempt.append((task["id"], seen["attempt"], task.get("attempts"),
                                      message["event"]))
            if message["event"] == "queued" and seen["count"]:
                queued_late.append((task["id"], message["seq"]))
            seen["seq"] = max(seen["seq"], message["seq"])
            seen["attempt"] = max(seen["attempt"], task.get("attempts", 0))
            seen["count"] += 1
            if message["event"] in FINAL and task["id"] in rows:
                final_seen += 1
                if message["seq"] != rows[task["id"]]["seq"]:
                    final_after.append((task["id"], message["seq"], rows[task["id"]]["seq"]))
        view = client.snapshot()
        for task_id in client.tasks:
            row = rows.get(task_id)
            mine = view.get(task_id, {})
            if row and (mine.get("status"), mine.get("seq")) != (row["status"], row["seq"]):
                diverging.append((client.index, task_id, mine.get("status"), mine.get("seq"),
                                  row["status"], row["seq"]))
    listener_errors = [e for c in clients for e in c.errors]
    fail_if(listener_errors, f"{len(listener_errors)} unexpected errors on the pages' "
            f"WebSockets, e.g. {listener_errors[:3]}")
    numbers.update(events=events, final_seen=final_seen, regressions=len(regressions),
                   duplicate_events=len(duplicate_events), older_attempt=len(older_attempt),
                   connections=sum(c.connections for c in clients),
                   lists=sum(c.lists for c in clients),
                   unconfirmed=sum(c.unconfirmed for c in clients))
    fail_if(diverging, f"{len(diverging)} tasks where a client's view differs from the store "
            f"(client, task, view status/seq, store status/seq), e.g. {diverging[:3]}")
    fail_if(final_after, f"{len(final_after)} tasks changed after their final event, e.g. "
            f"{final_after[:3]}")
    fail_if(regressions, f"{len(regressions)} events arrived after one with a higher seq, e.g. "
            f"{regressions[:3]}")
    fail_if(duplicate_events, f"{len(duplicate_events)} events repeated a seq already received "
            f"(task, event, seq), e.g. {duplicate_events[:3]}")
    fail_if(older_attempt, f"{len(older_attempt)} events of an older attempt arrived after one "
            f"of a newer attempt (task, newer, older, event), e.g. {older_attempt[:3]}")
    fail_if(queued_late, f"{len(queued_late)} queued events after another event of their task, "
            f"e.g. {queued_late[:3]}")

    # Reruns of the tasks a killed worker held.
    delays, not_rerun = [], []
    starts = started_events(clients)
    for death in run.deaths:
        for task_id, attempt in death["lost"]:
            delay = rerun_delay(starts, rows.get(task_id), task_id, attempt, death["at"])
            row = rows.get(task_id) or {}
            budget = row.get("max_attempts") or DEFAULT_MAX_ATTEMPTS
            if delay is not None:
                delays.append(delay)
            elif attempt < budget:
                not_rerun.append((task_id, attempt, row.get("status"), row.get("error")))
    numbers["lost"] = sum(len(d["lost"]) for d in run.deaths)
    numbers["delays"] = delays
    numbers["not_rerun"] = len(not_rerun)
    bound = (run.lease_ms + RERUN_SLACK_MS) / 1000
    numbers["bound"] = bound
    fail_if(not_rerun, f"{len(not_rerun)} tasks of killed workers never ran again (task, lost "
            f"attempt, status, error), e.g. {not_rerun[:3]}")
    p99 = percentile(delays, 99)
    if p99 is not None and p99 > bound:
        fail(f"p99 of the rerun delays is {p99:.2f} s, above lease_ms + "
             f"{RERUN_SLACK_MS / 1000:.0f} s = {bound:.2f} s")

    # The frozen worker.
    numbers["freeze"] = check_freeze(run, fail, owner, rows, bound)

    # The processes.
    fail_if(run.sanitizer, "sanitizer reports:\n" + "\n".join(run.sanitizer[:10]))
    fail_if(run.leftovers, f"processes outlived their parent: {run.leftovers}")
    crashed = [u for u in run.unexpected if not (u["after_freeze"] and u["status"] == 0)]
    fail_if(crashed, f"processes exited by themselves: {crashed}")
    result.summary = summary(run, numbers, result.failures)
    return result


def started_events(clients):
    """{task id: [(receive time, attempt)]} of every started event, in arrival order."""
    starts = {}
    for client in clients:
        for at, _, message in client.events:
            if message.get("type") == "task" and message["event"] == "started":
                starts.setdefault(message["task"]["id"], []).append(
                    (at, message["task"].get("attempts", 0)))
    return starts


def rerun_delay(starts, row, task_id, attempt, died_at):
    """Seconds from a worker's death to the next start of a task it held: its first started
    event of a later attempt, else the store's started_at when that attempt was the last."""
    for at, started in starts.get(task_id, []):
        if started > attempt and at >= died_at:
            return at - died_at
    if row and row["attempts"] == attempt + 1 and isinstance(row.get("started_at"), int):
        return row["started_at"] / 1000 - died_at
    return None


def marked_by(value, pid):
    return value is not None and f"worker={pid}" in str(value) or \
        value is not None and f'"worker":{pid}' in str(value)


def check_freeze(run, fail, owner, rows, bound):
    """The frozen worker wrote nothing about its task once thawed, and no page heard it."""
    record = run.freezer.record
    if not record:
        fail("the freeze never happened (the run was too short)")
        return None
    if record.get("problem"):
        fail(f"the freeze was not done: {record['problem']}")
        return None
    task_id, attempt, pid = record["task"], record["attempt"], record["pid"]
    out = {"task": task_id, "attempt": attempt, "held_s": record["held_s"],
           "newer_at_cont": record["newer_running_at_cont"], "writes": 0, "events": 0,
           "thawed_in_write": record["thawed_in_write"], "locked": bool(record["locked"])}
    final = rows.get(task_id) or {}
    newest = max([final.get("attempts", 0)] +
                 [r["attempts"] for _, r in record["snapshots"] if r])
    out["newest_attempt"] = newest
    if newest <= attempt:
        fail(f"frozen worker: its task {task_id} never got a newer attempt than {attempt} "
             f"(store: {final.get('status')}, error {final.get('error')!r})")
    at_cont = record["row_at_cont"] or {}
    errors_at_cont = errors_of(at_cont, attempt)
    states = {row["seq"]: row for _, row in record["snapshots"] if row}
    for row in states.values():
        if row["seq"] <= at_cont.get("seq", 0):
            continue
        if marked_by(row.get("message"), pid) or marked_by(row.get("result"), pid) or \
                errors_of(row, attempt) > errors_at_cont:
            out["writes"] += 1
    if final and final.get("seq", 0) > at_cont.get("seq", 0) and \
            (marked_by(final.get("result"), pid) and final.get("attempts") == attempt):
        out["writes"] += 1
    if out["writes"]:
        fail(f"frozen worker: {out['writes']} states of its task in the store (seq) came from "
             f"it after SIGCONT")
    client = owner.get(task_id)
    first_newer = None
    for at, _, message in client.events if client else []:
        if message.get("type") != "task" or message["task"]["id"] != task_id:
            continue
        task = message["task"]
        if task.get("attempts", 0) > attempt and first_newer is None:
            first_newer = at
        late = first_newer is not None and task.get("attempts", 0) <= attempt
        heard = at >= record["cont_at"] and marked_by(task.get("message"), pid)
        if late or heard:
            out["events"] += 1
    if out["events"]:
        fail(f"frozen worker: {out['events']} events of its lost attempt reached the page "
             "after SIGCONT or after the newer attempt's first event")
    delay = rerun_delay(started_events(clients_of(client)), final, task_id, attempt,
                        record["stopped_at"])
    out["rerun_s"] = delay
    if delay is not None and delay > bound:
        fail(f"frozen worker: its task ran again {delay:.2f} s after SIGSTOP, above {bound:.2f} s")
    return out


def clients_of(client):
    return [client] if client else []


def errors_of(row, attempt):
    """How many entries of row's errors name attempt."""
    try:
        entries = json.loads(row.get("errors") or "[]")
    except (TypeError, ValueError):
        return 0
    return sum(1 for e in entries if isinstance(e, dict) and e.get("attempt") == attempt)


def summary(run, n, failures):
    """The table a report quotes."""
    kinds = {}
    for fault in run.faults:
        kinds[fault["kind"]] = kinds.get(fault["kind"], 0) + 1
    delays = n.get("delays", [])
    fmt = lambda v: "-" if v is None else f"{v:.2f} s"  # noqa: E731
    freeze = n.get("freeze") or {}
    rows = [
        ("run", f"{run.seconds:.0f} s of faults, {run.client_count} clients, seed {run.seed}, "
                f"lease {run.lease_ms} ms" + (f" (worker lacks {', '.join(run.left_out)})"
                                              if run.left_out else "")),
        ("tasks answered", f"{n['tasks']} (submissions retried {n['retried']}, tries "
                           f"{n['tries']}, answered 200 on a retry {n['replayed']})"),
        ("faults", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"),
        ("final states", ", ".join(f"{k} {v}" for k, v in sorted(n["statuses"].items()))),
        ("retried tasks", f"{n['retried_tasks']} with more than one attempt; "
                          f"{n['exhausted']} out of attempts to faults"),
        ("lost to killed workers", f"{n['lost']} running tasks; ran again {len(delays)}, "
                                   f"never {n['not_rerun']}"),
        ("rerun delay", f"p50 {fmt(percentile(delays, 50))}  p99 {fmt(percentile(delays, 99))}"
                        f"  max {fmt(max(delays) if delays else None)}  (bound "
                        f"{n['bound']:.2f} s)"),
        ("duplicates", f"{n['duplicates']} tasks, {n['duplicate_events']} events"),
        ("events", f"{n['events']} on {n['connections']} connections; final event seen for "
                   f"{n['final_seen']} of {n['tasks']} tasks; {n['lists']} REST listings; "
                   f"{n['unconfirmed']} connections whose probe never came back"),
        ("order", f"{n['regressions']} seq regressions, {n['older_attempt']} older-attempt "
                  f"events after newer"),
        ("frozen worker", (f"task attempt {freeze['attempt']} -> {freeze['newest_attempt']}, "
                           f"held {freeze['held_s']:.2f} s, newer attempt running at SIGCONT "
                           f"{freeze['newer_at_cont']}, rerun {fmt(freeze.get('rerun_s'))}; "
                           f"writes after SIGCONT {freeze['writes']}, late events "
                           f"{freeze['events']}; stops inside a store write thawed first "
                           f"{freeze['thawed_in_write']}"
                           + (", kept one holding a write lock" if freeze["locked"] else ""))
                          if freeze else "not done"),
        ("verdict", "PASS" if not failures else f"FAIL ({len(failures)} checks)"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["fault suite summary", "-" * 19]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"  FAIL: {f}" for f in failures]
    return "\n".join(lines)


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
