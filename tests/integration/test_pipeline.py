"""Tasks end to end: REST submission, the worker, events over the relay, the store."""
import asyncio
import json
import os

import pytest

from conftest import connect, deliverable, run, tap, task_events, wait_for
from stack import CHECKSUM


def watch(stack, session, submit, timeout=20):
    """Connect, submit (a function of the token returning the task), collect its events."""
    async def go():
        ws, _ = await connect(stack, session["token"])
        await deliverable(stack, session["client_id"], ws)
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
    assert [e["task"]["message"] for e in events if e["event"] == "progress"][-1] == "step 5 of 5"
    stored = stack.task(session["token"], task["id"])
    assert stored == events[-1]["task"]
    assert stored["status"] == "succeeded" and stored["result"] == {"duration_ms": 600, "steps": 5}
    assert stored["started_at"] and stored["finished_at"] and stored["attempts"] == 1


def test_two_clients_never_see_each_other(stack):
    """Two people running tasks at once each see only their own."""
    a, b = stack.session(), stack.session()

    async def go():
        wa, _ = await connect(stack, a["token"])
        wb, _ = await connect(stack, b["token"])
        await deliverable(stack, a["client_id"], wa)
        await deliverable(stack, b["client_id"], wb)
        ta = stack.submit(a["token"], "sleep", {"duration_ms": 300, "steps": 3})
        tb = stack.submit(b["token"], "sleep", {"duration_ms": 300, "steps": 3})
        ea = await task_events(wa, ta["id"], alone=True)
        eb = await task_events(wb, tb["id"], alone=True)
        # Anything else that arrived on either socket must be its own client's.
        for ws, own in ((wa, a), (wb, b)):
            while True:
                try:
                    extra = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except asyncio.TimeoutError:
                    break
                assert extra["type"] == "probe" or extra["task"]["client_id"] == own["client_id"], extra
        await wa.close()
        await wb.close()
        return ea, eb
    ea, eb = run(go())
    assert all(e["task"]["client_id"] == a["client_id"] for e in ea)
    assert all(e["task"]["client_id"] == b["client_id"] for e in eb)


def test_exec_task_succeeds_with_its_result(stack):
    """An exec type's PROGRESS lines become progress events and its RESULT the result."""
    session = stack.session()
    task, events = watch(stack, session, lambda t: stack.submit(t, "steps", {"count": 4, "note": "hello"}))
    check_order(events)
    final = events[-1]["task"]
    assert events[-1]["event"] == "succeeded", events[-1]
    assert final["result"] == {"count": 4, "task": task["id"], "note": "hello",
                               "stdin": {"count": 4, "note": "hello", "fail": False}}
    assert final["progress"] == 100 and final["error"] is None
    assert [e["event"] for e in events][:2] == ["queued", "started"]
    assert stack.task(session["token"], task["id"]) == final


def test_exec_task_failure_carries_stderr(stack):
    """A program that fails shows why: its stderr becomes the task's error."""
    session = stack.session()
    task, events = watch(stack, session, lambda t: stack.submit(t, "steps", {"count": 2, "fail": True}))
    assert events[-1]["event"] == "failed", events[-1]
    error = events[-1]["task"]["error"]
    assert error.rstrip("\n").endswith("something went wrong at step 2"), error
    assert "this line is not the end of the tail" in error
    assert events[-1]["task"]["result"] is None
    assert stack.task(session["token"], task["id"]) == events[-1]["task"]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_exec_task_cancelled_stops_the_program(stack):
    """Cancelling a running exec task ends it cancelled and its program is gone."""
    session = stack.session()
    token = session["token"]

    async def go():
        ws, _ = await connect(stack, token)
        await deliverable(stack, session["client_id"], ws)
        task = stack.submit(token, "stall", {})
        pidfile = os.path.join(stack.tmp, f"stall-{task['id']}.pid")
        wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), 10, "the program")
        pid = int(open(pidfile).read())
        status, body = stack.cancel(token, task["id"])
        assert status == 202, body
        events = await task_events(ws, task["id"], 3)
        await ws.close()
        return pid, events
    pid, events = run(go())
    assert events[-1]["event"] == "cancelled", events[-1]
    wait_for(lambda: not pid_alive(pid), 2, "the program to exit")


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
        await deliverable(stack, session["client_id"], ws)
        task = stack.submit(session["token"], "sleep", {"duration_ms": 60000, "steps": 100})
        stack.wait_status(session["token"], task["id"], ("running",), 5)
        status, body = stack.cancel(session["token"], task["id"])
        assert status == 202 and body["status"] in ("running", "cancelled"), body
        events = await task_events(ws, task["id"], 3)
        await ws.close()
        return events
    events = run(go())
    assert events[-1]["event"] == "cancelled", events[-1]
    assert events[-1]["task"]["status"] == "cancelled" and events[-1]["task"]["finished_at"]
    assert events[-1]["task"]["progress"] < 100


@pytest.mark.skipif(not os.path.exists(CHECKSUM), reason="conf/types/checksum is not there")
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
    """An operator's SUB socket sees [client id][the JSON the browser gets] for every event."""
    session = stack.session()

    async def go():
        sub = tap(stack, session["client_id"])
        await deliverable(stack, session["client_id"], sub)
        task = stack.submit(session["token"], "sleep", {"duration_ms": 200, "steps": 2})
        frames = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            assert await sub.poll(int(max(0, deadline - loop.time()) * 1000)), frames
            message = await sub.recv_multipart()
            if json.loads(message[-1]).get("type") == "probe":
                continue
            frames.append(message)
            if json.loads(message[-1]).get("event") in ("succeeded", "failed", "cancelled"):
                break
        sub.close(0)
        return task, frames
    task, frames = run(go())
    for message in frames:
        assert len(message) == 2, message
        topic, payload = message
        assert topic == session["client_id"].encode()
        event = json.loads(payload)
        assert event["type"] == "task" and event["task"]["id"] == task["id"]
    assert [json.loads(p)["event"] for _, p in frames][0] == "queued"
    assert json.loads(frames[-1][1])["event"] == "succeeded"
