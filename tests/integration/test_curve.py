"""ZeroMQ CURVE between hosts ([zmq] curve = true, docs/DEPLOY.md "ZeroMQ CURVE"): the stack's
programs speak CURVE with keys made by `taskwire curve keygen`, the worker lets in exactly the
public keys of its curve_clients_file and logs every peer it refuses."""
import json
import os
import re
import subprocess

import pytest
import zmq
import zmq.asyncio

from conftest import FINAL, connect, deliverable, next_text, run, start_stack, wait_for
from stack import ROOT, free_port

REFUSE_WAIT = 10  # seconds for a refusal to show in the worker's log


def build_dir():
    """Where the programs are, as the stack finds them."""
    return os.path.abspath(os.environ.get("TASKWIRE_BUILD", os.path.join(ROOT, "build")))


def keygen(stack, name):
    """A key pair made by `taskwire curve keygen` in the stack's var/: (secret, public) Z85."""
    path = os.path.join(stack.var, name)
    result = subprocess.run([os.path.join(stack.build, "taskwire"), "curve", "keygen", path],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    with open(path) as f:
        secret = f.read().strip()
    with open(path + ".pub") as f:
        public = f.read().strip()
    assert result.stdout.strip() == public
    return secret, public


def prepare(stack):
    """Keys for the pool, for the programs that connect (handler and relay share a host here)
    and for an operator; the worker's clients file lists the last two."""
    stack.keys = {name: keygen(stack, name) for name in ("pool.key", "client.key", "operator.key")}
    with open(os.path.join(stack.var, "clients"), "w") as f:
        f.write("# the handler and the relay\n" + stack.keys["client.key"][1] + "\n\n"
                "   # the operator's tap\n" + stack.keys["operator.key"][1] + "\n")


@pytest.fixture(scope="module")
def curved(request):
    """A stack with curve on; relative paths resolve against the config's directory."""
    return start_stack(request, prepare=prepare,
                       zmq_settings={"curve": "true", "curve_secret_file": "var/client.key",
                                     "curve_server_public_file": "var/pool.key.pub"},
                       worker_zmq_settings={"curve_secret_file": "var/pool.key",
                                            "curve_clients_file": "var/clients"})


def curve_socket(stack, kind, keys, server_public=None, reconnect_ms=None):
    """A pyzmq socket with CURVE client keys (secret, public); server_public: the pool's unless
    given.  reconnect_ms: how long it waits before trying again after a refusal."""
    sock = zmq.asyncio.Context.instance().socket(kind)
    sock.curve_secretkey = keys[0].encode()
    sock.curve_publickey = keys[1].encode()
    sock.curve_serverkey = (server_public or stack.keys["pool.key"][1]).encode()
    if reconnect_ms:
        sock.setsockopt(zmq.RECONNECT_IVL, reconnect_ms)
    return sock


def operator_tap(stack, client_id=""):
    sub = curve_socket(stack, zmq.SUB, stack.keys["operator.key"])
    sub.connect(stack.events_endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, client_id.encode())
    return sub


def operator_pub(stack):
    pub = curve_socket(stack, zmq.PUB, stack.keys["operator.key"])
    pub.connect(stack.publish_endpoint)
    return pub


def worker_log(stack):
    with open(os.path.join(stack.tmp, "worker.log"), errors="replace") as f:
        return f.read()


def refused(stack, sub, marker):
    """Connect sub (a SUB, not yet connected) to the events endpoint, wait until the worker's
    log holds one more line with marker, then publish probes until a listed tap has one: True
    when sub got nothing meanwhile.  sub is closed."""
    before = worker_log(stack).count(marker)
    client_id = stack.session()["client_id"]

    async def go():
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(stack.events_endpoint)
        pub = operator_pub(stack)
        tap = operator_tap(stack, client_id)
        try:
            wait_for(lambda: worker_log(stack).count(marker) > before, REFUSE_WAIT,
                     f"{marker} in the worker's log")
            await deliverable(stack, client_id, tap, pub=pub)
            return not await sub.poll(200)
        finally:
            for sock in (sub, pub, tap):
                sock.close(0)
    return run(go())


def test_task_runs_end_to_end_over_curve(curved):
    """With curve on, a task submitted through the web server runs and every event reaches
    the page's WebSocket (handler PUSH, relay SUB: CURVE clients), and a listed operator key
    taps the same events with stock pyzmq."""
    stack = curved
    session = stack.session()
    cid = session["client_id"]

    async def go():
        ws, _ = await connect(stack, session["token"])
        sub = operator_tap(stack, cid)
        pub = operator_pub(stack)
        await deliverable(stack, cid, ws, sub, pub=pub)
        pub.close(0)
        task = stack.submit(session["token"], "sleep", {"duration_ms": 200, "steps": 2})
        browser = []
        while not browser or json.loads(browser[-1]).get("event") not in FINAL:
            text = await next_text(ws, 10)
            if json.loads(text).get("task", {}).get("id") == task["id"]:
                browser.append(text)
        wire = []
        while not wire or json.loads(wire[-1]).get("event") not in FINAL:
            assert await sub.poll(10000), "the operator's tap got no event"
            frames = await sub.recv_multipart()
            message = json.loads(frames[-1])
            if message.get("type") == "task" and message["task"]["id"] == task["id"]:
                wire.append(frames[-1].decode())
        sub.close(0)
        await ws.close()
        return browser, wire
    browser, wire = run(go())
    assert json.loads(browser[-1])["event"] == "succeeded", browser
    assert wire == browser
    log = worker_log(stack)
    # The handler's nudges and the relay's subscriptions passed the handshake and the ZAP check.
    assert "event=zmq_refused" not in log and "event=zmq_handshake_failed" not in log, log
    assert "event=zmq_plaintext" not in log


def test_unlisted_key_is_refused_and_logged(curved):
    """A SUB whose key pair is not in curve_clients_file gets nothing, and the worker's log
    names the refused public key."""
    stack = curved
    public, secret = zmq.curve_keypair()
    stranger = curve_socket(stack, zmq.SUB, (secret.decode(), public.decode()),
                            reconnect_ms=60000)
    assert refused(stack, stranger, f"key={public.decode()}"), "an unlisted key received events"
    line = next(line for line in worker_log(stack).splitlines() if public.decode() in line)
    assert re.search(r" warn event=zmq_refused peer=127\.0\.0\.1 key=\S+ status=400 ", line), line


def test_plaintext_sub_is_refused_and_logged(curved):
    """A SUB without CURVE gets nothing, and the failed handshake is logged."""
    stack = curved
    plain = zmq.asyncio.Context.instance().socket(zmq.SUB)
    plain.setsockopt(zmq.RECONNECT_IVL, 60000)
    marker = "event=zmq_handshake_failed socket=events"
    assert refused(stack, plain, marker), "a plaintext SUB received events"
    line = [line for line in worker_log(stack).splitlines() if marker in line][-1]
    assert re.search(r'reason="(the peer does not speak CURVE|the peer broke off)', line), line


def test_wrong_server_key_is_refused_and_logged(curved):
    """A listed key pair that trusts another server key (a pool of somebody else's) gets
    nothing, and the handshake that does not decrypt is logged."""
    stack = curved
    other_server, _ = zmq.curve_keypair()
    lost = curve_socket(stack, zmq.SUB, stack.keys["operator.key"],
                        server_public=other_server.decode(), reconnect_ms=60000)
    assert refused(stack, lost, "the peer's handshake does not decrypt"), \
        "a SUB with a wrong server key received events"


def test_taskwire_tap_speaks_curve(curved):
    """`taskwire tap` reads the config's keys: with the handler's (listed) keys it sees the
    events of a task."""
    stack = curved
    session = stack.session()
    cid = session["client_id"]
    tap = subprocess.Popen([os.path.join(stack.build, "taskwire"), "-c", stack.config_path, "tap",
                            "--client", cid, "--event", "succeeded", "--json", "--count", "1",
                            "--timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        # The tap says "connected" on stderr once its handshake succeeded.
        line = tap.stderr.readline()
        assert "connected to" in line, line
        probe_pub = operator_pub(stack)

        async def settle():
            # Its subscription reaches the worker: a tap of our own with the same prefix shows
            # when probes flow; then the task's events are published to both.
            own = operator_tap(stack, cid)
            await deliverable(stack, cid, own, pub=probe_pub)
            own.close(0)
            probe_pub.close(0)
        run(settle())
        task = stack.submit(session["token"], "sleep", {"duration_ms": 100, "steps": 1})
        out, err = tap.communicate(timeout=30)
    finally:
        if tap.poll() is None:
            tap.kill()
            tap.wait()
    assert tap.returncode == 0, err
    event = json.loads(out.splitlines()[0])
    assert event["task"]["id"] == task["id"] and event["event"] == "succeeded", out


def test_check_reads_the_key_files(curved):
    """`-n` of every program reads the key files its role needs: OK for the stack's configs."""
    stack = curved
    for program, config in (("taskwire-worker", stack.worker_config_paths["worker"]),
                            ("taskwire-relay", stack.config_path),
                            ("taskwire.fcgi", stack.config_path)):
        result = subprocess.run([os.path.join(stack.build, program), "-n", "-c", config],
                                capture_output=True, text=True, timeout=20)
        assert result.returncode == 0 and "configuration OK" in result.stdout, result.stderr
    # The worker's role needs curve_clients_file, which the shared config does not name.
    result = subprocess.run([os.path.join(stack.build, "taskwire-worker"), "-n", "-c",
                             stack.config_path], capture_output=True, text=True, timeout=20)
    assert result.returncode == 1 and "curve_clients_file" in result.stderr, result.stderr


@pytest.mark.parametrize("problem", ["world-readable", "malformed", "missing"])
def test_bad_key_files_stop_the_start(tmp_path, problem):
    """A worker whose secret key others can read, whose clients file is malformed, or whose
    key file is missing does not start (and never falls back to plaintext): the error names
    the file."""
    build = build_dir()
    taskwire = os.path.join(build, "taskwire")
    secret = tmp_path / "pool.key"
    subprocess.run([taskwire, "curve", "keygen", str(secret)], check=True, capture_output=True)
    clients = tmp_path / "clients"
    clients.write_text("# nobody yet\n")
    named = secret
    if problem == "world-readable":
        os.chmod(secret, 0o644)
    elif problem == "malformed":
        clients.write_text("# one key, cut short\n" + secret.with_suffix(".key.pub").read_text()[:30])
        named = clients
    else:
        named = tmp_path / "absent.key"
    config = tmp_path / "taskwire.conf"
    config.write_text(f"[store]\ndatabase = {tmp_path}/taskwire.db\n[auth]\n"
                      f"secret_file = {tmp_path}/secret\n"
                      "[zmq]\ntasks = tcp://127.0.0.1:1\npublish = tcp://127.0.0.1:2\n"
                      "events = tcp://127.0.0.1:3\ncurve = true\n"
                      f"curve_secret_file = {named if problem == 'missing' else secret}\n"
                      f"curve_clients_file = {clients}\n")
    (tmp_path / "secret").write_bytes(os.urandom(32))
    os.chmod(tmp_path / "secret", 0o600)
    worker = os.path.join(build, "taskwire-worker")
    result = subprocess.run([worker, "-c", str(config)], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 1, result.stderr
    assert "event=start_failed" in result.stderr and str(named) in result.stderr, result.stderr
    # `-n` reads the key files as the worker would, and says the same.
    check = subprocess.run([worker, "-n", "-c", str(config)], capture_output=True, text=True,
                           timeout=20)
    assert check.returncode == 1 and str(named) in check.stderr, check.stderr
    assert "configuration OK" not in check.stdout


@pytest.mark.parametrize("events, warned", [("tcp://192.0.2.1:5573", True),
                                            ("tcp://127.0.0.1:5573", False)])
def test_plaintext_to_another_host_is_warned(tmp_path, events, warned):
    """With curve off, a program whose endpoint is not loopback says once at start that the
    wire is plaintext; on loopback it says nothing."""
    build = build_dir()
    (tmp_path / "secret").write_bytes(os.urandom(32))
    os.chmod(tmp_path / "secret", 0o600)
    config = tmp_path / "taskwire.conf"
    config.write_text(f"[auth]\nsecret_file = {tmp_path}/secret\n[zmq]\nevents = {events}\n"
                      f"[relay]\nport = {free_port()}\n")
    log = open(tmp_path / "relay.log", "wb")
    relay = subprocess.Popen([os.path.join(build, "taskwire-relay"), "-c", str(config)],
                             stdout=log, stderr=log)
    log.close()

    def text():
        return (tmp_path / "relay.log").read_text(errors="replace")
    try:
        wait_for(lambda: "event=started" in text() or relay.poll() is not None, 20,
                 "the relay's start")
    finally:
        relay.terminate()
        relay.wait(20)
    assert "event=started" in text(), text()
    lines = [line for line in text().splitlines() if "event=zmq_plaintext" in line]
    assert len(lines) == (1 if warned else 0), text()
    if warned:
        assert " warn " in lines[0] and f"endpoint={events}" in lines[0], lines
