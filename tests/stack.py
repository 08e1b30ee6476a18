"""Start a whole taskwire stack on free loopback ports: worker, relay and a web server.

Used by the integration tests (as a module) and by people (as a command):

    /usr/bin/python3 tests/stack.py [--server lighttpd]

prints one JSON line ({"http": ..., "relay": ..., "events": ..., "publish": ..., "tmp": ...}) once
everything answers, then runs until SIGTERM or SIGINT and stops everything it started.  Lines on
stdin control it: "stop worker", "kill worker" (kill -9), "start worker", the same for "relay",
for the web server ("server") and for each further worker of --workers N ("worker2", ...);
"kill fcgi" kills the FastCGI handler processes (the web server respawns them).

A stack of several workers (Stack(workers=2)) gives each worker endpoints of its own, since a
worker binds its three endpoints, and runs a ZeroMQ hub (`stack.py zmq-hub`, the process
"zmq-hub") on the stack's endpoints: it carries nudges from the handler to the workers, every
worker's events to the relays, and sends {"type":"resync"} to the subscribed client ids 200 ms
after it reconnects to a restarted worker, as a relay does when it reconnects to its pool.

Binaries come from $TASKWIRE_BUILD (default build/).  Everything else lives in a fresh temporary
directory: taskwire.conf, var/ (0700: the database and a random 32-byte secret, 0600), the web
server's config, and one log per process (the web server's log also holds the FastCGI
handler's stderr).  `Stack.logs()` returns them for a failing test's report.
"""
import atexit
import contextlib
import json
import os
import secrets
import signal
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

WORKER = "worker"  # the name of a stack's first worker; further ones are worker2, worker3, ...
HUB_RESYNC_S = 0.2  # the hub tells pages to resync this long after a worker came back

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = os.path.join(ROOT, "tests", "integration", "types")
CHECKSUM = os.path.join(ROOT, "conf", "types", "checksum")
START_TIMEOUT = 20.0  # seconds for one part of the stack to answer
STOP_TIMEOUT = 10.0  # seconds for one process to exit after SIGTERM before it gets SIGKILL
FINAL = ("succeeded", "failed", "cancelled")
MAX_BODY = 65536  # [http] max_body of every stack (nginx's client_max_body_size matches it)
CLIENT_PUBLISH_MAX = 256  # [channels] publish_max of every stack (unless a test sets it)
CLIENT_MESSAGE_MAX = 2 * CLIENT_PUBLISH_MAX + 512  # the relay's bound on a client message

# Sanitizer settings for every process (the FastCGI handler gets them through lighttpd's
# bin-copy-environment).  The handler leaves with _exit() when stopped while idle, so leak
# detection at its exit is never noisy; the worker and the relay are checked for leaks.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
    "UBSAN_OPTIONS": "print_stacktrace=1",
}

# Exec types for the tests (tests/integration/types/), plus the shipped example if present.
TEST_TYPES = {
    "steps": {  # PROGRESS per step, then RESULT and exit 0, or stderr and exit 3 (fail=true)
        "label": "Count in steps",
        "command": os.path.join(TYPES, "steps"),
        "timeout_ms": 20000,
        "param.count": "integer min=1 max=10 default=3",
        "param.note": "string min=1 max=64 default=x",
        "param.fail": "boolean default=false",
    },
    "stall": {  # never ends by itself; trap=true ignores SIGTERM
        "label": "Never ends by itself",
        "command": os.path.join(TYPES, "stall"),
        "timeout_ms": 1500,
        "param.trap": "boolean default=false",
    },
}
CHECKSUM_TYPE = {
    "label": "Checksum a directory (SHA-256)",
    "command": CHECKSUM,
    "timeout_ms": 60000,
    "param.path": "string min=1 max=4096 default=/usr/share/doc",
    "param.max_files": "integer min=1 max=100000 default=200",
}

_live_stacks = set()


@atexit.register
def _close_live_stacks():
    for stack in list(_live_stacks):
        stack.close()


_ports_given = set()


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on now, below the kernel's ephemeral range: a
    port from that range can be taken as the source port of any outgoing connection (a ZeroMQ
    socket reconnecting to a stopped worker makes ten a second) before our server binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low = 10000 if ephemeral_low > 11000 else 1024
    for _ in range(1000):
        port = random.randrange(low, ephemeral_low)
        if port in _ports_given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_for(predicate, timeout, what):
    """Poll predicate until it returns a true value (returned), or fail naming what was
    awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def group_alive(pgid):
    """True while a process of group pgid other than a zombie remains."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and (fields[0] != "Z" or threads_alive(pid)):
                return True
    return False


def threads_alive(pid):
    """True while a thread of process pid is not a zombie.  A killed multi-threaded process
    shows its main thread as a zombie ("Zl") while the others are still exiting, and until the
    last one has, its descriptors (a FastCGI handler's listening socket) stay open."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    return True
        except OSError:
            continue
    return False


def http_status(url):
    """The status of GET url, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def read_store(path, sql, parameters=()):
    """Rows of a query on the database at path, opened read-only (no process notices); [] while
    the database does not exist yet or is busy."""
    import sqlite3
    if not os.path.exists(path):
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        return db.execute(sql, parameters).fetchall()
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            return []
        raise
    finally:
        db.close()


def ini(sections):
    """INI text of {section: {key: value}}."""
    out = []
    for section, keys in sections.items():
        out.append(f"[{section}]")
        out.extend(f"{key} = {value}" for key, value in keys.items())
        out.append("")
    return "\n".join(out)


# -- web servers: one class per server, one row in SERVERS -----------------------------------

LIGHTTPD_COMMON = """
server.bind = "{address}"
server.port = {http_port}
server.document-root = "{root}/www"
server.errorlog = "{tmp}/lighttpd.log"
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html; charset=utf-8", ".js" => "text/javascript; charset=utf-8",
                   ".css" => "text/css; charset=utf-8", ".json" => "application/json",
                   ".svg" => "image/svg+xml")
"""

LIGHTTPD_OWN = LIGHTTPD_COMMON + """
server.modules += ("mod_fastcgi", "mod_proxy", "mod_setenv")
$HTTP["url"] =~ "^/admin(/|$)" {{
    setenv.add-response-header = ("X-Frame-Options" => "DENY",
                                  "Content-Security-Policy" => "frame-ancestors 'none'",
                                  "Cache-Control" => "no-store")
}}
fastcgi.server = (
    "/api/" => ((
        "bin-path" => "{build}/taskwire.fcgi",
        "socket" => "{tmp}/fcgi.sock",
        "check-local" => "disable",
        "max-procs" => 1,
        "bin-environment" => ("TASKWIRE_CONFIG" => "{fcgi_config}"),
        "bin-copy-environment" => ("PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"),
    ))
)
$HTTP["url"] =~ "^/ws($|\\?)" {{
    proxy.server = ("" => (("host" => "{address}", "port" => {relay_port})))
    proxy.header = ("upgrade" => "enable")
}}
"""

LIGHTTPD_DROPIN = LIGHTTPD_COMMON + """
var.taskwire_fcgi = "{build}/taskwire.fcgi"
var.taskwire_config = "{fcgi_config}"
var.taskwire_socket = "{tmp}/fcgi.sock"
var.taskwire_relay_host = "127.0.0.1"
var.taskwire_relay_port = {relay_port}
var.taskwire_procs = 1
include "{root}/conf/lighttpd/taskwire.conf"
"""


# basic_auth: the web server asks for a password on POST /api/session (mod_auth).
LIGHTTPD_BASIC_AUTH = """
auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
$HTTP["url"] == "/api/session" {{
    auth.require = ("" => ("method" => "basic", "realm" => "taskwire", "require" => "valid-user"))
}}
"""


class Lighttpd:
    """lighttpd 1.4 with a config of the stack's own: /api/ to the FastCGI handler (lighttpd
    spawns it), /ws proxied to the relay with the WebSocket upgrade, www/ as document root."""

    name = "lighttpd"
    template = LIGHTTPD_OWN

    def __init__(self, stack):
        self.stack = stack

    def command(self):
        path = os.path.join(self.stack.tmp, "lighttpd.conf")
        text = self.template.format(root=ROOT, **self.stack.settings())
        if not self.stack.websocket:
            upgrade = '    proxy.header = ("upgrade" => "enable")\n'
            assert upgrade in text, "this lighttpd config cannot drop the upgrade"
            text = text.replace(upgrade, "")
        if self.stack.basic_auth:  # mod_auth before mod_fastcgi, as lighttpd asks
            text = text.replace('server.modules += ("mod_fastcgi"',
                                'server.modules += ("mod_auth", "mod_authn_file", "mod_fastcgi"')
            text += LIGHTTPD_BASIC_AUTH.format(users=self.stack.write_users("plain"))
        with open(path, "w") as f:
            f.write(text)
        return ["lighttpd", "-D", "-f", path]


class LighttpdDropin(Lighttpd):
    """lighttpd with the shipped drop-in conf/lighttpd/taskwire.conf included, as an operator
    would set it up."""

    template = LIGHTTPD_DROPIN


APACHE_MODULES = ["mpm_event", "authz_core", "mime", "dir", "alias", "env", "fcgid", "cgi",
                  "proxy", "proxy_wstunnel", "headers"]

APACHE_CONF = """
ServerRoot "{tmp}"
ServerName 127.0.0.1
Listen 127.0.0.1:{http_port}
PidFile "{tmp}/apache.pid"
DefaultRuntimeDir "{tmp}/apache-run"
ErrorLog "{tmp}/apache-error.log"
LogLevel warn
{modules}
TypesConfig /etc/mime.types
AddType "text/javascript; charset=utf-8" .js
FcgidIPCDir "{tmp}/apache-run/fcgid"
FcgidProcessTableFile "{tmp}/apache-run/fcgid-shm"
FcgidMaxProcesses 2
FcgidInitialEnv ASAN_OPTIONS "detect_leaks=0"
Define TASKWIRE_FCGI "{build}/taskwire.fcgi"
Define TASKWIRE_CONFIG "{fcgi_config}"
Define TASKWIRE_WWW "{tree}/www"
Define TASKWIRE_RELAY "127.0.0.1:{relay_port}"
Include "{root}/conf/apache2/{site}"
"""

# basic_auth: the web server asks for a password on POST /api/session (mod_auth_basic).
APACHE_BASIC_AUTH = """
LoadModule authn_core_module /usr/lib/apache2/modules/mod_authn_core.so
LoadModule authn_file_module /usr/lib/apache2/modules/mod_authn_file.so
LoadModule auth_basic_module /usr/lib/apache2/modules/mod_auth_basic.so
LoadModule authz_user_module /usr/lib/apache2/modules/mod_authz_user.so
<Location "/api/session">
    AuthType Basic
    AuthName "taskwire"
    AuthUserFile "{users}"
    Require valid-user
</Location>
"""


class Apache:
    """Apache 2.4 with the shipped conf/apache2/taskwire.conf: mod_fcgid runs the handler,
    mod_proxy_wstunnel carries /ws.  Started as the web server's user (www-data when the tests
    run as root), like the worker and relay beside it, so file modes are tested as deployed."""

    name = "apache"
    site = "taskwire.conf"
    run_as = "www-data"

    def __init__(self, stack):
        self.stack = stack

    def command(self):
        os.makedirs(os.path.join(self.stack.tmp, "apache-run", "fcgid"), exist_ok=True)
        modules = "\n".join(f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so"
                            for m in APACHE_MODULES)
        path = os.path.join(self.stack.tmp, "apache.conf")
        text = APACHE_CONF.format(root=ROOT, modules=modules, site=self.site,
                                  **self.stack.settings())
        if self.stack.basic_auth:
            text += APACHE_BASIC_AUTH.format(users=self.stack.write_users("htpasswd"))
        with open(path, "w") as f:
            f.write(text)
        self.stack.hand_over()
        return ["apache2", "-f", path, "-D", "FOREGROUND"]


class ApacheCgi(Apache):
    """Apache 2.4 with conf/apache2/taskwire-cgi.conf: the handler as a plain CGI program,
    one process per request (CGI-only hosting)."""

    name = "apache-cgi"
    site = "taskwire-cgi.conf"


NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
pid "{tmp}/nginx.pid";
error_log "{tmp}/nginx-error.log" warn;
events {{
    worker_connections 1024;
}}
http {{
    include /etc/nginx/mime.types;
    access_log "{tmp}/nginx-access.log";
    client_body_temp_path "{tmp}/nginx-temp/body";
    proxy_temp_path "{tmp}/nginx-temp/proxy";
    fastcgi_temp_path "{tmp}/nginx-temp/fastcgi";
    uwsgi_temp_path "{tmp}/nginx-temp/uwsgi";
    scgi_temp_path "{tmp}/nginx-temp/scgi";
    server {{
        listen 127.0.0.1:{http_port};
        server_name 127.0.0.1;
        set $taskwire_www "{tree}/www";
        set $taskwire_fcgi "unix:{tmp}/fcgi.sock";
        set $taskwire_relay "127.0.0.1:{relay_port}";
        client_max_body_size {max_body};
        include "{root}/conf/nginx/taskwire.conf";
    }}
}}
"""


class Nginx:
    """nginx with the shipped conf/nginx/taskwire.conf included in a server block, and
    spawn-fcgi (a process of its own, "nginx-fcgi") running the handler on a unix socket, as
    an operator would set them up.  Started as the web server's user when the tests run as
    root, like Apache."""

    name = "nginx"
    run_as = "www-data"

    def __init__(self, stack):
        self.stack = stack

    def helpers(self):
        """The processes that run beside the web server: {name: command}."""
        settings = self.stack.settings()
        socket_path = os.path.join(settings["tmp"], "fcgi.sock")
        handler = os.path.join(settings["build"], "taskwire.fcgi")
        return {"nginx-fcgi": ["spawn-fcgi", "-n", "-s", socket_path, "-M", "0600", "--",
                               handler, "-c", settings["fcgi_config"]]}

    def command(self):
        os.makedirs(os.path.join(self.stack.tmp, "nginx-temp"), exist_ok=True)
        path = os.path.join(self.stack.tmp, "nginx.conf")
        with open(path, "w") as f:
            f.write(NGINX_CONF.format(root=ROOT, max_body=MAX_BODY,
                                      **self.stack.settings()))
        self.stack.hand_over()
        return ["nginx", "-p", self.stack.tmp, "-c", path,
                "-e", os.path.join(self.stack.tmp, "nginx-error.log")]


SERVERS = {"lighttpd": Lighttpd, "lighttpd-dropin": LighttpdDropin, "apache": Apache,
           "apache-cgi": ApacheCgi, "nginx": Nginx}


class Stack:
    """A stack on free ports with its own config, database and secret in a temp dir.

    worker: start a worker with the stack.  worker_settings / relay_settings: [worker] and
    [relay] keys that replace the test defaults (a key set to None is left out).  fcgi_tasks:
    a [zmq] tasks endpoint for the FastCGI handler alone (the tests use a dead one to take the
    handler's nudges away).
    websocket=False (lighttpd only): /ws is proxied without the upgrade, as by a proxy that
    strips it, so a page cannot open a WebSocket through the web server.  workers: how many
    workers the stack runs (named by worker_names: "worker", "worker2", ...); more than one
    puts the ZeroMQ hub between them and the other programs.  types: further exec types,
    {name: {key: value}} as in TEST_TYPES.  type_settings: keys added to types of the config
    ("sleep" included), {name: {key: value}}.  http_settings: [http] keys that replace the
    test defaults.  auth_settings: [auth] keys added to the test defaults.  basic_auth:
    {user: password}: lighttpd or Apache asks for one of them (HTTP basic authentication) on
    /api/session and hands the handler REMOTE_USER.
    store: the backend, "sqlite" (a file in var/) or "postgresql" (a database of its own on the
    session's throwaway cluster, tests/pg.py); by default $TASKWIRE_TEST_STORE, else sqlite.
    store_url: the PostgreSQL database of another stack, to share (two hosts on one store).
    secret: the token secret's bytes (another stack's, so that one client's token holds on
    both); random by default.
    store_dir: a directory of the stack's own (made 0700) for the database instead of var/, to
    put a file system of the test's own there.  namespace: run every process, and store_query,
    through the argv namespace.command(argv, user, cwd) (which also switches to user, the web
    server's user or None, and to the directory cwd): e.g. the processes in a private mount
    namespace where store_dir is a mount only they see.
    zmq_settings: [zmq] keys added for every program (curve keys); worker_zmq_settings: [zmq]
    keys the (first) worker's own config has instead (its own key files).
    address: the IPv4 address every program of the stack binds and is reached at (a host of
    tests/cluster/'s, in a network namespace given as namespace); 127.0.0.1 by default.
    server=None: the stack has no web server (a host running only a worker or a relay); its
    worker then waits for its heartbeat in the store rather than for health.
    channel_settings: [channels] keys that replace the test defaults; namespaces: [namespace
    NAME] sections, {name: {key: value}}."""

    def __init__(self, server="lighttpd", build=None, worker=True, worker_settings=None,
                 relay_settings=None, fcgi_tasks=None, websocket=True, workers=1, types=None,
                 type_settings=None, http_settings=None, store_dir=None, namespace=None,
                 admin=True, admin_relays=None, auth_settings=None, basic_auth=None,
                 store=None, store_url=None, secret=None, zmq_settings=None,
                 worker_zmq_settings=None, address="127.0.0.1", channel_settings=None,
                 namespaces=None):
        self.store = "postgresql" if store_url else (
            store or os.environ.get("TASKWIRE_TEST_STORE", "sqlite"))
        assert self.store in ("sqlite", "postgresql"), self.store
        self.store_url = store_url
        if self.store == "postgresql":
            from pg import Postgres
            self.postgres = Postgres.shared()
            self.store_url = store_url or self.postgres.create_database()
        self.websocket = websocket
        self.worker_names = [WORKER] + [f"{WORKER}{n}" for n in range(2, workers + 1)]
        self.hub = workers > 1
        self.extra_types = dict(types or {})
        self.type_settings = dict(type_settings or {})
        self.build = os.path.abspath(build or os.environ.get("TASKWIRE_BUILD", os.path.join(ROOT, "build")))
        self.tmp = tempfile.mkdtemp(prefix="taskwire-test-")
        os.chmod(self.tmp, 0o700)
        self.var = os.path.join(self.tmp, "var")
        os.mkdir(self.var, 0o700)
        self.store_dir = self.var
        if store_dir:
            self.store_dir = os.path.join(self.tmp, store_dir)
            os.mkdir(self.store_dir, 0o700)
        self.database = os.path.join(self.store_dir, "taskwire.db")
        self.namespace = namespace
        self.address = address
        self.http_port = free_port()
        self.relay_port = free_port()
        self.zmq_ports = [free_port() for _ in range(3)]
        self.server = SERVERS[server](self) if server else None
        self.user = getattr(self.server, "run_as", None) if os.geteuid() == 0 else None
        self.tree = ROOT
        if self.user and not self._reachable():
            self._copy_tree()
        self.processes = {}
        self.leftovers = []  # names of processes whose children outlived them
        self.secret_path = os.path.join(self.var, "secret")
        with open(os.open(self.secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(secret or secrets.token_bytes(32))
        # The admin key ([admin] key_file, 64 hex digits, 0600), as `make run` makes it;
        # admin=False leaves the admin API off.  [admin] relays: the relay's main port (its
        # /status is the metrics port's), unless admin_relays names others ("{relay}" in one
        # stands for the relay's main port).
        self.admin_key = secrets.token_hex(32) if admin else None
        self.admin_key_path = os.path.join(self.var, "admin.key")
        if admin:
            with open(os.open(self.admin_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                      "w") as f:
                f.write(self.admin_key + "\n")
        self.admin_relays = admin_relays
        # The publish key ([channels] publish_key_file), made like the admin key; [channels]
        # keys and [namespace NAME] sections (namespaces: {name: {key: value}}) for the tests.
        self.publish_key = secrets.token_hex(32)
        self.publish_key_path = os.path.join(self.var, "publish.key")
        with open(os.open(self.publish_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                  "w") as f:
            f.write(self.publish_key + "\n")
        self.channel_settings = dict(channel_settings or {})
        self.namespaces = dict(namespaces or {})
        self.auth_settings = dict(auth_settings or {})
        self.basic_auth = dict(basic_auth or {})
        self.with_worker = worker
        self.zmq_settings = dict(zmq_settings or {})
        sections = self.config_sections(worker_settings or {}, relay_settings or {},
                                        http_settings or {})
        self.config_path = os.path.join(self.tmp, "taskwire.conf")
        with open(self.config_path, "w") as f:
            f.write(ini(sections))
        # With the hub, each worker binds endpoints of its own (in its own config); the
        # stack's endpoints, which the handler, the relay and the tests use, are the hub's.
        self.worker_ports = {}
        self.worker_config_paths = {WORKER: self.config_path}
        if self.hub:
            for name in self.worker_names:
                ports = self.worker_ports[name] = [free_port() for _ in range(3)]
                own = dict(sections, zmq={key: f"tcp://127.0.0.1:{port}" for key, port in
                                          zip(("tasks", "publish", "events"), ports)})
                path = self.worker_config_paths[name] = os.path.join(self.tmp,
                                                                     f"taskwire-{name}.conf")
                with open(path, "w") as f:
                    f.write(ini(own))
        if worker_zmq_settings:
            own = dict(sections, zmq=dict(sections["zmq"], **worker_zmq_settings))
            path = self.worker_config_paths[WORKER] = os.path.join(self.tmp, "taskwire-worker.conf")
            with open(path, "w") as f:
                f.write(ini(own))
        self.fcgi_config_path = self.config_path
        if fcgi_tasks:
            sections["zmq"] = dict(sections["zmq"], tasks=fcgi_tasks)
            self.fcgi_config_path = os.path.join(self.tmp, "taskwire-fcgi.conf")
            with open(self.fcgi_config_path, "w") as f:
                f.write(ini(sections))

    # -- configuration -------------------------------------------------------------------

    def _reachable(self):
        """True when the service user can run the programs and read the page in place."""
        paths = [os.path.join(self.build, n) for n in ("taskwire.fcgi", "taskwire-worker",
                                                       "taskwire-relay")]
        check = " && ".join(f"test -x '{p}'" for p in paths + [os.path.join(TYPES, "steps"), CHECKSUM])
        check += f" && test -r '{ROOT}/www/index.html'"
        return subprocess.run(["runuser", "-u", self.user, "--", "sh", "-c", check]).returncode == 0

    def _copy_tree(self):
        """Copy the programs, the page and the exec types into the stack's directory."""
        import shutil
        tree = os.path.join(self.tmp, "tree")
        bin_dir = os.path.join(tree, "bin")
        os.makedirs(bin_dir)
        for name in ("taskwire.fcgi", "taskwire-worker", "taskwire-relay"):
            shutil.copy2(os.path.join(self.build, name), bin_dir)
        shutil.copytree(os.path.join(ROOT, "www"), os.path.join(tree, "www"))
        shutil.copytree(os.path.join(ROOT, "conf", "types"), os.path.join(tree, "conf", "types"))
        shutil.copytree(TYPES, os.path.join(tree, "tests", "integration", "types"))
        for base, dirs, files in os.walk(tree):
            os.chmod(base, 0o755)
        self.build, self.tree = bin_dir, tree

    def settings(self):
        """What a web server's config needs to know."""
        return {"tmp": self.tmp, "build": self.build, "http_port": self.http_port,
                "address": self.address,
                "relay_port": self.relay_port, "fcgi_config": self.fcgi_config_path,
                "tree": self.tree}

    def write_users(self, kind):
        """The basic_auth users in a file of the web server's: "plain" (lighttpd's user:password
        lines) or "htpasswd" ({SHA} hashes, which Apache reads); its path."""
        import base64
        import hashlib
        path = os.path.join(self.tmp, f"users.{kind}")
        with open(path, "w") as f:
            for user, password in self.basic_auth.items():
                if kind == "htpasswd":
                    digest = hashlib.sha1(password.encode()).digest()
                    password = "{SHA}" + base64.b64encode(digest).decode()
                f.write(f"{user}:{password}\n")
        return path

    def hand_over(self):
        """Make the stack's files the service user's (when running as root), copying what it
        could not reach in place: the deployed modes (secret 0600, var/ 0700) then hold for
        the user that really runs the programs."""
        user = self.user
        if user is None:
            return
        import pwd
        import shutil
        entry = pwd.getpwnam(user)
        for base, dirs, files in os.walk(self.tmp):
            for name in [base] + [os.path.join(base, n) for n in dirs + files]:
                os.chown(name, entry.pw_uid, entry.pw_gid)

    @property
    def tasks_endpoint(self):
        return f"tcp://{self.address}:{self.zmq_ports[0]}"

    @property
    def publish_endpoint(self):
        return f"tcp://{self.address}:{self.zmq_ports[1]}"

    @property
    def events_endpoint(self):
        return f"tcp://{self.address}:{self.zmq_ports[2]}"

    @property
    def http(self):
        return f"http://{self.address}:{self.http_port}"

    @property
    def relay_http(self):
        return f"http://{self.address}:{self.relay_port}"

    @property
    def relay_ws(self):
        return f"ws://{self.address}:{self.relay_port}/ws"

    def config_sections(self, worker_settings, relay_settings, http_settings=None):
        """Every key of docs/CONFIG.md, with short intervals so faults show within seconds."""
        types = dict(TEST_TYPES)
        if os.path.exists(CHECKSUM):
            types["checksum"] = CHECKSUM_TYPE
        types.update(self.extra_types)
        sections = {
            "log": {"level": "info"},
            "store": ({"backend": "postgresql", "url": self.store_url, "busy_timeout_ms": 5000}
                      if self.store_url else {"database": self.database, "busy_timeout_ms": 5000}),
            "auth": dict({"secret_file": self.secret_path, "token_ttl": 3600},
                         **self.auth_settings),
            "zmq": dict({"tasks": self.tasks_endpoint, "publish": self.publish_endpoint,
                         "events": self.events_endpoint}, **self.zmq_settings),
            # Submissions: far above what the suite sends, so only the tests of the limit
            # meet it (tests/integration/test_limits.py).
            "http": dict({"max_body": MAX_BODY, "submit_rate": 1000, "submit_burst": 1000,
                          "cors_origins": ""}, **(http_settings or {})),
            "worker": dict({"concurrency": 2, "progress_interval_ms": 50, "scan_interval_ms": 200,
                            "heartbeat_ms": 200, "stale_after_ms": 1500, "cancel_grace_ms": 500,
                            "lease_ms": 1500},
                           **worker_settings),
            "relay": dict({"listen": self.address, "port": self.relay_port, "ping_interval": 5,
                           "ping_timeout": 5, "ring": 64, "max_message": 65536,
                           "max_connections": 1000, "io_uring": 1,
                           "max_connections_per_client": 32, "connect_rate": 100,
                           "connect_burst": 1000, "connect_rate_exempt": "127.0.0.1",
                           "allowed_origins": "", "auth_timeout_ms": 5000,
                           "token_in_query": "false"}, **relay_settings),
        }
        # publish_max 256: a client message may be 1024 bytes (twice it and 512), so a test's
        # message over that limit still fits one proxy buffer (4 KB in nginx).
        sections["channels"] = dict({"max_per_connection": 16, "max_name": 64, "max_per_task": 8,
                                     "publish_key_file": self.publish_key_path,
                                     "publish_max": CLIENT_PUBLISH_MAX},
                                    **self.channel_settings)
        for name, keys in self.namespaces.items():
            sections[f"namespace {name}"] = dict(keys)
        if self.admin_key:
            relays = [url.replace("{relay}", self.relay_http) for url in
                      (self.admin_relays if self.admin_relays is not None else ["{relay}"])]
            sections["admin"] = {"key_file": self.admin_key_path, "api_url": self.http,
                                 "relays": " ".join(relays)}
        for name, keys in types.items():
            sections[f"type {name}"] = dict(keys, command=keys["command"].replace(ROOT, self.tree, 1))
        for name, keys in self.type_settings.items():
            sections[f"type {name}"] = dict(sections.get(f"type {name}", {}), **keys)
        # A key set to None is left out (one that the programs being tested do not know).
        return {section: {key: value for key, value in keys.items() if value is not None}
                for section, keys in sections.items()}

    # -- processes -----------------------------------------------------------------------

    def _spawn(self, name, command):
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        env = dict(os.environ, TASKWIRE_CONFIG=self.config_path)
        for key, value in SANITIZER_ENV.items():
            env.setdefault(key, value)
        try:
            extra = {"user": self.user, "group": self.user, "extra_groups": []} if self.user else {}
            if self.namespace:
                command, extra = self.namespace.command(command, self.user, self.tmp), {}
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       env=env, cwd=self.tmp, start_new_session=True, **extra)
        finally:
            log.close()
        self.processes[name] = process
        _live_stacks.add(self)
        return process

    def _binary(self, name):
        path = os.path.join(self.build, name)
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(f"{path} is missing: build it first (make SAN=1 all)")
        return path

    def start_worker(self, name=WORKER):
        """Start a worker (one of worker_names) and wait until health counts it; while another
        worker runs, until its own heartbeat is in the store."""
        if name not in self.worker_names:
            raise ValueError(f"{name} is not a worker of this stack: {self.worker_names}")
        others = [n for n in self.worker_names if n != name and not self._died(n)]
        process = self._spawn(name, [self._binary("taskwire-worker"), "-c",
                                     self.worker_config_paths[name]])
        if others or not self.server:
            wait_for(lambda: self.worker_id(name) or self._died(name), START_TIMEOUT,
                     f"{name}'s heartbeat")
        else:
            wait_for(lambda: self.health().get("pool") == "ok" or self._died(name),
                     START_TIMEOUT, "the worker's heartbeat")
        self._check_running(name)
        return process

    def worker_id(self, name=WORKER):
        """The id the running worker `name` has in the store (None until its first heartbeat,
        or when it is not running)."""
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return None
        try:
            rows = self.store_query("SELECT id FROM workers WHERE pid = ?", (process.pid,))
        except RuntimeError:  # PostgreSQL: the worker has not made the schema yet
            return None
        return rows[0][0] if rows else None

    def store_query(self, sql, parameters=()):
        """Rows of a query on the stack's database, opened read-only (no process notices);
        [] while the database does not exist yet or is busy.  sql is for either backend, its
        parameters marked ?."""
        if self.store_url:
            return self.postgres.query(self.store_url, sql, parameters)
        if not self.namespace:
            return read_store(self.database, sql, parameters)
        # Read where the programs see the store.  (A path through /proc/PID/root would not do:
        # SQLite resolves that link, to our own root.)
        argv = [sys.executable, os.path.abspath(__file__), "store-query", self.database, sql,
                json.dumps(list(parameters))]
        out = subprocess.run(self.namespace.command(argv, None, self.tmp), check=True,
                             capture_output=True, text=True, timeout=STOP_TIMEOUT).stdout
        return [tuple(row) for row in json.loads(out)]

    @contextlib.contextmanager
    def store_held(self):
        """While inside, another session holds the store's write lock (a worker frozen inside a
        write): SQLite's writer lock, or on PostgreSQL an exclusive lock of the tasks table."""
        if self.store_url:
            with self.postgres.holding(self.store_url, "LOCK TABLE tasks IN EXCLUSIVE MODE"):
                yield
            return
        import sqlite3
        holder = sqlite3.connect(self.database, isolation_level=None, timeout=10)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    def start_hub(self):
        """Start the ZeroMQ hub of a stack of several workers and wait until it has bound."""
        spec = {"tasks": self.tasks_endpoint, "publish": self.publish_endpoint,
                "events": self.events_endpoint,
                "workers": [{key: f"tcp://127.0.0.1:{port}" for key, port in
                             zip(("tasks", "publish", "events"), self.worker_ports[name])}
                            for name in self.worker_names]}
        log = os.path.join(self.tmp, "zmq-hub.log")
        self._spawn("zmq-hub", [sys.executable, os.path.abspath(__file__), "zmq-hub",
                                json.dumps(spec)])

        def bound():
            with open(log, errors="replace") as f:
                return "event=hub_ready" in f.read()
        wait_for(lambda: bound() or self._died("zmq-hub"), START_TIMEOUT, "the ZeroMQ hub")
        self._check_running("zmq-hub")

    def start_relay(self):
        """Start the relay and wait until its /health answers."""
        self._spawn("relay", [self._binary("taskwire-relay"), "-c", self.config_path])
        wait_for(lambda: http_status(self.relay_http + "/health") == 200 or self._died("relay"),
                 START_TIMEOUT, "the relay's /health")
        self._check_running("relay")

    def start_server(self):
        """Start the web server and wait until the FastCGI handler answers through it."""
        self._binary("taskwire.fcgi")
        names = [self.server.name]
        self._spawn(self.server.name, self.server.command())
        # Processes a server needs beside it (nginx: spawn-fcgi), stopped like the others.
        helpers = self.server.helpers() if hasattr(self.server, "helpers") else {}
        for name, command in helpers.items():
            self._spawn(name, command)
            names.append(name)
        wait_for(lambda: http_status(self.http + "/api/task-types") == 200 or
                 any(self._died(name) for name in names), START_TIMEOUT,
                 "the web server and the FastCGI handler")
        for name in names:
            self._check_running(name)

    def _died(self, name):
        process = self.processes.get(name)
        return process is None or process.poll() is not None

    def _check_running(self, name):
        if self._died(name):
            raise RuntimeError(f"{name} exited while starting:\n{self.logs()}")

    def stop(self, name, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Stop one process (SIGTERM, or kill -9 with sig=SIGKILL), wait for it and for every
        process of its group; returns its exit status (None if it was not running)."""
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
        try:
            status = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            status = process.wait(timeout)
        # Children left in the group (the web server's FastCGI handler) must go with it.
        try:
            wait_for(lambda: not group_alive(process.pid), 5, f"{name}'s children to exit")
        except TimeoutError:
            self.leftovers.append(name)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return status

    def stop_worker(self, name=WORKER):
        return self.stop(name)

    def kill_worker(self, name=WORKER):
        return self.stop(name, signal.SIGKILL)

    def stop_relay(self):
        return self.stop("relay")

    def kill_relay(self):
        return self.stop("relay", signal.SIGKILL)

    def _server_names(self):
        helpers = self.server.helpers() if hasattr(self.server, "helpers") else {}
        return [self.server.name] + list(helpers)

    def stop_server(self, sig=signal.SIGTERM):
        """Stop the web server (and the processes beside it, with their FastCGI handlers);
        returns the web server's exit status."""
        statuses = [self.stop(name, sig) for name in self._server_names()]
        return statuses[0]

    def kill_server(self):
        """kill -9 the web server's process group (its FastCGI handlers die with it)."""
        return self.stop_server(signal.SIGKILL)

    def fcgi_pids(self):
        """Pids of the FastCGI handler processes in the web server's process groups (lighttpd
        spawns its handler as its child; nginx's runs under spawn-fcgi)."""
        groups = {self.processes[n].pid for n in self._server_names() if not self._died(n)}
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    program = f.read().split(b"\0")[0]
            except OSError:
                continue
            if int(fields[2]) in groups and (fields[0] != "Z" or threads_alive(pid)) and \
                    os.path.basename(program) == b"taskwire.fcgi":
                found.append(int(pid))
        return found

    def kill_fcgi(self, timeout=5):
        """kill -9 every FastCGI handler process and wait until they are gone; the web server
        starts new ones (lighttpd about 2 s later, as it retries a dead backend).  Returns
        the pids killed."""
        pids = self.fcgi_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not set(pids) & set(self.fcgi_pids()), timeout,
                 "the FastCGI handlers to die")
        return pids

    def start(self):
        """Start the web server, the relay and (unless worker=False) a worker; on any failure
        stop what started and raise."""
        try:
            if self.hub:
                self.start_hub()
            self.start_server()
            self.start_relay()
            if self.with_worker:
                for name in self.worker_names:
                    self.start_worker(name)
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        """Stop everything (idempotent)."""
        for name in list(self.processes):
            self.stop(name)
        _live_stacks.discard(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def logs(self):
        """The tail of every process's log, for a failing test's report."""
        out = [f"--- stack in {self.tmp}"]
        for name in sorted(os.listdir(self.tmp)):
            if name.endswith(".log"):
                with open(os.path.join(self.tmp, name), errors="replace") as f:
                    out.append(f"--- {name}\n{f.read()[-6000:]}")
        return "\n".join(out)

    def sanitizer_reports(self):
        """Lines where ASan, LSan or UBSan reported a problem in any process."""
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

    def request(self, method, path, body=None, token=None, headers=None, raw=None,
                content_type="application/json", timeout=10):
        """(status, headers, parsed JSON body or None) of a request through the web server."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is None and method in ("POST", "PUT"):
            data = b""  # a browser's fetch() sends Content-Length: 0
        request = urllib.request.Request(self.http + path, data=data, method=method)
        if data is not None and content_type:
            request.add_header("Content-Type", content_type)
        if token:
            request.add_header("Authorization", "Bearer " + token)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
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

    def admin(self, method, path, key=None, timeout=10):
        """(status, headers, body) of an admin API request (path under /api/admin/) with the
        stack's admin key, or key if given ("" for none)."""
        key = self.admin_key if key is None else key
        headers = {"Authorization": "Bearer " + key} if key else {}
        return self.request(method, "/api/admin/" + path, headers=headers, timeout=timeout)

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

    def cancel(self, token, task_id):
        """(status, body) of a cancel request."""
        status, _, body = self.request("POST", f"/api/tasks/{task_id}/cancel", token=token)
        return status, body

    def wait_status(self, token, task_id, statuses, timeout=20):
        """The task once its status is one of statuses (polled over REST with a deadline)."""
        def check():
            task = self.task(token, task_id)
            return task if task and task["status"] in statuses else None
        return wait_for(check, timeout, f"task {task_id} to be {'/'.join(statuses)}")

    def wait_final(self, token, task_id, timeout=20):
        return self.wait_status(token, task_id, FINAL, timeout)


def main():
    """Run a stack until SIGTERM/SIGINT or the end of stdin's commands."""
    import argparse
    parser = argparse.ArgumentParser(description="Start a taskwire stack on free loopback ports.")
    parser.add_argument("--server", choices=sorted(SERVERS), default="lighttpd")
    parser.add_argument("--no-worker", action="store_true", help="start without a worker")
    parser.add_argument("--no-websocket", action="store_true",
                        help="lighttpd proxies /ws without the upgrade (WebSockets fail)")
    parser.add_argument("--workers", type=int, default=1,
                        help="workers to run (more than one: behind the ZeroMQ hub)")
    args = parser.parse_args()

    def finish(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    with Stack(server=args.server, worker=not args.no_worker,
               websocket=not args.no_websocket, workers=args.workers) as stack:
        print(json.dumps({"http": stack.http + "/", "relay": stack.relay_ws,
                          "relay_http": stack.relay_http, "events": stack.events_endpoint,
                          "publish": stack.publish_endpoint, "tasks": stack.tasks_endpoint,
                          "tmp": stack.tmp, "admin_key": stack.admin_key}), flush=True)
        actions = {"stop": {"worker": stack.stop_worker, "relay": stack.stop_relay,
                            "server": stack.stop_server},
                   "kill": {"worker": stack.kill_worker, "relay": stack.kill_relay,
                            "server": stack.kill_server, "fcgi": stack.kill_fcgi},
                   "start": {"worker": stack.start_worker, "relay": stack.start_relay,
                             "server": stack.start_server}}
        for name in stack.worker_names[1:]:
            for verb, method in (("stop", stack.stop_worker), ("kill", stack.kill_worker),
                                 ("start", stack.start_worker)):
                actions[verb][name] = (lambda m, n: lambda: m(n))(method, name)
        for line in sys.stdin:
            words = line.split()
            action = actions.get(words[0], {}).get(words[1]) if len(words) == 2 else None
            if action is None:
                print(json.dumps({"error": f"unknown command: {line.strip()}"}), flush=True)
                continue
            action()
            print(json.dumps({"done": line.strip()}), flush=True)
        while True:
            signal.pause()


def zmq_hub(spec):
    """The ZeroMQ hub of a stack of several workers (run as `stack.py zmq-hub SPEC`, SPEC a JSON
    object: tasks, publish, events, and workers, a list of each worker's three endpoints).

    A worker binds its endpoints, so two workers cannot share them; the hub stands in for the
    one set of endpoints the other programs know.  tasks: a PULL the handlers connect to, each
    nudge passed on to one connected worker (dropped when none is: the store is the queue).
    events: an XPUB the relays connect to, fed by an XSUB connected to every worker's events
    endpoint and bound on publish (so a PUB there reaches every relay, as a worker's publish
    endpoint does); subscriptions travel the other way.  When it reconnects to a restarted
    worker it sends {"type":"resync"} to every subscribed client id HUB_RESYNC_S later, as a
    relay does when its pool comes back: what that worker published before the hub was there
    is not replayed.  One thread; every message is passed on unchanged."""
    import zmq
    from zmq.utils.monitor import recv_monitor_message
    context = zmq.Context()

    def socket_of(kind, **options):
        sock = context.socket(kind)
        for option, value in dict(options, LINGER=0, SNDHWM=100000, RCVHWM=100000).items():
            sock.setsockopt(getattr(zmq, option), value)
        return sock

    xpub = socket_of(zmq.XPUB)
    xpub.bind(spec["events"])
    xsub = socket_of(zmq.XSUB, RECONNECT_IVL=20)
    monitor = xsub.get_monitor_socket(zmq.EVENT_CONNECTED)
    xsub.bind(spec["publish"])
    pull = socket_of(zmq.PULL)
    pull.bind(spec["tasks"])
    push = socket_of(zmq.PUSH, IMMEDIATE=1, RECONNECT_IVL=20)
    for worker in spec["workers"]:
        xsub.connect(worker["events"])
        push.connect(worker["tasks"])
    print(f"event=hub_ready workers={len(spec['workers'])}", flush=True)

    subscribed = set()
    resync_at = None
    poller = zmq.Poller()
    for sock in (xpub, xsub, pull, monitor):
        poller.register(sock, zmq.POLLIN)
    while True:
        wait = None if resync_at is None else max(0, int((resync_at - time.monotonic()) * 1000))
        ready = dict(poller.poll(wait))
        if xsub in ready:
            while xsub.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                xpub.send_multipart(xsub.recv_multipart())
        if xpub in ready:
            while xpub.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                frames = xpub.recv_multipart()
                if len(frames) == 1 and frames[0][:1] in (b"\x00", b"\x01"):
                    (subscribed.add if frames[0][:1] == b"\x01" else subscribed.discard)(
                        frames[0][1:])
                xsub.send_multipart(frames)
        if pull in ready:
            while pull.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                frames = pull.recv_multipart()
                try:
                    push.send_multipart(frames, zmq.NOBLOCK)
                except zmq.Again:
                    pass
        if monitor in ready:
            while monitor.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                event = recv_monitor_message(monitor)
                if event["event"] == zmq.EVENT_CONNECTED:
                    print(f"event=hub_connected endpoint={event['endpoint'].decode()}",
                          flush=True)
                    resync_at = time.monotonic() + HUB_RESYNC_S
        if resync_at is not None and time.monotonic() >= resync_at:
            resync_at = None
            for client_id in subscribed:
                xpub.send_multipart([client_id, b'{"type":"resync"}'])


if __name__ == "__main__":
    if sys.argv[1:2] == ["zmq-hub"]:
        zmq_hub(json.loads(sys.argv[2]))
    elif sys.argv[1:2] == ["store-query"]:
        # stack.py store-query PATH SQL PARAMETERS: Stack.store_query where the programs run.
        print(json.dumps(read_store(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))))
    else:
        main()
