"""The REST API through the web server: sessions, submissions, lists, and every bad input."""
import base64
import hashlib
import hmac
import json
import re
import time

import pytest

from conftest import wait_for


def test_session_issues_an_identity(stack):
    """A page gets a 128-bit client id and a token it can use at once."""
    status, headers, body = stack.request("POST", "/api/session")
    assert status == 201
    assert re.fullmatch(r"[0-9a-f]{32}", body["client_id"])
    assert body["token"].count(".") == 2
    assert body["expires_at"].endswith("Z")
    assert stack.request("GET", "/api/tasks", token=body["token"])[0] == 200


def test_submit_answers_202_with_location(stack):
    """A submission is stored and answered with the task and where to find it."""
    token = stack.session()["token"]
    status, headers, task = stack.request("POST", "/api/tasks", {
        "type": "sleep", "name": "demo", "params": {"duration_ms": 100, "steps": 1}}, token)
    assert status == 202
    assert headers["Location"] == f"/api/tasks/{task['id']}"
    assert task["status"] in ("queued", "running", "succeeded")
    assert task["name"] == "demo" and task["seq"] >= 1
    assert task["params"] == {"duration_ms": 100, "steps": 1}
    for key in ("id", "client_id", "type", "progress", "message", "result", "error", "attempts",
                "created_at", "started_at", "finished_at"):
        assert key in task


def forged(token):
    head, payload, signature = token.split(".")
    return f"{head}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(stack, claims):
    with open(stack.secret_path, "rb") as f:
        secret = f.read()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


BAD_INPUTS = [
    # (label, method, path, raw body, content type, token kind, status, code)
    ("malformed json", "POST", "/api/tasks", b'{"type": "sleep",', "application/json", "good", 400, "bad_json"),
    ("not an object", "POST", "/api/tasks", b'[1,2]', "application/json", "good", 400, "bad_json"),
    ("wrong content type", "POST", "/api/tasks", b'type=sleep', "application/x-www-form-urlencoded", "good", 415, "unsupported_media_type"),
    ("unknown type", "POST", "/api/tasks", b'{"type":"nope"}', "application/json", "good", 422, "unknown_type"),
    ("param out of range", "POST", "/api/tasks", b'{"type":"sleep","params":{"steps":0}}', "application/json", "good", 422, "bad_params"),
    ("param wrong type", "POST", "/api/tasks", b'{"type":"sleep","params":{"duration_ms":"long"}}', "application/json", "good", 422, "bad_params"),
    ("unknown param", "POST", "/api/tasks", b'{"type":"sleep","params":{"speed":3}}', "application/json", "good", 422, "bad_params"),
    ("body too large", "POST", "/api/tasks", b'{"type":"sleep","name":"' + b"x" * 70000 + b'"}', "application/json", "good", 413, "too_large"),
    ("missing token", "POST", "/api/tasks", b'{"type":"sleep"}', "application/json", None, 401, "unauthorized"),
    ("forged token", "POST", "/api/tasks", b'{"type":"sleep"}', "application/json", "forged", 401, "unauthorized"),
    ("expired token", "GET", "/api/tasks", None, None, "expired", 401, "unauthorized"),
    ("unknown route", "GET", "/api/nothing-here", None, None, "good", 404, "not_found"),
    ("bad task id", "GET", "/api/tasks/not-a-task-id", None, None, "good", 404, "not_found"),
    ("wrong method", "DELETE", "/api/tasks", None, None, "good", 405, "method_not_allowed"),
    ("bad limit", "GET", "/api/tasks?limit=1000", None, None, "good", 400, "bad_request"),
    ("bad status filter", "GET", "/api/tasks?status=sleeping", None, None, "good", 400, "bad_request"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_error(stack, case):
    """Every kind of bad request gets its own status and error code, never a 500, and the
    server keeps serving."""
    label, method, path, raw, content_type, token_kind, want_status, want_code = case
    session = stack.session()
    token = {"good": session["token"], "forged": forged(session["token"]), None: None,
             "expired": signed(stack, {"sub": session["client_id"], "iat": int(time.time()) - 7200,
                                       "exp": int(time.time()) - 3600})}[token_kind]
    headers = {"Content-Type": content_type} if content_type else {}
    import urllib.request
    request = urllib.request.Request(stack.http + path, data=raw, method=method, headers=headers)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, head, text = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, head, text = error.code, error.headers, error.read()
    assert status == want_status, text
    body = json.loads(text)
    assert body["error"]["code"] == want_code
    assert body["error"]["message"]
    if want_status == 405:
        assert "GET" in head["Allow"] and "POST" in head["Allow"]
    if label == "param out of range":
        assert "steps" in body["error"]["message"]
    if label == "unknown param":
        assert "speed" in body["error"]["message"]
    assert stack.request("GET", "/api/task-types")[0] == 200


def test_a_forged_identity_cannot_be_signed_without_the_secret(stack):
    """A token for someone else's client id signed with another key is refused."""
    victim = stack.session()
    head, payload, _ = victim["token"].split(".")
    other = b64(hmac.new(b"guess", f"{head}.{payload}".encode(), hashlib.sha256).digest())
    assert stack.request("GET", "/api/tasks", token=f"{head}.{payload}.{other}")[0] == 401


def test_tasks_are_private(stack):
    """Another client can neither read, list nor cancel my task."""
    me, other = stack.session()["token"], stack.session()["token"]
    task = stack.submit(me, "sleep", {"duration_ms": 100, "steps": 1})
    assert stack.request("GET", f"/api/tasks/{task['id']}", token=other)[0] == 404
    assert stack.request("POST", f"/api/tasks/{task['id']}/cancel", token=other)[0] == 404
    assert stack.request("GET", "/api/tasks", token=other)[2]["tasks"] == []
    assert stack.request("GET", f"/api/tasks/{task['id']}", token=me)[0] == 200


def test_list_pages_newest_first(stack):
    """A client pages through its tasks newest first and can filter by status."""
    token = stack.session()["token"]
    ids = [stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1}, name=f"t{i}")["id"]
           for i in range(5)]
    status, _, page = stack.request("GET", "/api/tasks?limit=2", token=token)
    assert status == 200
    assert [t["id"] for t in page["tasks"]] == ids[::-1][:2]
    assert page["next_before"] == ids[3]
    _, _, rest = stack.request("GET", f"/api/tasks?limit=10&before={page['next_before']}", token=token)
    assert [t["id"] for t in rest["tasks"]] == ids[::-1][2:]
    assert rest["next_before"] is None
    for task_id in ids:
        stack.wait_final(token, task_id)
    _, _, done = stack.request("GET", "/api/tasks?status=succeeded", token=token)
    assert len(done["tasks"]) == 5
    _, _, queued = stack.request("GET", "/api/tasks?status=queued", token=token)
    assert queued["tasks"] == []


def test_task_types_describe_the_forms(stack):
    """A page can build its form from the configured types and their parameter specs."""
    status, _, body = stack.request("GET", "/api/task-types")
    assert status == 200
    types = {t["name"]: t for t in body["types"]}
    assert {"sleep", "checksum", "steps", "stall"} <= set(types)
    sleep = {p["name"]: p for p in types["sleep"]["params"]}
    assert sleep["duration_ms"] == {"name": "duration_ms", "type": "integer", "min": 100,
                                    "max": 600000, "default": 3000}
    assert sleep["steps"]["max"] == 1000
    checksum = {p["name"]: p for p in types["checksum"]["params"]}
    assert checksum["path"]["type"] == "string"
    assert {p["name"]: p for p in types["steps"]["params"]}["fail"]["type"] == "boolean"


def test_cancelling_a_finished_task_conflicts(stack):
    """Cancelling a task that already ended says so instead of pretending."""
    token = stack.session()["token"]
    task = stack.submit(token, "sleep", {"duration_ms": 100, "steps": 1})
    assert stack.wait_final(token, task["id"])["status"] == "succeeded"
    status, _, body = stack.request("POST", f"/api/tasks/{task['id']}/cancel", token=token)
    assert status == 409 and body["error"]["code"] == "conflict"


def test_health_reports_every_part(stack):
    """Health says the store and the pool are up while they are."""
    status, _, body = stack.request("GET", "/api/health")
    assert status == 200
    assert body["status"] == "ok" and body["store"] == "ok" and body["pool"] == "ok"
    assert body["workers"] >= 1
