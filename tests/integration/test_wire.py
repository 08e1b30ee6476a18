"""The ZeroMQ wire as operators and other programs see it: nudges on tasks, taps on events,
injections on publish (docs/PROTOCOL.md, "ZeroMQ")."""
import asyncio
import json
import os

import pytest
import zmq

from conftest import (FINAL, connect, deliverable, next_text, publisher, relay_status, run,
                      start_stack, tap, wait_for)
from stack import free_port


@pytest.fixture(scope="module")
def quiet(request):
    """A stack whose worker only learns of tasks from nudges sent by hand: the FastCGI
    handler's nudges go to an endpoint nobody binds, and the worker scans its queue only when
    it starts."""
    return start_stack(request, worker_settings={"scan_interval_ms": 600000},
                       fcgi_tasks=f"tcp://127.0.0.1:{free_port()}")


async def next_event(sub, task_id, timeout=5):
    """The next frames on a tap about task_id (probes and other tasks skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        assert left > 0 and await sub.poll(int(left * 1000)), f"no event for {task_id}"
        frames = await sub.recv_multipart()
        message = json.loads(frames[-1])
        if message.get("type") == "task" and message["task"]["id"] == task_id:
            return frames, message


@pytest.mark.skipif(os.environ.get("TASKWIRE_TEST_STORE") == "postgresql",
                    reason="on PostgreSQL the nudges go through the store (LISTEN/NOTIFY)")
def test_nudges_start_and_announce_tasks(quiet):
    """A program that writes a task to the store and pushes [submit][id] gets it run, and
    [cancel][id] gets a cancelled task announced, with no help from the FastCGI handler."""
    stack = quiet
    session = stack.session()
    token, cid = session["token"], session["client_id"]
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(stack.tasks_endpoint)

    async def go():
        sub = tap(stack, cid)
        await deliverable(stack, cid, sub)
        first = stack.submit(token, "sleep", {"duration_ms": 200, "steps": 2})
        second = stack.submit(token, "sleep", {"duration_ms": 200, "steps": 2})
        # Without a nudge nothing happens (checked over several heartbeats).
        with pytest.raises(TimeoutError):
            wait_for(lambda: stack.task(token, first["id"])["status"] != "queued", 0.6, "a change")
        status, body = stack.cancel(token, second["id"])
        assert status == 202 and body["status"] == "cancelled", body

        push.send_multipart([b"cancel", second["id"].encode()])
        frames, cancelled = await next_event(sub, second["id"])
        assert frames[0] == cid.encode() and cancelled["event"] == "cancelled", cancelled
        assert cancelled["seq"] == body["seq"]

        push.send_multipart([b"submit", first["id"].encode()])
        events = []
        while not events or events[-1]["event"] not in FINAL:
            events.append((await next_event(sub, first["id"]))[1])
        sub.close(0)
        return events
    try:
        events = run(go())
    finally:
        push.close(0)
    assert [e["event"] for e in events][:2] == ["queued", "started"], events
    assert events[-1]["event"] == "succeeded"
    assert stack.task(token, events[-1]["task"]["id"])["status"] == "succeeded"


def test_tap_payload_is_what_the_browser_gets(stack):
    """Every event on the events wire is two frames, [client id][JSON], and the JSON is byte
    for byte the text frame the browser receives."""
    session = stack.session()
    cid = session["client_id"]

    async def go():
        ws, _ = await connect(stack, session["token"])
        sub = tap(stack, cid)
        await deliverable(stack, cid, ws, sub)
        task = stack.submit(session["token"], "sleep", {"duration_ms": 300, "steps": 3})
        wire = []
        while not wire or json.loads(wire[-1][-1])["event"] not in FINAL:
            wire.append((await next_event(sub, task["id"]))[0])
        browser = []
        while not browser or json.loads(browser[-1])["event"] not in FINAL:
            browser.append(await next_text(ws))
        sub.close(0)
        await ws.close()
        return wire, browser
    wire, browser = run(go())
    assert all(len(frames) == 2 and frames[0] == cid.encode() for frames in wire), wire
    assert [frames[1].decode() for frames in wire] == browser


def test_injected_message_reaches_the_browser_unchanged(stack):
    """An operator's message published on the publish endpoint reaches every page of its
    client id exactly as sent, through the web server or directly."""
    session = stack.session()
    cid = session["client_id"]
    payload = ('{ "type" : "notice",\n  "text": "caf\u00e9 \\u00e9 \\"quoted\\" \\/ tab\\t",'
               ' "n": 1.50e0, "list": [ ] }').encode()
    big = json.dumps({"type": "notice", "pad": "p" * 60000}).encode()
    too_big = json.dumps({"type": "notice", "pad": "q" * 70000}).encode()

    async def go():
        pub = publisher(stack)
        tabs = [(await connect(stack, session["token"], direct))[0] for direct in (False, True)]
        await deliverable(stack, cid, *tabs, pub=pub)
        dropped = relay_status(stack)["dropped"]
        for message in (payload, too_big, big):
            await pub.send_multipart([cid.encode(), message])
        got = [[await next_text(ws), await next_text(ws)] for ws in tabs]
        pub.close(0)
        for ws in tabs:
            await ws.close()
        return got, relay_status(stack)["dropped"] - dropped
    got, dropped = run(go())
    for texts in got:
        assert texts[0] == payload.decode()
        assert texts[1] == big.decode(), "a message under [relay] max_message went missing"
    assert dropped == 1, "a message over [relay] max_message was not dropped and counted"


def test_a_task_found_by_a_scan_is_announced_queued_first(request):
    """When the worker finds a task by scanning its queue (the nudge was lost, or is still on
    its way), the task's events still begin with queued, then started."""
    stack = start_stack(request, fcgi_tasks=f"tcp://127.0.0.1:{free_port()}")
    session = stack.session()
    token, cid = session["token"], session["client_id"]

    async def go():
        sub = tap(stack, cid)
        await deliverable(stack, cid, sub)
        task = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
        names = []
        while not names or names[-1] not in FINAL:
            _, event = await next_event(sub, task["id"])
            names.append(event["event"])
        sub.close(0)
        return names
    names = run(go())
    assert names[:2] == ["queued", "started"] and names[-1] == "succeeded", names
