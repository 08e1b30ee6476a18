"""The WebSocket relay: tokens, control messages, routing by client id, its own HTTP."""
import asyncio
import json
import time
import urllib.request

import pytest
import websockets
import zmq
import zmq.asyncio

from conftest import connect, recv_json, run, subscribed, skip_probes, ws_url
from test_fcgi import forged, signed


@pytest.mark.parametrize("direct", [False, True], ids=["through the web server", "direct"])
def test_connected_names_the_client(stack, direct):
    """A page learns its connection is live and which identity it has."""
    session = stack.session()

    async def go():
        ws, hello = await connect(stack, session["token"], direct)
        await ws.close()
        return hello
    hello = run(go())
    assert hello["client_id"] == session["client_id"]
    assert hello["connection_id"]


@pytest.mark.parametrize("kind", ["missing", "forged", "expired", "garbage"])
def test_bad_token_is_closed_4001(stack, kind):
    """A page with a bad token is told so (4001) and gets nothing else."""
    session = stack.session()
    token = {"missing": "", "forged": forged(session["token"]), "garbage": "a.b.c",
             "expired": signed(stack, {"sub": session["client_id"], "iat": int(time.time()) - 90,
                                       "exp": int(time.time()) - 30})}[kind]

    async def go():
        ws = await websockets.connect(ws_url(stack, token), open_timeout=5)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        return closed.value
    closed = run(go())
    assert closed.code == 4001
    relay_log = open(f"{stack.tmp}/relay.log").read()
    if token:
        assert token not in relay_log


def test_ping_pong_and_bad_messages(stack):
    """A client ping gets a pong; nonsense gets an error and the connection stays usable;
    an oversized message closes with 1009."""
    token = stack.session()["token"]

    async def go():
        ws, _ = await connect(stack, token)
        await ws.send('{"type":"ping"}')
        assert await recv_json(ws) == {"type": "pong"}
        await ws.send("not json at all")
        error = await recv_json(ws)
        assert error["type"] == "error" and error["error"]["code"] == "bad_request"
        await ws.send('{"type":"ping"}')
        assert await recv_json(ws) == {"type": "pong"}
        await ws.send("x" * 4096)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.code == 1009
    run(go())


def test_relay_http_health_and_status(stack):
    """Operators can ask the relay whether it is up and what it carries."""
    with urllib.request.urlopen(stack.relay_http + "/health", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    with urllib.request.urlopen(stack.relay_http + "/status", timeout=5) as response:
        status = json.loads(response.read())
    for key in ("connections", "client_ids", "messages_in", "messages_out", "dropped", "culled"):
        assert isinstance(status[key], int)
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(stack.relay_http + "/elsewhere", timeout=5)
    assert missing.value.code == 404


def test_messages_reach_every_tab_of_their_client_only(stack):
    """A message for a client reaches all its tabs, and never another client, not even one
    whose id extends it."""
    a, b = stack.session(), stack.session()

    async def go():
        tab1, _ = await connect(stack, a["token"])
        tab2, _ = await connect(stack, a["token"], direct=True)
        other, _ = await connect(stack, b["token"])
        await subscribed(stack, a["client_id"])
        await subscribed(stack, b["client_id"])
        pub = zmq.asyncio.Context.instance().socket(zmq.PUB)
        pub.connect(stack.publish_endpoint)
        await asyncio.sleep(0.3)  # a PUB needs its connection before it can deliver
        payload = b'{"type":"notice","text":"for a only \xc3\xa9"}'
        await pub.send_multipart([a["client_id"][:-1].encode(), b'{"type":"prefix"}'])
        await pub.send_multipart([(a["client_id"] + "0").encode(), b'{"type":"longer"}'])
        await pub.send_multipart([a["client_id"].encode(), payload])
        await pub.send_multipart([b["client_id"].encode(), b'{"type":"notice","text":"for b"}'])
        got1 = await skip_probes(tab1)
        got2 = await skip_probes(tab2)
        got_other = await skip_probes(other)
        pub.close(0)
        for ws in (tab1, tab2, other):
            await ws.close()
        return got1, got2, got_other, payload
    got1, got2, got_other, payload = run(go())
    assert got1 == got2 == json.loads(payload)
    assert got_other == {"type": "notice", "text": "for b"}


def test_dead_peer_is_dropped(request):
    """A browser that vanished without closing (no pong) is dropped after the ping interval
    and timeout, so it holds no memory and no descriptor."""
    import base64
    import os
    import socket
    from conftest import start_stack, wait_for
    stack = start_stack(request, worker=False, ping=(1, 1))
    token = stack.session()["token"]
    sock = socket.create_connection(("127.0.0.1", stack.relay_port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101")
    from conftest import stack_status
    assert stack_status(stack)["connections"] == 1
    # Read (so the kernel buffer never fills) but never answer: pings go unanswered.
    sock.settimeout(8)
    received = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    assert b"\x89" in received  # the relay pinged before giving up
    wait_for(lambda: stack_status(stack)["connections"] == 0, 5, "the relay to forget the peer")
    sock.close()
