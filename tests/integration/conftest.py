"""Fixtures for the integration suite: a real stack (lighttpd, FastCGI handler, worker, relay)
on free loopback ports, and WebSocket and ZeroMQ helpers.  Every wait has a deadline.

A failing test's report carries the logs of every process of its stacks ("stack logs").
Temporary directories are removed after a run without failures; set TASKWIRE_KEEP_TMP=1 to
keep them anyway.
"""
import asyncio
import itertools
import json
import os
import shutil
import signal
import struct
import sys
import urllib.request

import pytest
import websockets
import zmq
import zmq.asyncio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from stack import FINAL, Stack, wait_for  # noqa: E402


def pytest_sessionstart(session):
    # A SIGTERM (a CI timeout) unwinds like Ctrl-C, so every stack's finalizer still runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def start_stack(request, prepare=None, **kwargs):
    """A started Stack, stopped (and checked for sanitizer reports and stray children) when
    request's scope ends.  prepare(stack), when given, runs before the stack starts."""
    stack = Stack(**kwargs)
    request.node.__dict__.setdefault("taskwire_stacks", []).append(stack)

    def finish():
        stack.close()
        assert not stack.leftovers, f"processes outlived their parent: {stack.leftovers}"
        reports = stack.sanitizer_reports()
        assert not reports, "sanitizer reports:\n" + "\n".join(reports) + "\n" + stack.logs()
        if request.session.testsfailed == 0 and not os.environ.get("TASKWIRE_KEEP_TMP"):
            shutil.rmtree(stack.tmp, ignore_errors=True)

    request.addfinalizer(finish)
    if prepare:
        prepare(stack)
    return stack.start()


# The web servers every module using the `stack` fixture runs behind: the same tests, once per
# server.  TASKWIRE_SERVERS=lighttpd narrows it for a quick local run.
WEB_SERVERS = os.environ.get("TASKWIRE_SERVERS", "lighttpd,apache,apache-cgi,nginx").split(",")


@pytest.fixture(scope="module", params=WEB_SERVERS)
def stack(request):
    """One stack per test module and web server."""
    return start_stack(request, server=request.param)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        stacks = list(item.__dict__.get("taskwire_stacks", []))
        stacks += [v for v in item.funcargs.values() if isinstance(v, Stack) and v not in stacks]
        for stack in stacks:
            report.sections.append(("stack logs", stack.logs()))


def run(coroutine, timeout=30):
    """Run a coroutine with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def ws_url(stack, direct=False):
    """The WebSocket address through the web server, or the relay's own (direct).  No token:
    that goes in the first message (auth_message)."""
    base = f"ws://127.0.0.1:{stack.relay_port}" if direct else f"ws://127.0.0.1:{stack.http_port}"
    return f"{base}/ws"


def auth_message(token):
    """The first message of every connection: the token, as docs/PROTOCOL.md has it."""
    return json.dumps({"type": "auth", "token": token})


def auth_frame(token):
    """The auth message as one masked client text frame, for a raw socket after its 101."""
    payload = auth_message(token).encode()
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def open_ws(stack, token, direct=False, **options):
    """A WebSocket that has sent its auth message (nothing read yet)."""
    options.setdefault("open_timeout", 5)
    ws = await websockets.connect(ws_url(stack, direct), **options)
    await ws.send(auth_message(token))
    return ws


async def connect(stack, token, direct=False):
    """A WebSocket that has received its "connected" message (returned with it)."""
    ws = await open_ws(stack, token, direct, max_size=2**22)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert hello["type"] == "connected", hello
    return ws, hello


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def is_probe(message):
    return isinstance(message, dict) and message.get("type") == "probe"


async def skip_probes(ws, timeout=5):
    """The next message on ws that is not a probe, parsed."""
    return json.loads(await next_text(ws, timeout))


async def next_text(ws, timeout=5):
    """The next text frame on ws that is not a probe, exactly as received."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        text = await asyncio.wait_for(ws.recv(), max(0.01, deadline - loop.time()))
        try:
            if is_probe(json.loads(text)):
                continue
        except ValueError:
            pass
        return text


async def task_events(ws, task_id, timeout=20, alone=False):
    """Every event of task_id until its final one, in arrival order.  alone: fail on any
    message that is neither a probe nor about task_id."""
    events = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await recv_json(ws, max(0.01, deadline - loop.time()))
        mine = message.get("type") == "task" and message["task"]["id"] == task_id
        assert mine or not alone or is_probe(message), f"message for someone else: {message}"
        if mine:
            events.append(message)
            if message["event"] in FINAL:
                return events


def publisher(stack):
    """A PUB socket connected to the stack's publish endpoint (close it with close(0))."""
    pub = zmq.asyncio.Context.instance().socket(zmq.PUB)
    pub.connect(stack.publish_endpoint)
    return pub


def tap(stack, client_id=""):
    """A SUB socket on the stack's events endpoint, subscribed to client_id (all if empty)."""
    sub = zmq.asyncio.Context.instance().socket(zmq.SUB)
    sub.connect(stack.events_endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, client_id.encode())
    return sub


_probe_numbers = itertools.count()


async def deliverable(stack, client_id, *ends, pub=None, timeout=5):
    """Publish probes ({"type":"probe"}) for client_id until every one of ends (WebSockets of
    that client, or SUB taps) has received one.  Then the relay's subscription has reached the
    worker, and a message published now through pub (when given, else a fresh PUB) reaches
    them all.  Probes still in flight arrive later: skip them (skip_probes, next_text)."""
    own = pub is None
    if own:
        pub = publisher(stack)
    pending = list(ends)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while pending:
            assert loop.time() < deadline, \
                f"probes for {client_id} never reached {len(pending)} of {len(ends)} receivers"
            probe = json.dumps({"type": "probe", "n": next(_probe_numbers)}).encode()
            await pub.send_multipart([client_id.encode(), probe])
            for end in list(pending):
                if await _got_probe(end, 0.05):
                    pending.remove(end)
    finally:
        if own:
            pub.close(0)


async def _got_probe(end, wait):
    """Whether end received a probe within wait seconds (other messages are not expected
    before the first probe; one would fail the test)."""
    if isinstance(end, zmq.asyncio.Socket):
        while await end.poll(int(wait * 1000)):
            frames = await end.recv_multipart()
            message = json.loads(frames[-1])
            assert is_probe(message), f"unexpected message on a tap before its probe: {frames}"
            return True
        return False
    try:
        message = json.loads(await asyncio.wait_for(end.recv(), wait))
    except asyncio.TimeoutError:
        return False
    assert is_probe(message), f"unexpected message on a WebSocket before its probe: {message}"
    return True


async def drain_tap(sub, wait=0.05):
    """Drop what sits on a tap (late probes)."""
    while await sub.poll(int(wait * 1000)):
        await sub.recv_multipart()


def relay_status(stack):
    """The relay's /status."""
    with urllib.request.urlopen(stack.relay_http + "/status", timeout=2) as response:
        return json.loads(response.read())


__all__ = ["wait_for", "run", "connect", "recv_json", "task_events", "deliverable", "publisher",
           "tap", "skip_probes", "next_text", "relay_status", "start_stack", "ws_url", "FINAL",
           "auth_message", "auth_frame", "open_ws"]
