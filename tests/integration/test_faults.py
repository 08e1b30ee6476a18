"""Parts going down and coming back: the pool, a worker killed mid-task, the relay."""
import asyncio
import json
import signal

import pytest
import zmq

from conftest import connect, run, start_stack, subscribed, task_events, wait_for


@pytest.fixture
def stack(request):
    """A fresh stack per test: these tests stop and kill its parts."""
    return start_stack(request)


def test_pool_down_keeps_tasks_queued_until_it_returns(stack):
    """While no worker runs, health says so and submissions wait in the queue; when a worker
    comes back it runs them."""
    token = stack.session()["token"]
    stack.stop("worker")
    status = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
        stack.request("GET", "/api/health")), 10, "health to report the pool down")
    assert status[2]["pool"] == "down" and status[2]["store"] == "ok"
    assert status[1]["Retry-After"]
    task = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
    queued_to_cancel = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
    assert task["status"] == "queued"
    code, _, cancelled = stack.request("POST", f"/api/tasks/{queued_to_cancel['id']}/cancel", token=token)
    assert code == 202 and cancelled["status"] == "cancelled"
    assert stack.task(token, task["id"])["status"] == "queued"
    stack.start_worker()
    assert stack.wait_final(token, task["id"])["status"] == "succeeded"
    assert stack.task(token, queued_to_cancel["id"])["status"] == "cancelled"
    assert stack.request("GET", "/api/health")[0] == 200


def test_killed_worker_task_fails_as_worker_lost(stack):
    """A task whose worker died does not stay running forever: it fails within seconds."""
    token = stack.session()["token"]
    task = stack.submit(token, "sleep", {"duration_ms": 60000, "steps": 10})
    wait_for(lambda: stack.task(token, task["id"])["status"] == "running", 5, "the task to start")
    stack.stop("worker", signal.SIGKILL)
    stack.start_worker()
    final = stack.wait_final(token, task["id"], 10)
    assert final["status"] == "failed" and final["error"] == "worker lost"


def test_stopped_worker_requeues_its_task(stack):
    """A worker stopped cleanly hands its running task back, and the next worker runs it."""
    token = stack.session()["token"]
    task = stack.submit(token, "sleep", {"duration_ms": 1500, "steps": 3})
    wait_for(lambda: stack.task(token, task["id"])["status"] == "running", 5, "the task to start")
    assert stack.stop("worker") == 0
    requeued = stack.task(token, task["id"])
    assert requeued["status"] == "queued" and requeued["attempts"] == 1
    stack.start_worker()
    final = stack.wait_final(token, task["id"], 10)
    assert final["status"] == "succeeded" and final["attempts"] == 2


def test_relay_restart_loses_nothing_in_the_store(stack):
    """A page that lost its relay reconnects and finds the true final state."""
    session = stack.session()
    token = session["token"]

    async def go():
        ws, _ = await connect(stack, token)
        task = stack.submit(token, "sleep", {"duration_ms": 800, "steps": 4})
        stack.stop("relay")
        stack.start_relay()
        ws2, _ = await connect(stack, token)
        await subscribed(stack, session["client_id"])
        final = stack.wait_final(token, task["id"])
        await ws2.close()
        return final
    assert run(go())["status"] == "succeeded"


def test_garbage_on_the_wire_breaks_nothing(stack):
    """Malformed nudges and publications are dropped; the next task still runs and streams."""
    session = stack.session()
    context = zmq.Context.instance()
    push = context.socket(zmq.PUSH)
    push.connect(stack.tasks_endpoint)
    pub = context.socket(zmq.PUB)
    pub.connect(stack.publish_endpoint)
    push.send_multipart([b"submit"])
    push.send_multipart([b"explode", b"0" * 32])
    push.send_multipart([b"submit", b"x" * 5000])
    push.send_multipart([b"cancel", b"0" * 32, b"extra"])

    async def go():
        ws, _ = await connect(stack, session["token"])
        await subscribed(stack, session["client_id"])
        cid = session["client_id"].encode()
        pub.send_multipart([cid])
        pub.send_multipart([cid, b"a", b"b"])
        pub.send_multipart([cid, b"x" * 70000])
        task = stack.submit(session["token"], "sleep", {"duration_ms": 200, "steps": 2})
        events = await task_events(ws, task["id"])
        await ws.close()
        return events
    events = run(go())
    assert events[-1]["event"] == "succeeded"
    push.close(0)
    pub.close(0)
    assert stack.processes["worker"].poll() is None
    assert stack.processes["relay"].poll() is None
    with __import__("urllib.request").request.urlopen(stack.relay_http + "/status") as r:
        assert json.loads(r.read())["dropped"] >= 2
