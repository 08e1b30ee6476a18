"""The store's disk failing under a running stack: full, then read-only, then well again.

Each test runs the stack's processes in a private mount namespace (tests/stack.py's `namespace`)
where the database's directory is a file system of the test's own, so nothing is mounted on the
machine itself and the mount goes when its processes do, however the test ends.

- Full: a 16 MiB tmpfs, filled by a file while tasks run.
- Read-only: Linux refuses `mount -o remount,ro` (EBUSY) while any process holds a file of the
  file system open for writing, as SQLite always does, and chmod changes nothing for descriptors
  already open.  What does make a running process's writes fail is ext4's immutable flag: a
  write through a descriptor opened before it is refused with EPERM, and a new open for writing
  too (SQLite then opens the database read-only).  So the store is an ext4 image on a loop
  device, and the database and its log are made immutable (chattr +i) and then writable again.

While the store fails: submissions and cancels answer 503 `unavailable` with Retry-After and a
message naming the store, never 500, and leave nothing in the store; reads still answer; health
says the store is down and why; running tasks go on (their progress writes fail, the worker logs
that once per connection, not per write) and the outcomes of those that end wait in the
worker's memory.  When the disk is well again, without restarting any process: the kept
outcomes are stored (attempt 1, finished while the store failed), every task answered 202 runs
to its end, a refused submission sent again with its Idempotency-Key makes its task once, and new
submissions work.
"""
import concurrent.futures
import datetime
import errno
import json
import os
import pwd
import re
import subprocess
import sys
import time

import pytest

from conftest import WEB_SERVERS, start_stack, wait_for

CONCURRENCY = 2  # [worker] concurrency: the tasks running when the fault begins
TMPFS_SIZE = "16m"  # the full store's file system
IMAGE_BYTES = 64 << 20  # the read-only store's ext4 image
WAIT = 30  # seconds any one event may take (the sanitizer build is slow)
# Checkpoint the database argv[1] and empty its log; prints 0 when it could (1: busy).
CHECKPOINT = ("import sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=5);"
              " print(db.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()[0])")

# The disk faults of a SQLite file; a PostgreSQL store's outage is test_store_pg.py's.
pytestmark = pytest.mark.skipif(os.environ.get("TASKWIRE_TEST_STORE") == "postgresql",
                                reason="the store's own disk: SQLite only")


class MountNamespace:
    """A private mount namespace held open by a process of its own (`unshare --mount cat`, which
    ends when its stdin, the test's pipe, closes: also when the test process is killed).  Mounts
    made in it are seen only by the processes run in it, and go with the last of them."""

    def __init__(self):
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "cat"],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        own = os.readlink("/proc/self/ns/mnt")
        wait_for(lambda: self.holder.poll() is not None or self._ns() not in (None, own), 5,
                 "the mount namespace")
        if self.holder.poll() is not None:
            raise RuntimeError("unshare --mount failed: this test needs root")

    def _ns(self):
        try:
            return os.readlink(f"/proc/{self.holder.pid}/ns/mnt")
        except OSError:
            return None

    def run(self, *argv):
        """Run argv in the namespace; its output, or CalledProcessError."""
        return subprocess.run(["nsenter", "-t", str(self.holder.pid), "-m", "--", *argv],
                              check=True, capture_output=True, text=True, timeout=WAIT).stdout

    def command(self, argv, user, cwd):
        """argv run in the namespace as user (None: as we are) in cwd (for Stack._spawn)."""
        ids = []
        if user:
            entry = pwd.getpwnam(user)
            ids = ["-S", str(entry.pw_uid), "-G", str(entry.pw_gid)]
        return ["nsenter", "-t", str(self.holder.pid), "-m", *ids, f"--wdns={cwd}", "--", *argv]

    def view(self, path):
        """path in the namespace, as this process can open it."""
        return f"/proc/{self.holder.pid}/root{path}"

    def close(self):
        if self.holder.poll() is None:
            self.holder.stdin.close()
            self.holder.wait(WAIT)


def owner(stack):
    """(uid, gid) the stack's programs run as."""
    if stack.user:
        entry = pwd.getpwnam(stack.user)
        return entry.pw_uid, entry.pw_gid
    return os.getuid(), os.getgid()


class FullDisk:
    """The store on a small tmpfs; the fault: a file that takes all the room left."""

    message = "the task store is full"

    def __init__(self, ns):
        self.ns = ns

    def mount(self, stack):
        uid, gid = owner(stack)
        self.ns.run("mount", "-t", "tmpfs", "-o",
                    f"size={TMPFS_SIZE},mode=0700,uid={uid},gid={gid},nosuid,nodev", "tmpfs",
                    stack.store_dir)
        self.filler = self.ns.view(os.path.join(stack.store_dir, "filler"))

    def begin(self, stack):
        # Empty the write-ahead log first: a log SQLite has reset after a checkpoint is written
        # again from its start, into room it has already, and the fault would then show only
        # once the log grows past its old end.
        wait_for(lambda: self.ns.run(sys.executable, "-c", CHECKPOINT, stack.database) == "0\n",
                 WAIT, "a checkpoint that empties the write-ahead log")
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for chunk in (b"\0" * (1 << 20), b"\0" * 4096, b"\0"):
                while True:
                    try:
                        if os.write(fd, chunk) == 0:
                            break
                    except OSError as error:
                        assert error.errno == errno.ENOSPC, error
                        break
        finally:
            os.close(fd)
        assert os.statvfs(self.filler).f_bavail == 0

    def end(self, stack):
        os.unlink(self.filler)


class ReadOnlyDisk:
    """The store on ext4 (an image on a loop device); the fault: the database and its log made
    immutable, which refuses writes through the descriptors SQLite holds open."""

    message = "the task store is read-only"

    def __init__(self, ns):
        self.ns = ns

    def mount(self, stack):
        uid, gid = owner(stack)
        image = os.path.join(stack.tmp, "store.img")
        with open(image, "wb") as f:
            f.truncate(IMAGE_BYTES)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={uid}:{gid}",
                        image], check=True, capture_output=True, timeout=WAIT)
        self.ns.run("mount", "-o", "loop,nosuid,nodev", image, stack.store_dir)
        self.ns.run("chmod", "0700", stack.store_dir)

    def files(self, stack):
        return [stack.database, stack.database + "-wal"]

    def begin(self, stack):
        self.ns.run("chattr", "+i", *self.files(stack))

    def end(self, stack):
        self.ns.run("chattr", "-i", *self.files(stack))


FAULTS = {"full": FullDisk, "read-only": ReadOnlyDisk}


def start_faulty(request, fault_name, server):
    """(stack, fault): a started stack whose store is on the fault's own file system, in a mount
    namespace of its own (unmounted and gone after the stack has stopped, however it ends)."""
    ns = MountNamespace()
    fault = FAULTS[fault_name](ns)
    mounted = []

    def finish():
        for path in mounted:
            try:
                ns.run("umount", "--lazy", "--", path)
            except subprocess.CalledProcessError:
                pass
        ns.close()
    request.addfinalizer(finish)  # before start_stack's: runs after the stack has stopped

    def prepare(stack):
        fault.mount(stack)
        mounted.append(stack.store_dir)
    stack = start_stack(request, prepare=prepare, server=server, store_dir="store", namespace=ns,
                        worker_settings={"concurrency": CONCURRENCY})
    return stack, fault


@pytest.fixture(params=[(fault, server) for fault in FAULTS for server in WEB_SERVERS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def faulty(request):
    return start_faulty(request, *request.param)


def iso_ms(text):
    """Milliseconds since the epoch of an ISO 8601 time of the store."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def log_of(stack, name):
    with open(os.path.join(stack.tmp, f"{name}.log"), errors="replace") as f:
        return f.read()


def submit(stack, token, name, key=None):
    """(status, headers, body) of a submission of a short sleep task named name."""
    headers = {"Idempotency-Key": key} if key else None
    return stack.request("POST", "/api/tasks",
                         {"type": "sleep", "name": name,
                          "params": {"duration_ms": 100, "steps": 2}}, token, headers=headers)


def test_a_failing_store_answers_503_keeps_what_it_has_and_recovers(faulty):
    """The store's disk fills up, or its database becomes read-only, under a running stack:
    clients are told to try again (503, never 500), nothing half-written is left, running tasks
    go on and their outcomes are kept; when the disk is well again everything resumes without a
    restart and every task answered 202 runs."""
    stack, fault = faulty
    token = stack.session()["token"]
    running = [stack.submit(token, "sleep", {"duration_ms": 2500, "steps": 25}, name=f"run-{i}")
               for i in range(CONCURRENCY)]
    queued = [stack.submit(token, "sleep", {"duration_ms": 100, "steps": 2}, name=f"queued-{i}")
              for i in range(2)]
    for task in running:
        wait_for(lambda: stack.task(token, task["id"])["progress"] > 0, WAIT,
                 f"task {task['id']} to store progress")
    assert all(stack.task(token, t["id"])["status"] == "queued" for t in queued)
    processes = {name: process.pid for name, process in stack.processes.items()}
    handlers = set(stack.fcgi_pids())
    worker_log_before = len(log_of(stack, "worker"))

    fault.begin(stack)
    # A running task's progress writes fail; the worker says so and goes on.
    wait_for(lambda: re.search(r"event=store_failing op=progress problem=\"" + fault.message,
                               log_of(stack, "worker")[worker_log_before:]),
             WAIT, "the worker to log that progress writes fail")

    # Submissions, some at once (one commit for several) and some with an Idempotency-Key:
    # each is told to come back, with the reason, and none leaves a task behind.
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: submit(stack, token, f"refused-{i}",
                                                 key=f"refused-{i}" if i % 2 else None),
                                range(6)))
    for status, headers, body in answers:
        assert status == 503, (status, body)
        assert body["error"] == {"code": "unavailable", "message": fault.message}, body
        assert headers["Retry-After"] == "1"
    status, headers, body = stack.request("POST", f"/api/tasks/{queued[0]['id']}/cancel",
                                          token=token)
    assert status == 503 and body["error"]["message"] == fault.message, (status, body)
    assert headers["Retry-After"] == "1"
    # Reads still answer.
    status, _, listed = stack.request("GET", "/api/tasks", token=token)
    assert status == 200
    assert {t["id"] for t in listed["tasks"]} == {t["id"] for t in running + queued}

    health = wait_for(lambda: (lambda h: h if h.get("store") == "down" else None)(
        stack.health()), WAIT, "health to say the store is down")
    assert health["status"] == "degraded" and health["store_error"] == fault.message, health

    # The running tasks end while the store takes no writes: the worker keeps their outcomes.
    for task in running:
        wait_for(lambda: f"event=outcome_kept task={task['id']} attempt=1" in
                 log_of(stack, "worker"), WAIT, f"the worker to keep the outcome of {task['id']}")
    during = log_of(stack, "worker")[worker_log_before:]
    # One line per store connection (the pool's and each slot's), not one per write.
    assert during.count("event=store_failing") <= CONCURRENCY + 1, during
    assert stack.processes["worker"].poll() is None
    assert all(stack.task(token, t["id"])["status"] == "running" for t in running)

    fault.end(stack)
    recovered_ms = time.time() * 1000

    # The kept outcomes are stored as they were: attempt 1, finished while the store failed.
    for task in running:
        done = stack.wait_final(token, task["id"], WAIT)
        assert done["status"] == "succeeded" and done["attempts"] == 1, done
        assert iso_ms(done["finished_at"]) < recovered_ms, done
    for task in queued:
        done = stack.wait_final(token, task["id"], WAIT)
        assert done["status"] == "succeeded" and done["attempts"] == 1, done

    # A refused submission sent again with its key makes its task, once.
    status, _, again = submit(stack, token, "refused-1", key="refused-1")
    assert status == 202, again
    status, _, replay = submit(stack, token, "refused-1", key="refused-1")
    assert status == 200 and replay["id"] == again["id"], replay
    fresh = [stack.submit(token, "sleep", {"duration_ms": 100, "steps": 2}, name=f"after-{i}")
             for i in range(2)]
    for task in fresh + [again]:
        assert stack.wait_final(token, task["id"], WAIT)["status"] == "succeeded"

    # Nothing half-written: the database is sound, every task in it is whole, and the only
    # tasks are those answered 202.
    assert stack.store_query("PRAGMA integrity_check") == [("ok",)]
    rows = stack.store_query("SELECT id, name, status, params, errors, result FROM tasks")
    for _, name, status, params, errors, result in rows:
        assert status == "succeeded", (name, status)
        assert isinstance(json.loads(params), dict) and json.loads(errors) == []
        assert isinstance(json.loads(result), dict)
    assert sorted(name for _, name, *_ in rows) == sorted(
        [t["name"] for t in running + queued + fresh] + ["refused-1"])

    wait_for(lambda: stack.health().get("status") == "ok", WAIT, "health to say ok again")
    worker_log = log_of(stack, "worker")
    assert "event=store_writes_resumed" in worker_log and "event=store_recovered" in worker_log
    # No process was restarted: the same processes run, the same handlers among them.
    assert {name: process.pid for name, process in stack.processes.items()} == processes
    assert all(process.poll() is None for process in stack.processes.values())
    assert handlers <= set(stack.fcgi_pids())


def test_a_handler_started_on_a_read_only_store_writes_once_it_can(request):
    """A handler that starts while the database is read-only (SQLite can then open it only
    read-only) answers 503 for writes, and once the file is writable again takes submissions
    without being restarted."""
    stack, fault = start_faulty(request, "read-only", "lighttpd")
    token = stack.session()["token"]
    fault.begin(stack)
    old = stack.kill_fcgi()
    wait_for(lambda: stack.request("GET", "/api/task-types")[0] == 200, WAIT,
             "lighttpd to start a new handler")
    handlers = set(stack.fcgi_pids())
    assert handlers and not handlers & set(old)
    assert "event=store_read_only" in log_of(stack, "lighttpd")
    status, headers, body = submit(stack, token, "refused")
    assert status == 503 and body["error"]["message"] == fault.message, (status, body)
    assert headers["Retry-After"] == "1"

    fault.end(stack)
    # A client that sends again after each 503 is taken within about a second: the handler
    # tries to open the store for writing again at most once a second.
    accepted = wait_for(lambda: (lambda a: a if a[0] == 202 else None)(
        submit(stack, token, "accepted")), WAIT, "a submission to be accepted")[2]
    assert stack.wait_final(token, accepted["id"], WAIT)["status"] == "succeeded"
    assert "event=store_reopened" in log_of(stack, "lighttpd")
    assert set(stack.fcgi_pids()) == handlers
    names = [name for name, in stack.store_query("SELECT name FROM tasks")]
    assert names == ["accepted"], names
