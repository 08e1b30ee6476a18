"""Parts going down and coming back: the pool, a worker killed or stopped mid-task, the relay,
garbage on the ZeroMQ wire."""
import asyncio
import os
import secrets
import time

import pytest
import websockets
import zmq

from conftest import (connect, deliverable, publisher, relay_status, run, skip_probes, start_stack,
                      task_events, wait_for)
from test_fcgi import signed
from test_pipeline import pid_alive


@pytest.fixture
def stack(request):
    """A fresh stack per test: these tests stop and kill its parts."""
    return start_stack(request)


def test_pool_down_keeps_tasks_queued_until_it_returns(stack):
    """While no worker runs, health says so and submissions wait in the queue; when a worker
    comes back it runs them."""
    token = stack.session()["token"]
    assert stack.stop_worker() == 0
    status = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
        stack.request("GET", "/api/health")), 10, "health to report the pool down")
    assert status[2]["status"] == "degraded"
    assert status[2]["pool"] == "down" and status[2]["store"] == "ok"
    first = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
    second = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
    assert first["status"] == "queued" and second["status"] == "queued"
    # Nothing takes them while the pool is down (checked over a few scan intervals).
    with pytest.raises(TimeoutError):
        wait_for(lambda: stack.task(token, first["id"])["status"] != "queued", 0.6, "a change")
    stack.start_worker()
    done = [stack.wait_final(token, t["id"]) for t in (first, second)]
    assert [t["status"] for t in done] == ["succeeded", "succeeded"]
    assert done[0]["started_at"] <= done[1]["started_at"], "queued tasks run oldest first"
    assert stack.request("GET", "/api/health")[0] == 200


def test_killed_worker_takes_its_program_along(stack):
    """An exec task's program dies with its worker, and the next worker takes the task back
    (a retrying event naming the lost attempt) and runs it again."""
    session = stack.session()
    token = session["token"]

    async def go():
        ws, _ = await connect(stack, token)
        await deliverable(stack, session["client_id"], ws)
        task = stack.submit(token, "stall", {"trap": True})
        pidfile = os.path.join(stack.tmp, f"stall-{task['id']}.pid")
        wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), 10, "the program")
        pid = int(open(pidfile).read())
        stack.kill_worker()
        wait_for(lambda: not pid_alive(pid), 3, "the program to die with its worker")
        stack.start_worker()
        events = await task_events(ws, task["id"], 5)
        await ws.close()
        return events
    events = run(go())
    kinds = [e["event"] for e in events]
    assert "retrying" in kinds, kinds
    retrying = next(e for e in events if e["event"] == "retrying")
    assert retrying["task"]["errors"][0]["error"] == "worker lost"
    assert events[-1]["task"]["attempts"] == 2


def test_stopped_worker_requeues_its_task(stack):
    """A worker stopped cleanly hands its running task back, and the next worker runs it."""
    token = stack.session()["token"]
    task = stack.submit(token, "sleep", {"duration_ms": 1500, "steps": 3})
    stack.wait_status(token, task["id"], ("running",), 5)
    assert stack.stop_worker() == 0
    requeued = stack.task(token, task["id"])
    assert requeued["status"] == "queued" and requeued["attempts"] == 1, requeued
    assert requeued["message"] == "requeued: worker stopping"
    stack.start_worker()
    final = stack.wait_final(token, task["id"], 10)
    assert final["status"] == "succeeded" and final["attempts"] == 2, final


def test_relay_restart_loses_nothing_in_the_store(stack):
    """A page whose relay restarts is told to reconnect (1001), finds the true final state of
    what ran meanwhile, and streams again."""
    session = stack.session()
    token = session["token"]

    async def go():
        ws, _ = await connect(stack, token, direct=True)
        await deliverable(stack, session["client_id"], ws)
        # Stop it from another thread: this loop must stay free to answer the close handshake.
        stopping = asyncio.get_running_loop().run_in_executor(None, stack.stop_relay)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        await stopping
        task = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
        final = stack.wait_final(token, task["id"])
        stack.start_relay()
        ws2, _ = await connect(stack, token)
        await deliverable(stack, session["client_id"], ws2)
        again = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
        events = await task_events(ws2, again["id"])
        await ws2.close()
        return closed.value.code, final, events
    code, final, events = run(go())
    assert code == 1001
    assert final["status"] == "succeeded"
    assert events[-1]["event"] == "succeeded"


def test_killed_relay_comes_back(stack):
    """After the relay crashes, pages reconnect to a new one and get their events."""
    session = stack.session()

    async def go():
        ws, _ = await connect(stack, session["token"])
        stack.kill_relay()
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        stack.start_relay()
        ws2, _ = await connect(stack, session["token"])
        await deliverable(stack, session["client_id"], ws2)
        task = stack.submit(session["token"], "sleep", {"duration_ms": 100, "steps": 1})
        events = await task_events(ws2, task["id"])
        await ws2.close()
        return events
    assert run(go())[-1]["event"] == "succeeded"


def test_relay_hears_every_client_id_after_the_pool_restarts(request):
    """When the worker pool comes back, the relay's subscriptions all reach it again, however
    many client ids it serves (ZeroMQ's default queue of 1,000 once dropped the rest: most
    pages stopped getting events until they reconnected)."""
    count = 1500
    stack = start_stack(request, relay_settings={"max_connections": 2000})
    ids = [secrets.token_hex(16) for _ in range(count)]
    expires = int(time.time()) + 600
    tokens = [signed(stack, {"sub": i, "exp": expires}) for i in ids]

    async def go():
        sockets = [(await connect(stack, token, direct=True))[0] for token in tokens]
        heard = set()

        async def listen(index):
            await sockets[index].recv()
            heard.add(index)

        readers = [asyncio.create_task(listen(i)) for i in range(count)]
        stack.kill_worker()
        stack.start_worker()
        pub = publisher(stack)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        try:
            while len(heard) < count and loop.time() < deadline:
                for i in range(count):
                    if i not in heard:
                        await pub.send_multipart([ids[i].encode(), b'{"type":"probe"}'])
                await asyncio.sleep(0.2)
        finally:
            pub.close(0)
            for reader in readers:
                reader.cancel()
            for ws in sockets:
                await ws.close()
        return count - len(heard)
    deaf = run(go(), timeout=90)
    assert deaf == 0, f"{deaf} of {count} client ids heard nothing after the pool restarted"


def test_pages_are_told_to_resync_when_the_pool_restarts(stack):
    """What the pool published while the relay was not connected to it is not replayed: once
    the relay hears a restarted pool, every page gets {"type":"resync"} (and the client
    library lists its tasks over REST), and live events flow again."""
    session = stack.session()
    token = session["token"]

    async def go():
        ws, _ = await connect(stack, token, direct=True)
        await deliverable(stack, session["client_id"], ws)
        stack.kill_worker()
        stack.start_worker()
        told = await skip_probes(ws, timeout=10)
        await deliverable(stack, session["client_id"], ws)
        task = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
        events = await task_events(ws, task["id"])
        await ws.close()
        return told, events
    told, events = run(go())
    assert told == {"type": "resync"}
    assert events[-1]["event"] == "succeeded"


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
    push.send_multipart([b"submit", b"\x00" * 32])
    push.send_multipart([b"cancel", b"0" * 32, b"extra"])
    push.send_multipart([b"cancel", b"0" * 32])

    async def go():
        ws, _ = await connect(stack, session["token"])
        await deliverable(stack, session["client_id"], ws)
        before = relay_status(stack)["dropped"]
        cid = session["client_id"].encode()
        pub.send_multipart([cid])
        pub.send_multipart([cid, b"a", b"b"])
        pub.send_multipart([cid, b"x" * 70000])
        task = stack.submit(session["token"], "sleep", {"duration_ms": 200, "steps": 2})
        events = await task_events(ws, task["id"])
        await ws.close()
        return events, relay_status(stack)["dropped"] - before
    events, dropped = run(go())
    assert events[-1]["event"] == "succeeded"
    push.close(0)
    pub.close(0)
    assert stack.processes["worker"].poll() is None
    assert stack.processes["relay"].poll() is None
    assert dropped >= 2, "the relay did not count the malformed and oversized messages"
