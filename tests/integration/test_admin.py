"""The admin REST API (/api/admin/, docs/ADMIN.md) as an operator meets it: the key is asked
for and checked, every client's tasks are listed and searched, a running task is cancelled, a
failed one retried until it succeeds, a finished one deleted, and the status and per-minute
counts show the worker, the relay and the tasks this test ran.  Through lighttpd (the shipped
drop-in and the stack's own config), nginx and Apache."""
import os
import socket
import time

import pytest

from conftest import FINAL, start_stack, wait_for
from stack import TYPES

SERVERS = [s for s in os.environ.get("TASKWIRE_SERVERS", "lighttpd,nginx,apache").split(",")
           if s in ("lighttpd", "lighttpd-dropin", "nginx", "apache", "apache-cgi")] or ["lighttpd"]
FLAKY = {"label": "Fails once", "command": os.path.join(TYPES, "flaky"), "timeout_ms": 10000,
         "param.dir": "string min=1 max=4096"}


@pytest.fixture(scope="module", params=SERVERS)
def stack(request):
    return start_stack(request, server=request.param, types={"flaky": FLAKY})


def marks(stack):
    """A directory the worker may write, for the flaky type's marks."""
    path = os.path.join(stack.tmp, "marks")
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o777)
    return path


def wait_admin(stack, task_id, statuses, timeout=20):
    def check():
        status, _, task = stack.admin("GET", f"tasks/{task_id}")
        return task if status == 200 and task["status"] in statuses else None
    return wait_for(check, timeout, f"task {task_id} to be {'/'.join(statuses)}")


def test_key_required(stack):
    for key in ("", "0" * 64, stack.admin_key[:-1], stack.admin_key + "0"):
        for method, path in (("GET", "tasks"), ("GET", "status"), ("GET", "stats"),
                             ("POST", "tasks/" + "0" * 32 + "/cancel")):
            status, head, body = stack.admin(method, path, key=key)
            assert status == 401, (key, path, body)
            assert body["error"]["code"] == "unauthorized"
            assert head["WWW-Authenticate"] == 'Bearer realm="taskwire-admin"'
    # A client's session token is not the admin key.
    token = stack.session()["token"]
    assert stack.admin("GET", "tasks", key=token)[0] == 401


def test_unusable_key_file_refuses_every_key(stack):
    """A key file that does not hold 64 hex digits is an operator's mistake: every admin
    request answers 500 (and the handler logs it), none is let in, even with the file's text;
    no file at all is the API off (404); a good key written to the file holds at once, without a
    restart."""
    good = stack.admin_key
    try:
        for text in ("short", "", "g" * 64, good[:32]):
            with open(stack.admin_key_path, "w") as f:
                f.write(text + "\n")
            for key in (text or "x", good):
                status, _, body = stack.admin("GET", "status", key=key)
                assert status == 500 and body["error"]["code"] == "internal", (text, body)
        # No file at all: off, as without key_file (an install whose operator made no key).
        os.unlink(stack.admin_key_path)
        status, _, body = stack.admin("GET", "status", key=good)
        assert status == 404 and body["error"]["code"] == "not_found"
        new = "ab" * 32
        with open(stack.admin_key_path, "w") as f:
            f.write(new + "\n")
        assert stack.admin("GET", "status", key=new)[0] == 200
        assert stack.admin("GET", "status", key=good)[0] == 401
    finally:
        with open(stack.admin_key_path, "w") as f:
            f.write(good + "\n")
    assert stack.admin("GET", "status")[0] == 200
    assert "event=admin_key_unusable" in stack.logs() and "event=admin_off" in stack.logs()


def test_off_without_key_file(request):
    off = start_stack(request, admin=False)
    for method, path in (("GET", "tasks"), ("GET", "status"), ("DELETE", "tasks/" + "0" * 32),
                         ("PUT", "stats")):
        status, _, body = off.admin(method, path, key="0" * 64)
        assert status == 404, (path, body)
        assert body["error"]["code"] == "not_found"
    assert off.health()["status"] == "ok"  # the public API is on


def test_list_search_show_across_clients(stack):
    alice, bob = stack.session(), stack.session()
    mine = [stack.submit(alice["token"], "steps", {"count": 1}) for _ in range(2)]
    theirs = stack.submit(bob["token"], "steps", {"count": 1})
    for task, who in [(t, alice) for t in mine] + [(theirs, bob)]:
        stack.wait_final(who["token"], task["id"])
    status, _, page = stack.admin("GET", "tasks?limit=500")
    assert status == 200
    ids = [t["id"] for t in page["tasks"]]
    assert {t["id"] for t in mine} | {theirs["id"]} <= set(ids)
    assert ids.index(theirs["id"]) < ids.index(mine[0]["id"])  # newest first
    # By client id (exact and prefix through q, or client_id=), and by task id.
    for query in (f"client_id={alice['client_id']}", f"q={alice['client_id']}",
                  f"q={alice['client_id'][:10]}"):
        found = [t["id"] for t in stack.admin("GET", "tasks?" + query)[2]["tasks"]]
        assert set(found) == {t["id"] for t in mine}, query
    found = stack.admin("GET", f"tasks?q={theirs['id']}")[2]["tasks"]
    assert [t["id"] for t in found] == [theirs["id"]]
    assert found[0]["client_id"] == bob["client_id"]
    # Paging: one at a time, next is the cursor, no task twice.
    first = stack.admin("GET", f"tasks?client_id={alice['client_id']}&limit=1")[2]
    assert first["next"] is not None
    second = stack.admin("GET", f"tasks?client_id={alice['client_id']}&limit=1"
                                f"&before={first['next']}")[2]
    assert [first["tasks"][0]["id"], second["tasks"][0]["id"]] == [mine[1]["id"], mine[0]["id"]]
    # Show: the public fields and the operator's.
    status, _, task = stack.admin("GET", f"tasks/{theirs['id']}")
    assert status == 200 and task["status"] == "succeeded"
    assert task["client_id"] == bob["client_id"] and task["attempts"] == 1
    assert task["worker_id"] == stack.worker_id() and task["errors"] == []
    assert stack.admin("GET", "tasks/" + "0" * 32)[0] == 404
    assert stack.admin("GET", "tasks/nothex")[0] == 404
    for bad in ("status=done", "limit=0", "limit=501", "q=XYZ", "before=x", "type=nope"):
        status, _, body = stack.admin("GET", "tasks?" + bad)
        assert status == 400 and body["error"]["code"] == "bad_request", bad


def test_cancel_running(stack):
    client = stack.session()
    task = stack.submit(client["token"], "stall", {})
    stack.wait_status(client["token"], task["id"], ("running",))
    status, _, body = stack.admin("POST", f"tasks/{task['id']}/cancel")
    assert status == 202 and body["id"] == task["id"]
    assert wait_admin(stack, task["id"], FINAL)["status"] == "cancelled"
    # Its owner sees the same; a finished task cannot be cancelled again.
    assert stack.task(client["token"], task["id"])["status"] == "cancelled"
    status, _, body = stack.admin("POST", f"tasks/{task['id']}/cancel")
    assert status == 409 and body["error"]["code"] == "conflict"


def test_retry_failed_then_delete(stack):
    client = stack.session()
    task = stack.submit(client["token"], "flaky", {"dir": marks(stack)})
    failed = stack.wait_final(client["token"], task["id"])
    assert failed["status"] == "failed", failed
    status, _, body = stack.admin("POST", f"tasks/{task['id']}/retry")
    assert status == 202 and body["status"] == "queued"
    done = wait_admin(stack, task["id"], FINAL)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert "first attempt fails on purpose" in done["errors"][0]["error"]
    assert stack.admin("POST", f"tasks/{task['id']}/retry")[0] == 409  # succeeded
    # Delete: 409 while it runs, 204 once finished, then it is gone for its owner too.
    running = stack.submit(client["token"], "stall", {})
    stack.wait_status(client["token"], running["id"], ("running",))
    assert stack.admin("DELETE", f"tasks/{running['id']}")[0] == 409
    stack.admin("POST", f"tasks/{running['id']}/cancel")
    wait_admin(stack, running["id"], FINAL)
    status, _, body = stack.admin("DELETE", f"tasks/{task['id']}")
    assert status == 204 and body is None
    assert stack.admin("GET", f"tasks/{task['id']}")[0] == 404
    assert stack.request("GET", f"/api/tasks/{task['id']}", token=client["token"])[0] == 404


def test_status_shows_worker_and_relay(stack):
    client = stack.session()
    task = stack.submit(client["token"], "stall", {})
    stack.wait_status(client["token"], task["id"], ("running",))
    status, _, body = stack.admin("GET", "status")
    assert status == 200
    (worker,) = [w for w in body["workers"] if w["id"] == stack.worker_id()]
    assert worker["heartbeat_age_ms"] < 1500 and worker["concurrency"] == 2
    assert worker["host"] and worker["pid"] > 0
    running = [r for r in worker["running"] if r["id"] == task["id"]]
    assert running and running[0]["client_id"] == client["client_id"]
    assert running[0]["type"] == "stall" and running[0]["attempts"] == 1
    assert {"type": "stall", "queued": 0, "running": 1} in body["queues"]
    (relay,) = body["relays"]
    assert relay["url"] == stack.relay_http and relay["ok"] is True, relay
    assert isinstance(relay["connections"], int) and "messages_out" in relay
    stack.admin("POST", f"tasks/{task['id']}/cancel")
    wait_admin(stack, task["id"], FINAL)


def test_status_unreachable_relays(request):
    """Relays that do not answer are reported as such, all asked at once (500 ms each at most),
    in the order of [admin] relays, beside one that answers."""
    from stack import free_port
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    # A port that accepts and never answers: the timeout, not a refused connection.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    request.addfinalizer(silent.close)
    mute = f"http://127.0.0.1:{silent.getsockname()[1]}"
    other = start_stack(request, admin_relays=[dead[0], mute, "{relay}", dead[1], mute + "/"])
    started = time.monotonic()
    status, _, body = other.admin("GET", "status")
    elapsed = time.monotonic() - started
    assert status == 200
    assert [r["url"] for r in body["relays"]] == [dead[0], mute, other.relay_http, dead[1],
                                                 mute + "/"]
    assert [r["ok"] for r in body["relays"]] == [False, False, True, False, False]
    assert all(r["error"] for r in body["relays"] if not r["ok"])
    assert "connections" in body["relays"][2]
    assert elapsed < 1.5, f"the relays were not asked at once: {elapsed:.2f} s"


def test_stats_count_what_ran(request):
    fresh = start_stack(request, types={"flaky": FLAKY})
    client = fresh.session()
    ok = [fresh.submit(client["token"], "steps", {"count": 1}) for _ in range(3)]
    bad = fresh.submit(client["token"], "steps", {"count": 1, "fail": True})
    for task in ok + [bad]:
        fresh.wait_final(client["token"], task["id"])
    status, _, stats = fresh.admin("GET", "stats?minutes=5")
    assert status == 200
    rows = stats["minutes"]
    assert len(rows) == 5 and rows == sorted(rows, key=lambda r: r["t"])
    assert sum(r["submitted"] for r in rows) == 4
    assert sum(r["started"] for r in rows) == 4
    assert sum(r["succeeded"] for r in rows) == 3
    assert sum(r["failed"] for r in rows) == 1
    assert rows[-1]["queued"] == 0
    (steps,) = [d for d in stats["durations"] if d["type"] == "steps"]
    assert steps["count"] == 4 and 0 <= steps["p50_ms"] <= steps["p99_ms"] < 20000
    assert len(fresh.admin("GET", "stats")[2]["minutes"]) == 60
    for bad_query in ("minutes=0", "minutes=1441", "minutes=x"):
        assert fresh.admin("GET", "stats?" + bad_query)[0] == 400


@pytest.mark.parametrize("server", [s for s in os.environ.get(
    "TASKWIRE_SERVERS", "lighttpd,lighttpd-dropin,apache,apache-cgi,nginx").split(",")])
def test_dashboard_served_without_data(request, server):
    """Every web server serves /admin/ with the page, not framed nor cached, and the page
    itself holds no data: what it shows comes from the admin API, which wants the key."""
    web = start_stack(request, server=server, worker=False)
    for path in ("/admin/", "/admin/admin.js", "/admin/admin.css"):
        import urllib.request
        with urllib.request.urlopen(web.http + path, timeout=10) as response:
            assert response.status == 200, path
            head, text = response.headers, response.read().decode()
        if path == "/admin/":
            assert "Content-Security-Policy" in text and 'id="login"' in text
            assert head["X-Frame-Options"] == "DENY", (server, dict(head))
            assert "frame-ancestors 'none'" in head["Content-Security-Policy"]
            assert head["Cache-Control"] == "no-store"
    status, _, body = web.admin("GET", "status", key="")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, _, body = web.admin("GET", "status")
    assert status == 200 and body["workers"] == []
