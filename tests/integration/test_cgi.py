"""taskwire.fcgi as a plain CGI program (fcgi2 falls back to CGI outside FastCGI): one process
per request, as on CGI-only hosting.  Also the handler's leak check: a CGI process exits
normally, so LeakSanitizer looks at everything a request allocated."""
import json
import os
import subprocess

from conftest import wait_for


def cgi(stack, method, path, body=b"", token=None, content_type="application/json",
        extra_env=None):
    """Run one request through a fresh handler process; (status, headers, JSON, stderr).
    extra_env: more variables, as a web server sets them (REMOTE_USER)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TASKWIRE_CONFIG": stack.config_path,
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "REQUEST_URI": path,
        "SCRIPT_NAME": "/api",
        "PATH_INFO": path.split("?")[0][len("/api"):],
        "QUERY_STRING": path.split("?", 1)[1] if "?" in path else "",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": content_type,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "ASAN_OPTIONS": "detect_leaks=1",
    }
    if token:
        env["HTTP_AUTHORIZATION"] = "Bearer " + token
    env.update(extra_env or {})
    done = subprocess.run([os.path.join(stack.build, "taskwire.fcgi")], input=body, env=env,
                          capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    head, _, text = done.stdout.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
    status = int(headers.get("Status", "200").split()[0])
    stderr = done.stderr.decode(errors="replace")
    assert "LeakSanitizer" not in stderr and "runtime error" not in stderr, stderr
    return status, headers, json.loads(text), stderr


def test_cgi_request_per_process_reaches_the_pool(stack):
    """On CGI-only hosting each request is a fresh process that exits right after answering;
    submissions still reach the worker and nothing is lost."""
    status, _, session, _ = cgi(stack, "POST", "/api/session")
    assert status == 201
    token = session["token"]
    ids = []
    for n in range(3):
        status, headers, task, _ = cgi(stack, "POST", "/api/tasks", json.dumps(
            {"type": "sleep", "name": f"cgi {n}", "params": {"duration_ms": 100, "steps": 2}}).encode(),
            token)
        assert status == 202 and headers["Location"] == f"/api/tasks/{task['id']}"
        ids.append(task["id"])
    for task_id in ids:
        final = wait_for(lambda: (lambda t: t if t["status"] == "succeeded" else None)(
            cgi(stack, "GET", f"/api/tasks/{task_id}", token=token)[2]), 20, "the CGI-submitted task")
        assert final["progress"] == 100
    status, _, page, _ = cgi(stack, "GET", "/api/tasks?limit=2", token=token)
    assert status == 200 and [t["id"] for t in page["tasks"]] == ids[::-1][:2]


def test_cgi_errors_are_clean(stack):
    """Bad requests in CGI mode get the same JSON errors, with no leak or crash."""
    token = cgi(stack, "POST", "/api/session")[2]["token"]
    assert cgi(stack, "POST", "/api/tasks", b"{bad", token)[0:1] == (400,)
    assert cgi(stack, "POST", "/api/tasks", b'{"type":"sleep","params":{"steps":0}}', token)[0] == 422
    assert cgi(stack, "POST", "/api/tasks", b"x", token, "text/plain")[0] == 415
    assert cgi(stack, "GET", "/api/tasks")[0] == 401
    assert cgi(stack, "GET", "/api/nowhere", token=token)[0] == 404
    status, _, health, _ = cgi(stack, "GET", "/api/health")
    assert status == 200 and health["pool"] == "ok"
