"""The relay's ingress bound ([relay] events_listen, docs/DEPLOY.md "Scaling out"): worker pools
connect their events to every relay of [zmq] relays, over CURVE with the relay as the server; a
peer whose key the relay does not list is refused and logged, and a pool that comes back makes
the pages resync."""
import asyncio
import json
import os
import re

import zmq
import zmq.asyncio

from conftest import FINAL, connect, deliverable, next_text, run, start_stack, wait_for
from stack import free_port
from test_curve import keygen

REFUSE_WAIT = 10  # seconds for a refusal to show in the relay's log


def relay_log(stack):
    with open(os.path.join(stack.tmp, "relay.log"), errors="replace") as f:
        return f.read()


def ingress_stack(request, curve):
    """A stack whose relay binds its ingress and whose worker connects to it (and not the relay
    to the worker).  curve: the pool and the relay as CURVE servers, each listing the other's
    public key (the handler uses the relay's key pair, as on a host with both)."""
    ingress = f"tcp://127.0.0.1:{free_port()}"
    zmq_settings, worker_zmq = {}, {"relays": ingress}
    if curve:
        zmq_settings = {"curve": "true", "curve_secret_file": "var/relay.key",
                        "curve_server_public_file": "var/pool.key.pub",
                        "curve_clients_file": "var/relay-clients"}
        worker_zmq.update(curve_secret_file="var/pool.key", curve_clients_file="var/pool-clients",
                          curve_relay_public_file="var/relay.key.pub")

    def prepare(stack):
        if not curve:
            return
        stack.keys = {name: keygen(stack, name) for name in ("pool.key", "relay.key")}
        with open(os.path.join(stack.var, "relay-clients"), "w") as f:
            f.write("# the worker pools\n" + stack.keys["pool.key"][1] + "\n")
        with open(os.path.join(stack.var, "pool-clients"), "w") as f:
            f.write("# the relay and handler host\n" + stack.keys["relay.key"][1] + "\n")
    stack = start_stack(request, prepare=prepare, zmq_settings=zmq_settings,
                        worker_zmq_settings=worker_zmq, relay_settings={"events_listen": ingress})
    stack.ingress = ingress
    wait_for(lambda: "event=upstream_connected peer=127.0.0.1:" in relay_log(stack), 10,
             "the worker's connection to the relay")
    return stack


def task_events(stack, session, ws):
    """Submit a short task and read the page's events of it up to the final one."""
    async def go():
        task = stack.submit(session["token"], "sleep", {"duration_ms": 100, "steps": 2})
        seen = []
        while not seen or seen[-1]["event"] not in FINAL:
            message = json.loads(await next_text(ws, 10))
            if message.get("task", {}).get("id") == task["id"]:
                seen.append(message)
        return seen
    return go()


def test_events_reach_the_page_through_a_bound_ingress(request):
    """With events_listen, the relay connects nowhere and the worker's events still reach the
    page: the worker connected in, and the relay's subscription went back over that
    connection."""
    stack = ingress_stack(request, curve=False)
    session = stack.session()

    async def go():
        ws, _ = await connect(stack, session["token"])
        await deliverable(stack, session["client_id"], ws)
        seen = await task_events(stack, session, ws)
        await ws.close()
        return seen
    seen = run(go())
    assert seen[-1]["event"] == "succeeded", seen
    assert "event=ingress_listening endpoint=" + stack.ingress in relay_log(stack)


def test_a_pool_that_comes_back_makes_the_pages_resync(request):
    """A worker pool restarted (what it published while away is lost to this relay): once it
    has connected in again, every page of the relay is told to resync."""
    stack = ingress_stack(request, curve=False)
    session = stack.session()

    async def go():
        ws, _ = await connect(stack, session["token"])
        await deliverable(stack, session["client_id"], ws)
        stack.stop_worker()
        stack.start_worker()
        while True:
            message = json.loads(await next_text(ws, 10))
            if message.get("type") == "resync":
                break
        await ws.close()
    run(go())
    log = relay_log(stack)
    assert "event=upstream_disconnected peer=127.0.0.1:" in log, log
    assert log.count("event=upstream_connected peer=127.0.0.1:") >= 2, log


def pool_client(stack, kind):
    """A pyzmq socket that is a CURVE client of the pool with a key pair the pool lists."""
    sock = zmq.asyncio.Context.instance().socket(kind)
    sock.curve_secretkey, sock.curve_publickey = (k.encode() for k in stack.keys["relay.key"])
    sock.curve_serverkey = stack.keys["pool.key"][1].encode()
    sock.setsockopt(zmq.LINGER, 0)
    return sock


def test_events_over_curve_to_a_bound_ingress(request):
    """With curve on, the worker connects to the relay as a CURVE client of the relay's key,
    the relay lets in the pool's listed key, and the events reach the page; the pool's own
    events endpoint is still a CURVE server for a listed tap (its bind kept the server's
    options when its connects to the relays took a client's)."""
    stack = ingress_stack(request, curve=True)
    session = stack.session()

    async def go():
        ws, _ = await connect(stack, session["token"])
        pub = pool_client(stack, zmq.PUB)  # probes
        pub.connect(stack.publish_endpoint)
        tap = pool_client(stack, zmq.SUB)
        tap.connect(stack.events_endpoint)
        tap.setsockopt(zmq.SUBSCRIBE, session["client_id"].encode())
        await deliverable(stack, session["client_id"], ws, tap, pub=pub)
        pub.close(0)
        tap.close(0)
        seen = await task_events(stack, session, ws)
        await ws.close()
        return seen
    seen = run(go())
    assert seen[-1]["event"] == "succeeded", seen
    log = relay_log(stack)
    assert "event=zmq_refused" not in log and "event=zmq_handshake_failed" not in log, log


def test_unlisted_pool_key_and_plaintext_are_refused_by_the_relay(request):
    """A publisher whose key the relay's curve_clients_file does not list, and one without
    CURVE, reach no page; the relay logs the refused key and the failed handshake."""
    stack = ingress_stack(request, curve=True)
    public, secret = zmq.curve_keypair()
    context = zmq.asyncio.Context.instance()
    stranger = context.socket(zmq.XPUB)
    stranger.curve_secretkey, stranger.curve_publickey = secret, public
    stranger.curve_serverkey = stack.keys["relay.key"][1].encode()
    plain = context.socket(zmq.XPUB)
    for sock in (stranger, plain):
        sock.setsockopt(zmq.RECONNECT_IVL, 60000)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(stack.ingress)
    try:
        wait_for(lambda: f"key={public.decode()}" in relay_log(stack), REFUSE_WAIT,
                 "the refusal of the unlisted key in the relay's log")
        wait_for(lambda: "event=zmq_handshake_failed socket=ingress" in relay_log(stack),
                 REFUSE_WAIT, "the plaintext peer's failed handshake in the relay's log")
    finally:
        stranger.close(0)
        plain.close(0)
    line = next(l for l in relay_log(stack).splitlines() if public.decode() in l)
    assert re.search(r" warn event=zmq_refused peer=127\.0\.0\.1 key=\S+ status=400 ", line), line
    # Neither counted as an upstream peer (no resync for a refused one).
    assert relay_log(stack).count("event=upstream_connected") == 1, relay_log(stack)


def test_browser_publish_over_curve_to_the_pools_tasks(request):
    """With curve on, the relay's PUSH to the pool's tasks is a CURVE client (the relay's key
    pair, listed on the pool): a browser's publish goes through it and reaches a page
    subscribed to the channel, and nothing is refused or dropped on the way."""
    import time
    from test_fcgi import signed
    stack = ingress_stack(request, curve=True)
    now = int(time.time())
    tokens = [signed(stack, {"sub": f"{n:032x}", "iat": now, "exp": now + 600,
                             "channels": {"project:5": ["subscribe", "publish"]}})
              for n in (0x61, 0x62)]

    async def go():
        (sender, _), (reader, _) = [await connect(stack, token) for token in tokens]
        for ws in (sender, reader):
            await ws.send(json.dumps({"type": "subscribe", "channel": "project:5"}))
            assert json.loads(await next_text(ws))["type"] == "subscribed"
        # Until the relay's PUSH has finished its handshake with the pool, a publish is busy.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            await sender.send(json.dumps({"type": "publish", "channel": "project:5",
                                          "data": {"typing": True}}))
            reply = json.loads(await next_text(sender))
            if reply == {"type": "published", "channel": "project:5"}:
                break
            assert reply.get("reason") == "busy" and loop.time() < deadline, reply
            await asyncio.sleep(0.1)
        got = json.loads(await next_text(reader, 10))
        await sender.close()
        await reader.close()
        return got
    got = run(go())
    assert got == {"type": "message", "channel": "project:5", "from": f"{0x61:032x}",
                   "data": {"typing": True}}, got
    with open(os.path.join(stack.tmp, "worker.log"), errors="replace") as f:
        assert "event=zmq_refused" not in f.read()
