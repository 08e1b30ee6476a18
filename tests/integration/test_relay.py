"""The WebSocket relay: tokens, control messages, routing by client id, its own HTTP."""
import asyncio
import base64
import json
import os
import signal
import socket
import time
import urllib.request

import pytest
import websockets

from conftest import (auth_frame, connect, deliverable, next_text, open_ws, publisher, recv_json,
                      relay_status, run, skip_probes, start_stack, tap, wait_for)
from stack import CLIENT_MESSAGE_MAX
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


@pytest.mark.parametrize("direct", [False, True], ids=["through the web server", "direct"])
@pytest.mark.parametrize("kind", ["missing", "forged", "expired", "garbage", "other secret"])
def test_bad_token_is_closed_4001(stack, kind, direct):
    """A page with a bad token is told so (4001) and gets nothing else."""
    session = stack.session()
    now = int(time.time())
    token = {"missing": "", "forged": forged(session["token"]), "garbage": "a.b.c",
             "expired": signed(stack, {"sub": session["client_id"], "iat": now - 90, "exp": now - 30}),
             "other secret": signed(stack, {"sub": session["client_id"], "iat": now, "exp": now + 600},
                                    b"guess")}[kind]

    async def go():
        ws = await open_ws(stack, token, direct)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        return closed.value
    closed = run(go())
    assert (closed.code, closed.reason) == (4001, "unauthorized")
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
        # Over the relay's limit (CLIENT_MESSAGE_MAX), yet within one proxy buffer (4 KB in
        # nginx): the relay closes at the first piece over the limit, and a proxy still
        # writing the rest to it may then drop the close frame.
        await ws.send("x" * (2 * CLIENT_MESSAGE_MAX))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert (closed.value.code, closed.value.reason) == (1009, "message too big")
    run(go())


def test_relay_http_health_and_status(stack):
    """Operators can ask the relay whether it is up and what it carries."""
    with urllib.request.urlopen(stack.relay_http + "/health", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    with urllib.request.urlopen(stack.relay_http + "/status", timeout=5) as response:
        status = json.loads(response.read())
    for key in ("connections", "client_ids", "messages_in", "messages_out", "dropped", "culled",
                "refused"):
        assert isinstance(status[key], int) and status[key] >= 0, status
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(stack.relay_http + "/elsewhere", timeout=5)
    assert missing.value.code == 404


def test_messages_reach_every_tab_of_their_client_only(stack):
    """A message for a client reaches all its tabs, and never another client; a message for a
    topic that is a prefix or an extension of a client id reaches no one."""
    a, b = stack.session(), stack.session()
    base = a["client_id"]

    async def go():
        pub = publisher(stack)
        tab1, _ = await connect(stack, a["token"])
        tab2, _ = await connect(stack, a["token"], direct=True)
        other, _ = await connect(stack, b["token"])
        await deliverable(stack, base, tab1, tab2, pub=pub)
        await deliverable(stack, b["client_id"], other, pub=pub)
        dropped = relay_status(stack)["dropped"]
        # ZeroMQ's prefix filter lets an extension of a's id through to the relay, which must
        # drop it; they go first, so a's tabs would see them before a's own message.
        for topic in (base[:-1], base + "0", base + "0" * 32):
            await pub.send_multipart([topic.encode(), json.dumps({"type": "notice", "to": topic}).encode()])
        payload = '{"type":"notice","text":"for a only \u00e9 \u00e9"}'.encode()
        await pub.send_multipart([base.encode(), payload])
        await pub.send_multipart([b["client_id"].encode(), b'{"type":"notice","text":"for b"}'])
        got = [await skip_probes(ws) for ws in (tab1, tab2, other)]
        pub.close(0)
        for ws in (tab1, tab2, other):
            await ws.close()
        return got, payload, relay_status(stack)["dropped"] - dropped
    got, payload, dropped = run(go())
    assert got[0] == json.loads(payload)
    assert got[1] == json.loads(payload)
    assert got[2] == {"type": "notice", "text": "for b"}
    assert dropped >= 2, "the relay did not count the extensions of a's id as dropped"


def test_status_counts_connections_and_messages(stack):
    """Operators see connections come and go and messages flow in the relay's /status."""
    session = stack.session()
    before = relay_status(stack)

    async def go():
        tabs = [(await connect(stack, session["token"], direct=True))[0] for _ in range(3)]
        during = relay_status(stack)
        await deliverable(stack, session["client_id"], *tabs)
        after_probe = relay_status(stack)
        for ws in tabs:
            await ws.close()
        return during, after_probe
    during, after_probe = run(go())
    assert during["connections"] == before["connections"] + 3
    assert during["client_ids"] == before["client_ids"] + 1
    assert after_probe["messages_in"] > before["messages_in"]
    assert after_probe["messages_out"] >= before["messages_out"] + 3
    wait_for(lambda: relay_status(stack)["connections"] == before["connections"], 5,
             "the relay to count the closed tabs")
    assert relay_status(stack)["client_ids"] == before["client_ids"]


def raw_websocket(stack, token, rcvbuf=None, direct=True):
    """A socket that has done the WebSocket handshake with the relay (or through the web
    server) and nothing else: it answers no ping and reads only when the test does."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", stack.relay_port if direct else stack.http_port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(auth_frame(token))
    return sock


def test_dead_peer_is_dropped_and_live_one_kept(request):
    """A browser that vanished without closing (no pong) is dropped after the ping interval
    and timeout, so it holds no memory and no descriptor; one that answers the pings stays,
    however long it is quiet."""
    stack = start_stack(request, worker=False, relay_settings={"ping_interval": 1, "ping_timeout": 1})
    token = stack.session()["token"]

    def vanished_peer():
        sock = raw_websocket(stack, token)
        assert relay_status(stack)["connections"] == 2
        # Read (so the kernel buffer never fills) but never answer: pings go unanswered.
        sock.settimeout(8)
        received = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        sock.close()
        assert b"\x89" in received  # the relay pinged before giving up
        wait_for(lambda: relay_status(stack)["connections"] == 1, 5, "the relay to forget the peer")

    async def go():
        live, _ = await connect(stack, stack.session()["token"], direct=True)
        await asyncio.to_thread(vanished_peer)  # the live client answers pings meanwhile
        await live.send('{"type":"ping"}')
        assert (await recv_json(live))["type"] == "pong"
        await live.close()

    run(go())


def test_a_quiet_peer_is_pinged_every_interval_and_dropped_once_it_stops_answering(request):
    """The heartbeat keeps pinging a quiet peer that answers, interval after interval (not only
    the first time), and drops it ping_interval + ping_timeout after it stops answering."""
    stack = start_stack(request, worker=False, relay_settings={"ping_interval": 1, "ping_timeout": 1})
    sock = raw_websocket(stack, stack.session()["token"])
    buf = b""

    def next_frame(deadline):
        nonlocal buf
        while True:
            if len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7f) and (buf[1] & 0x7f) < 126:
                length = buf[1] & 0x7f
                opcode, payload, buf = buf[0] & 0x0f, buf[2:2 + length], buf[2 + length:]
                return opcode, payload
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                return None, b""
            buf += chunk

    def pong(payload):
        key = os.urandom(4)
        sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + key +
                     bytes(b ^ key[i % 4] for i, b in enumerate(payload)))

    try:
        pings, deadline = 0, time.monotonic() + 15
        while pings < 4:
            assert time.monotonic() < deadline, f"{pings} pings in 15 s"
            opcode, payload = next_frame(deadline)
            assert opcode is not None, "the relay dropped a peer that answers its pings"
            if opcode == 0x9:
                pings += 1
                pong(payload)
        # Silent from here: the next ping goes unanswered and the relay hangs up.
        stopped = time.monotonic()
        while True:
            opcode, _ = next_frame(stopped + 8)
            if opcode is None:
                break
        assert time.monotonic() - stopped < 8
        wait_for(lambda: relay_status(stack)["connections"] == 0, 5, "the relay to forget the peer")
    finally:
        sock.close()


async def read_numbered(ws, count, into, timeout=20):
    """Read count notices {"n": ...} from ws into the list into, skipping probes."""
    for _ in range(count):
        into.append((await skip_probes(ws, timeout))["n"])


# The relay's two ways of writing: every woken connection's write in one io_uring submission,
# or one send each ([relay] io_uring = 0, and a kernel without io_uring).
WRITES = pytest.mark.parametrize("writes", [1, 0], ids=["io_uring", "plain"])


@WRITES
def test_messages_of_every_frame_length_arrive_byte_for_byte(request, writes):
    """Messages whose frames need a 7-, 16- and 64-bit length, alone and in a burst, reach the
    page exactly as published and in order."""
    stack = start_stack(request, relay_settings={"max_message": 1 << 20, "io_uring": writes})
    session = stack.session()
    client_id = session["client_id"]
    sizes = [40, 125, 126, 127, 65535, 65536, 65537, 300000]

    def message(n, size):
        head = '{"type":"notice","n":%d,"pad":"' % n
        return (head + "x" * (size - len(head) - 2) + '"}').encode()
    messages = [message(n, size) for n, size in enumerate(sizes)]
    assert [len(m) for m in messages] == sizes

    async def go():
        pub = publisher(stack)
        ws, _ = await connect(stack, session["token"], direct=True)
        await deliverable(stack, client_id, ws, pub=pub)
        alone = []
        for m in messages:  # one at a time: each is the only one waiting
            await pub.send_multipart([client_id.encode(), m])
            alone.append(await next_text(ws))
        for m in messages:  # all at once: several wait together
            await pub.send_multipart([client_id.encode(), m])
        burst = [await next_text(ws) for _ in messages]
        pub.close(0)
        await ws.close()
        return alone, burst
    alone, burst = run(go())
    started = [line for line in open(f"{stack.tmp}/relay.log") if "event=started" in line]
    assert started and ("writes=io_uring" in started[0] or "event=io_uring_unavailable" in
                        open(f"{stack.tmp}/relay.log").read() if writes else
                        "writes=plain" in started[0]), started
    expected = [m.decode() for m in messages]
    assert [len(t) for t in alone] == sizes and alone == expected
    assert [len(t) for t in burst] == sizes and burst == expected


@WRITES
def test_burst_many_times_the_ring_reaches_a_reading_page(request, writes):
    """A page that reads as fast as it can gets every message of a burst ten times the
    relay's ring, in order, and is not closed as lagging, even when the relay finds the
    whole burst waiting at once (here it was stopped while the burst was published)."""
    stack = start_stack(request, relay_settings={"io_uring": writes})  # ring 64
    session = stack.session()
    client_id = session["client_id"]
    burst = 640

    async def go():
        pub, taps = publisher(stack), tap(stack, client_id)
        ws, _ = await connect(stack, session["token"], direct=True)
        await deliverable(stack, client_id, ws, taps, pub=pub)
        culled = relay_status(stack)["culled"]
        relay = stack.processes["relay"]
        os.kill(relay.pid, signal.SIGSTOP)
        try:
            for n in range(burst):
                await pub.send_multipart([client_id.encode(), json.dumps({"type": "notice", "n": n}).encode()])
            # The tap has them all: the worker has passed the burst on to the relay too.
            seen = 0
            while seen < burst:
                _, payload = await asyncio.wait_for(taps.recv_multipart(), 10)
                seen += json.loads(payload).get("type") == "notice"
        finally:
            os.kill(relay.pid, signal.SIGCONT)
        got = []
        await read_numbered(ws, burst, got)
        pub.close(0)
        taps.close(0)
        await ws.close()
        return got, relay_status(stack)["culled"] - culled
    got, culled = run(go())
    assert got == list(range(burst))
    assert culled == 0


@WRITES
def test_page_that_stops_reading_is_closed_and_others_lose_nothing(request, writes):
    """A page that stops reading is closed (4008, lagging) once it is a ring behind, and
    the relay forgets it within the grace period; its client's other tab, reading, gets
    every message in order meanwhile."""
    stack = start_stack(request, relay_settings={"io_uring": writes})  # ring 64
    session = stack.session()
    client_id = session["client_id"]
    big = "x" * 60000
    batch = 16

    async def go():
        pub = publisher(stack)
        reader, _ = await connect(stack, session["token"], direct=True)
        stuck = raw_websocket(stack, session["token"], rcvbuf=4096)
        await deliverable(stack, client_id, reader, pub=pub)
        before = relay_status(stack)
        got, sent = [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        # In batches the reader keeps up with, until the relay gives up on the stuck page.
        while relay_status(stack)["culled"] == before["culled"]:
            assert loop.time() < deadline, f"the stuck page was never closed ({sent} sent)"
            for _ in range(batch):
                await pub.send_multipart([client_id.encode(),
                                          json.dumps({"type": "notice", "n": sent, "pad": big}).encode()])
                sent += 1
            await read_numbered(reader, batch, got)
        await asyncio.to_thread(
            wait_for, lambda: relay_status(stack)["connections"] == before["connections"] - 1,
            10, "the relay to drop the stuck page")
        pub.close(0)
        await reader.close()
        stuck.close()
        return got, sent
    got, sent = run(go(), timeout=60)
    assert got == list(range(sent))


def read_frames(sock, pending):
    """One recv from a raw WebSocket: the complete frames in it, as (opcode, payload) pairs;
    the rest of a frame stays in pending (a bytearray).  The relay's frames are unmasked."""
    pending += sock.recv(65536)
    frames = []
    while len(pending) >= 2:
        length, at = pending[1] & 0x7F, 2
        if length == 126:
            length, at = int.from_bytes(pending[2:4], "big"), 4
        elif length == 127:
            length, at = int.from_bytes(pending[2:10], "big"), 10
        if len(pending) < at + length:
            break
        frames.append((pending[0] & 0x0F, bytes(pending[at:at + length])))
        del pending[:at + length]
    return frames


@pytest.mark.parametrize("direct", [False, True], ids=["through the web server", "direct"])
def test_small_messages_are_not_held_for_the_clients_ack(stack, direct):
    """Progress comes as small messages close together.  A client that delays its ACKs (as a
    TCP stack does, by tens of milliseconds, or a WAN round trip) still gets each message as
    it is published: the relay does not hold one back until the previous one is
    acknowledged (Nagle's algorithm)."""
    session = stack.session()
    client_id = session["client_id"]
    count, spacing = 60, 0.003
    sock = raw_websocket(stack, session["token"], direct=direct)
    pending = bytearray()

    def delay_acks():  # the kernel forgets this once it acknowledges: set it after every read
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)

    def texts(timeout):
        sock.settimeout(timeout)
        try:
            frames = read_frames(sock, pending)
        except socket.timeout:
            return []
        delay_acks()
        return [json.loads(payload) for opcode, payload in frames if opcode == 1]

    async def go():
        pub = publisher(stack)
        delay_acks()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        seen_probe = False
        while not seen_probe:  # the relay's subscription has reached the publisher
            assert loop.time() < deadline, "probes never reached the raw WebSocket"
            await pub.send_multipart([client_id.encode(), b'{"type":"probe"}'])
            seen_probe = any(m.get("type") == "probe" for m in await asyncio.to_thread(texts, 0.05))
        lags = {}

        def receive():
            end = time.monotonic() + 10
            while len(lags) < count and time.monotonic() < end:
                for message in texts(1):
                    if "sent" in message:
                        lags[message["n"]] = time.monotonic() - message["sent"]
        reader = asyncio.ensure_future(asyncio.to_thread(receive))
        for n in range(count):
            await pub.send_multipart([client_id.encode(), json.dumps(
                {"type": "notice", "n": n, "sent": time.monotonic()}).encode()])
            await asyncio.sleep(spacing)
        await reader
        pub.close(0)
        return lags
    lags = run(go())
    sock.close()
    assert sorted(lags) == list(range(count)), f"messages missing: {sorted(lags)}"
    lags = sorted(lags.values())
    median = lags[count // 2]
    assert median < 0.010, (f"half the messages waited {median * 1000:.1f} ms or more "
                            f"(slowest {lags[-1] * 1000:.1f} ms)")
