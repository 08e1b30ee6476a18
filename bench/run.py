#!/usr/bin/python3
"""run.py: taskwire's relay benchmark, next to Pushpin, nginx + nchan and Socket.IO.

Starts each server under test on free 127.0.0.1 ports, pinned to one core (taskset -c 0), drives
it from the other core with build/bench/loadgen (WebSocket clients and the publisher in one
process) or wrk, and stops it again, also on failure.  Scenarios:

  fanout     1,000 clients, each its own client id, publisher flat out: delivered msgs/s
  rate       the same clients at half of taskwire's fan-out rate: latency
  steady     the same clients at a moderate 8,000 msgs/s: latency (p50, p90, p99)
  broadcast  1,000 connections of one client id, a steady rate: latency
  channel    one channel of 10,000 subscribers (each its own client id on taskwire): flat out,
             and at 10 msgs/s (100,000 deliveries/s)
  idle       server RSS with 0 and 10,000 idle connections: bytes per connection
  connect    seconds for 1,000 and 10,000 clients to connect and get their first frame
  scale      most idle connections taskwire's relays hold (several relays on one port)
  million    a million idle connections (`make bench-million`; not among the defaults): relays
             and load generators of 16,700 each, one source address per load generator, then
             the latency of messages to a sample of 1,000 further connections
  submit     POST /api/tasks through lighttpd with wrk, next to a hello-world FastCGI ceiling

Each measurement runs --runs times (3 by default); the table shows medians.  The result goes to
bench/results/DATE.md (raw JSON lines to DATE.raw) and, with --doc, into docs/PERFORMANCE.md.
--smoke runs a 5-second fan-out against taskwire only and fails unless every message arrived.

usage: /usr/bin/python3 bench/run.py [--smoke] [--runs N] [--peers a,b] [--scenarios a,b] [--doc]
"""
import argparse
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_BUILD = os.path.join(ROOT, "build", "bench")
LOADGEN = os.path.join(BENCH_BUILD, "loadgen")
SUBMIT_PROCS = (1, 2)  # handler processes: the shipped default, and two
SUBMIT_CONNS = (16, 64)  # wrk's connections: each responder is judged at its best of these
SUBMIT_SECONDS = 5  # one wrk run; a round is one run of each responder at each count
HELLO = os.path.join(BENCH_BUILD, "hello.fcgi")
SERVER_CPU = "0"  # the server under test
CLIENT_CPU = "1"  # load generator, publisher, wrk, Pushpin's origin
TICK = os.sysconf("SC_CLK_TCK")
PAYLOAD = 300  # bytes of each published message, about a task event
FANOUT_CONNS = 1000
SMOKE_RATE = 20000  # the smoke run's steady rate (msgs/s): the timestamped path, well in reach
SMOKE_P99_BOUND_US = 1000000  # a p99 above this at that rate is a hang, not a slow machine
LATENCY_RUNS = 5  # rounds of the latency scenarios at least (latency_runs)
RATE_SUSTAINED = 0.95  # a server delivering less than this share of the steady rate fell behind
FLAT_WINDOW = 2000  # flat out: deliveries outstanding at most
BROADCAST_RATE = 10  # messages/s to the one client id (10,000 deliveries/s)
CHANNEL_CONNS = 10000  # subscribers of the one channel of the channel scenario
CHANNEL_RATE = 10      # messages/s to it at its steady rate (100,000 deliveries/s)
CHANNEL = "bench:room"  # taskwire's channel ([namespace bench] subscribe = signed_in)
IDLE_CONNS = 10000
STEADY_RATE = 8000  # msgs/s of the steady scenario: a moderate rate every peer sustains
CONNECT_CONNS = (1000, 10000)  # clients of the connect scenario, each its own client id
SCALE_TARGET = 100000
SCALE_RELAYS = 6
SCALE_LOADGENS = 6
MILLION = 1000000          # idle connections of `make bench-million`
MILLION_PER_PROCESS = 16700  # connections per relay and per load generator (20,000 fds each)
MILLION_SAMPLE = 1000      # connections of the latency sample, while the million are held
MILLION_SAMPLE_RATE = 1000  # msgs/s to the sample (one a second each)
MILLION_IDLE_WINDOW = 10.0  # seconds over which the held million's CPU is read
MILLION_PING_INTERVAL = 45  # the million's second run: [relay] ping_interval of such a host,
                            # under the 60 s idle timeouts of Apache's and lighttpd's defaults
DEBS = ["pushpin", "libnginx-mod-nchan", "nginx", "lighttpd", "wrk", "libfcgi-dev",
        "libzmq3-dev", "libssl-dev"]


# ---- processes ----

class Procs:
    """Every process this harness starts, so that each is stopped, also on failure."""

    live = []

    @classmethod
    def start(cls, cmd, log, cpu=None, cwd=None, env=None, stdout=None):
        if cpu is not None:
            cmd = ["taskset", "-c", cpu] + cmd
        logf = open(log, "ab")
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=stdout or logf, stderr=logf,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        cls.live.append(p)
        return p

    @classmethod
    def stop(cls, p, sig=signal.SIGTERM, wait=10):
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        if p in cls.live:
            cls.live.remove(p)

    @classmethod
    def stop_all(cls):
        for p in list(cls.live):
            cls.stop(p, wait=5)


def on_signal(sig, frame):
    raise SystemExit(128 + sig)


# The tests' free_port: a port below the kernel's ephemeral range, which the load generator's
# thousands of connections draw their source ports from (a port taken from that range could
# be in use as one before the server under test binds it).
sys.path.insert(0, os.path.join(ROOT, "tests"))
from stack import free_port  # noqa: E402


def wait_port(port, proc=None, timeout=20.0, what="server"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def tree(pids):
    """The pids and all their descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def http_json(url, data=None, headers=None, timeout=5):
    req = urllib.request.Request(url, data=data, headers=headers or {},
                                 method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def command_output(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def deb_version(pkg):
    return command_output(["dpkg-query", "-W", "-f=${Version}", pkg]) or "?"


# ---- servers under test ----

class Peer:
    name = "?"
    label = "?"

    def __init__(self, tmp):
        self.tmp = tempfile.mkdtemp(prefix=self.name + "-", dir=tmp)
        self.procs = []

    def log(self, what):
        return os.path.join(self.tmp, what + ".log")

    def stop(self):
        for p in reversed(self.procs):
            Procs.stop(p)
        self.procs = []

    def pids(self):
        """The server's processes (for RSS and CPU)."""
        return tree([p.pid for p in self.procs])

    def ws_args(self):
        raise NotImplementedError

    def pub_args(self):
        raise NotImplementedError

    def channel_args(self, conns):
        """(client ids, loadgen arguments) of conns subscribers of one channel: by default
        every connection on one id, which is the peer's channel (nchan) or room (Socket.IO)."""
        return 1, []

    def pub_env(self):
        return {}  # the publisher's environment (publisher.h)


class Taskwire(Peer):
    """Relays and a worker pool.  The publisher stands in for the pool's publishing side: it
    binds the PUB that the relays' SUB connect to ([zmq] events), as a worker pool does, so
    each message takes one hop into the server, as with the peers' inputs.  TaskwireProxy
    publishes through the pool's XSUB/XPUB proxy instead ([zmq] publish: the operators' inject
    path), one hop more."""

    name = "taskwire"
    label = "taskwire"
    direct = True

    def __init__(self, tmp, build, relays=1):
        super().__init__(tmp)
        self.build = build
        self.relays = relays
        self.port = free_port()
        self.publish = free_port()
        self.events = free_port()
        self.direct_events = free_port()
        self.tasks = free_port()
        self.secret = os.path.join(self.tmp, "secret")
        self.config = os.path.join(self.tmp, "taskwire.conf")
        self.relay_config = os.path.join(self.tmp, "relay.conf")
        with open(self.secret, "wb") as f:
            f.write(secrets.token_bytes(32))
        os.chmod(self.secret, 0o600)
        self.write_config(self.config, self.events)
        self.write_config(self.relay_config, self.direct_events if self.direct else self.events,
                          self.relay_zmq())
        self.worker = None
        self.relay_procs = []

    def relay_zmq(self):
        return ""  # more [zmq] lines of the relays' config

    def write_config(self, path, events, zmq_extra=""):
        with open(path, "w") as f:
            f.write(f"""[log]
level = warn
[store]
database = {self.tmp}/taskwire.db
[auth]
secret_file = {self.secret}
[zmq]
tasks = tcp://127.0.0.1:{self.tasks}
publish = tcp://127.0.0.1:{self.publish}
events = tcp://127.0.0.1:{events}
{zmq_extra}[relay]
listen = 127.0.0.1
port = {self.port}
max_connections = 100000
; The scenarios measure the paths, not the limits: a thousand tabs of one client id
; (broadcast), connections from 127.0.0.2-8 (scale), one client submitting flat out (its
; bucket is still read and written with every submission, as with the default).
max_connections_per_client = 100000
connect_rate = 0
[namespace bench]
subscribe = signed_in
[http]
submit_rate = 1000000
submit_burst = 1000000
""")

    def start(self):
        self.worker = Procs.start([os.path.join(self.build, "taskwire-worker"), "-c", self.config],
                                  self.log("worker"), cpu=SERVER_CPU)
        self.procs.append(self.worker)
        wait_port(self.publish, self.worker, what="taskwire-worker")
        for i in range(self.relays):
            p = Procs.start([os.path.join(self.build, "taskwire-relay"), "-c", self.relay_config],
                            self.log(f"relay{i}"), cpu=SERVER_CPU)
            self.procs.append(p)
            self.relay_procs.append(p)
        wait_port(self.port, self.relay_procs[0], what="taskwire-relay")
        time.sleep(0.3)  # every relay listening and subscribed upstream
        for p in self.relay_procs:
            if p.poll() is not None:
                raise RuntimeError(f"taskwire-relay exited with {p.returncode}; see {self.tmp}")

    def relay_pids(self):
        return tree([p.pid for p in self.relay_procs])

    def relay_settings(self, settings):
        """[relay] settings of the relays' config (--relay-setting KEY=VALUE): a key the config
        has already gets the new value, any other is added to the section."""
        with open(self.relay_config) as f:
            head, section = f.read().split("[relay]\n", 1)
        for kv in settings:
            key, value = (part.strip() for part in kv.split("=", 1))
            line = f"{key} = {value}\n"
            section, found = re.subn(rf"^{re.escape(key)}\s*=.*\n", line, section, count=1,
                                     flags=re.M)
            if not found:
                section = line + section
        with open(self.relay_config, "w") as f:
            f.write(head + "[relay]\n" + section)

    def relay_setting(self, key):
        """A [relay] setting of the relays' config as written, None when it is the default."""
        with open(self.relay_config) as f:
            section = f.read().split("[relay]\n", 1)[1].split("\n[", 1)[0]
        found = re.findall(rf"^{re.escape(key)}\s*=\s*(\S+)", section, re.M)
        return found[0] if found else None

    def channel_args(self, conns):
        # Many users in one room: each connection its own client id, subscribed to the channel.
        return conns, ["--channel", CHANNEL]

    def ws_args(self):
        # As a page of the site connects: the session's cookie at the handshake ([auth] cookie),
        # ready at the relay's greeting.  TaskwireAuthMessage: the token in the first message.
        return ["--port", str(self.port), "--path", "/ws?auth=cookie", "--cookie",
                "taskwire_token", "--secret", self.secret, "--ready", "first-frame"]

    def pub_args(self):
        if self.direct:
            return ["--pub", f"zmqbind:tcp://127.0.0.1:{self.direct_events}"]
        return ["--pub", f"zmq:tcp://127.0.0.1:{self.publish}"]


class TaskwireCurve(Taskwire):
    """taskwire with CURVE on the relays' ZeroMQ input: the publisher binds as the CURVE server
    (as a worker pool does with [zmq] curve = true) and each relay connects as a client, so every
    message is encrypted by the publisher and decrypted by each relay."""

    name = "taskwire-curve"
    label = "taskwire (CURVE)"

    def relay_zmq(self):
        cli = os.path.join(self.build, "taskwire")
        for key in ("pool.key", "relay.key"):
            subprocess.run([cli, "curve", "keygen", os.path.join(self.tmp, key)], check=True,
                           capture_output=True)
        return (f"curve = true\ncurve_secret_file = {self.tmp}/relay.key\n"
                f"curve_server_public_file = {self.tmp}/pool.key.pub\n")

    def pub_env(self):
        with open(os.path.join(self.tmp, "pool.key")) as f:
            secret = [line.strip() for line in f if line.strip() and
                      not line.strip().startswith("#")][0]
        return {"BENCH_CURVE_SECRET": secret}


class TaskwireAuthMessage(Taskwire):
    """taskwire with the token in the connection's first message (a page whose relay is on
    another site, or whose backend mints its tokens), a round trip more than the cookie."""

    name = "taskwire-authmsg"
    label = "taskwire (auth message)"

    def ws_args(self):
        return ["--port", str(self.port), "--path", "/ws", "--auth", "--secret", self.secret,
                "--ready", "first-frame"]


class TaskwireProxy(Taskwire):
    name = "taskwire-proxy"
    label = "taskwire via proxy"
    direct = False


class Pushpin(Peer):
    name = "pushpin"
    label = "Pushpin"

    def start(self):
        self.port, self.push, self.sub, self.http, self.command, self.origin_port = (
            free_port() for _ in range(6))
        run, logs = os.path.join(self.tmp, "run"), os.path.join(self.tmp, "log")
        os.makedirs(run)
        os.makedirs(logs)
        with open(os.path.join(self.tmp, "routes"), "w") as f:
            f.write(f"* 127.0.0.1:{self.origin_port},over_http\n")
        # message_rate=0: no rate limit (the default 2500/s holds a steady stream back).
        with open(os.path.join(self.tmp, "pushpin.conf"), "w") as f:
            f.write(f"""[global]
include={{libdir}}/internal.conf
rundir={run}
ipc_prefix=twb-
port_offset=0
stats_connection_ttl=120

[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:{self.port}
logdir={logs}
log_level=1
client_buffer_size=8192
client_maxconn=19000
condure_bin=condure
zurl_bin=zurl

[proxy]
zurl_out_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in
zurl_out_stream_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in-stream
zurl_in_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-out
routesfile=routes
debug=false
auto_cross_origin=false
accept_x_forwarded_protocol=false
set_x_forwarded_protocol=proto-only
x_forwarded_for=
x_forwarded_for_trusted=
orig_headers_need_mark=
accept_pushpin_route=false
log_from=false
log_user_agent=false
sig_iss=pushpin
sig_key={secrets.token_hex(16)}
upstream_key=
sockjs_url=http://127.0.0.1/sockjs.js
updates_check=off
organization_name=

[handler]
push_in_spec=tcp://127.0.0.1:{self.push}
push_in_sub_specs=tcp://127.0.0.1:{self.sub}
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port={self.http}
push_in_http_max_headers_size=10000
push_in_http_max_body_size=1000000
stats_spec=ipc://{{rundir}}/{{ipc_prefix}}stats
command_spec=tcp://127.0.0.1:{self.command}
message_rate=0
message_hwm=100000
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
""")
        self.origin = Procs.start(["/usr/bin/python3", os.path.join(ROOT, "bench/peers/pushpin/origin.py"),
                                   str(self.origin_port)], self.log("origin"), cpu=CLIENT_CPU)
        wait_port(self.origin_port, self.origin, what="Pushpin origin")
        p = Procs.start(["pushpin", "--config", os.path.join(self.tmp, "pushpin.conf")],
                        self.log("pushpin"), cpu=SERVER_CPU, cwd=self.tmp)
        self.procs.append(p)
        wait_port(self.port, p, what="pushpin")
        wait_port(self.http, p, what="pushpin-handler")
        time.sleep(0.5)

    def stop(self):
        super().stop()
        Procs.stop(getattr(self, "origin", None))

    def ws_args(self):
        return ["--port", str(self.port), "--path", "/ws/{id}", "--ready", "upgrade"]

    def pub_args(self):
        return ["--pub", f"pushpin:tcp://127.0.0.1:{self.push}"]


class Nchan(Peer):
    name = "nchan"
    label = "nginx+nchan"

    def start(self):
        self.port = free_port()
        conf = os.path.join(self.tmp, "nginx.conf")
        # One worker; channels buffer a few messages briefly; new subscribers start at the newest
        # message (each run uses fresh channel ids anyway); keep-alive publisher connections.
        with open(conf, "w") as f:
            f.write(f"""load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
error_log {self.tmp}/error.log warn;
pid {self.tmp}/nginx.pid;
daemon off;
events {{ worker_connections 19500; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path {self.tmp}/body;
  proxy_temp_path {self.tmp}/proxy;
  fastcgi_temp_path {self.tmp}/fastcgi;
  uwsgi_temp_path {self.tmp}/uwsgi;
  scgi_temp_path {self.tmp}/scgi;
  nchan_shared_memory_size 512M;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    location ~ ^/sub/([0-9a-f]+)$ {{
      nchan_subscriber websocket;
      nchan_channel_id $1;
      nchan_subscriber_first_message newest;
      nchan_message_buffer_length 16;
      nchan_message_timeout 60s;
    }}
    location ~ ^/pub/([0-9a-f]+)$ {{
      nchan_publisher http;
      nchan_channel_id $1;
      nchan_message_buffer_length 16;
      nchan_message_timeout 60s;
    }}
  }}
}}
""")
        p = Procs.start(["nginx", "-c", conf, "-p", self.tmp], self.log("nginx"), cpu=SERVER_CPU)
        self.procs.append(p)
        wait_port(self.port, p, what="nginx")

    def ws_args(self):
        return ["--port", str(self.port), "--path", "/sub/{id}", "--ready", "upgrade"]

    def pub_args(self):
        return ["--pub", f"http:127.0.0.1:{self.port}/pub/{{id}}", "--pub-conns", "64"]


class SocketIO(Peer):
    name = "socketio"
    label = "Socket.IO"
    DIR = os.path.join(ROOT, "bench", "peers", "socketio")

    def start(self):
        self.port, self.input = free_port(), free_port()
        p = Procs.start(["node", os.path.join(self.DIR, "relay.js"), "--port", str(self.port),
                         "--pub-port", str(self.input)], self.log("node"), cpu=SERVER_CPU,
                        cwd=self.DIR)
        self.procs.append(p)
        wait_port(self.port, p, what="node")
        wait_port(self.input, p, what="node")

    def ws_args(self):
        return ["--port", str(self.port), "--proto", "sio",
                "--path", "/socket.io/?EIO=4&transport=websocket&cid={id}"]

    def pub_args(self):
        return ["--pub", f"line:127.0.0.1:{self.input}"]


PEERS = {"taskwire": Taskwire, "taskwire-proxy": TaskwireProxy,
         "taskwire-authmsg": TaskwireAuthMessage,
         "taskwire-curve": TaskwireCurve, "pushpin": Pushpin, "nchan": Nchan, "socketio": SocketIO}


def make_peer(name, args, tmp, **kw):
    if name.startswith("taskwire"):
        peer = PEERS[name](tmp, args.build, **kw)
        if args.relay_setting:
            peer.relay_settings(args.relay_setting)
        return peer
    return PEERS[name](tmp)


# ---- the load generator ----

class Run:
    """One loadgen process; samples the server's and its own CPU over the measured window."""

    def __init__(self, peer, extra, log, cpu=CLIENT_CPU):
        self.peer = peer
        cmd = [LOADGEN] + peer.ws_args() + extra
        self.proc = Procs.start(cmd, log, cpu=cpu, stdout=subprocess.PIPE,
                                env=dict(os.environ, **peer.pub_env()))
        self.lines = []
        self.ready = threading.Event()
        self.log = log
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.decode(errors="replace").strip()
            if line.startswith("{"):
                self.lines.append(json.loads(line))
                if self.lines[-1].get("event") == "ready":
                    self.ready.set()
        self.ready.set()

    def wait(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            Procs.stop(self.proc)
            raise RuntimeError(f"loadgen did not finish within {timeout:.0f} s; see {self.log}")
        self.reader.join(5)
        Procs.stop(self.proc)
        for r in reversed(self.lines):
            if r.get("event") in ("run", "idle"):
                return r
        raise RuntimeError(f"loadgen printed no result; see {self.log}")


def measure(peer, extra, tmp, label, timeout=120):
    """A publishing run; loadgen samples the server's CPU time itself at the window's edges."""
    log = os.path.join(tmp, f"loadgen-{label}.log")
    pids = ",".join(str(p) for p in peer.pids()[:64])
    run = Run(peer, extra + ["--watch", pids], log)
    return run.wait(timeout)


# ---- scenarios ----

def med(rows, key, sub=None):
    vals = [(r[key][sub] if sub else r[key]) for r in rows if key in r]
    return statistics.median(vals) if vals else float("nan")


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="taskwire-bench-")
        self.raw = []
        self.results = {}
        self.notes = []

    def record(self, scenario, peer, row):
        row = dict(row, scenario=scenario, peer=peer)
        if "lat_us" in row and row.get("expected") and not row.get("received"):
            # No measured message arrived before the run ended: its latency is longer than
            # the run, not the 0 of an empty histogram.
            row["lat_us"] = {k: float("inf") for k in row["lat_us"]}
            row["parsed_us"] = {k: float("inf") for k in row["parsed_us"]}
        self.raw.append(row)
        self.results.setdefault(scenario, {}).setdefault(peer, []).append(row)
        print(f"  {scenario:9} {peer:9} " + summary(row), flush=True)

    def with_peer(self, name, fn, settings=(), **kw):
        peer = make_peer(name, self.args, self.tmp, **kw)
        if settings:
            peer.relay_settings(settings)
        try:
            peer.start()
            return fn(peer)
        finally:
            peer.stop()

    def pub_run(self, peer, label, conns, ids, rate=None, window=None, warmup=2.0, duration=10.0,
                more=()):
        extra = ["--conns", str(conns), "--ids", str(ids), "--size", str(PAYLOAD),
                 "--warmup", str(warmup), "--duration", str(duration), "--drain", "5"]
        extra += list(more)
        extra += peer.pub_args()
        extra += ["--rate", str(rate)] if rate else ["--window", str(window or FLAT_WINDOW)]
        return measure(peer, extra, self.tmp, f"{peer.name}-{label}")

    def rounds(self, scenario, names, runs, one):
        """runs rounds of one(peer, i), each peer once per round, started for its run and
        stopped after it: a slow spell of the machine falls on every peer's runs alike, not on
        one peer's, so the ratio of medians is steadier than the medians themselves."""
        for i in range(runs):
            for name in names:
                self.record(scenario, name, self.with_peer(name, lambda peer: one(peer, i)))

    def fanout(self, names, runs, duration=10.0, conns=FANOUT_CONNS, warmup=2.0):
        print(f"fan-out: {conns} clients, one client id each, flat out for {duration:.0f} s",
              flush=True)
        self.rounds("fanout", names, runs, lambda peer, i: self.pub_run(
            peer, f"fanout{i}", conns, conns, warmup=warmup, duration=duration))

    def rate(self, names, runs):
        tw = self.results.get("fanout", {}).get("taskwire")
        if not tw and not self.args.rate:
            print("rate: needs taskwire's fan-out result (or --rate); skipped")
            return
        rate = self.args.rate or round(med(tw, "delivered_per_s") / 2)
        self.rate_value = rate
        self.rate_source = ("set with --rate" if self.args.rate
                            else "half of taskwire's fan-out rate")
        print(f"steady rate: {FANOUT_CONNS} clients at {rate} msgs/s ({self.rate_source})",
              flush=True)
        self.rounds("rate", names, runs, lambda peer, i: self.pub_run(
            peer, f"rate{i}", FANOUT_CONNS, FANOUT_CONNS, rate=rate))

    def steady(self, names, runs):
        print(f"steady: {FANOUT_CONNS} clients at {STEADY_RATE} msgs/s", flush=True)
        self.rounds("steady", names, runs, lambda peer, i: self.pub_run(
            peer, f"steady{i}", FANOUT_CONNS, FANOUT_CONNS, rate=STEADY_RATE))

    def broadcast(self, names, runs):
        print(f"broadcast: {FANOUT_CONNS} connections of one client id, {BROADCAST_RATE} msgs/s "
              f"({BROADCAST_RATE * FANOUT_CONNS} deliveries/s)", flush=True)
        self.rounds("broadcast", names, runs, lambda peer, i: self.pub_run(
            peer, f"broadcast{i}", FANOUT_CONNS, 1, rate=BROADCAST_RATE))

    def channel(self, names, runs):
        print(f"channel: one channel of {CHANNEL_CONNS:,} subscribers, flat out and at "
              f"{CHANNEL_RATE} msgs/s ({CHANNEL_RATE * CHANNEL_CONNS:,} deliveries/s)", flush=True)

        def one(peer, i, rate):
            ids, more = peer.channel_args(CHANNEL_CONNS)
            return self.pub_run(peer, f"channel{'-rate' if rate else ''}{i}", CHANNEL_CONNS, ids,
                                rate=rate, more=more)
        self.rounds("channel", names, runs, lambda peer, i: one(peer, i, None))
        self.rounds("channelrate", names, runs, lambda peer, i: one(peer, i, CHANNEL_RATE))

    def idle_once(self, peer, conns, label):
        time.sleep(1.0)
        base = rss_kb(peer.pids())
        run = Run(peer, ["--conns", str(conns), "--concurrency", "256",
                         "--connect-timeout", "120"], os.path.join(self.tmp, f"loadgen-{label}.log"))
        run.ready.wait(180)
        time.sleep(3.0)  # let allocators settle
        full = rss_kb(peer.pids())
        ready = run.lines[0]["ready"] if run.lines else 0
        Procs.stop(run.proc, signal.SIGTERM)
        retries = run.lines[0]["retries"] if run.lines else 0
        connect_s = run.lines[0]["seconds"] if run.lines else float("nan")
        return {"conns": conns, "ready": ready, "retries": retries, "rss0_kb": base, "rss_kb": full,
                "connect_s": connect_s,
                "bytes_per_conn": (full - base) * 1024 / ready if ready else float("nan")}

    def connect(self, names, runs):
        # A relay restart makes every browser reconnect at once: how long until all are back.
        print(f"connect: {' and '.join(map(str, CONNECT_CONNS))} clients connecting at once",
              flush=True)
        if "taskwire" in names and "taskwire-authmsg" not in names:
            names = names + ["taskwire-authmsg"]  # the connect without the cookie, beside it
        # In rounds (each peer once per round), so a slow spell of the machine does not fall on
        # one peer's runs alone.
        for conns in CONNECT_CONNS:
            for i in range(runs):
                for name in names:
                    if name == "taskwire-proxy":
                        continue
                    self.record(f"connect{conns}", name, self.with_peer(
                        name, lambda peer: self.idle_once(peer, conns,
                                                          f"{name}-connect{conns}-{i}")))

    def idle(self, names, runs):
        print(f"idle: server RSS with 0 and {IDLE_CONNS} idle connections", flush=True)
        for name in names:
            if name == "taskwire-proxy":  # the same processes as taskwire when idle
                continue
            for i in range(runs):
                self.record("idle", name, self.with_peer(
                    name, lambda peer: self.idle_once(peer, IDLE_CONNS, f"{name}-idle{i}")))

    def scale(self, runs):
        per = -(-SCALE_TARGET // SCALE_LOADGENS)
        print(f"scale: {SCALE_RELAYS} taskwire relays on one port, {SCALE_LOADGENS} load "
              f"generators x {per} idle connections", flush=True)

        def go(peer):
            time.sleep(1.0)
            base = rss_kb(peer.relay_pids())
            worker = rss_kb(tree([peer.worker.pid]))
            gens = [Run(peer, ["--conns", str(per), "--concurrency", "128", "--connect-timeout",
                               "150", "--src", "127.0.0.1-127.0.0.8"],
                        os.path.join(self.tmp, f"loadgen-scale{k}.log"))
                    for k in range(SCALE_LOADGENS)]
            try:
                for g in gens:
                    g.ready.wait(300)
                time.sleep(3.0)
                full = rss_kb(peer.relay_pids())
                ready = sum(g.lines[0]["ready"] for g in gens if g.lines)
                failed = sum(g.lines[0]["failed"] for g in gens if g.lines)
                secs = max(g.lines[0]["seconds"] for g in gens if g.lines) if ready else 0
                alive = sum(p.poll() is None for p in peer.relay_procs)
            finally:
                for g in gens:
                    Procs.stop(g.proc)
            return {"conns": per * SCALE_LOADGENS, "ready": ready, "failed": failed,
                    "connect_s": secs, "relays_alive": alive, "rss0_kb": base, "rss_kb": full,
                    "worker_rss_kb": worker,
                    "bytes_per_conn": (full - base) * 1024 / ready if ready else float("nan")}

        for i in range(runs):
            self.record("scale", "taskwire", self.with_peer("taskwire", go, relays=SCALE_RELAYS))

    def million(self):
        relays = -(-MILLION // MILLION_PER_PROCESS)
        print(f"million: {relays} taskwire relays on one port, {relays} load generators x "
              f"{MILLION_PER_PROCESS} idle connections, each from its own address", flush=True)

        def kernel():
            with open("/proc/net/sockstat") as f:
                tcp = next(line.split() for line in f if line.startswith("TCP:"))
            with open("/proc/meminfo") as f:
                slab = next(int(line.split()[1]) for line in f if line.startswith("Slab:"))
            fields = dict(zip(tcp[1::2], map(int, tcp[2::2])))
            return fields.get("inuse", 0), fields.get("mem", 0) * os.sysconf("SC_PAGE_SIZE"), slab

        def go(peer):
            time.sleep(1.0)
            base = rss_kb(peer.relay_pids())
            k0 = kernel()
            # One load generator connects at a time, the next once it holds all of its own: a
            # storm of 60 at once (120 busy processes on 2 cores) timed handshakes out as fast
            # as others completed.  Each generator's connections still spread over every relay
            # (SO_REUSEPORT), and the whole climb is the connect figure.
            gens = []
            start = time.monotonic()
            try:
                for k in range(relays):
                    g = Run(peer, ["--conns", str(MILLION_PER_PROCESS), "--concurrency", "64",
                                   "--id-base", str(k * MILLION_PER_PROCESS),
                                   "--connect-timeout", "600",
                                   "--src", f"127.0.{1 + k // 250}.{1 + k % 250}"],
                            os.path.join(self.tmp, f"loadgen-million{k}.log"))
                    gens.append(g)
                    g.ready.wait(900)
                    if not g.lines:
                        break  # it died; what the others hold is still reported
                climb = time.monotonic() - start
                time.sleep(5.0)
                full = rss_kb(peer.relay_pids())
                k1 = kernel()
                # What the million costs while nothing is published: the relays' CPU (their
                # heartbeat's pings, one per connection every ping_interval, and the pongs).
                gen_pids = tree([g.proc.pid for g in gens])
                c0, g0, t0 = cpu_seconds(peer.relay_pids()), cpu_seconds(gen_pids), time.monotonic()
                time.sleep(MILLION_IDLE_WINDOW)
                window = time.monotonic() - t0
                idle_cpu = (cpu_seconds(peer.relay_pids()) - c0) / window
                gen_cpu = (cpu_seconds(gen_pids) - g0) / window
                ready = sum(g.lines[0]["ready"] for g in gens if g.lines)
                failed = sum(g.lines[0]["failed"] for g in gens if g.lines)
                secs = max(g.lines[0]["seconds"] for g in gens if g.lines) if ready else 0
                alive = sum(p.poll() is None for p in peer.relay_procs)
                sample = measure(peer, peer.pub_args() + [
                    "--conns", str(MILLION_SAMPLE), "--id-base", str(10 * MILLION),
                    "--rate", str(MILLION_SAMPLE_RATE), "--probe-timeout", "300",
                    "--warmup", "2", "--duration", "10", "--src", "127.0.250.1"],
                    self.tmp, "million-sample", timeout=300)
            finally:
                for g in gens:
                    Procs.stop(g.proc)
            return {"conns": MILLION_PER_PROCESS * relays, "ready": ready, "failed": failed,
                    "connect_s": climb, "slowest_generator_s": secs, "relays": relays,
                    "relays_alive": alive,
                    "rss0_kb": base, "rss_kb": full,
                    "bytes_per_conn": (full - base) * 1024 / ready if ready else float("nan"),
                    "tcp_inuse": k1[0] - k0[0], "tcp_mem_bytes": k1[1] - k0[1],
                    "slab_kb": k1[2] - k0[2], "idle_cpu": idle_cpu, "loadgen_cpu": gen_cpu,
                    "sample": sample, "ping_interval": peer.relay_setting("ping_interval")}

        # Twice: the relays' default ping_interval (20 s: 50,000 pings a second at a million),
        # and MILLION_PING_INTERVAL, as a host of that size would set it (docs/DEPLOY.md).
        self.record("million", "taskwire", self.with_peer("taskwire", go, relays=relays))
        if not any(kv.split("=", 1)[0].strip() == "ping_interval"
                   for kv in self.args.relay_setting):
            self.record("million", "taskwire", self.with_peer(
                "taskwire", go, relays=relays,
                settings=[f"ping_interval={MILLION_PING_INTERVAL}"]))

    def submit(self, runs, duration=SUBMIT_SECONDS):
        # Rounds of short runs, each round a run of every responder at every connection count
        # in turn: the machine's speed drifts by half within minutes, and a ratio taken inside
        # a round cancels that drift where a ratio of separate medians did not.
        rounds = 2 * runs
        print(f"submission: POST /api/tasks through lighttpd, next to a hello-world FastCGI "
              f"responder: {rounds} rounds of wrk for {duration} s at "
              f"{' and '.join(map(str, SUBMIT_CONNS))} connections, with "
              f"{' and '.join(map(str, SUBMIT_PROCS))} handler processes", flush=True)
        for procs in SUBMIT_PROCS:
            self.submit_once(rounds, duration, procs)

    def submit_once(self, rounds, duration, procs):
        tw = Taskwire(self.tmp, self.args.build)  # its config and store; the worker is not run
        port = free_port()
        conf = os.path.join(tw.tmp, "lighttpd.conf")
        with open(conf, "w") as f:
            f.write(f"""server.bind = "127.0.0.1"
server.port = {port}
server.document-root = "{tw.tmp}"
server.errorlog = "{tw.tmp}/lighttpd-error.log"
server.pid-file = "{tw.tmp}/lighttpd.pid"
server.max-connections = 1024
var.taskwire_fcgi = "{os.path.join(self.args.build, 'taskwire.fcgi')}"
var.taskwire_config = "{tw.config}"
var.taskwire_socket = "{tw.tmp}/taskwire-fcgi.sock"
var.taskwire_relay_host = "127.0.0.1"
var.taskwire_relay_port = {tw.port}
var.taskwire_procs = {procs}
include "{ROOT}/conf/lighttpd/taskwire.conf"
fastcgi.server += (
    "/hello" => ((
        "bin-path" => "{HELLO}",
        "socket" => "{tw.tmp}/hello-fcgi.sock",
        "check-local" => "disable",
        "max-procs" => var.taskwire_procs,
    ))
)
""")
        p = Procs.start(["lighttpd", "-D", "-f", conf], tw.log("lighttpd"), cpu=SERVER_CPU)
        try:
            wait_port(port, p, what="lighttpd")
            session = http_json(f"http://127.0.0.1:{port}/api/session", data=b"")
            env = dict(os.environ, BENCH_TOKEN=session["token"])
            urls = {"hello": f"http://127.0.0.1:{port}/hello",
                    "taskwire": f"http://127.0.0.1:{port}/api/tasks"}

            def wrk(url, conns, seconds):
                cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}",
                       f"-d{seconds}s", "-s", os.path.join(ROOT, "bench", "submit.lua"), url]
                r = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                   timeout=seconds + 30)
                m = re.search(r"WRK_JSON (\{.*\})", r.stdout)
                if not m:
                    raise RuntimeError(f"wrk printed no result: {r.stdout} {r.stderr}")
                return json.loads(m.group(1))

            for url in urls.values():
                wrk(url, SUBMIT_CONNS[0], 2)  # warm-up: caches, the database's first pages
            for i in range(rounds):
                for conns in SUBMIT_CONNS:
                    for name, url in urls.items():
                        self.record("submit", f"{name}@{procs}@{conns}",
                                    dict(wrk(url, conns, duration), round=i))
        finally:
            Procs.stop(p)


def summary(r):
    if "delivered_per_s" in r:
        s = (f"ready {r['ready']}/{r['conns']} delivered/s {r['delivered_per_s']:.0f} "
             f"p50 {r['lat_us']['p50']} p90 {r['lat_us']['p90']} p99 {r['lat_us']['p99']} "
             f"max {r['lat_us']['max']} us (parsed p99 {r['parsed_us']['p99']}) lost {r['lost']} "
             f"gaps {r['gaps']}")
        s += f" cpu server {r.get('server_cpu', 0):.0%} client {r.get('client_cpu', 0):.0%}"
        if r.get("retries") or r.get("failed"):
            s += f" (retried {r.get('retries')}, failed {r.get('failed')}: {r.get('close_codes')})"
        return s
    if "bytes_per_conn" in r:
        return (f"ready {r['ready']}/{r['conns']} (retried {r.get('retries', 0)}) in "
                f"{r.get('connect_s', float('nan')):.2f} s, rss {r['rss0_kb']} -> {r['rss_kb']} KiB, "
                f"{r['bytes_per_conn']:.0f} bytes/conn")
    if "rps" in r:
        return f"{r['rps']:.0f} req/s p50 {r['p50_us']} p99 {r['p99_us']} us errors {r['errors']}"
    return json.dumps(r)


# ---- report ----

def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Linux {platform.release()}, "
            f"open files per process {command_output(['sh', '-c', 'ulimit -n'])}")


def versions():
    sio = "?"
    try:
        with open(os.path.join(SocketIO.DIR, "node_modules/socket.io/package.json")) as f:
            sio = json.load(f)["version"]
    except OSError:
        pass
    rev = command_output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    return [
        ("taskwire", f"{rev} (libwebsockets {deb_version('libwebsockets17')}, "
                     f"libzmq {deb_version('libzmq5')})"),
        ("Pushpin", f"{deb_version('pushpin')} (condure {deb_version('condure')}, "
                    f"zurl {deb_version('zurl')})"),
        ("nginx+nchan", f"nginx {deb_version('nginx')}, nchan {deb_version('libnginx-mod-nchan')}"),
        ("Socket.IO", f"socket.io {sio} on Node {command_output(['node', '--version'])}"),
        ("lighttpd / wrk", f"{deb_version('lighttpd')} / {deb_version('wrk')}"),
    ]


def fmt(v, digits=0):
    if isinstance(v, float) and v != v:
        return "n/a"
    return f"{v:,.{digits}f}"


def ms(us):
    if us == float("inf"):
        return "none arrived"
    return "n/a" if us != us else f"{us / 1000:.2f}"


def ms_unit(us):
    return ms(us) + ("" if us == float("inf") or us != us else " ms")


class Report:
    def __init__(self, bench, names):
        self.b = bench
        # Peers a scenario added of itself (connect's taskwire-authmsg) are reported too.
        names = names + [n for n in PEERS if n not in names and
                         any(n in by_peer for by_peer in bench.results.values())]
        self.names = names
        self.labels = {n: PEERS[n].label for n in names}
        self.lines = []
        self.targets = []

    def row(self, *cells):
        self.lines.append("| " + " | ".join(str(c) for c in cells) + " |")

    def header(self, *cells):
        self.row(*cells)
        self.row(*(["---"] + ["---:"] * (len(cells) - 1)))

    def latency_table(self, rows_by_peer, delivered):
        """A steady-rate scenario's table: per peer its deliveries, latencies, losses and CPU."""
        self.header("server", delivered, "p50 ms", "p90 ms", "p99 ms", "max ms", "lost",
                    "server CPU")
        for n in self.names:
            rows = rows_by_peer.get(n)
            if rows:
                self.row(self.labels[n], fmt(med(rows, "delivered_per_s")),
                         ms(med(rows, "lat_us", "p50")), ms(med(rows, "lat_us", "p90")),
                         ms(med(rows, "lat_us", "p99")), ms(med(rows, "lat_us", "max")),
                         fmt(med(rows, "lost")), f"{med(rows, 'server_cpu'):.0%}")
        self.lines.append("")

    def ratio(self, a, b):
        return "n/a" if not b or b != b or a != a else f"{a / b:.2f}x"

    def build(self):
        res = self.b.results
        L = self.lines
        if "fanout" in res:
            L.append("### Fan-out: 1,000 clients, one client id each, publisher flat out")
            L.append("")
            self.header("server", "delivered msgs/s", "taskwire / peer", "msgs per server "
                        "core-second", "p50 ms", "p99 ms", "max ms", "lost", "server CPU",
                        "loadgen CPU")
            tw = med(res["fanout"].get("taskwire", []), "delivered_per_s")
            for n in self.names:
                rows = res["fanout"].get(n)
                if not rows:
                    continue
                v = med(rows, "delivered_per_s")
                cpu = med(rows, "server_cpu")
                self.row(self.labels[n], fmt(v), "" if n == "taskwire" else self.ratio(tw, v),
                         fmt(v / cpu) if cpu else "n/a", ms(med(rows, "lat_us", "p50")), ms(med(rows, "lat_us", "p99")),
                         ms(med(rows, "lat_us", "max")), fmt(med(rows, "lost")),
                         f"{med(rows, 'server_cpu'):.0%}", f"{med(rows, 'client_cpu'):.0%}")
            L.append("")
            for n, k in (("pushpin", 3), ("socketio", 3), ("nchan", 1)):
                peer = res["fanout"].get(n)
                if peer:
                    v = med(peer, "delivered_per_s")
                    ok = tw >= k * v if k > 1 else tw > v
                    want = f">= {k}x" if k > 1 else "ahead of"
                    self.targets.append((f"fan-out msgs/s {want} {self.labels[n]}",
                                         f"{self.ratio(tw, v)}", ok))
        if "rate" in res:
            rate = getattr(self.b, "rate_value", 0)
            L.append(f"### Latency at a steady {rate:,} msgs/s ({self.b.rate_source}), "
                     "1,000 clients")
            L.append("")
            self.header("server", "delivered msgs/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
                        "p99 parsed ms", "lost", "server CPU", "loadgen CPU")
            for n in self.names:
                rows = res["rate"].get(n)
                if rows:
                    self.row(self.labels[n], fmt(med(rows, "delivered_per_s")),
                             ms(med(rows, "lat_us", "p50")), ms(med(rows, "lat_us", "p90")),
                             ms(med(rows, "lat_us", "p99")), ms(med(rows, "lat_us", "max")),
                             ms(med(rows, "parsed_us", "p99")),
                             fmt(med(rows, "lost")), f"{med(rows, 'server_cpu'):.0%}",
                             f"{med(rows, 'client_cpu'):.0%}")
            L.append("")
            tw = res["rate"].get("taskwire")
            if tw:
                p99 = med(tw, "lat_us", "p99")
                self.targets.append(("p99 at half the max rate < 5 ms", f"{ms(p99)} ms",
                                     p99 < 5000))
                for n in self.names:
                    if n in PEERS and not n.startswith("taskwire") and res["rate"].get(n):
                        q = med(res["rate"][n], "lat_us", "p99")
                        got = med(res["rate"][n], "delivered_per_s")
                        if rate and got < RATE_SUSTAINED * rate:
                            # Its publisher was held back (HTTP backpressure) or it fell
                            # behind: a p99 over the messages it did take is not a latency at
                            # this rate, so it is shown but does not decide the row.
                            self.targets.append((f"p99 lower than {self.labels[n]}",
                                                 f"{ms_unit(p99)} vs {ms_unit(q)}, but it delivered "
                                                 f"{fmt(got)} of {rate:,} msgs/s", True))
                        else:
                            self.targets.append((f"p99 lower than {self.labels[n]}",
                                                 f"{ms_unit(p99)} vs {ms_unit(q)}", p99 < q))
        if "steady" in res:
            L.append(f"### Latency at a moderate {STEADY_RATE:,} msgs/s, 1,000 clients")
            L.append("")
            self.latency_table(res["steady"], "delivered msgs/s")
            tw, nchan = res["steady"].get("taskwire"), res["steady"].get("nchan")
            if tw and nchan:
                for q in ("p50", "p90", "p99"):
                    a, b = med(tw, "lat_us", q), med(nchan, "lat_us", q)
                    self.targets.append((f"{q} at {STEADY_RATE:,} msgs/s at or below nginx+nchan",
                                         f"{ms_unit(a)} vs {ms_unit(b)}", a <= b))
        if "broadcast" in res:
            L.append(f"### Broadcast-ish: 1,000 connections of one client id, {BROADCAST_RATE} "
                     f"msgs/s ({BROADCAST_RATE * FANOUT_CONNS:,} deliveries/s)")
            L.append("")
            self.latency_table(res["broadcast"], "deliveries/s")
        if "channel" in res:
            L.append(f"### One channel of {CHANNEL_CONNS:,} subscribers, flat out")
            L.append("")
            self.latency_table(res["channel"], "deliveries/s")
        if "channelrate" in res:
            L.append(f"### One channel of {CHANNEL_CONNS:,} subscribers, {CHANNEL_RATE} msgs/s "
                     f"({CHANNEL_RATE * CHANNEL_CONNS:,} deliveries/s)")
            L.append("")
            self.latency_table(res["channelrate"], "deliveries/s")
        if "idle" in res:
            L.append(f"### Idle: server RSS with 0 and {IDLE_CONNS:,} idle connections")
            L.append("")
            self.header("server", "RSS idle MiB", f"RSS {IDLE_CONNS:,} conns MiB",
                        "bytes / connection", "taskwire / peer")
            tw = med(res["idle"].get("taskwire", []), "bytes_per_conn")
            for n in self.names:
                rows = res["idle"].get(n)
                if rows:
                    v = med(rows, "bytes_per_conn")
                    self.row(self.labels[n], fmt(med(rows, "rss0_kb") / 1024, 1),
                             fmt(med(rows, "rss_kb") / 1024, 1), fmt(v),
                             "" if n == "taskwire" else self.ratio(tw, v))
            L.append("")
            peers = [med(res["idle"][n], "bytes_per_conn") for n in self.names
                     if not n.startswith("taskwire") and res["idle"].get(n)]
            if peers and tw == tw:
                best = min(peers)
                self.targets.append(("idle bytes/connection <= 1/2 of the best peer",
                                     f"{fmt(tw)} vs {fmt(best)} bytes", tw <= best / 2))
        if any(f"connect{c}" in res for c in CONNECT_CONNS):
            L.append("### Connect: clients connecting at once, each its own client id")
            L.append("")
            self.header("server", *[f"{c:,} clients s" for c in CONNECT_CONNS],
                        "taskwire / peer (10,000)")
            tw = med(res.get(f"connect{CONNECT_CONNS[-1]}", {}).get("taskwire", []), "connect_s")
            for n in self.names:
                cells = [fmt(med(res[f"connect{c}"][n], "connect_s"), 2)
                         if res.get(f"connect{c}", {}).get(n) else "n/a" for c in CONNECT_CONNS]
                if all(c == "n/a" for c in cells):
                    continue
                v = med(res.get(f"connect{CONNECT_CONNS[-1]}", {}).get(n, []), "connect_s")
                self.row(self.labels[n], *cells, "" if n == "taskwire" else self.ratio(tw, v))
            L.append("")
            nchan = res.get(f"connect{CONNECT_CONNS[-1]}", {}).get("nchan")
            if nchan and tw == tw:
                v = med(nchan, "connect_s")
                self.targets.append((f"{CONNECT_CONNS[-1]:,} connections no slower than nginx+nchan",
                                     f"{fmt(tw, 2)} vs {fmt(v, 2)} s", tw <= v))
        if "scale" in res:
            rows = res["scale"]["taskwire"]
            L.append(f"### Scale: idle connections held by {SCALE_RELAYS} taskwire relays on "
                     "one port")
            L.append("")
            self.header("attempted", "held", "failed", "connect s", "relays RSS MiB",
                        "bytes / connection", "worker RSS MiB")
            self.row(fmt(med(rows, "conns")), fmt(med(rows, "ready")), fmt(med(rows, "failed")),
                     fmt(med(rows, "connect_s"), 1), fmt(med(rows, "rss_kb") / 1024, 1),
                     fmt(med(rows, "bytes_per_conn")), fmt(med(rows, "worker_rss_kb") / 1024, 1))
            L.append("")
            held = med(rows, "ready")
            self.targets.append((f"{SCALE_TARGET:,} idle connections held", fmt(held),
                                 held >= SCALE_TARGET))
        if "million" in res:
            def million_ping(r):
                return f"{r['ping_interval']} s" if r.get("ping_interval") else "default"

            rows = res["million"]["taskwire"]
            L.append(f"### A million idle connections: {rows[0]['relays']} relays on one port")
            L.append("")
            self.header("ping_interval", "attempted", "held", "failed", "connect s",
                        "connections/s", "relays' user space / conn", "kernel slab / conn",
                        "TCP buffers", "relays' CPU held idle", "load generators' CPU",
                        f"sample of {MILLION_SAMPLE:,}: p50 / p99 / max ms")
            for r in rows:
                lat = r["sample"]["lat_us"]
                held = r["ready"]
                self.row(million_ping(r),
                         fmt(r["conns"]), fmt(held), fmt(r["failed"]), fmt(r["connect_s"], 1),
                         fmt(held / r["connect_s"]) if r["connect_s"] else "n/a",
                         f"{fmt(r['bytes_per_conn'])} B",
                         f"{fmt(r['slab_kb'] * 1024 / held) if held else 'n/a'} B (both ends)",
                         f"{fmt(r['tcp_mem_bytes'] / 2**20, 1)} MiB",
                         f"{fmt(r.get('idle_cpu', float('nan')) * 100)}% of a core",
                         f"{fmt(r.get('loadgen_cpu', float('nan')) * 100)}%",
                         f"{ms(lat['p50'])} / {ms(lat['p99'])} / {ms(lat['max'])}")
            L.append("")
            for r in rows:
                lat = r["sample"]["lat_us"]
                ping = million_ping(r)
                self.targets.append((f"{MILLION:,} idle connections held (ping_interval {ping})",
                                     fmt(r["ready"]), r["ready"] >= MILLION))
                self.targets.append((f"p99 to a sample while they are held < 50 ms "
                                     f"(ping_interval {ping})", f"{ms(lat['p99'])} ms",
                                     lat["p99"] < 50000))
        if "submit" in res:
            L.append("### Submission: POST /api/tasks through lighttpd (FastCGI), wrk -t1")
            L.append("")
            L.append("Each round runs every responder at every connection count in turn; the "
                     "ceiling is hello-world at its best count in that round, and a share is "
                     "the median over the rounds of the share within each round.")
            L.append("")
            self.header("responder", "processes", "connections", "requests/s", "p50 ms",
                        "p99 ms", "errors", "of ceiling")
            shares = {}
            for procs in SUBMIT_PROCS:
                runs = {(n, c): {r["round"]: r for r in res["submit"].get(f"{n}@{procs}@{c}", [])}
                        for n in ("hello", "taskwire") for c in SUBMIT_CONNS}
                rounds = sorted(set.intersection(*(set(v) for v in runs.values()))) if runs else []
                ceiling = {i: max(runs[("hello", c)][i]["rps"] for c in SUBMIT_CONNS)
                           for i in rounds}
                for n, label in (("hello", "hello-world FastCGI (ceiling)"),
                                 ("taskwire", "taskwire.fcgi")):
                    for c in SUBMIT_CONNS:
                        rows = list(runs[(n, c)].values())
                        if not rows:
                            continue
                        share = [runs[(n, c)][i]["rps"] / ceiling[i] for i in rounds if ceiling[i]]
                        self.row(label, procs, c, fmt(med(rows, "rps")), ms(med(rows, "p50_us")),
                                 ms(med(rows, "p99_us")), fmt(med(rows, "errors")),
                                 f"{statistics.median(share):.0%}" if share else "n/a")
                        if n == "taskwire":
                            shares[(procs, c)] = statistics.median(share) if share else None
                best = [max(runs[("taskwire", c)][i]["rps"] for c in SUBMIT_CONNS) / ceiling[i]
                        for i in rounds if ceiling[i]]
                shares[(procs, "best")] = statistics.median(best) if best else None
            L.append("")
            procs = SUBMIT_PROCS[0]
            best = shares.get((procs, "best"))
            if best is not None:
                each = ", ".join(f"{shares[(procs, c)]:.0%} at {c}" for c in SUBMIT_CONNS
                                 if shares.get((procs, c)) is not None)
                self.targets.append((f"submission >= 50% of the FastCGI ceiling ({procs} "
                                     f"process{'es' if procs > 1 else ''}, the default; each "
                                     "at its best connection count)",
                                     f"{best:.0%} ({each} connections)", best >= 0.5))
        if self.targets:
            L.append("### Targets")
            L.append("")
            self.header("target", "measured", "met")
            for name, value, ok in self.targets:
                self.row(name, value, "yes" if ok else "**no**")
            L.append("")
        return "\n".join(L)


def latency_runs(args):
    """Rounds of the steady-rate and broadcast scenarios.  A p99 moves with a slow spell of the
    machine more than a throughput does (one spell of a few seconds can put a run's p99 at
    30 ms where the runs around it measure 2 to 5 ms), so these take five rounds at least."""
    return args.latency_runs or max(args.runs, LATENCY_RUNS)


def conditions(args):
    return "\n".join([
        f"- Machine: {machine()}.",
        f"- Servers pinned to core {SERVER_CPU} (`taskset -c {SERVER_CPU}`: taskwire's worker and "
        f"relay, all Pushpin processes, nginx master and worker, node); the load generator, the "
        f"publisher, wrk and Pushpin's origin on core {CLIENT_CPU}.",
        f"- Medians of {args.runs} runs ({latency_runs(args)} for steady rate and broadcast, whose "
        "p99 a slow spell of the machine moves most); fan-out, steady rate and broadcast run in "
        "rounds (each "
        "peer once per round, started for its run), so a slow spell of the machine does not fall "
        f"on one peer's runs alone; each run uses fresh client ids, {PAYLOAD}-byte JSON "
        "messages stamped with CLOCK_MONOTONIC microseconds; latency is publish call to the "
        "frame's arrival in the client's socket at a steady rate (the kernel's receive timestamp "
        "of the read that brought it; \"p99 parsed\" adds the load generator's own wait to read "
        "and parse it) and to the frame parsed flat out (where the timestamps' cost would lower "
        "the rate), "
        "through each server's own publish input (taskwire: a ZeroMQ PUB "
        "that the relay's SUB connects to, as to a worker pool's events endpoint; \"taskwire via "
        "proxy\": ZeroMQ PUB into the worker pool's XSUB/XPUB proxy, the operators' inject path, "
        "one hop more; Pushpin: ZeroMQ PUSH of publish items; nchan: HTTP "
        "POST over 64 keep-alive connections; Socket.IO: TCP lines into io.to(room).emit).  At a "
        "steady rate the load generator hands its core to its ZeroMQ I/O thread at least every "
        "300 us, so a published message does not wait out a scheduler slice before it leaves.",
        f"- Flat out = as fast as the server takes it with at most {FLAT_WINDOW:,} deliveries "
        "outstanding; 2 s warm-up, 10 s measured. \"lost\" counts measured messages that never "
        "arrived (0 everywhere means every published message was delivered in order).",
        "- Server CPU is the share of one core the server's processes used during the measured "
        "window; loadgen CPU the same for the client (near 100% means the client limits, and "
        "then messages per server core-second, delivered/s divided by server CPU, is the fairer "
        "comparison).",
    ])


def write_report(bench, args, names):
    rep = Report(bench, names).build()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    vers = "\n".join(f"- {k}: {v}" for k, v in versions())
    text = (f"# Relay benchmark {stamp}\n\n{conditions(args)}\n\nVersions:\n\n{vers}\n\n{rep}\n"
            f"\nReproduce: `make bench` (or `/usr/bin/python3 bench/run.py --runs {args.runs}`).\n")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{stamp}.md")
    with open(path, "w") as f:
        f.write(text)
    with open(os.path.join(args.out, f"{stamp}.raw"), "w") as f:
        for r in bench.raw:
            f.write(json.dumps(r) + "\n")
    print("\n" + text)
    print(f"written: {path}")
    if args.doc:
        doc = os.path.join(ROOT, "docs", "PERFORMANCE.md")
        with open(doc) as f:
            old = f.read()
        begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
        if begin in old and end in old:
            block = (f"{begin}\nMeasured {stamp} with `make bench`.\n\n{conditions(args)}\n\n"
                     f"Versions:\n\n{vers}\n\n{rep}\n{end}")
            new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
            with open(doc, "w") as f:
                f.write(new)
            print(f"updated: {doc}")


def install(args):
    """Install what the comparison needs (Debian packages, the Socket.IO peer's npm tree)."""
    debs = list(DEBS)
    if not shutil.which("node") or not shutil.which("npm"):  # Node may come from elsewhere
        debs += ["nodejs", "npm"]
    subprocess.run([os.path.join(ROOT, "tools", "debs.sh")] + debs, check=True)
    if not os.path.isdir(os.path.join(SocketIO.DIR, "node_modules", "socket.io")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SocketIO.DIR, check=True)


def smoke(args):
    bench = Bench(args)
    try:
        bench.fanout(["taskwire"], 1, duration=5.0, conns=200, warmup=1.0)
        steady = bench.with_peer("taskwire", lambda peer: bench.pub_run(
            peer, "smoke-rate", 200, 200, rate=SMOKE_RATE, warmup=1.0, duration=3.0))
    finally:
        Procs.stop_all()
    ok = True
    for name, r, stamped in (("flat out", bench.results["fanout"]["taskwire"][0], False),
                             (f"{SMOKE_RATE:,} msgs/s", steady, True)):
        good = (r["ready"] == r["conns"] and r["lost"] == 0 and r["gaps"] == 0
                and r["received"] == r["expected"] and r["published"] > 0 and r["closed"] == 0)
        if stamped:
            # The kernel's receive times were read, and a frame arrives before it is parsed.
            good = (good and r["stamped_reads"] > 0
                    and r["lat_us"]["p50"] <= r["parsed_us"]["p50"]
                    and r["lat_us"]["p99"] < SMOKE_P99_BOUND_US)
        ok = ok and good
        print(f"bench-smoke, {name}: {r['published']} published, {r['received']} of "
              f"{r['expected']} delivered, {r['delivered_per_s']:.0f} msgs/s, p50 "
              f"{ms(r['lat_us']['p50'])} ms, p99 {ms(r['lat_us']['p99'])} ms (parsed "
              f"{ms(r['parsed_us']['p99'])} ms): {'OK' if good else 'FAILED'}")
    if ok:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    else:
        print(f"bench-smoke: logs in {bench.tmp}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="5 s fan-out against taskwire only")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--peers", default="taskwire,taskwire-proxy,pushpin,nchan,socketio")
    ap.add_argument("--scenarios",
                    default="fanout,rate,steady,broadcast,idle,connect,scale,submit")
    ap.add_argument("--build", default=os.environ.get("TASKWIRE_BUILD", os.path.join(ROOT, "build")))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--doc", action="store_true", help="also update docs/PERFORMANCE.md")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--relay-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="a [relay] setting of taskwire's relays (repeatable), e.g. "
                         "ping_interval=60")
    ap.add_argument("--latency-runs", type=int, default=0,
                    help=f"rounds of steady rate and broadcast (default: --runs, at least "
                         f"{LATENCY_RUNS})")
    ap.add_argument("--rate", type=int, default=0,
                    help="steady-rate scenario at this many msgs/s instead of half of taskwire's "
                         "fan-out rate (to compare builds at one rate)")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for exe in (LOADGEN, os.path.join(args.build, "taskwire-relay"),
                os.path.join(args.build, "taskwire-worker")):
        if not os.access(exe, os.X_OK):
            sys.exit(f"run.py: {exe} is missing: run `make bench` (or `make all bench-bins`)")
    if args.smoke:
        return smoke(args)
    if not args.no_install:
        install(args)
    names = [n for n in args.peers.split(",") if n]
    for n in names:
        if n not in PEERS:
            sys.exit(f"run.py: unknown peer {n}; known: {', '.join(PEERS)}")
    scenarios = args.scenarios.split(",")
    bench = Bench(args)
    print(f"taskwire relay benchmark: {machine()}\nlogs and configs in {bench.tmp}", flush=True)
    try:
        if "fanout" in scenarios:
            bench.fanout(names, args.runs)
        if "rate" in scenarios:
            bench.rate(names, latency_runs(args))
        if "steady" in scenarios:
            bench.steady(names, latency_runs(args))
        if "broadcast" in scenarios:
            bench.broadcast(names, latency_runs(args))
        if "channel" in scenarios:
            bench.channel(names, latency_runs(args))
        if "idle" in scenarios:
            bench.idle(names, args.runs)
        if "connect" in scenarios:
            bench.connect(names, args.runs)
        if "scale" in scenarios and "taskwire" in names:
            bench.scale(1)
        if "submit" in scenarios and "taskwire" in names:
            bench.submit(args.runs)
        if "million" in scenarios:
            bench.million()
    finally:
        Procs.stop_all()
    write_report(bench, args, names)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        Procs.stop_all()
