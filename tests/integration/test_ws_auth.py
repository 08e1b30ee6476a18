"""The WebSocket's auth message (docs/PROTOCOL.md): a connection belongs to no one until its
first message, {"type":"auth","token":"..."}, carries a token the relay accepts.  Before that it
gets no event; anything else first, or nothing in time, closes it; a token in the URL counts only
with [relay] token_in_query = true."""
import asyncio
import json
import os
import time

import pytest
import websockets

from conftest import (auth_message, connect, deliverable, publisher, recv_json, relay_status, run,
                      skip_probes, start_stack, ws_url)
from test_fcgi import signed

AUTH_TIMEOUT_MS = 400  # [relay] auth_timeout_ms of the quick stacks
DIRECT = pytest.mark.parametrize("direct", [False, True], ids=["through the web server", "direct"])


@pytest.fixture(scope="module")
def quick(request):
    """A stack whose relay gives a new connection AUTH_TIMEOUT_MS for its auth message."""
    return start_stack(request, relay_settings={"auth_timeout_ms": AUTH_TIMEOUT_MS})


@pytest.fixture(scope="module")
def in_query(request):
    """A stack whose relay also takes ?token= in the URL (token_in_query = true)."""
    return start_stack(request, relay_settings={"auth_timeout_ms": AUTH_TIMEOUT_MS,
                                                "token_in_query": "true"})


def relay_log(stack):
    return open(os.path.join(stack.tmp, "relay.log")).read()


async def closed_by_relay(ws, timeout=5):
    """The (code, reason) the relay closed ws with, waiting at most timeout seconds."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return closed.value.code, closed.value.reason


@DIRECT
def test_the_auth_message_opens_the_stream(stack, direct):
    """A page that sends its token as the first message is told it is connected, as whom, and
    then gets its client's events."""
    session = stack.session()

    async def go():
        pub = publisher(stack)
        ws, hello = await connect(stack, session["token"], direct)
        await deliverable(stack, session["client_id"], ws, pub=pub)
        await pub.send_multipart([session["client_id"].encode(), b'{"type":"notice","n":1}'])
        got = await skip_probes(ws)
        pub.close(0)
        await ws.close()
        return hello, got
    hello, got = run(go())
    assert hello["client_id"] == session["client_id"]
    assert got == {"type": "notice", "n": 1}


def test_events_before_the_auth_message_are_not_delivered(stack):
    """A connection that has not authenticated yet is nobody's: the events of the client whose
    token it will send do not reach it, and its first message once it sends the token is
    "connected"."""
    session = stack.session()
    client_id = session["client_id"].encode()

    async def go():
        pub = publisher(stack)
        tab, _ = await connect(stack, session["token"])
        waiting = await websockets.connect(ws_url(stack), open_timeout=5)
        await deliverable(stack, session["client_id"], tab, pub=pub)
        for n in range(5):
            await pub.send_multipart([client_id, json.dumps({"type": "notice", "n": n}).encode()])
        seen = [(await skip_probes(tab))["n"] for _ in range(5)]  # the relay has routed them
        await waiting.send(auth_message(session["token"]))
        first = await recv_json(waiting)
        await deliverable(stack, session["client_id"], tab, waiting, pub=pub)
        await pub.send_multipart([client_id, b'{"type":"notice","n":"after"}'])
        after = await skip_probes(waiting)
        pub.close(0)
        for ws in (tab, waiting):
            await ws.close()
        return seen, first, after
    seen, first, after = run(go())
    assert seen == list(range(5))
    assert first["type"] == "connected", first
    assert after == {"type": "notice", "n": "after"}


@DIRECT
def test_no_auth_message_in_time_is_closed_4003(quick, direct):
    """A connection that never sends its token is closed with 4003 once [relay]
    auth_timeout_ms has passed (within the heartbeat's second), not held open for ever."""

    async def go():
        ws = await websockets.connect(ws_url(quick, direct), open_timeout=5)
        loop = asyncio.get_running_loop()
        start = loop.time()
        closed = await closed_by_relay(ws, AUTH_TIMEOUT_MS / 1000 + 3)
        return closed, loop.time() - start
    closed, took = run(go())
    assert closed == (4003, "auth timeout")
    assert took >= AUTH_TIMEOUT_MS / 1000 - 0.1, f"closed after {took:.2f} s, before the timeout"
    assert "event=ws_auth_timeout" in relay_log(quick)


@DIRECT
@pytest.mark.parametrize("first", [
    "not json at all", '{"type":"ping"}', "[1,2]", '{"type":"auth_token","token":"TOKEN"}',
    '{"token":"TOKEN"}', '{"type":"auth","token":"TOKEN","type":"ping"}'],
    ids=["not json", "a ping", "an array", "another type", "no type", "a repeated key"])
def test_a_first_message_that_is_no_auth_message_is_closed_4002(stack, direct, first):
    """Anything but the auth message first closes the connection with 4002 and its reason;
    the relay logs that it did, never what the message held."""
    session = stack.session()

    async def go():
        ws = await websockets.connect(ws_url(stack, direct), open_timeout=5)
        await ws.send(first.replace("TOKEN", session["token"]))
        return await closed_by_relay(ws)
    assert run(go()) == (4002, "auth message expected")
    log = relay_log(stack)
    assert "event=ws_auth_expected" in log
    assert session["token"] not in log


@DIRECT
def test_a_binary_first_message_is_closed_1003(stack, direct):
    """The auth message is text; a binary one is closed as every binary message is."""
    session = stack.session()

    async def go():
        ws = await websockets.connect(ws_url(stack, direct), open_timeout=5)
        await ws.send(auth_message(session["token"]).encode())
        return await closed_by_relay(ws)
    assert run(go()) == (1003, "text messages only")


@pytest.mark.parametrize("message", ['{"type":"auth"}', '{"type":"auth","token":42}',
                                     '{"type":"auth","token":""}'],
                         ids=["no token", "a number", "empty"])
def test_an_auth_message_without_a_token_is_closed_4001(stack, message):
    """An auth message whose token is missing is a refused token: 4001, as the client library
    expects (it gets a new session)."""

    async def go():
        ws = await websockets.connect(ws_url(stack), open_timeout=5)
        await ws.send(message)
        return await closed_by_relay(ws)
    assert run(go()) == (4001, "unauthorized")


def test_the_longest_tokens_fit_the_auth_message_and_no_more(stack):
    """A token near its largest (a full channels claim: an auth message over the 512 bytes
    other client messages may have) is taken; an auth message over 1536 bytes is closed with
    1009, as any message over its bound."""
    session = stack.session()
    now = int(time.time())
    channels = {f"project:{n:02}-{'x' * 14}": ["subscribe"] for n in range(9)}  # claims: 491 B
    token = signed(stack, {"sub": session["client_id"], "iat": now, "exp": now + 600,
                           "channels": channels})
    assert 512 < len(auth_message(token)) <= 1536, len(auth_message(token))

    async def go():
        ws, hello = await connect(stack, token)
        await ws.close()
        big = await websockets.connect(ws_url(stack), open_timeout=5)
        await big.send(json.dumps({"type": "auth", "token": session["token"], "pad": "x" * 1600}))
        return hello, await closed_by_relay(big)
    hello, closed = run(go())
    assert hello["client_id"] == session["client_id"]
    assert closed == (1009, "message too big")


def test_a_second_auth_message_gets_an_error_and_the_connection_stays(stack):
    """A page that sends its token again once connected is told it is authenticated already;
    its connection, identity and stream stay as they were."""
    session = stack.session()

    async def go():
        ws, _ = await connect(stack, session["token"])
        await ws.send(auth_message(stack.session()["token"]))  # even another client's
        error = await recv_json(ws)
        await ws.send('{"type":"ping"}')
        pong = await recv_json(ws)
        await deliverable(stack, session["client_id"], ws)
        await ws.close()
        return error, pong
    error, pong = run(go())
    assert error == {"type": "error", "error": {"code": "bad_request",
                                                "message": "already authenticated"}}
    assert pong == {"type": "pong"}


@DIRECT
def test_a_token_in_the_url_alone_does_not_authenticate(quick, direct):
    """With token_in_query off (the default) a ?token= in the URL is ignored: the connection
    still has to send its auth message (then it is connected), or it is closed with 4003; the
    relay notes the ignored token without writing it down."""
    session = quick.session()
    url = ws_url(quick, direct) + "?token=" + session["token"]

    async def go():
        alone = await websockets.connect(url, open_timeout=5)
        closed = await closed_by_relay(alone, AUTH_TIMEOUT_MS / 1000 + 3)
        with_message = await websockets.connect(url, open_timeout=5)
        await with_message.send(auth_message(session["token"]))
        hello = await recv_json(with_message)
        await with_message.close()
        return closed, hello
    closed, hello = run(go())
    assert closed == (4003, "auth timeout")
    assert hello["type"] == "connected"
    log = relay_log(quick)
    assert "event=ws_query_token_ignored" in log
    assert session["token"] not in log


@DIRECT
def test_token_in_query_still_authenticates_at_the_handshake(in_query, direct):
    """With token_in_query = true an old client's ?token= authenticates as before (connected
    without a message, a bad one 4001), and a client that sends the auth message instead is
    connected too."""
    session = in_query.session()
    base = ws_url(in_query, direct)

    async def go():
        old = await websockets.connect(f"{base}?token={session['token']}", open_timeout=5)
        old_hello = await recv_json(old)
        await deliverable(in_query, session["client_id"], old)
        await old.close()
        refused = await websockets.connect(f"{base}?token=a.b.c", open_timeout=5)
        refused_closed = await closed_by_relay(refused)
        new, new_hello = await connect(in_query, session["token"], direct)
        await new.close()
        return old_hello, refused_closed, new_hello
    old_hello, refused_closed, new_hello = run(go())
    assert old_hello["type"] == "connected" and old_hello["client_id"] == session["client_id"]
    assert refused_closed == (4001, "unauthorized")
    assert new_hello["type"] == "connected"


def test_unauthenticated_connections_count_but_hold_no_client(quick):
    """Connections waiting for their auth message count in /status, and subscribe no client
    id upstream (they are in no client's list)."""
    before = relay_status(quick)

    async def go():
        waiting = [await websockets.connect(ws_url(quick, True), open_timeout=5) for _ in range(3)]
        during = relay_status(quick)
        for ws in waiting:
            await ws.close()
        return during
    during = run(go())
    assert during["connections"] == before["connections"] + 3
    assert during["client_ids"] == before["client_ids"]


@pytest.fixture(scope="module")
def no_cookie(request):
    """A stack with [auth] cookie = false: sessions set no cookie, the relay takes none."""
    return start_stack(request, auth_settings={"cookie": "false"},
                       relay_settings={"auth_timeout_ms": AUTH_TIMEOUT_MS})


def session_cookie(stack):
    """(session body, the Set-Cookie line of POST /api/session or None)."""
    status, head, body = stack.request("POST", "/api/session")
    assert status == 201, body
    return body, head.get("Set-Cookie")


def test_the_session_sets_its_token_as_a_strict_httponly_cookie_for_the_relay(stack):
    """POST /api/session answers "cookie": true and sets the same token as a cookie only the
    browser holds (HttpOnly), sent back to /ws on this site alone (SameSite=Strict), for as long
    as the token lives; not Secure over plain HTTP."""
    body, cookie = session_cookie(stack)
    assert body["cookie"] is True
    assert cookie is not None
    parts = [p.strip() for p in cookie.split(";")]
    assert parts[0] == f"taskwire_token={body['token']}"
    assert set(parts[1:]) == {"Path=/ws", "Max-Age=3600", "HttpOnly", "SameSite=Strict"}


@DIRECT
def test_the_cookie_authenticates_the_handshake(stack, direct):
    """/ws?auth=cookie with the session's cookie is greeted at once, as that client, without an
    auth message, and gets the client's events; the auth message on such a connection is a
    second one (an error, the connection stays)."""
    session, cookie = session_cookie(stack)
    value = cookie.split(";")[0]

    async def go():
        pub = publisher(stack)
        ws = await websockets.connect(ws_url(stack, direct) + "?auth=cookie", open_timeout=5,
                                      extra_headers={"Cookie": f"other=1; {value}; last=2"})
        hello = await recv_json(ws)
        await deliverable(stack, session["client_id"], ws, pub=pub)
        await pub.send_multipart([session["client_id"].encode(), b'{"type":"notice","n":7}'])
        got = await skip_probes(ws)
        await ws.send(auth_message(session["token"]))
        again = await skip_probes(ws)
        pub.close(0)
        await ws.close()
        return hello, got, again
    hello, got, again = run(go())
    assert hello["type"] == "connected" and hello["client_id"] == session["client_id"]
    assert got == {"type": "notice", "n": 7}
    assert again["type"] == "error"


@DIRECT
@pytest.mark.parametrize("cookie", ["", "taskwire_token=a.b.c", "xtaskwire_token={token}",
                                    "taskwire_token={expired}"],
                         ids=["none", "forged", "another name", "expired"])
def test_a_missing_or_refused_cookie_is_4001_at_once(quick, direct, cookie):
    """/ws?auth=cookie without the cookie, with a forged or expired one, or with only a cookie
    of another name is refused at once (4001, long before auth_timeout_ms) so the page falls
    back to the auth message; the same connection without ?auth=cookie just waits for it."""
    session = quick.session()
    expired = signed(quick, {"sub": session["client_id"], "iat": 1, "exp": int(time.time()) - 5})
    cookie = cookie.format(token=session["token"], expired=expired)
    headers = {"Cookie": cookie} if cookie else {}

    async def go():
        asked = await websockets.connect(ws_url(quick, direct) + "?auth=cookie", open_timeout=5,
                                         extra_headers=headers)
        started = time.monotonic()
        closed = await closed_by_relay(asked, 3)
        took = time.monotonic() - started
        waiting = await websockets.connect(ws_url(quick, direct), open_timeout=5,
                                           extra_headers=headers)
        await waiting.send(auth_message(session["token"]))
        hello = await recv_json(waiting)
        await waiting.close()
        return closed, took, hello
    closed, took, hello = run(go())
    assert closed == (4001, "unauthorized")
    assert took < AUTH_TIMEOUT_MS / 1000 / 2
    assert hello["type"] == "connected"
    assert session["token"] not in relay_log(quick)


def test_with_cookies_off_no_cookie_is_set_or_taken(no_cookie):
    """[auth] cookie = false: the session sets no cookie and says so, and /ws?auth=cookie is
    4001 even with a valid token in the Cookie header."""
    body, cookie = session_cookie(no_cookie)
    assert cookie is None and "cookie" not in body

    async def go():
        ws = await websockets.connect(ws_url(no_cookie, True) + "?auth=cookie", open_timeout=5,
                                      extra_headers={"Cookie": f"taskwire_token={body['token']}"})
        return await closed_by_relay(ws, 3)
    assert run(go()) == (4001, "unauthorized")
