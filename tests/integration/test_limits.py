"""Limits, each as its user meets it: which pages may open the WebSocket ([relay]
allowed_origins) and call the API from another origin ([http] cors_origins), connections per
client id and new connections per source address at the relay, submissions per client, and
what the web servers answer to an oversized URL or header (docs/CONFIG.md, docs/DEPLOY.md)."""
import asyncio
import base64
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import websockets

from conftest import (WEB_SERVERS, auth_frame, connect, deliverable, open_ws, relay_status, run,
                      start_stack, wait_for)
from stack import free_port, http_status

ALLOWED = "http://app.example"       # listed for the WebSocket and for CORS
ELSEWHERE = "http://elsewhere.example"
SUBMIT_BURST = 4
SUBMIT_RATE = 1                      # a second: a burst of requests is over long before a refill
PER_CLIENT = 3                       # [relay] max_connections_per_client of relay_limited
CONNECT_BURST = 5
CONNECT_RATE = 2
OVERSIZED = 20000                    # bytes: over every web server's default limit (8 KiB)


@pytest.fixture(scope="module", params=WEB_SERVERS)
def limited(request):
    """One stack per web server with an origin listed for the WebSocket and for CORS, and a
    small submission rate."""
    return start_stack(request, server=request.param, worker=False,
                       relay_settings={"allowed_origins": ALLOWED},
                       http_settings={"cors_origins": ALLOWED, "submit_rate": SUBMIT_RATE,
                                      "submit_burst": SUBMIT_BURST})


@pytest.fixture(scope="module")
def relay_limited(request):
    """A stack whose relay takes few connections per client id and per source address; CORS
    stays off (the default).  Its worker carries published messages to the relay."""
    return start_stack(request,
                       relay_settings={"max_connections_per_client": PER_CLIENT,
                                       "connect_rate": CONNECT_RATE,
                                       "connect_burst": CONNECT_BURST})


def read_head(sock):
    """(status, header text, what followed the head: the whole body when the head gives its
    Content-Length) of an HTTP answer on sock; status 0 when the connection was closed or
    reset before a head came."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    if b"\r\n\r\n" not in data:
        return 0, "", b""
    head, rest = data.split(b"\r\n\r\n", 1)
    head = head.decode(errors="replace")
    length = [int(line.split(":", 1)[1]) for line in head.split("\r\n")[1:]
              if line.lower().startswith("content-length:")]
    while length and len(rest) < length[0]:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split()[1]), head, rest


def handshake(port, token, origin=None):
    """A raw WebSocket handshake on port (the web server's or the relay's): (status, what came
    after the head, the socket, open)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    origin_line = f"Origin: {origin}\r\n" if origin else ""
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n{origin_line}"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    status, _, rest = read_head(sock)
    if status == 101:
        sock.sendall(auth_frame(token))
    return status, rest, sock


def first_frame_text(sock, rest, timeout=5):
    """The payload of the first (small, unmasked) text frame the relay sends after the 101."""
    deadline = time.monotonic() + timeout
    while len(rest) < 2 or len(rest) < 2 + (rest[1] & 0x7f):
        assert time.monotonic() < deadline, f"no frame after the 101: {rest!r}"
        rest += sock.recv(4096)
    assert rest[0] == 0x81 and (rest[1] & 0x7f) < 126, rest
    return rest[2:2 + (rest[1] & 0x7f)].decode()


@pytest.mark.parametrize("direct", [False, True], ids=["through the web server", "direct"])
def test_only_listed_origins_open_the_websocket(limited, direct):
    """A page of another site cannot open the WebSocket with its visitor's browser: the
    handshake gets 403 from the relay, through every web server (so the web server passed
    Origin on, and the relay's status back); a listed page, in any letter case, and a client
    that is no browser (no Origin) connect as before."""
    token = limited.session()["token"]
    port = limited.relay_port if direct else limited.http_port
    before = relay_status(limited)["forbidden"]

    status, rest, sock = handshake(port, token, ELSEWHERE)
    sock.close()
    assert status == 403, rest
    assert json.loads(rest)["error"]["code"] == "forbidden_origin"
    assert relay_status(limited)["forbidden"] == before + 1

    for origin in (ALLOWED, ALLOWED.upper(), None):
        status, rest, sock = handshake(port, token, origin)
        try:
            assert status == 101, (origin, rest)
            assert json.loads(first_frame_text(sock, rest))["type"] == "connected"
        finally:
            sock.close()
    assert relay_status(limited)["forbidden"] == before + 1


def test_cors_answers_listed_origins_only(limited):
    """A page of a listed origin may call the API from its own origin (preflight and answers
    carry its origin); a page of any other origin gets no CORS header, so its browser keeps
    the answers from it.  Through every web server (OPTIONS and Origin reach the handler)."""
    asked = {"Origin": ALLOWED, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"}
    status, head, _ = limited.request("OPTIONS", "/api/tasks", headers=asked)
    assert status == 204
    assert head["Access-Control-Allow-Origin"] == ALLOWED
    assert {m.strip() for m in head["Access-Control-Allow-Methods"].split(",")} == \
        {"GET", "POST"}
    allowed_headers = {h.strip().lower() for h in head["Access-Control-Allow-Headers"].split(",")}
    assert allowed_headers >= {"authorization", "content-type", "idempotency-key"}
    assert int(head["Access-Control-Max-Age"]) > 0
    assert "origin" in head.get("Vary", "").lower()

    status, head, _ = limited.request("OPTIONS", "/api/tasks/" + "0" * 32,
                                      headers=dict(asked, **{"Access-Control-Request-Method":
                                                             "DELETE"}))
    assert status == 204
    assert {m.strip() for m in head["Access-Control-Allow-Methods"].split(",")} == \
        {"GET", "DELETE"}

    status, head, body = limited.request("OPTIONS", "/api/tasks",
                                         headers=dict(asked, Origin=ELSEWHERE))
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    assert "Access-Control-Allow-Origin" not in head
    assert "origin" in head.get("Vary", "").lower()

    status, head, body = limited.request("POST", "/api/session", headers={"Origin": ALLOWED})
    assert status == 201 and body["token"]
    assert head["Access-Control-Allow-Origin"] == ALLOWED
    assert "location" in head["Access-Control-Expose-Headers"].lower()
    # An error is readable by the listed page too.
    status, head, body = limited.request("GET", "/api/tasks", headers={"Origin": ALLOWED})
    assert status == 401 and head["Access-Control-Allow-Origin"] == ALLOWED

    status, head, _ = limited.request("GET", "/api/task-types", headers={"Origin": ELSEWHERE})
    assert status == 200 and "Access-Control-Allow-Origin" not in head
    status, head, _ = limited.request("GET", "/api/task-types")
    assert status == 200 and "Access-Control-Allow-Origin" not in head


def test_cors_is_off_unless_configured(relay_limited):
    """Without [http] cors_origins the API answers no origin with CORS headers, and OPTIONS is
    an ordinary 405."""
    status, head, _ = relay_limited.request(
        "OPTIONS", "/api/tasks", headers={"Origin": ALLOWED,
                                          "Access-Control-Request-Method": "POST"})
    assert status == 405
    assert "Access-Control-Allow-Origin" not in head and "Vary" not in head
    status, head, _ = relay_limited.request("GET", "/api/task-types", headers={"Origin": ALLOWED})
    assert status == 200 and "Access-Control-Allow-Origin" not in head


def test_submissions_per_client_are_rate_limited_across_handlers(limited):
    """A client submitting in a burst gets its [http] submit_burst accepted and the rest 429
    too_many_requests with Retry-After; after waiting that long it may submit again.  The
    bucket is the store's, so the count holds whichever handler process serves a request
    (Apache starts one process per request under CGI, and up to two under mod_fcgid).  A
    replayed Idempotency-Key takes no token, and another client is not affected."""
    token = limited.session()["token"]
    body = {"type": "sleep", "params": {"duration_ms": 0}}
    key = {"Idempotency-Key": "rate-once"}
    status, _, first = limited.request("POST", "/api/tasks", body, token, headers=key)
    assert status == 202

    def one(_):
        return limited.request("POST", "/api/tasks", body, token)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(12)))
    elapsed = time.monotonic() - started
    accepted = [a for a in answers if a[0] == 202]
    refused = [a for a in answers if a[0] != 202]
    assert SUBMIT_BURST - 1 <= len(accepted) <= SUBMIT_BURST - 1 + SUBMIT_RATE * elapsed + 1, \
        (len(accepted), elapsed)
    assert refused
    for status, head, error in refused:
        assert status == 429 and error["error"]["code"] == "too_many_requests", error
        assert int(head["Retry-After"]) >= 1

    status, _, again = limited.request("POST", "/api/tasks", body, token, headers=key)
    assert status == 200 and again["id"] == first["id"]
    assert limited.submit(limited.session()["token"], "sleep", {"duration_ms": 0})

    status, head, _ = limited.request("POST", "/api/tasks", body, token)
    if status == 429:
        # The server's promise: after Retry-After seconds a submission passes.
        time.sleep(int(head["Retry-After"]))
        status, _, task = limited.request("POST", "/api/tasks", body, token)
    assert status == 202


def test_oversized_url_and_header_are_the_web_servers_4xx(limited):
    """A URL or a header over the web server's limit is answered 4xx by the web server itself;
    one within it but past what the handler takes gets the handler's own JSON error; and the
    handler never falls over (the same processes answer afterwards)."""
    port = limited.http_port
    pids = sorted(limited.fcgi_pids())

    def ask(line, header=""):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            try:
                sock.sendall(f"{line} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}"
                             "Connection: close\r\n\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and close before taking all of it
            status, head, rest = read_head(sock)
            try:
                while chunk := sock.recv(65536):  # Connection: close: the body ends with it
                    rest += chunk
            except ConnectionResetError:
                pass
            return status, head, rest
        finally:
            sock.close()

    status, _, _ = ask("GET /api/tasks?x=" + "a" * OVERSIZED)
    assert 400 <= status < 500, status
    status, _, _ = ask("GET /api/task-types", f"X-Big: {'a' * OVERSIZED}\r\n")
    assert 400 <= status < 500, status
    # Within the web servers' limits: the handler's answers.
    status, head, rest = ask("GET /api/" + "a" * 2000)
    assert status == 404 and b'"not_found"' in rest, (head, rest)
    status, head, rest = ask("GET /api/tasks", f"Authorization: Bearer {'a' * 6000}\r\n")
    assert status == 401 and b'"unauthorized"' in rest, (head, rest)

    assert limited.request("GET", "/api/task-types")[0] == 200
    assert sorted(limited.fcgi_pids()) == pids


def test_connections_per_client_beyond_the_limit_are_closed_1008(relay_limited):
    """A client id with [relay] max_connections_per_client tabs open cannot open one more (1008
    with its reason), while the open ones keep receiving; once a tab closes, another may
    open."""
    session = relay_limited.session()
    token = session["token"]

    async def go():
        tabs = [(await connect(relay_limited, token, direct=True))[0] for _ in range(PER_CLIENT)]
        extra = await open_ws(relay_limited, token, direct=True)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(extra.recv(), 5)
        assert (closed.value.code, closed.value.reason) == \
            (1008, "too many connections for this client")
        other, _ = await connect(relay_limited, relay_limited.session()["token"], direct=True)
        await deliverable(relay_limited, session["client_id"], *tabs)
        await tabs[0].close()
        wait_for(lambda: relay_status(relay_limited)["connections"] == PER_CLIENT, 5,
                 "the relay to count the closed tab")
        tabs[0], _ = await connect(relay_limited, token, direct=True)
        for ws in tabs + [other]:
            await ws.close()
    run(go())
    log = open(os.path.join(relay_limited.tmp, "relay.log")).read()
    assert 'reason="max_connections_per_client"' in log


def test_new_connections_per_source_address_are_limited(relay_limited):
    """A source opening connections faster than [relay] connect_rate after its burst has the
    ones over it closed before any answer; the exempt web server address and other sources
    are not held back, and the source is let in again once its bucket refills."""
    def health_from(source):
        sock = socket.socket()
        sock.settimeout(5)
        try:
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", relay_limited.relay_port))
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Connection: close\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return False
            return read_head(sock)[0] == 200
        finally:
            sock.close()

    before = relay_status(relay_limited)["throttled"]
    started = time.monotonic()
    answered = sum(health_from("127.0.0.2") for _ in range(3 * CONNECT_BURST))
    elapsed = time.monotonic() - started
    assert CONNECT_BURST <= answered <= CONNECT_BURST + CONNECT_RATE * elapsed + 1, \
        (answered, elapsed)
    assert relay_status(relay_limited)["throttled"] == before + 3 * CONNECT_BURST - answered
    # The exempt address (the web server's) and another source are not held back.
    assert all(health_from("127.0.0.1") for _ in range(3 * CONNECT_BURST))
    assert health_from("127.0.0.3")
    # A refused attempt takes no token: the source is back within 1 / connect_rate.
    wait_for(lambda: health_from("127.0.0.2"), 3, "127.0.0.2's bucket to refill")
    log = open(os.path.join(relay_limited.tmp, "relay.log")).read()
    assert "event=connect_throttled source=127.0.0.2" in log


def open_files_limits(pid):
    """(soft, hard) of a process's open-files limit, as /proc shows them."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open-files line")


def test_the_relay_fits_its_open_files_limit_to_max_connections(request):
    """A relay started from a shell with a small open-files limit raises it to what
    max_connections needs (else it would refuse connections long before), one with a far larger
    limit lowers it (lws scans its whole descriptor table at every close), and one whose hard
    limit is too small says how many connections it can hold."""
    stack = start_stack(request, worker=False, relay_settings={"max_connections": "2000"})
    binary = os.path.join(stack.build, "taskwire-relay")
    for soft, hard, expect in ((512, 8192, 2256), (8000, 8192, 2256), (1024, 1024, 1024)):
        port = free_port()
        log = os.path.join(stack.tmp, f"relay-{soft}-{hard}.log")
        with open(log, "w") as out:
            process = subprocess.Popen(["prlimit", f"--nofile={soft}:{hard}", binary, "-c",
                                        stack.config_path, "-m", f"127.0.0.1:{port}"],
                                       stdout=out, stderr=out)
        try:
            wait_for(lambda: http_status(f"http://127.0.0.1:{port}/health") == 200 or
                     process.poll() is not None, 10, "the relay's metrics port")
            assert process.poll() is None, open(log).read()
            assert open_files_limits(process.pid) == (expect, hard)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
        text = open(log).read()
        if expect < 2256:
            assert "event=descriptors_short max_connections=2000" in text
            assert "connections_at_most=768" in text
        else:
            assert f"event=descriptors open_files_limit=2256 was={soft}" in text
