"""Presence and browser publish (docs/PROTOCOL.md "Presence", the publish message): who is in a
channel, over the WebSocket's presence events and GET /api/channels/{name}/presence, across
relay processes sharing a port and after one is killed; and a browser's publish reaching the
channel's subscribers only, within its bounds.  On the store of $TASKWIRE_TEST_STORE (SQLite by
default, PostgreSQL with TASKWIRE_TEST_STORE=postgresql)."""
import asyncio
import json
import os
import signal
import time

import pytest

from conftest import connect, publisher, recv_json, run, start_stack
from stack import free_port, http_status, wait_for
from test_fcgi import signed

TTL_MS = 3000       # [channels] presence_ttl_ms of this module's stack (its least)
HEARTBEAT_MS = 200  # the stack's [worker] heartbeat_ms: the sweep's period
BURST = 5           # [channels] publish_burst
PUBLISH_MAX = 256   # [channels] publish_max
NAMESPACES = {"project": {"presence": "true"},
              "quiet": {"subscribe": "signed_in", "publish": "nobody", "presence": "true",
                        "presence_events": "false"}}
REPLIES = ("subscribed", "unsubscribed", "published", "refused")


@pytest.fixture(scope="module")
def stack(request):
    return start_stack(request, channel_settings={"presence_ttl_ms": TTL_MS, "publish_rate": 1,
                                                  "publish_burst": BURST,
                                                  "publish_max": PUBLISH_MAX},
                       namespaces=NAMESPACES)


def client(n):
    return f"{n:032x}"


def token_for(stack, client_id, channels=None):
    now = int(time.time())
    claims = {"sub": client_id, "iat": now, "exp": now + 600}
    if channels is not None:
        claims["channels"] = channels
    return signed(stack, claims)


class Page:
    """One WebSocket of a client, what it received kept in arrival order until looked for."""

    def __init__(self, ws, hello):
        self.ws, self.hello, self.inbox = ws, hello, []

    @property
    def pid(self):
        return int(self.hello["connection_id"].split(".")[0])

    async def wait(self, predicate, timeout=5):
        """The first message (kept or new) that predicate accepts."""
        for i, message in enumerate(self.inbox):
            if predicate(message):
                return self.inbox.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await recv_json(self.ws, max(0.01, deadline - loop.time()))
            if predicate(message):
                return message
            self.inbox.append(message)

    async def ask(self, message):
        """Send a channel request; its reply (they come in order)."""
        await self.ws.send(json.dumps(message))
        return await self.wait(lambda m: m.get("type") in REPLIES)

    async def subscribe(self, channel):
        reply = await self.ask({"type": "subscribe", "channel": channel})
        assert reply == {"type": "subscribed", "channel": channel}, reply
        return reply

    async def presence(self, client_id, action, timeout=5):
        return await self.wait(lambda m: m.get("type") == "presence" and
                               m["client_id"] == client_id and m["action"] == action, timeout)

    async def close(self):
        await self.ws.close()

    async def upstream(self, stack, topic, timeout=5):
        """Wait until the relay's subscription to topic has reached the pool: a probe
        published on it now reaches this page (what the pool publishes before that, an event
        of a page that joined at once, is not delivered: docs/PROTOCOL.md)."""
        pub = publisher(stack)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                assert loop.time() < deadline, f"no probe on {topic} reached the page"
                await pub.send_multipart([topic.encode(), b'{"type":"probe"}'])
                try:
                    await self.wait(lambda m: m.get("type") == "probe", 0.05)
                    return
                except asyncio.TimeoutError:
                    pass
        finally:
            pub.close(0)


async def page(stack, token, pid=None):
    """A page of token's client on the relay port; with pid, on that relay process (the
    kernel spreads connections over the processes sharing the port: try until one lands)."""
    for _ in range(60):
        ws, hello = await connect(stack, token, direct=True)
        opened = Page(ws, hello)
        if pid is None or opened.pid == pid:
            return opened
        await opened.close()
    raise AssertionError(f"no connection reached relay process {pid}")


def rest(stack, channel, token):
    status, _, body = stack.request("GET", f"/api/channels/{channel}/presence", token=token)
    return status, body


async def rest_until(stack, channel, token, clients, timeout=5):
    """GET presence until its clients are {client_id: connections} (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, body = await asyncio.to_thread(rest, stack, channel, token)
        assert status == 200, (status, body)
        got = {c["client_id"]: c["connections"] for c in body["clients"]}
        if got == clients:
            assert [c["client_id"] for c in body["clients"]] == sorted(clients)
            return body
        assert loop.time() < deadline, f"presence of {channel} stayed {got}, not {clients}"
        await asyncio.sleep(0.05)


def second_relay(stack, name):
    """Another relay process on the stack's port (SO_REUSEPORT), with a metrics port of its
    own; its pid."""
    port = free_port()
    process = stack._spawn(name, [os.path.join(stack.build, "taskwire-relay"), "-c",
                                  stack.config_path, "-m", f"127.0.0.1:{port}"])
    wait_for(lambda: http_status(f"http://127.0.0.1:{port}/health") == 200 or
             process.poll() is not None, 10, f"{name}'s /health")
    assert process.poll() is None, stack.logs()
    return process.pid


def test_two_users_see_each_other_and_rest_shows_both(stack):
    """Two users in one project channel: each sees the other's join and leave; the REST
    snapshot lists both with their connection counts, sorted, and a version no lower than any
    event's; a user the channel does not admit gets 403, no token 401, a name that is no
    channel 422, a namespace without presence 409; the publish key may read it."""
    a, b, c = client(0x1a), client(0x1b), client(0x1c)
    grant = {"project:7": ["subscribe"]}
    token_a, token_b = token_for(stack, a, grant), token_for(stack, b, grant)
    token_c = token_for(stack, c, {"project:8": ["subscribe"]})

    async def go():
        page_a = await page(stack, token_a)
        await page_a.subscribe("project:7")
        await page_a.upstream(stack, "project:7")
        page_b = await page(stack, token_b)
        await page_b.subscribe("project:7")
        joined = await page_a.presence(b, "join")
        assert joined["channel"] == "project:7" and joined["connections"] == 1
        assert isinstance(joined["version"], int) and joined["version"] > 0
        await rest_until(stack, "project:7", token_a, {a: 1, b: 1})
        # B's second tab counts 2; the snapshot's version covers the events so far.
        page_b2 = await page(stack, token_b)
        await page_b2.subscribe("project:7")
        update = await page_a.presence(b, "update")
        assert update["connections"] == 2 and update["version"] > joined["version"]
        body = await rest_until(stack, "project:7", token_b, {a: 1, b: 2})
        assert body["channel"] == "project:7" and body["version"] >= update["version"]
        # A leaves and comes back: B sees both.
        assert (await page_a.ask({"type": "unsubscribe", "channel": "project:7"}))["type"] == \
            "unsubscribed"
        left = await page_b.presence(a, "leave")
        assert left["connections"] == 0
        await page_a.subscribe("project:7")
        assert (await page_b.presence(a, "join"))["connections"] == 1
        # B closes both tabs: A sees B leave.
        await page_b.close()
        await page_b2.close()
        assert (await page_a.presence(b, "leave"))["connections"] == 0
        await rest_until(stack, "project:7", token_a, {a: 1})
        await page_a.close()
        await rest_until(stack, "project:7", stack.publish_key, {})
    run(go())
    assert rest(stack, "project:7", token_c)[0] == 403
    assert rest(stack, "project:7", token_c)[1]["error"]["code"] == "forbidden"
    assert rest(stack, "project:7", None)[0] == 401
    assert rest(stack, "project:7", "not-the-key")[0] == 401
    status, body = rest(stack, "project%3A7", token_a)  # a page's encodeURIComponent
    assert status == 200 and body["channel"] == "project:7"
    status, body = rest(stack, "nowhere:1", token_a)
    assert status == 422 and body["error"]["code"] == "bad_channel"
    status, body = rest(stack, "task:1", token_for(stack, a, {"task:1": ["subscribe"]}))
    assert status == 409 and body["error"]["code"] == "presence_off"


def test_connections_on_two_relay_processes_add_up(stack):
    """One user's two connections on two relay processes sharing the port count 2; one closes:
    1; the other: the user leaves."""
    d, w = client(0x2d), client(0x2e)
    grant = {"project:8": ["subscribe"]}
    token_d, token_w = token_for(stack, d, grant), token_for(stack, w, grant)
    first, second = stack.processes["relay"].pid, second_relay(stack, "relay-b")

    async def go():
        watcher = await page(stack, token_w)
        await watcher.subscribe("project:8")
        one, two = await page(stack, token_d, first), await page(stack, token_d, second)
        await one.subscribe("project:8")
        await two.subscribe("project:8")
        await rest_until(stack, "project:8", token_w, {w: 1, d: 2})
        await one.close()
        await rest_until(stack, "project:8", token_w, {w: 1, d: 1})
        await two.close()
        assert (await watcher.presence(d, "leave"))["connections"] == 0
        await rest_until(stack, "project:8", token_w, {w: 1})
        await watcher.close()
    try:
        run(go())
    finally:
        assert stack.stop("relay-b") == 0  # a clean stop: its entries go at once


def test_a_killed_relay_leaves_within_the_ttl(stack):
    """A relay killed with SIGKILL tells no one: its entries expire and a worker's sweep
    publishes their leaves within presence_ttl_ms and a heartbeat."""
    e, w = client(0x3e), client(0x3f)
    grant = {"project:9": ["subscribe"]}
    token_e, token_w = token_for(stack, e, grant), token_for(stack, w, grant)
    first, doomed = stack.processes["relay"].pid, second_relay(stack, "relay-c")

    async def go():
        watcher = await page(stack, token_w, first)
        await watcher.subscribe("project:9")
        victim = await page(stack, token_e, doomed)
        await victim.subscribe("project:9")
        await rest_until(stack, "project:9", token_w, {w: 1, e: 1})
        killed = asyncio.get_running_loop().time()
        await asyncio.to_thread(stack.stop, "relay-c", signal.SIGKILL)
        left = await watcher.presence(e, "leave", timeout=(TTL_MS + HEARTBEAT_MS) / 1000 + 4)
        assert left["connections"] == 0
        took = asyncio.get_running_loop().time() - killed
        assert took <= (TTL_MS + HEARTBEAT_MS) / 1000 + 2, took
        await rest_until(stack, "project:9", token_w, {w: 1})
        await watcher.close()
    try:
        run(go(), timeout=60)
    finally:
        stack.stop("relay-c", signal.SIGKILL)


def test_browser_publish_reaches_the_channel_only(stack):
    """A browser's publish reaches the connections subscribed to its channel (the sender's own
    too, with from = itself), not a connection of another channel nor one subscribed to none;
    past the burst it is rate_limited, a large data too_large, a non-object bad_data, and a
    namespace that forbids it publish_not_allowed; the connection stays."""
    f, g, h, i = client(0x4f), client(0x40), client(0x41), client(0x42)
    token_f = token_for(stack, f, {"project:10": ["subscribe", "publish"]})
    token_g = token_for(stack, g, {"project:10": ["subscribe"]})
    token_h = token_for(stack, h, {"project:11": ["subscribe"]})
    token_i = token_for(stack, i)

    def marker(channel, n):
        status, _, _ = stack.request("POST", "/api/publish", {"channel": channel,
                                                              "data": {"marker": n}},
                                     stack.publish_key)
        assert status == 202

    async def go():
        sender, member = await page(stack, token_f), await page(stack, token_g)
        other, idle = await page(stack, token_h), await page(stack, token_i)
        await sender.subscribe("project:10")
        await member.subscribe("project:10")
        await other.subscribe("project:11")
        await member.upstream(stack, "project:10")
        await other.upstream(stack, "project:11")
        await idle.upstream(stack, i)  # its own channel's topic: the client id
        # Presence went through: the relay's PUSH to the pool is up (else a publish is busy).
        await rest_until(stack, "project:10", token_g, {f: 1, g: 1})
        reply = await sender.ask({"type": "publish", "channel": "project:10",
                                  "data": {"typing": True}})
        assert reply == {"type": "published", "channel": "project:10"}, reply
        expect = {"type": "message", "channel": "project:10", "from": f,
                  "data": {"typing": True}}
        is_typing = lambda m: m.get("type") == "message" and m.get("from") == f
        assert await member.wait(is_typing) == expect
        assert await sender.wait(is_typing) == expect
        # The others' next message is a marker published after the signal: they got none of it.
        await asyncio.to_thread(marker, "project:11", 1)
        await asyncio.to_thread(marker, f"user:{i}", 2)
        for watcher in (other, idle):
            got = await watcher.wait(lambda m: m.get("type") == "message")
            assert got["data"].get("marker") in (1, 2), got
            assert not any(m.get("from") == f for m in watcher.inbox)
        # Bounds: the connection stays through every refusal.
        big = await sender.ask({"type": "publish", "channel": "project:10",
                                "data": {"text": "x" * PUBLISH_MAX}})
        assert big["type"] == "refused" and big["reason"] == "too_large", big
        bad = await sender.ask({"type": "publish", "channel": "project:10", "data": 5})
        assert bad["reason"] == "bad_data", bad
        quiet = await sender.ask({"type": "publish", "channel": "quiet:hall", "data": {}})
        assert quiet["reason"] == "publish_not_allowed", quiet
        # presence_events = false: counted for the snapshot, no event on the channel (the next
        # message there is a marker published after the count was in).
        await sender.subscribe("quiet:hall")
        await sender.upstream(stack, "quiet:hall")
        await rest_until(stack, "quiet:hall", token_f, {f: 1})
        await asyncio.to_thread(marker, "quiet:hall", 3)
        got = await sender.wait(lambda m: m.get("channel") == "quiet:hall" and
                                m.get("type") != "probe")
        assert got["type"] == "message" and got["data"] == {"marker": 3}, got
        replies = []
        for n in range(BURST + 2):
            await sender.ws.send(json.dumps({"type": "publish", "channel": "project:10",
                                             "data": {"n": n}}))
        for n in range(BURST + 2):
            replies.append(await sender.wait(lambda m: m.get("type") in REPLIES))
        kinds = [r["type"] if r["type"] != "refused" else r["reason"] for r in replies]
        assert "rate_limited" in kinds, kinds
        assert kinds.count("published") <= BURST, kinds  # the first publish took one too
        await sender.ws.send(json.dumps({"type": "ping"}))
        assert (await sender.wait(lambda m: m.get("type") == "pong")) == {"type": "pong"}
        for p in (sender, member, other, idle):
            await p.close()
    run(go())


def test_relay_status_counts_upstream(stack):
    """The relay's /status says what went to the pools and what is counted here."""
    with open(os.path.join(stack.tmp, "relay.log"), errors="replace") as log:
        text = log.read()
    assert "presence=on" in text and "relay=" in text
    from conftest import relay_status
    status = relay_status(stack)
    assert status["upstream_sent"] > 0
    assert status["signals"] >= 1
    assert "upstream_dropped" in status and "presence_entries" in status


@pytest.mark.parametrize("server", ["lighttpd", "apache-cgi"])
def test_a_tasks_list_with_a_host_down_sends_to_the_one_up(request, server):
    """[zmq] tasks listing a worker host that is down as well as one that is up: the
    handler's publish API (a CGI process too, whose PUSH waits for its first connection), a
    browser's publish and presence all reach the pool that is up (a PUSH with ZMQ_IMMEDIATE
    queues nothing for the one that is not)."""
    live, dead = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    stack = start_stack(request, server=server, zmq_settings={"tasks": f"{live} {dead}"},
                        worker_zmq_settings={"tasks": live}, namespaces=NAMESPACES)
    a, b = client(0x5a), client(0x5b)
    grant = {"project:12": ["subscribe", "publish"]}
    token_a, token_b = token_for(stack, a, grant), token_for(stack, b, grant)

    async def go():
        page_a, page_b = await page(stack, token_a), await page(stack, token_b)
        await page_a.subscribe("project:12")
        await page_b.subscribe("project:12")
        await page_b.upstream(stack, "project:12")
        await rest_until(stack, "project:12", token_a, {a: 1, b: 1})
        for n in range(4):  # round robin would put every other one on the dead host
            reply = await page_a.ask({"type": "publish", "channel": "project:12",
                                      "data": {"n": n}})
            assert reply["type"] == "published", reply
            got = await page_b.wait(lambda m: m.get("from") == a)
            assert got["data"] == {"n": n}
            status, _, _ = await asyncio.to_thread(
                stack.request, "POST", "/api/publish", {"channel": "project:12",
                                                        "data": {"api": n}}, stack.publish_key)
            assert status == 202
            got = await page_b.wait(lambda m: m.get("type") == "message" and "from" not in m)
            assert got["data"] == {"api": n}
        await page_a.close()
        await page_b.close()
    run(go())
