"""Metrics: the relay's metrics port and the worker pool's, checked by Debian's promtool and
scraped by a real Prometheus; the alerting rules of docs/OPERATIONS.md; the service manager's
notifications (READY=1, WATCHDOG=1, STOPPING=1) on a NOTIFY_SOCKET the test binds."""
import asyncio
import configparser
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

from conftest import connect, run, start_stack, wait_for
from stack import ROOT, free_port, http_status, ini

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
TASKS = 3        # sleep tasks the module runs
HELD_SOCKETS = 2  # WebSockets held open while Prometheus looks


@pytest.fixture(scope="module")
def stack(request):
    ports = {"worker": free_port(), "relay": free_port()}
    s = start_stack(request, server="lighttpd",
                    worker_settings={"metrics_listen": f"127.0.0.1:{ports['worker']}"},
                    relay_settings={"metrics_listen": f"127.0.0.1:{ports['relay']}"})
    s.metrics = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    return s


def get(url, timeout=5):
    """(status, content type, body) of GET url."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def promtool_check(text):
    """promtool check metrics on text: (exit status, its output)."""
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          timeout=30)
    return done.returncode, (done.stdout + done.stderr).decode()


def samples(text, name):
    """{labels text: value} of the samples of metric name in an exposition."""
    found = {}
    for line in text.decode().splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if m:
            found[m.group(1) or ""] = float(m.group(2))
    return found


def run_tasks(stack, count):
    """Submit count short sleep tasks and wait until each has succeeded."""
    session = stack.session()
    ids = [stack.submit(session["token"], "sleep", {"duration_ms": 50, "steps": 1})["id"]
           for _ in range(count)]
    for task_id in ids:
        assert stack.wait_final(session["token"], task_id)["status"] == "succeeded"
    return ids


def test_every_endpoint_passes_promtool(stack):
    """An operator's Prometheus can read both metrics endpoints: promtool finds nothing wrong,
    and each names the metrics the docs list."""
    run_tasks(stack, TASKS)
    for name, url in stack.metrics.items():
        status, content_type, body = get(url + "/metrics")
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4"), content_type
        rc, output = promtool_check(body)
        assert rc == 0, f"{name}: {output}\n{body.decode()}"
        for metric in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                       "process_open_fds", "process_max_fds", "process_start_time_seconds"):
            assert samples(body, metric), f"{name} lacks {metric}"
    _, _, worker = get(stack.metrics["worker"] + "/metrics")
    assert samples(worker, "taskwire_tasks_total")['{type="sleep",status="succeeded"}'] == TASKS
    assert samples(worker, "taskwire_task_duration_seconds_count")['{type="sleep"}'] == TASKS
    assert samples(worker, "taskwire_task_queue_wait_seconds_count")[""] == TASKS
    assert samples(worker, "taskwire_tasks_queued")['{type="sleep"}'] == 0
    slots = samples(worker, "taskwire_worker_slots")
    assert slots['{state="busy"}'] == 0 and slots['{state="idle"}'] >= 1, slots
    _, _, relay = get(stack.metrics["relay"] + "/metrics")
    for metric in ("taskwire_relay_connections", "taskwire_relay_messages_total",
                   "taskwire_relay_dropped_total", "taskwire_relay_closed_total"):
        assert samples(relay, metric), f"relay lacks {metric}"


def test_relay_metrics_port_serves_status_and_health(stack):
    """Operator tools read one relay's counters on its metrics port: /status as the main port
    gives it, /health, and a JSON 404 for anything else."""
    status, _, body = get(stack.metrics["relay"] + "/status")
    on_main = json.loads(get(stack.relay_http + "/status")[2])
    assert status == 200 and set(json.loads(body)) == set(on_main), body
    assert get(stack.metrics["relay"] + "/health")[:1] == (200,)
    assert json.loads(get(stack.metrics["relay"] + "/health")[2]) == {"status": "ok"}
    status, _, body = get(stack.metrics["relay"] + "/nope")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    assert get(stack.metrics["worker"] + "/nope")[0] == 404


class Prometheus:
    """A real Prometheus on a free port, scraping targets every second, its data in a temp
    dir; stopped (and its dir removed) by close()."""

    def __init__(self, targets):
        self.dir = tempfile.mkdtemp(prefix="taskwire-prometheus-")
        self.port = free_port()
        config = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
        for job, url in targets.items():
            host = urllib.parse.urlparse(url).netloc
            config += f"  - job_name: {job}\n    static_configs:\n      - targets: ['{host}']\n"
        path = os.path.join(self.dir, "prometheus.yml")
        with open(path, "w") as f:
            f.write(config)
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={path}", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def query(self, promql):
        """The value of an instant query's single sample, or None (no sample, not up yet)."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                result = json.loads(response.read())["data"]["result"]
        except (OSError, ValueError, KeyError):
            return None
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def output(self):
        with open(os.path.join(self.dir, "log"), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_prometheus_scrapes_what_the_test_did(stack):
    """A real Prometheus scraping both endpoints answers what the operator would ask: the
    tasks that succeeded are the ones the test ran, and the relay's connections are the
    WebSockets the test holds open."""
    status, _, body = get(stack.metrics["worker"] + "/metrics")
    ran = samples(body, "taskwire_tasks_total").get('{type="sleep",status="succeeded"}', 0)
    run_tasks(stack, TASKS)
    expected_tasks = ran + TASKS
    prometheus = Prometheus({"taskwire-worker": stack.metrics["worker"],
                             "taskwire-relay": stack.metrics["relay"]})
    try:
        async def go():
            session = stack.session()
            sockets = [(await connect(stack, session["token"], direct=True))[0]
                       for _ in range(HELD_SOCKETS)]
            try:
                deadline = time.monotonic() + 40
                answers = {}
                while time.monotonic() < deadline:
                    answers = {
                        "up": prometheus.query("sum(up)"),
                        "tasks": prometheus.query('sum(taskwire_tasks_total{status="succeeded"})'),
                        "connections": prometheus.query("sum(taskwire_relay_connections)"),
                        "queued": prometheus.query("max(sum by (type) (taskwire_tasks_queued))"),
                    }
                    if answers == {"up": 2, "tasks": expected_tasks,
                                   "connections": HELD_SOCKETS, "queued": 0}:
                        return answers
                    assert prometheus.process.poll() is None, prometheus.output()
                    await asyncio.sleep(0.25)  # between polls, within the deadline
                raise AssertionError(f"Prometheus answered {answers}\n{prometheus.output()}")
            finally:
                for ws in sockets:
                    await ws.close()
        run(go(), 60)
    finally:
        prometheus.close()


def rules_from_docs():
    """The alerting rules docs/OPERATIONS.md shows: its ```yaml block after "## Alerting"."""
    with open(os.path.join(ROOT, "docs", "OPERATIONS.md")) as f:
        text = f.read()
    section = text.split("## Alerting", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_documented_alerting_rules_are_valid(tmp_path):
    """The alerting rules an operator copies from docs/OPERATIONS.md load in Prometheus."""
    path = tmp_path / "taskwire-rules.yml"
    path.write_text(rules_from_docs())
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                          timeout=30)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert b"SUCCESS" in done.stdout


def test_metrics_option_overrides_the_config(stack):
    """Relays sharing one config and one WebSocket port each get a metrics port of their own
    with -m."""
    port = free_port()
    binary = os.path.join(stack.build, "taskwire-relay")
    process = subprocess.Popen([binary, "-c", stack.config_path, "-m", f"127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/health") == 200 or
                 process.poll() is not None, 10, "the second relay's metrics port")
        assert process.poll() is None, process.stderr.read().decode()
        assert http_status(stack.metrics["relay"] + "/health") == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    bad = subprocess.run([binary, "-c", stack.config_path, "-m", "nowhere", "-n"],
                         capture_output=True, timeout=10)
    assert bad.returncode == 2 and b"host:port" in bad.stderr


def own_worker_config(stack, path):
    """The stack's config with endpoints of its own, so a second worker can start beside it."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(stack.config_path)
    sections = {name: dict(parser[name]) for name in parser.sections()}
    sections["zmq"] = {key: f"tcp://127.0.0.1:{free_port()}"
                       for key in ("tasks", "publish", "events")}
    sections["worker"]["metrics_listen"] = ""
    with open(path, "w") as f:
        f.write(ini(sections))


@pytest.mark.parametrize("program", ["taskwire-relay", "taskwire-worker"])
def test_programs_tell_the_service_manager(stack, program, tmp_path):
    """Under systemd (Type=notify, WatchdogSec=) the service is marked started once it serves,
    kept alive by pings from its loop, and seen stopping: READY=1, then WATCHDOG=1 more than
    once, then STOPPING=1, on the socket NOTIFY_SOCKET names."""
    path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(0.5)
    config = stack.config_path
    if program == "taskwire-worker":
        config = str(tmp_path / "worker.conf")
        own_worker_config(stack, config)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1500000")
    process = subprocess.Popen([os.path.join(stack.build, program), "-c", config, "-m", ""],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    messages = []

    def receive_until(predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate():
            try:
                messages.append(listener.recv(4096).decode())
            except socket.timeout:
                assert process.poll() is None or predicate(), process.stderr.read().decode()
        return predicate()

    try:
        assert receive_until(lambda: any("READY=1" in m for m in messages), 10), messages
        assert receive_until(lambda: sum("WATCHDOG=1" in m for m in messages) >= 2, 6), messages
        process.send_signal(signal.SIGTERM)
        assert receive_until(lambda: any("STOPPING=1" in m for m in messages), 15), messages
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        listener.close()
