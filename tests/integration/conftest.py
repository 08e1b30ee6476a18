"""Fixtures for the integration suite: a real stack (lighttpd, FastCGI handler, worker, relay)
on free loopback ports, and small WebSocket helpers.  Every wait has a deadline."""
import asyncio
import json
import os
import sys

import pytest
import websockets

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from stack import Stack, wait_for  # noqa: E402

FINAL = ("succeeded", "failed", "cancelled")


def start_stack(request, **kwargs):
    stack = Stack(**kwargs).start()

    def finish():
        stack.close()
        assert not stack.leftovers, f"processes outlived their parent: {stack.leftovers}"
        reports = stack.sanitizer_reports()
        assert not reports, "sanitizer reports:\n" + "\n".join(reports) + "\n" + stack.logs()

    request.addfinalizer(finish)
    return stack


@pytest.fixture(scope="module")
def stack(request):
    """One stack per test module."""
    return start_stack(request)


@pytest.fixture(autouse=True)
def print_logs_on_failure(request):
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and "stack" in request.fixturenames:
        print(request.getfixturevalue("stack").logs())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.report_call = report


def run(coroutine, timeout=30):
    """Run a coroutine with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def ws_url(stack, token, direct=False):
    base = f"ws://127.0.0.1:{stack.relay_port}" if direct else f"ws://127.0.0.1:{stack.http_port}"
    return f"{base}/ws?token={token}"


async def connect(stack, token, direct=False):
    """A WebSocket that has received its "connected" message (returned with it)."""
    ws = await websockets.connect(ws_url(stack, token, direct), open_timeout=5, max_size=2**22)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert hello["type"] == "connected", hello
    return ws, hello


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def task_events(ws, task_id, timeout=20):
    """Every event of task_id until its final one, in arrival order."""
    events = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await recv_json(ws, max(0.01, deadline - loop.time()))
        if message.get("type") == "task" and message["task"]["id"] == task_id:
            events.append(message)
            if message["event"] in FINAL:
                return events


async def subscribed(stack, client_id):
    """Wait until the relay's subscription for client_id has reached the worker: publish a
    probe on the wire until the relay counts it as delivered."""
    import zmq
    import zmq.asyncio
    context = zmq.asyncio.Context.instance()
    pub = context.socket(zmq.PUB)
    pub.connect(stack.publish_endpoint)
    try:
        before = stack_status(stack)["messages_in"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while stack_status(stack)["messages_in"] == before:
            assert loop.time() < deadline, "subscription never reached the worker"
            await pub.send_multipart([client_id.encode(), b'{"type":"probe"}'])
            await asyncio.sleep(0.05)
    finally:
        pub.close(0)


def stack_status(stack):
    import urllib.request
    with urllib.request.urlopen(stack.relay_http + "/status", timeout=2) as response:
        return json.loads(response.read())


async def skip_probes(ws, timeout=5):
    """Next message that is not a probe."""
    while True:
        message = await recv_json(ws, timeout)
        if message.get("type") != "probe":
            return message


__all__ = ["wait_for", "run", "connect", "recv_json", "task_events", "subscribed", "FINAL"]
