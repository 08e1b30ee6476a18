"""The handler as taskwire-fcgi.socket runs it: a listening unix socket on its standard input
(StandardInput=socket), FastCGI requests through that socket (cgi-fcgi, as a web server would
send them), and SIGTERM ending it cleanly, after answering a request under way.

    /usr/bin/python3 tests/package/fcgi_socket.py HANDLER CONFIG

CONFIG is an installed taskwire.conf; its state goes to a temporary directory instead."""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time


def request(sock_path, method, uri, body=b""):
    """One FastCGI request through cgi-fcgi; returns (status, JSON body)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "SCRIPT_NAME": uri,
        "CONTENT_LENGTH": str(len(body)),
    }
    if body:
        env["CONTENT_TYPE"] = "application/json"
    out = subprocess.run(["cgi-fcgi", "-bind", "-connect", sock_path], input=body, env=env,
                         capture_output=True, timeout=10, check=True).stdout
    head, _, payload = out.partition(b"\r\n\r\n")
    match = re.search(rb"^Status: (\d+)", head, re.M)
    return int(match.group(1)) if match else 200, json.loads(payload)


def fds(pid):
    """pid's open descriptors as (number, target) pairs: a connection accepted on a number the
    previous connection just released still differs by its socket inode."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.add((fd, os.readlink(f"/proc/{pid}/fd/{fd}")))
        except OSError:
            continue
    return out


def reading(pid, fd):
    """True when one of pid's threads is blocked in read() on descriptor fd."""
    read_numbers = {"0", "63"}  # read() on x86_64 and on arm64
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) > 1 and fields[0] in read_numbers and int(fields[1], 16) == fd:
            return True
    return False


def wait_for(check, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def stop_mid_request(sock_path, proc, token):
    """SIGTERM while a thread waits for the rest of a submission's body: that request is still
    answered (202, the task stored) before the handler exits.  Returns failures."""
    body = json.dumps({"type": "sleep", "params": {"duration_ms": 100}}).encode()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "POST", "REQUEST_URI": "/api/tasks",
        "SCRIPT_NAME": "/api/tasks", "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json", "HTTP_AUTHORIZATION": "Bearer " + token,
    }
    before = fds(proc.pid)
    client = subprocess.Popen(["cgi-fcgi", "-bind", "-connect", sock_path], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        client.stdin.write(body[:10])
        client.stdin.flush()
        def new_sockets():
            return [int(fd) for fd, target in fds(proc.pid) - before
                    if target.startswith("socket:")]
        wait_for(new_sockets, "the handler to accept the connection")
        wait_for(lambda: any(reading(proc.pid, fd) for fd in new_sockets()),
                 "a thread reading the body")
        proc.terminate()
        client.stdin.write(body[10:])
        client.stdin.close()
        out = client.stdout.read()
        client.wait(timeout=10)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    head, _, payload = out.partition(b"\r\n\r\n")
    if not re.search(rb"^Status: 202", head, re.M):
        return [f"request under way at SIGTERM: {head[:200]!r} {payload[:200]!r}"]
    return []


def main():
    handler, config = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="taskwire-fcgi-") as tmp:
        with open(config) as f:
            text = f.read()
        conf = os.path.join(tmp, "taskwire.conf")
        with open(conf, "w") as f:
            f.write(text.replace("/var/lib/taskwire/", tmp + "/"))
        sock_path = os.path.join(tmp, "fcgi.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sock_path)
        listener.listen(16)
        proc = subprocess.Popen([handler, "-c", conf], stdin=listener.fileno())
        listener.close()
        failures = []
        try:
            status, body = request(sock_path, "GET", "/api/task-types")
            names = [t["name"] for t in body.get("types", [])]
            if status != 200 or "checksum" not in names:
                failures.append(f"GET /api/task-types: {status} {body}")
            # A second connection to the same process: it keeps accepting.
            status, body = request(sock_path, "POST", "/api/session")
            if status != 201 or not body.get("token"):
                failures.append(f"POST /api/session: {status} {body}")
            secret = os.path.join(tmp, "secret")
            if not os.path.exists(secret):
                failures.append("the handler created no secret in the state directory")
            elif os.stat(secret).st_mode & 0o777 != 0o600:
                failures.append(f"the secret's mode is {os.stat(secret).st_mode & 0o777:o}, not 600")
            failures += stop_mid_request(sock_path, proc, body.get("token", ""))
        finally:
            proc.terminate()
            try:
                code = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = "none (killed after 5 s)"
        if code != 0:
            failures.append(f"exit status after SIGTERM: {code}")
    for failure in failures:
        print("fcgi_socket:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
