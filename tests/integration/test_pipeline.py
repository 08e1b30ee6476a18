"""Tasks end to end: REST submission, the worker, events over the relay, the store."""
import asyncio
import os

import zmq
import zmq.asyncio

from conftest import connect, run, subscribed, task_events, wait_for


def watch(stack, session, submit, timeout=20):
    """Connect, submit (a function of the token returning the task), collect its events."""
    async def go():
        ws, _ = await connect(stack, session["token"])
        await subscribed(stack, session["client_id"])
        task = submit(session["token"])
        events = await task_events(ws, task["id"], timeout)
        await ws.close()
        return task, events
    return run(go(), timeout + 10)


def check_order(events):
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    for e in events:
        assert e["type"] == "task" and e["seq"] == e["task"]["seq"]


def test_sleep_task_streams_in_order(stack):
    """A page watching a task sees queued, started, each step, then succeeded, in order."""
    session = stack.session()
    task, events = watch(stack, session, lambda t: stack.submit(
        t, "sleep", {"duration_ms": 600, "steps": 5}))
    names = [e["event"] for e in events]
    check_order(events)
    assert names[0] == "queued" and names[1] == "started" and names[-1] == "succeeded", names
    progress = [e["task"]["progress"] for e in events if e["event"] == "progress"]
    assert progress == sorted(progress) and len(progress) >= 3, names
    assert events[-1]["task"]["progress"] == 100
    stored = stack.task(session["token"], task["id"])
    assert stored["status"] == "succeeded" and stored["seq"] == events[-1]["seq"]
    assert stored["result"] == {"duration_ms": 600, "steps": 5}


def test_two_clients_never_see_each_other(stack):
    """Two people running tasks at once each see only their own."""
    a, b = stack.session(), stack.session()

    async def go():
        wa, _ = await connect(stack, a["token"])
        wb, _ = await connect(stack, b["token"])
        await subscribed(stack, a["client_id"])
        await subscribed(stack, b["client_id"])
        ta = stack.submit(a["token"], "sleep", {"duration_ms": 300, "steps": 3})
        tb = stack.submit(b["token"], "sleep", {"duration_ms": 300, "steps": 3})
        ea = await task_events(wa, ta["id"])
        eb = await task_events(wb, tb["id"])
        # Anything else queued on either socket must be its own client's.
        for ws, own in ((wa, a), (wb, b)):
            try:
                while True:
                    extra = await asyncio.wait_for(ws.recv(), 0.3)
                    assert own["client_id"] in extra
            except asyncio.TimeoutError:
                pass
        return ea, eb
    ea, eb = run(go())
    assert all(e["task"]["client_id"] == a["client_id"] for e in ea)
    assert all(e["task"]["client_id"] == b["client_id"] for e in eb)


def test_exec_task_succeeds_with_its_result(stack):
    """An exec type's PROGRESS lines become progress events and its RESULT the result."""
    session = stack.session()
    task, events = watch(stack, session, lambda t: stack.submit(t, "steps", {"count": 4}))
    check_order(events)
    final = events[-1]["task"]
    assert events[-1]["event"] == "succeeded"
    assert final["result"]["count"] == 4 and final["result"]["task"] == task["id"]
    assert final["result"]["stdin"] == {"count": 4, "fail": False}
    assert final["progress"] == 100


def test_exec_task_failure_carries_stderr(stack):
    """A program that fails shows why: its stderr becomes the task's error."""
    session = stack.session()
    task, events = watch(stack, session, lambda t: stack.submit(t, "steps", {"count": 2, "fail": True}))
    assert events[-1]["event"] == "failed"
    assert events[-1]["task"]["error"] == "something went wrong at step 2"
    assert stack.task(session["token"], task["id"])["status"] == "failed"


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_exec_task_cancelled_stops_the_program(stack):
    """Cancelling a running exec task ends it cancelled and its program is gone."""
    session, token = None, None
    session = stack.session()
    token = session["token"]

    async def go():
        ws, _ = await connect(stack, token)
        await subscribed(stack, session["client_id"])
        task = stack.submit(token, "stall", {})
        pidfile = os.path.join(stack.tmp, f"stall-{task['id']}.pid")
        wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), 10, "the program")
        pid = int(open(pidfile).read())
        status, _, body = stack.request("POST", f"/api/tasks/{task['id']}/cancel", token=token)
        assert status == 202, body
        events = await task_events(ws, task["id"], 5)
        await ws.close()
        return pid, events
    pid, events = run(go())
    assert events[-1]["event"] == "cancelled"
    wait_for(lambda: not pid_alive(pid), 5, "the program to exit")


def test_exec_timeout_kills_a_program_that_ignores_sigterm(stack):
    """A program past its timeout that ignores SIGTERM is killed, and the task fails saying
    it timed out."""
    session = stack.session()
    task = stack.submit(session["token"], "stall", {"trap": True})
    final = stack.wait_final(session["token"], task["id"], 10)
    assert final["status"] == "failed"
    assert final["error"] == "timed out after 1500 ms"
    pid = int(open(os.path.join(stack.tmp, f"stall-{task['id']}.pid")).read())
    wait_for(lambda: not pid_alive(pid), 5, "the program to be killed")


def test_sleep_task_cancelled_while_running(stack):
    """Cancelling a running sleep task ends it within a moment, not at its end."""
    session = stack.session()

    async def go():
        ws, _ = await connect(stack, session["token"])
        await subscribed(stack, session["client_id"])
        task = stack.submit(session["token"], "sleep", {"duration_ms": 60000, "steps": 100})
        wait_for(lambda: stack.task(session["token"], task["id"])["status"] == "running", 5, "start")
        stack.request("POST", f"/api/tasks/{task['id']}/cancel", token=session["token"])
        events = await task_events(ws, task["id"], 3)
        await ws.close()
        return events
    events = run(go())
    assert events[-1]["event"] == "cancelled"
    assert events[-1]["task"]["finished_at"]


def test_checksum_example_type(stack):
    """The shipped example type hashes a directory and reports the digest."""
    session = stack.session()
    task = stack.submit(session["token"], "checksum", {"path": "/usr/share/doc", "max_files": 50})
    final = stack.wait_final(session["token"], task["id"], 30)
    assert final["status"] == "succeeded", final
    assert final["result"]["files"] == 50 and len(final["result"]["sha256"]) == 64
    missing = stack.submit(session["token"], "checksum", {"path": "/no/such/dir"})
    final = stack.wait_final(session["token"], missing["id"], 30)
    assert final["status"] == "failed" and "not a directory" in final["error"]


def test_tap_sees_the_wire_format(stack):
    """An operator's SUB socket sees [client id][the JSON the browser gets]."""
    session = stack.session()

    async def go():
        sub = zmq.asyncio.Context.instance().socket(zmq.SUB)
        sub.connect(stack.events_endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, session["client_id"].encode())
        await asyncio.sleep(0.3)
        task = stack.submit(session["token"], "sleep", {"duration_ms": 100, "steps": 1})
        frames = []
        while True:
            topic, payload = await asyncio.wait_for(sub.recv_multipart(), 5)
            frames.append((topic, payload))
            if b'"succeeded"' in payload:
                break
        sub.close(0)
        return task, frames
    import json
    task, frames = run(go())
    for topic, payload in frames:
        assert topic == session["client_id"].encode()
        message = json.loads(payload)
        assert message["type"] == "task" and message["task"]["id"] == task["id"]
