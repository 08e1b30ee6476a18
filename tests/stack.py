"""Start a whole taskwire stack on free loopback ports: worker, relay and a web server.

Used by the integration and browser tests, and as a command:

    /usr/bin/python3 tests/stack.py [--server lighttpd]

prints one JSON line ({"http": ..., "relay": ..., "events": ..., "publish": ..., "tmp": ...}) once
everything answers, then runs until SIGTERM or SIGINT and stops everything it started.
Binaries come from $TASKWIRE_BUILD (default build/).  Each process's stderr goes to a file in
the stack's temporary directory, printed by `Stack.logs()` when a test fails.
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = os.path.join(ROOT, "tests", "integration", "types")
START_TIMEOUT = 20.0  # seconds for the stack to answer


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    """Poll predicate until it returns a true value, or fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def group_alive(pgid):
    """1 while a process of group pgid other than a zombie remains."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


LIGHTTPD_CONF = """
server.bind = "127.0.0.1"
server.port = {http_port}
server.document-root = "{root}/www"
server.errorlog = "{tmp}/lighttpd.log"
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html; charset=utf-8", ".js" => "text/javascript; charset=utf-8",
                   ".css" => "text/css; charset=utf-8", ".json" => "application/json",
                   ".svg" => "image/svg+xml")
var.taskwire_fcgi = "{build}/taskwire.fcgi"
var.taskwire_config = "{tmp}/taskwire.conf"
var.taskwire_socket = "{tmp}/fcgi.sock"
var.taskwire_relay_host = "127.0.0.1"
var.taskwire_relay_port = {relay_port}
var.taskwire_procs = 1
include "{root}/conf/lighttpd/taskwire.conf"
"""


class Lighttpd:
    """lighttpd with conf/lighttpd/taskwire.conf included as a drop-in."""

    name = "lighttpd"

    def __init__(self, stack):
        self.stack = stack

    def command(self):
        path = os.path.join(self.stack.tmp, "lighttpd.conf")
        with open(path, "w") as f:
            f.write(LIGHTTPD_CONF.format(root=ROOT, **self.stack.settings()))
        return ["lighttpd", "-D", "-f", path]


SERVERS = {"lighttpd": Lighttpd}


class Stack:
    """A stack on free ports with its own config, database and secret in a temp dir."""

    def __init__(self, server="lighttpd", build=None, worker=True, extra_config="", ping=(5, 5)):
        self.build = os.path.abspath(build or os.environ.get("TASKWIRE_BUILD", os.path.join(ROOT, "build")))
        self.tmp = tempfile.mkdtemp(prefix="taskwire-test-")
        os.chmod(self.tmp, 0o700)
        self.http_port = free_port()
        self.relay_port = free_port()
        self.zmq_ports = [free_port() for _ in range(3)]
        self.server = SERVERS[server](self)
        self.processes = {}
        self.leftovers = []  # processes whose children outlived them
        self.secret_path = os.path.join(self.tmp, "secret")
        with open(os.open(self.secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(secrets.token_bytes(32))
        self.ping = ping
        self.config_path = os.path.join(self.tmp, "taskwire.conf")
        with open(self.config_path, "w") as f:
            f.write(self.config_text(extra_config))
        self.with_worker = worker

    # -- configuration -------------------------------------------------------------------

    def settings(self):
        return {"tmp": self.tmp, "build": self.build, "http_port": self.http_port,
                "relay_port": self.relay_port}

    @property
    def tasks_endpoint(self):
        return f"tcp://127.0.0.1:{self.zmq_ports[0]}"

    @property
    def publish_endpoint(self):
        return f"tcp://127.0.0.1:{self.zmq_ports[1]}"

    @property
    def events_endpoint(self):
        return f"tcp://127.0.0.1:{self.zmq_ports[2]}"

    @property
    def http(self):
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def relay_http(self):
        return f"http://127.0.0.1:{self.relay_port}"

    def config_text(self, extra):
        return f"""
[log]
level = info
[store]
database = {self.tmp}/taskwire.db
[auth]
secret_file = {self.secret_path}
token_ttl = 3600
[zmq]
tasks = {self.tasks_endpoint}
publish = {self.publish_endpoint}
events = {self.events_endpoint}
[worker]
concurrency = 2
progress_interval_ms = 50
scan_interval_ms = 200
heartbeat_ms = 200
stale_after_ms = 1500
cancel_grace_ms = 500
[relay]
listen = 127.0.0.1
port = {self.relay_port}
ping_interval = {self.ping[0]}
ping_timeout = {self.ping[1]}
ring = 64
[type checksum]
label = Checksum a directory (SHA-256)
command = {ROOT}/conf/types/checksum
timeout_ms = 60000
param.path = string min=1 max=4096 default=/usr/share/doc
param.max_files = integer min=1 max=100000 default=200
[type steps]
label = Count in steps
command = {TYPES}/steps
timeout_ms = 20000
param.count = integer min=1 max=100 default=3
param.fail = boolean default=false
[type stall]
label = Never ends by itself
command = {TYPES}/stall
timeout_ms = 1500
param.trap = boolean default=false
{extra}
"""

    # -- processes -----------------------------------------------------------------------

    def _spawn(self, name, command):
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        env = dict(os.environ, TASKWIRE_CONFIG=self.config_path,
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0"))
        process = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=self.tmp,
                                   start_new_session=True)
        log.close()
        self.processes[name] = process
        return process

    def start_worker(self):
        self._spawn("worker", [os.path.join(self.build, "taskwire-worker"), "-c", self.config_path])
        wait_for(lambda: self.health().get("pool") == "ok", START_TIMEOUT, "the worker's heartbeat")

    def start_relay(self):
        self._spawn("relay", [os.path.join(self.build, "taskwire-relay"), "-c", self.config_path])
        wait_for(lambda: http_status(self.relay_http + "/health") == 200, START_TIMEOUT, "the relay")

    def stop(self, name, sig=signal.SIGTERM, timeout=10):
        """Stop one process (SIGTERM, or kill -9 with sig=SIGKILL) and wait for it."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return None
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            status = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            status = process.wait(timeout)
        # Children left in the group (a web server's FastCGI processes) must have gone with it.
        try:
            wait_for(lambda: not group_alive(process.pid), 5, f"{name}'s children to exit")
        except TimeoutError:
            self.leftovers.append(name)
            os.killpg(process.pid, signal.SIGKILL)
        return status

    def start(self):
        try:
            self._spawn(self.server.name, self.server.command())
            wait_for(lambda: http_status(self.http + "/api/task-types") == 200, START_TIMEOUT,
                     "the web server and the FastCGI handler")
            self.start_relay()
            if self.with_worker:
                self.start_worker()
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        for name in list(self.processes):
            self.stop(name)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def logs(self):
        """Every process's log, for a failing test's report."""
        out = []
        for name in sorted(os.listdir(self.tmp)):
            if name.endswith(".log"):
                with open(os.path.join(self.tmp, name), errors="replace") as f:
                    out.append(f"--- {name}\n{f.read()[-6000:]}")
        return "\n".join(out)

    def sanitizer_reports(self):
        """Lines where ASan or UBSan reported a problem in any process."""
        bad = []
        for name in sorted(os.listdir(self.tmp)):
            if name.endswith(".log"):
                with open(os.path.join(self.tmp, name), errors="replace") as f:
                    for line in f:
                        if "ERROR: AddressSanitizer" in line or "runtime error:" in line or \
                                "ERROR: LeakSanitizer" in line:
                            bad.append(f"{name}: {line.strip()}")
        return bad

    # -- small HTTP client -----------------------------------------------------------------

    def request(self, method, path, body=None, token=None, headers=None, raw=None):
        """(status, headers, JSON body or None) of a request through the web server."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        request = urllib.request.Request(self.http + path, data=data if method != "GET" else None,
                                         method=method)
        if method != "GET":
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", "Bearer " + token)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, head, text = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, head, text = error.code, error.headers, error.read()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return status, head, parsed

    def health(self):
        return self.request("GET", "/api/health")[2] or {}

    def session(self):
        status, _, body = self.request("POST", "/api/session")
        assert status == 201, body
        return body

    def submit(self, token, type_, params=None, name=None):
        body = {"type": type_, "params": params or {}}
        if name:
            body["name"] = name
        status, _, task = self.request("POST", "/api/tasks", body, token)
        assert status == 202, task
        return task

    def task(self, token, task_id):
        return self.request("GET", f"/api/tasks/{task_id}", token=token)[2]

    def wait_final(self, token, task_id, timeout=20):
        return wait_for(lambda: (lambda t: t if t and t["status"] in
                                 ("succeeded", "failed", "cancelled") else None)(self.task(token, task_id)),
                        timeout, f"task {task_id} to finish")


def main():
    """Run a stack until SIGTERM/SIGINT.  Commands on stdin, one per line, answer one JSON
    line each: "stop relay", "start relay", "stop worker", "start worker"."""
    server = sys.argv[sys.argv.index("--server") + 1] if "--server" in sys.argv else "lighttpd"

    def finish(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    with Stack(server=server) as stack:
        print(json.dumps({"http": stack.http + "/", "relay": f"ws://127.0.0.1:{stack.relay_port}/ws",
                          "relay_http": stack.relay_http, "events": stack.events_endpoint,
                          "publish": stack.publish_endpoint, "tmp": stack.tmp}), flush=True)
        for line in sys.stdin:
            command = line.split()
            if len(command) == 2 and command[0] == "stop":
                stack.stop(command[1])
            elif command == ["start", "relay"]:
                stack.start_relay()
            elif command == ["start", "worker"]:
                stack.start_worker()
            print(json.dumps({"done": line.strip()}), flush=True)
        while True:
            signal.pause()


if __name__ == "__main__":
    main()
