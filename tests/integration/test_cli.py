"""The `taskwire` command as an operator runs it against a real stack (lighttpd, the FastCGI
handler, a worker, the relay): `tap` prints the events of the tasks the test submits (readable
lines and JSON lines, filtered), `token` mints tokens the API accepts and refuses tampered
ones, `tasks` and `status` go through the admin REST API, and every failure has its exit
status (0 done, 1 refused or nothing found, 2 usage, 3 not reached, 4 configuration or key)
with its message on stderr."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest
import zmq

from conftest import start_stack, wait_for
from stack import free_port

TIMEOUT = 30  # seconds any one command may take


@pytest.fixture(scope="module")
def stack(request):
    return start_stack(request, server="lighttpd")


def binary(stack):
    return os.path.join(stack.build, "taskwire")


def taskwire(stack, *args, stdin=None, config=True, timeout=TIMEOUT):
    """(exit status, stdout, stderr) of one run of the command."""
    argv = [binary(stack)] + (["-c", stack.config_path] if config else []) + list(args)
    out = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, TASKWIRE_CONFIG="/nonexistent/taskwire.conf"))
    return out.returncode, out.stdout, out.stderr


class Tap:
    """`taskwire tap ARGS` running in the background; its stdout lines collected."""

    def __init__(self, stack, *args):
        self.process = subprocess.Popen(
            [binary(stack), "-c", stack.config_path, "tap"] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
        self.lines, self.errors = [], []
        self.readers = [threading.Thread(target=self._read, args=(self.process.stdout, self.lines)),
                        threading.Thread(target=self._read, args=(self.process.stderr, self.errors))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_connected(self):
        wait_for(lambda: any("connected to" in e for e in self.errors) or
                 self.process.poll() is not None, 10, "the tap to connect")
        assert self.process.poll() is None, self.errors

    def wait_line(self, predicate, what, timeout=15):
        return wait_for(lambda: next((l for l in self.lines if predicate(l)), None), timeout, what)

    def stop(self, sig=signal.SIGINT):
        if self.process.poll() is None:
            self.process.send_signal(sig)
        status = self.process.wait(10)
        for reader in self.readers:
            reader.join(5)
        return status

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def taps():
    started = []
    yield started
    for one in started:
        one.close()


def publisher(stack):
    """A plain (not asyncio) PUB socket on the stack's publish endpoint: these tests send from
    the main thread, which has no event loop once another test's asyncio.run has ended."""
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.connect(stack.publish_endpoint)
    return pub


def probe_until_seen(stack, client_id, the_tap, pub=None):
    """Publish probes for client_id (through pub, else a PUB of its own) until the tap has
    printed one: its subscription has reached the worker pool (and pub is connected), so
    nothing published after is missed."""
    own = pub is None
    if own:
        pub = publisher(stack)
    marker = os.urandom(8).hex()
    try:
        deadline = time.monotonic() + 10
        n = 0
        while not any(marker in l for l in the_tap.lines):
            assert time.monotonic() < deadline, f"no probe reached the tap: {the_tap.errors}"
            pub.send_multipart([client_id.encode(),
                                json.dumps({"type": "probe", "marker": marker, "n": n}).encode()])
            n += 1
            time.sleep(0.05)
    finally:
        if own:
            pub.close(0)


def test_tap_prints_each_event_of_a_task(stack, taps):
    """An operator watching `taskwire tap --client ID` sees the task's events as they happen,
    one readable line each (time, client, task, type, event, attempt, progress, message), in
    order from queued to succeeded; Ctrl-C ends it with status 0."""
    session = stack.session()
    the_tap = Tap(stack, "--client", session["client_id"])
    taps.append(the_tap)
    the_tap.wait_connected()
    probe_until_seen(stack, session["client_id"], the_tap)
    task = stack.submit(session["token"], "sleep", {"duration_ms": 300, "steps": 3})
    the_tap.wait_line(lambda l: task["id"] in l and " succeeded " in l, "the succeeded line")
    mine = [l.split() for l in the_tap.lines if task["id"] in l]
    events = [fields[4] for fields in mine]
    assert events[0] == "queued" and events[-1] == "succeeded" and "started" in events, mine
    assert "progress" in events
    for fields in mine:
        assert fields[0].endswith("Z") and "T" in fields[0]  # ISO 8601 UTC time
        assert fields[1] == session["client_id"] and fields[3] == "sleep"
    final = mine[-1]
    assert final[5] == "1" and final[6] == "100%", final
    assert the_tap.stop(signal.SIGINT) == 0
    assert the_tap.stop(signal.SIGTERM) == 0


def test_tap_filters_and_json(stack, taps):
    """--task, --event and --type narrow the stream to what the operator asked for, --json
    lines parse and carry the message the page gets plus client_id; other clients' tasks
    do not show under --client."""
    alice, bob = stack.session(), stack.session()
    long_task = stack.submit(alice["token"], "sleep", {"duration_ms": 1500, "steps": 5})
    wait_for(lambda: stack.task(alice["token"], long_task["id"])["status"] == "running", 10,
             "the long task to start")
    by_task = Tap(stack, "--json", "--task", long_task["id"])
    finals = Tap(stack, "--json", "--client", alice["client_id"], "--event", "succeeded,failed")
    by_type = Tap(stack, "--type", "steps", "--client", bob["client_id"])
    everything = Tap(stack, "--json", "--client", alice["client_id"])
    taps.extend([by_task, finals, by_type, everything])
    for one in (by_task, finals, by_type, everything):
        one.wait_connected()
    probe_until_seen(stack, alice["client_id"], everything)
    other = stack.submit(alice["token"], "sleep", {"duration_ms": 100, "steps": 1})
    bobs_sleep = stack.submit(bob["token"], "sleep", {"duration_ms": 100, "steps": 1})
    bobs_steps = stack.submit(bob["token"], "steps", {"count": 2})
    for token, task in ((alice["token"], long_task), (alice["token"], other),
                        (bob["token"], bobs_sleep), (bob["token"], bobs_steps)):
        stack.wait_final(token, task["id"])
    finals.wait_line(lambda l: long_task["id"] in l, "the long task's final event")
    finals.wait_line(lambda l: other["id"] in l, "the other task's final event")
    by_task.wait_line(lambda l: '"succeeded"' in l, "the long task's succeeded event")
    by_type.wait_line(lambda l: bobs_steps["id"] in l and " succeeded " in l, "steps succeeded")
    everything.wait_line(lambda l: other["id"] in l and '"succeeded"' in l, "every event")
    for one in (by_task, finals, by_type, everything):
        assert one.stop() == 0

    task_events = [json.loads(l) for l in by_task.lines]
    assert task_events and {m["task"]["id"] for m in task_events} == {long_task["id"]}
    assert {m["event"] for m in task_events} <= {"progress", "succeeded"}
    assert task_events[-1]["event"] == "succeeded" and task_events[-1]["task"]["progress"] == 100
    seqs = [m["seq"] for m in task_events]
    assert seqs == sorted(seqs)
    for message in task_events:
        assert message["client_id"] == alice["client_id"] and message["type"] == "task"
        assert message["received_at"].endswith("Z")

    final_events = [json.loads(l) for l in finals.lines]
    assert sorted(m["task"]["id"] for m in final_events) == sorted([long_task["id"], other["id"]])
    assert all(m["event"] == "succeeded" for m in final_events)

    assert by_type.lines and all(bobs_steps["id"] in l for l in by_type.lines), by_type.lines

    seen = [json.loads(l) for l in everything.lines]
    assert all(m["client_id"] == alice["client_id"] for m in seen)
    assert any(m.get("type") == "probe" for m in seen)  # not a task event: shown, unfiltered
    assert not any(bobs_steps["id"] in l or bobs_sleep["id"] in l for l in everything.lines)


def test_tap_count_timeout_and_closed_stdout(stack):
    """Scripts get a bounded tap: --count N exits 0 after N events, --timeout exits 1 when the
    count was not met, 3 when the endpoint was never reached, and a closed pipe (| head)
    ends the tap at once without an error."""
    session = stack.session()
    counted = subprocess.Popen([binary(stack), "-c", stack.config_path, "tap", "--client",
                                session["client_id"], "--count", "2", "--timeout", "20"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors = []
    reader = threading.Thread(target=lambda: errors.extend(counted.stderr))
    reader.start()
    wait_for(lambda: any("connected" in e for e in errors), 10, "the counted tap to connect")
    stack.submit(session["token"], "sleep", {"duration_ms": 400, "steps": 4})
    out, _ = counted.communicate(timeout=25)
    reader.join(5)
    assert counted.returncode == 0, errors
    assert len(out.splitlines()) == 2

    status, out, err = taskwire(stack, "tap", "--client", "0" * 32, "--count", "1",
                                "--timeout", "1")
    assert status == 1 and out == "" and "0 of 1 events within 1 s" in err, err
    status, out, err = taskwire(stack, "tap", "--timeout", "1")
    assert status == 0, err  # no --count: listening for a second is all it was asked
    dead = f"tcp://127.0.0.1:{free_port()}"
    status, out, err = taskwire(stack, "tap", "--endpoint", dead, "--timeout", "1")
    assert status == 3 and dead in err and "not reached" in err, err

    # | head -n 1: the tap ends when its reader has gone.
    piped = subprocess.Popen(f"'{binary(stack)}' -c '{stack.config_path}' tap --client "
                             f"{session['client_id']} | head -n 1", shell=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    notes = []
    reader = threading.Thread(target=lambda: notes.extend(piped.stderr))
    reader.start()
    wait_for(lambda: any("connected" in n for n in notes), 10, "the piped tap to connect")
    task = stack.submit(session["token"], "sleep", {"duration_ms": 2000, "steps": 20})
    out, _ = piped.communicate(timeout=20)
    reader.join(5)
    assert piped.returncode == 0 and task["id"] in out, (out, notes)
    assert not any("Broken pipe" in n or "error" in n for n in notes), notes


def test_token_mint_verify_round_trip(stack):
    """A minted token is the one the API and the relay accept: verify says valid with its
    claims, and the REST API lists that client's tasks with it; a tampered or expired token,
    or one signed with another secret, is refused with exit status 1 and the reason."""
    client_id = stack.session()["client_id"]
    status, out, err = taskwire(stack, "token", "mint", "--client", client_id, "--ttl", "120")
    assert status == 0, err
    token = out.strip()
    assert token.count(".") == 2 and len(out.splitlines()) == 1
    code, _, body = stack.request("GET", "/api/tasks", token=token)
    assert code == 200, body

    status, out, err = taskwire(stack, "token", "verify", token)
    assert status == 0, err
    assert out.splitlines()[0] == "valid" and client_id in out and "expires_at" in out
    status, out, err = taskwire(stack, "token", "verify", stdin=token + "\n")
    assert status == 0 and out.startswith("valid"), err
    status, out, err = taskwire(stack, "token", "verify", "--json", "-", stdin=token)
    claims = json.loads(out)
    assert status == 0 and claims["valid"] is True and claims["client_id"] == client_id
    assert claims["expires_at"] > claims["issued_at"]

    status, out, err = taskwire(stack, "token", "mint", "--client", client_id, "--json")
    minted = json.loads(out)
    assert status == 0 and minted["client_id"] == client_id and minted["expires_at"].endswith("Z")

    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for bad in (f"{head}.{payload}.{flipped}", f"{head}.{payload[:-1]}x.{signature}", "junk"):
        status, out, err = taskwire(stack, "token", "verify", bad)
        assert status == 1 and out.startswith("invalid"), (bad, out, err)
        assert "invalid token" in err
    other_secret = os.path.join(stack.tmp, "other-secret")
    with open(other_secret, "wb") as f:
        f.write(os.urandom(32))
    status, _, err = taskwire(stack, "token", "verify", "--secret-file", other_secret, token)
    assert status == 1 and "bad signature" in err, err


def test_usage_errors_exit_2(stack):
    """A mistyped command line says what is wrong on stderr and exits 2, before anything is
    contacted; --help exits 0 with the usage on stdout."""
    for args in ([], ["bogus"], ["tasks"], ["tasks", "frob"], ["tasks", "show"],
                 ["tasks", "show", "not-an-id"], ["tasks", "list", "--limit", "0"],
                 ["tasks", "list", "--limit", "501"], ["tasks", "list", "--status", "done"],
                 ["tasks", "cancel", "0" * 32, "extra"], ["tasks", "delete", "0" * 32, "--status",
                                                          "failed"],
                 ["tap", "--count", "x"], ["tap", "--task", "abc"], ["tap", "--client", "XYZ"],
                 ["tap", "--timeout"], ["tap", "--nope"], ["token"], ["token", "mint"],
                 ["token", "mint", "--client", "abc"], ["token", "mint", "--client", "0" * 32,
                                                         "--ttl", "-1"],
                 ["token", "verify", "a", "b"], ["status", "extra"]):
        status, out, err = taskwire(stack, *args)
        assert status == 2, (args, status, out, err)
        assert err.startswith("taskwire") and out == "", (args, err)
    for args in (["--help"], ["help"], ["tap", "--help"], ["tasks", "--help"],
                 ["tasks", "list", "--help"], ["token", "--help"], ["status", "-h"]):
        status, out, err = taskwire(stack, *args)
        assert status == 0 and out.startswith("usage:") and err == "", (args, err)


def test_tasks_through_the_admin_api(stack):
    """`taskwire tasks` manages any client's tasks through the admin API: list (table and
    JSON, filters), show, cancel of a running task that reaches its worker, retry of a
    cancelled one, delete of a finished one; a refused change exits 1 with the API's code."""
    alice, bob = stack.session(), stack.session()
    quick = stack.submit(alice["token"], "sleep", {"duration_ms": 50, "steps": 1})
    slow = stack.submit(bob["token"], "sleep", {"duration_ms": 20000, "steps": 20})
    stack.wait_final(alice["token"], quick["id"])
    stack.wait_status(bob["token"], slow["id"], ("running",))

    status, out, err = taskwire(stack, "tasks", "list", "--limit", "500")
    assert status == 0, err
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["ID", "CLIENT", "TYPE", "STATUS"]
    by_id = {row.split()[0]: row.split() for row in rows}
    assert by_id[quick["id"]][1:4] == [alice["client_id"], "sleep", "succeeded"]
    assert by_id[slow["id"]][1:4] == [bob["client_id"], "sleep", "running"]
    # Columns line up: every row's second column starts where the header's does.
    assert {row.index(row.split()[1]) for row in rows} == {header.index("CLIENT")}

    status, out, err = taskwire(stack, "tasks", "list", "--json", "--client", alice["client_id"])
    listed = json.loads(out)
    assert status == 0 and [t["id"] for t in listed["tasks"]] == [quick["id"]]
    status, out, _ = taskwire(stack, "tasks", "list", "--status", "running", "--json")
    assert slow["id"] in [t["id"] for t in json.loads(out)["tasks"]]
    status, out, err = taskwire(stack, "tasks", "list", "--query", "f" * 32)
    assert status == 1 and [l.split() for l in out.splitlines()] == [header.split()], (out, err)

    status, out, err = taskwire(stack, "tasks", "show", quick["id"])
    assert status == 0, err
    fields = dict(line.split(None, 1) for line in out.splitlines() if len(line.split()) > 1)
    assert fields["id"] == quick["id"] and fields["client_id"] == alice["client_id"]
    assert fields["status"] == "succeeded" and fields["progress"] == "100"
    status, out, _ = taskwire(stack, "tasks", "show", "--json", slow["id"])
    assert json.loads(out)["status"] == "running"

    status, out, err = taskwire(stack, "tasks", "cancel", slow["id"])
    assert status == 0 and out.split()[0] == slow["id"], err
    assert stack.wait_final(bob["token"], slow["id"], 10)["status"] == "cancelled"

    status, out, err = taskwire(stack, "tasks", "cancel", quick["id"])
    assert status == 1 and "conflict" in err and "409" in err, err
    status, out, err = taskwire(stack, "tasks", "delete", slow["id"])
    assert status == 0 and "deleted" in out, err
    status, out, err = taskwire(stack, "tasks", "show", slow["id"])
    assert status == 1 and "not_found" in err, err

    status, out, err = taskwire(stack, "tasks", "retry", "--json", quick["id"])
    assert status == 1 and "conflict" in err, err  # succeeded: nothing to retry
    cancelled = stack.submit(alice["token"], "sleep", {"duration_ms": 20000, "steps": 2})
    assert taskwire(stack, "tasks", "cancel", cancelled["id"])[0] == 0
    stack.wait_final(alice["token"], cancelled["id"])
    status, out, err = taskwire(stack, "tasks", "retry", "--json", cancelled["id"])
    assert status == 0 and json.loads(out)["status"] in ("queued", "running"), err
    stack.wait_status(alice["token"], cancelled["id"], ("running",))
    taskwire(stack, "tasks", "cancel", cancelled["id"])


def test_tasks_credentials_and_reachability(stack):
    """The admin key and the API's address come from the config or the options: a wrong key
    exits 4 naming [admin] key_file, an API that does not answer exits 3, a missing config 4,
    and --url with --key-file work with no configuration at all."""
    wrong = os.path.join(stack.tmp, "wrong.key")
    with open(wrong, "w") as f:
        f.write("0" * 64 + "\n")
    status, out, err = taskwire(stack, "tasks", "list", "--key-file", wrong)
    assert status == 4 and "unauthorized" in err and "key_file" in err, err
    status, _, err = taskwire(stack, "status", "--url", f"http://127.0.0.1:{free_port()}")
    assert status == 3, err
    status, _, err = taskwire(stack, "tasks", "list", "--key-file", "/nonexistent/key")
    assert status == 4 and "/nonexistent/key" in err, err
    status, _, err = taskwire(stack, "tasks", "list", config=False)
    assert status == 4 and "/nonexistent/taskwire.conf" in err, err
    status, out, err = taskwire(stack, "tasks", "list", "--url", stack.http, "--key-file",
                                stack.admin_key_path, config=False)
    assert status in (0, 1), err
    assert out.startswith("ID ")


def test_status_shows_workers_queues_relays(stack):
    """`taskwire status` shows the stack's worker with a fresh heartbeat and the task it runs,
    the queue of that task's type, and the relay with its connection counts, as aligned
    tables; --json is the API's answer."""
    session = stack.session()
    task = stack.submit(session["token"], "sleep", {"duration_ms": 20000, "steps": 2})
    stack.wait_status(session["token"], task["id"], ("running",))
    try:
        status, out, err = taskwire(stack, "status")
        assert status == 0, err
        assert "workers:" in out and "queues:" in out and "relays:" in out, out
        worker_lines = out.split("workers:")[1].split("running:")[0].strip().splitlines()
        assert worker_lines[0].split() == ["WORKER", "HOST", "PID", "BUSY", "HEARTBEAT"]
        assert "s ago" in worker_lines[1]
        running = out.split("running:")[1].split("queues:")[0]
        assert task["id"] in running and session["client_id"] in running
        relays = out.split("relays:")[1].strip().splitlines()
        assert relays[0].split()[:3] == ["RELAY", "STATE", "CONNECTIONS"]
        assert relays[1].split()[:2] == [stack.relay_http, "ok"]
        status, out, err = taskwire(stack, "status", "--json")
        body = json.loads(out)
        assert status == 0 and body["workers"] and body["relays"][0]["ok"] is True
        assert any(t["id"] == task["id"] for w in body["workers"] for t in w["running"])
    finally:
        stack.cancel(session["token"], task["id"])


def test_tap_survives_garbage_on_the_wire(stack, taps):
    """Whatever is published on the wire (not JSON, not UTF-8, a frame missing or one too
    many), the tap prints what it can, skips the rest with a note, and goes on: the probe
    after the garbage still shows."""
    client_id = stack.session()["client_id"]
    readable = Tap(stack, "--client", client_id)
    as_json = Tap(stack, "--client", client_id, "--json")
    taps.extend([readable, as_json])
    for one in (readable, as_json):
        one.wait_connected()
    pub = publisher(stack)
    try:
        probe_until_seen(stack, client_id, readable, pub)
        probe_until_seen(stack, client_id, as_json, pub)
        topic = client_id.encode()
        pub.send_multipart([topic, b"not json at all\n\x01"])
        pub.send_multipart([topic, b"\xff\xfe invalid utf-8"])
        pub.send_multipart([topic, b'{"type":"task","event":"progress","task":"not an object"}'])
        pub.send_multipart([topic])
        pub.send_multipart([topic, b"{}", b"third frame"])
        pub.send_multipart([topic, b'{"type":"after"}'])
    finally:
        pub.close(linger=1000)
    readable.wait_line(lambda l: " after " in l, "the message after the garbage")
    as_json.wait_line(lambda l: '"after"' in l, "the JSON message after the garbage")
    assert readable.stop() == 0 and as_json.stop() == 0
    assert any("not json at all" in l for l in readable.lines)
    assert all(len(l.split("\n")) == 1 for l in readable.lines)
    lines = [json.loads(l) for l in as_json.lines]  # every line printed is JSON
    assert {"payload": "not json at all\n\x01"}.items() <= next(
        m for m in lines if "payload" in m).items()
    assert any("not UTF-8" in e for e in as_json.errors), as_json.errors
    assert not any(l.get("payload", "").startswith("\ufffd") for l in lines)
