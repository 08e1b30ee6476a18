"""The REST API through the web server: sessions, submissions, lists, and every bad input."""
import base64
import hashlib
import hmac
import json
import re
import time

import pytest

from conftest import connect, run, start_stack


def forged(token):
    """token with one character of its signature changed."""
    head, payload, signature = token.split(".")
    return f"{head}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(stack, claims, secret=None):
    """An HS256 JWT of claims, signed with the stack's secret (or the given one)."""
    if secret is None:
        with open(stack.secret_path, "rb") as f:
            secret = f.read()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def expired(stack, client_id):
    now = int(time.time())
    return signed(stack, {"sub": client_id, "iat": now - 7200, "exp": now - 3600})


def test_session_issues_an_identity(stack):
    """A page gets a 128-bit client id and a token it can use at once."""
    status, _, body = stack.request("POST", "/api/session")
    assert status == 201
    assert re.fullmatch(r"[0-9a-f]{32}", body["client_id"])
    assert body["token"].count(".") == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["expires_at"])
    assert stack.request("GET", "/api/tasks", token=body["token"])[0] == 200
    assert stack.session()["client_id"] != body["client_id"]


def test_a_token_made_with_the_secret_is_accepted(stack):
    """Tokens are plain HS256 JWTs over the configured secret, so the secret file is what
    makes an identity (and the expired-token cases below are real tokens)."""
    client_id = stack.session()["client_id"]
    now = int(time.time())
    token = signed(stack, {"sub": client_id, "iat": now, "exp": now + 600})
    assert stack.request("GET", "/api/tasks", token=token)[0] == 200


def test_submit_answers_202_with_location(stack):
    """A submission is stored and answered with the task and where to find it."""
    session = stack.session()
    status, headers, task = stack.request("POST", "/api/tasks", {
        "type": "sleep", "name": "demo", "params": {"duration_ms": 100, "steps": 1}},
        session["token"])
    assert status == 202
    assert headers["Location"] == f"/api/tasks/{task['id']}"
    assert task["status"] in ("queued", "running", "succeeded")
    assert task["client_id"] == session["client_id"] and task["type"] == "sleep"
    assert task["name"] == "demo" and task["seq"] >= 1
    assert task["params"] == {"duration_ms": 100, "steps": 1}
    for key in ("id", "progress", "message", "result", "error", "attempts", "created_at",
                "started_at", "finished_at"):
        assert key in task
    assert stack.task(session["token"], task["id"])["id"] == task["id"]


def test_json_with_a_charset_is_json(stack):
    """Clients that label their JSON with a charset (many libraries do) are understood."""
    token = stack.session()["token"]
    for content_type in ("application/json; charset=utf-8", "application/json;charset=UTF-8"):
        body = {"type": "sleep", "params": {"duration_ms": 100, "steps": 1}}
        status, _, task = stack.request("POST", "/api/tasks", body, token, content_type=content_type)
        assert status == 202, task


def test_missing_params_take_their_defaults(stack):
    """A form that leaves a field out gets the documented default, not an error."""
    token = stack.session()["token"]
    task = stack.submit(token, "steps", {"count": 2})
    assert task["params"] == {"count": 2, "note": "x", "fail": False}
    task = stack.submit(token, "sleep", {"duration_ms": 100})
    assert task["params"] == {"duration_ms": 100, "steps": 10}
    stack.wait_final(token, task["id"])


BIG_NAME = b'{"type":"sleep","name":"' + b"x" * 70000 + b'"}'
NOBODY = "0" * 32  # a well-formed task id nobody has
BAD_INPUTS = [
    # (label, method, path, raw body, content type, token kind, status, code, message names)
    ("malformed json", "POST", "/api/tasks", b'{"type": "sleep",', "application/json", "good", 400, "bad_json", None),
    ("not an object", "POST", "/api/tasks", b'[1,2]', "application/json", "good", 400, "bad_json", None),
    # Found by fuzz_rest: the parser's message quoted bytes that are not UTF-8 (was a 500).
    ("malformed json near bytes not utf-8", "POST", "/api/tasks", b'{"type":"sleep","params\\\xd0\x84\xdd\x8fages":5}', "application/json", "good", 400, "bad_json", None),
    ("wrong content type", "POST", "/api/tasks", b'type=sleep', "application/x-www-form-urlencoded", "good", 415, "unsupported_media_type", None),
    ("no content type", "POST", "/api/tasks", b'{"type":"sleep"}', None, "good", 415, "unsupported_media_type", None),
    ("unknown type", "POST", "/api/tasks", b'{"type":"nope"}', "application/json", "good", 422, "unknown_type", None),
    ("param over max", "POST", "/api/tasks", b'{"type":"sleep","params":{"steps":1001}}', "application/json", "good", 422, "bad_params", "steps"),
    ("param under min", "POST", "/api/tasks", b'{"type":"sleep","params":{"duration_ms":-1}}', "application/json", "good", 422, "bad_params", "duration_ms"),
    ("priority out of range", "POST", "/api/tasks", b'{"type":"sleep","priority":11}', "application/json", "good", 400, "bad_request", "priority"),
    ("run_at not a date", "POST", "/api/tasks", b'{"type":"sleep","run_at":"tomorrow"}', "application/json", "good", 400, "bad_request", "run_at"),
    ("run_at without zone", "POST", "/api/tasks", b'{"type":"sleep","run_at":"2030-01-01T00:00:00"}', "application/json", "good", 400, "bad_request", "run_at"),
    ("run_at and delay_ms", "POST", "/api/tasks", b'{"type":"sleep","run_at":"2030-01-01T00:00:00Z","delay_ms":5}', "application/json", "good", 400, "bad_request", "delay_ms"),
    ("delay_ms negative", "POST", "/api/tasks", b'{"type":"sleep","delay_ms":-5}', "application/json", "good", 400, "bad_request", "delay_ms"),
    ("param wrong type", "POST", "/api/tasks", b'{"type":"sleep","params":{"duration_ms":"long"}}', "application/json", "good", 422, "bad_params", "duration_ms"),
    ("exec param out of range", "POST", "/api/tasks", b'{"type":"steps","params":{"count":11}}', "application/json", "good", 422, "bad_params", "count"),
    ("string param too long", "POST", "/api/tasks", b'{"type":"steps","params":{"note":"' + b"n" * 65 + b'"}}', "application/json", "good", 422, "bad_params", "note"),
    ("boolean param not boolean", "POST", "/api/tasks", b'{"type":"steps","params":{"fail":"yes"}}', "application/json", "good", 422, "bad_params", "fail"),
    ("unknown param", "POST", "/api/tasks", b'{"type":"sleep","params":{"speed":3}}', "application/json", "good", 422, "bad_params", "speed"),
    ("body too large", "POST", "/api/tasks", BIG_NAME, "application/json", "good", 413, "too_large", None),
    ("missing token", "POST", "/api/tasks", b'{"type":"sleep"}', "application/json", None, 401, "unauthorized", None),
    ("forged token", "POST", "/api/tasks", b'{"type":"sleep"}', "application/json", "forged", 401, "unauthorized", None),
    ("token of another secret", "GET", "/api/tasks", None, None, "other secret", 401, "unauthorized", None),
    ("expired token", "GET", "/api/tasks", None, None, "expired", 401, "unauthorized", None),
    ("not a token", "GET", "/api/tasks", None, None, "garbage", 401, "unauthorized", None),
    ("unknown route", "GET", "/api/nothing-here", None, None, "good", 404, "not_found", None),
    ("unknown task", "GET", f"/api/tasks/{NOBODY}", None, None, "good", 404, "not_found", None),
    ("unknown task cancelled", "POST", f"/api/tasks/{NOBODY}/cancel", None, None, "good", 404, "not_found", None),
    ("wrong method on a list", "DELETE", "/api/tasks", None, None, "good", 405, "method_not_allowed", None),
    ("wrong method on cancel", "GET", f"/api/tasks/{NOBODY}/cancel", None, None, "good", 405, "method_not_allowed", None),
    ("wrong method on session", "GET", "/api/session", None, None, None, 405, "method_not_allowed", None),
    ("limit too large", "GET", "/api/tasks?limit=201", None, None, "good", 400, "bad_request", None),
    ("limit zero", "GET", "/api/tasks?limit=0", None, None, "good", 400, "bad_request", None),
    ("limit not a number", "GET", "/api/tasks?limit=ten", None, None, "good", 400, "bad_request", None),
    ("before not a task id", "GET", "/api/tasks?before=zz", None, None, "good", 400, "bad_request", None),
    ("bad status filter", "GET", "/api/tasks?status=sleeping", None, None, "good", 400, "bad_request", None),
]
ALLOW = {"wrong method on a list": {"GET", "POST"}, "wrong method on cancel": {"POST"},
         "wrong method on session": {"POST"}}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_error(stack, case):
    """Every kind of bad request gets its own status and error code, never a 500, and the
    server keeps serving."""
    label, method, path, raw, content_type, token_kind, want_status, want_code, names = case
    session = stack.session()
    token = {"good": lambda: session["token"], None: lambda: None,
             "forged": lambda: forged(session["token"]),
             "other secret": lambda: signed(stack, {"sub": session["client_id"],
                                                    "iat": int(time.time()),
                                                    "exp": int(time.time()) + 600}, b"guess"),
             "expired": lambda: expired(stack, session["client_id"]),
             "garbage": lambda: "not-a-token"}[token_kind]()
    status, head, body = stack.request(method, path, token=token, raw=raw, content_type=content_type)
    assert status == want_status, body
    assert body["error"]["code"] == want_code, body
    assert body["error"]["message"]
    if names:
        assert names in body["error"]["message"], body
    if label in ALLOW:
        allowed = {m.strip() for m in head["Allow"].split(",")}
        assert allowed == ALLOW[label], head["Allow"]
    assert stack.request("GET", "/api/task-types")[0] == 200


def test_tasks_are_private(stack):
    """Another client can neither read, list nor cancel my task."""
    me, other = stack.session()["token"], stack.session()["token"]
    task = stack.submit(me, "sleep", {"duration_ms": 100, "steps": 1})
    status, _, body = stack.request("GET", f"/api/tasks/{task['id']}", token=other)
    assert status == 404 and body["error"]["code"] == "not_found"
    assert stack.cancel(other, task["id"])[0] == 404
    assert stack.request("GET", "/api/tasks", token=other)[2]["tasks"] == []
    assert stack.request("GET", f"/api/tasks/{task['id']}", token=me)[0] == 200


def test_concurrent_submissions_each_get_their_own_task(stack):
    """Submissions arriving together (threads of one handler share a commit) are each answered
    with their own task, owned by their own client, and all of them are stored."""
    from concurrent.futures import ThreadPoolExecutor
    tokens = [stack.session()["token"] for _ in range(4)]
    jobs = [(tokens[i % 4], f"c{i}") for i in range(32)]

    def post(job):
        token, name = job
        return token, name, stack.request("POST", "/api/tasks", {
            "type": "sleep", "name": name, "params": {"duration_ms": 100, "steps": 1}}, token)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, jobs))
    assert all(status == 202 for _, _, (status, _, _) in answers), answers
    assert len({task["id"] for _, _, (_, _, task) in answers}) == len(jobs)
    for token, name, (_, _, task) in answers:
        assert task["name"] == name
        assert stack.task(token, task["id"])["name"] == name
    for token in tokens:
        listed = stack.request("GET", "/api/tasks?limit=200", token=token)[2]["tasks"]
        assert sorted(t["name"] for t in listed) == sorted(
            name for owner, name in jobs if owner == token)


def test_mixed_requests_arriving_together_each_get_their_own_answer(stack):
    """Requests taken together by one handler thread (good and bad submissions, reads, an
    unknown route, a bad token) are each answered as if alone; only the good submissions are
    stored."""
    from concurrent.futures import ThreadPoolExecutor
    token = stack.session()["token"]
    known = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1}, name="known")
    good = {"type": "sleep", "params": {"duration_ms": 100, "steps": 1}}
    kinds = [
        ("good", lambda i: stack.request("POST", "/api/tasks", dict(good, name=f"g{i}"), token),
         202),
        ("malformed", lambda i: stack.request("POST", "/api/tasks", token=token,
                                              raw=b'{"type": "sleep",'), 400),
        ("unknown type", lambda i: stack.request("POST", "/api/tasks", {"type": "nope"}, token),
         422),
        ("bad token", lambda i: stack.request("POST", "/api/tasks", good, forged(token)), 401),
        ("read", lambda i: stack.request("GET", f"/api/tasks/{known['id']}", token=token), 200),
        ("missing", lambda i: stack.request("GET", f"/api/tasks/{NOBODY}", token=token), 404),
        ("no route", lambda i: stack.request("GET", "/api/nowhere", token=token), 404),
        ("health", lambda i: stack.request("GET", "/api/health"), 200),
    ]
    jobs = [(i, kinds[i % len(kinds)]) for i in range(48)]

    def send(job):
        i, (kind, call, _) = job
        return i, kind, call(i)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, jobs))
    for i, kind, (status, _, body) in answers:
        expected = kinds[i % len(kinds)][2]
        assert status == expected, (kind, status, body)
        if kind == "good":
            assert body["name"] == f"g{i}"
        if kind == "read":
            assert body["id"] == known["id"]
    names = {t["name"] for t in stack.request("GET", "/api/tasks?limit=200", token=token)[2]["tasks"]}
    assert names == {"known"} | {f"g{i}" for i, kind in jobs if kind[0] == "good"}


def test_list_pages_newest_first(stack):
    """A client pages through its tasks newest first and can filter by status."""
    token = stack.session()["token"]
    ids = [stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1}, name=f"t{i}")["id"]
           for i in range(5)]
    status, _, page = stack.request("GET", "/api/tasks?limit=2", token=token)
    assert status == 200
    assert [t["id"] for t in page["tasks"]] == ids[::-1][:2]
    assert page["next_before"] == ids[3]
    _, _, page2 = stack.request("GET", f"/api/tasks?limit=2&before={page['next_before']}", token=token)
    assert [t["id"] for t in page2["tasks"]] == ids[::-1][2:4]
    _, _, rest = stack.request("GET", f"/api/tasks?limit=10&before={page2['next_before']}", token=token)
    assert [t["id"] for t in rest["tasks"]] == ids[:1]
    assert rest["next_before"] is None
    _, _, everything = stack.request("GET", "/api/tasks", token=token)
    assert [t["id"] for t in everything["tasks"]] == ids[::-1]
    assert everything["next_before"] is None
    for task_id in ids:
        stack.wait_final(token, task_id)
    _, _, done = stack.request("GET", "/api/tasks?status=succeeded&limit=3", token=token)
    assert [t["id"] for t in done["tasks"]] == ids[::-1][:3]
    assert all(t["status"] == "succeeded" for t in done["tasks"])
    _, _, queued = stack.request("GET", "/api/tasks?status=queued", token=token)
    assert queued == {"tasks": [], "next_before": None}


def test_task_types_describe_the_forms(stack):
    """A page can build its form from the configured types and their parameter specs."""
    status, _, body = stack.request("GET", "/api/task-types")
    assert status == 200
    types = {t["name"]: t for t in body["types"]}
    assert {"sleep", "steps", "stall"} <= set(types)
    assert types["sleep"]["params"] == [
        {"name": "duration_ms", "type": "integer", "min": 0, "max": 600000, "default": 3000},
        {"name": "steps", "type": "integer", "min": 1, "max": 1000, "default": 10}]
    assert types["steps"]["label"] == "Count in steps"
    steps = {p["name"]: p for p in types["steps"]["params"]}
    assert steps["count"] == {"name": "count", "type": "integer", "min": 1, "max": 10, "default": 3}
    assert steps["note"] == {"name": "note", "type": "string", "min_length": 1, "max_length": 64,
                             "default": "x"}
    assert steps["fail"] == {"name": "fail", "type": "boolean", "default": False}
    if "checksum" in types:
        checksum = {p["name"]: p for p in types["checksum"]["params"]}
        assert checksum["path"]["type"] == "string"


def test_cancelling_a_finished_task_conflicts(stack):
    """Cancelling a task that already ended says so instead of pretending."""
    token = stack.session()["token"]
    task = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
    assert stack.wait_final(token, task["id"])["status"] == "succeeded"
    status, body = stack.cancel(token, task["id"])
    assert status == 409 and body["error"]["code"] == "conflict"
    assert stack.task(token, task["id"])["status"] == "succeeded"


def test_health_reports_every_part(stack):
    """Health says the store and the pool are up while they are."""
    status, _, body = stack.request("GET", "/api/health")
    assert status == 200
    assert body["status"] == "ok" and body["store"] == "ok" and body["pool"] == "ok"
    assert body["workers"] >= 1


@pytest.fixture(scope="module")
def no_worker(request):
    """A stack without a worker: every task stays queued."""
    return start_stack(request, worker=False)


def test_queued_task_cancels_at_once(no_worker):
    """A task nobody has started yet is cancelled on the spot and stays cancelled."""
    stack = no_worker
    token = stack.session()["token"]
    task = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
    assert task["status"] == "queued" and task["seq"] == 1
    status, body = stack.cancel(token, task["id"])
    assert status == 202 and body["status"] == "cancelled", body
    assert body["seq"] > task["seq"] and body["finished_at"]
    stored = stack.task(token, task["id"])
    assert stored["status"] == "cancelled" and stored["seq"] == body["seq"]
    status, body = stack.cancel(token, task["id"])
    assert status == 409 and body["error"]["code"] == "conflict"


def test_health_names_the_pool_when_no_worker_runs(no_worker):
    """Without a worker, health tells operators the pool is down while the API still takes
    submissions."""
    status, _, body = no_worker.request("GET", "/api/health")
    assert status == 503
    assert body["status"] == "degraded" and body["pool"] == "down" and body["store"] == "ok"
    token = no_worker.session()["token"]
    assert no_worker.submit(token, "sleep")["status"] == "queued"


def test_shipped_lighttpd_dropin_serves_api_and_websocket(request):
    """An operator who includes conf/lighttpd/taskwire.conf gets the API and the WebSocket."""
    stack = start_stack(request, server="lighttpd-dropin", worker=False)
    session = stack.session()
    assert stack.request("GET", "/api/tasks", token=session["token"])[0] == 200

    async def go():
        ws, hello = await connect(stack, session["token"])
        await ws.close()
        return hello
    assert run(go())["client_id"] == session["client_id"]
