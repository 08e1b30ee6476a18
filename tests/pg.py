"""A throwaway PostgreSQL 15 cluster for the tests: initdb into a temporary directory, pg_ctl on
a free loopback port with its socket in that directory, stopped at the end of the process even
when a test failed or the run was interrupted (atexit; conftest turns SIGTERM into Ctrl-C).

One cluster per test session is much faster than initdb per test: take it with
`Postgres.shared()`, and a database of its own per stack or test with `create_database()`.
stop() and start() take it away and bring it back (with the same port and data), which is how
the tests make the store unreachable under a running stack.

initdb refuses to run as root: then the cluster belongs to the `postgres` user, and the
directory it lives in is made reachable for that user.
"""
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

PG_BIN = os.environ.get("TASKWIRE_PG_BIN", "/usr/lib/postgresql/15/bin")
START_TIMEOUT = 30  # seconds pg_ctl waits for the server to accept connections


def _run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): "
                           f"{result.stdout}{result.stderr}")
    return result.stdout


class Postgres:
    """One cluster: new ones start at once; stop() is idempotent."""

    live = []
    _shared = None

    def __init__(self, port=None, address="127.0.0.1", namespace=None, network=None,
                 durable=False, settings=None):
        """address: where the server listens (and the urls point); namespace: a network
        namespace (ip netns) to run it in; network: a further CIDR whose hosts may connect
        (trust, as for loopback).  durable: fsync and synchronous_commit on, the server's
        defaults and the product's durability (a benchmark's cluster), rather than fsync off;
        settings: further server settings, {name: value} (each passed as -c name=value)."""
        # Imported here so that stack.py may import this module at its top.
        from stack import free_port

        self.dir = tempfile.mkdtemp(prefix="taskwire-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.port = port or free_port()
        self.address = address
        self.as_user = ["ip", "netns", "exec", namespace] if namespace else []
        self.running = False
        self.databases = 0
        self.settings = {"fsync": "on", "synchronous_commit": "on"} if durable else \
            {"fsync": "off"}
        self.settings.update(settings or {})
        if os.geteuid() == 0:
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, "postgres")
            self.as_user += ["runuser", "-u", "postgres", "--"]
        Postgres.live.append(self)
        try:
            _run(self.as_user + [f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust",
                                 "-U", "postgres", "--no-sync"])
            if network:
                with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                    f.write(f"host all all {network} trust\n")
            self.start()
        except BaseException:
            self.destroy()
            raise

    @classmethod
    def shared(cls):
        """The session's cluster, started on first use."""
        if cls._shared is None or not os.path.isdir(cls._shared.data):
            cls._shared = cls()
        return cls._shared

    def start(self):
        if self.running:
            return
        self.running = True  # from here on stop() runs pg_ctl stop, also if start failed
        _run(self.as_user + [
            f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-t", str(START_TIMEOUT),
            "-o", f"-p {self.port} -k {self.dir} -c listen_addresses={self.address} " +
            " ".join(f"-c {name}={value}" for name, value in self.settings.items()),
            "-w", "start"])

    def stop(self):
        if not self.running:
            return
        self.running = False
        subprocess.run(self.as_user + [f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate",
                                       "-w", "stop"], capture_output=True)

    def destroy(self):
        self.stop()
        if self in Postgres.live:
            Postgres.live.remove(self)
        if Postgres._shared is self:
            Postgres._shared = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def psql(self, sql, database="postgres"):
        """Run sql as the superuser; its output, unaligned and without headers."""
        return _run([f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                     "-h", self.address, "-p", str(self.port), "-U", "postgres",
                     "-d", database, "-c", sql])

    def query(self, url, sql, parameters=()):
        """Rows (tuples) of sql on the database of url, its parameters marked ? (as for
        sqlite3): bound as psql variables, never spliced into the text."""
        parts = sql.split("?")
        assert len(parts) == len(parameters) + 1, (sql, parameters)
        text = parts[0] + "".join(f":'p{i}'{part}" for i, part in enumerate(parts[1:]))
        args = [f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url]
        for i, value in enumerate(parameters):
            args += ["-v", f"p{i}={value}"]
        script = f"SELECT coalesce(json_agg(r), '[]') FROM ({text}) AS r;\n"
        out = subprocess.run(args, input=script, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr}")
        # A row's values in column order, whatever their names (two may share one).
        return json.loads(out.stdout, object_pairs_hook=lambda pairs: tuple(v for _, v in pairs))

    @contextlib.contextmanager
    def holding(self, url, sql):
        """While inside, a session of its own that ran BEGIN and sql (a lock) stays open."""
        session = subprocess.Popen([f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-v",
                                    "ON_ERROR_STOP=1", "-d", url], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        try:
            session.stdin.write(f"BEGIN; {sql}; SELECT 'held';\n")
            session.stdin.flush()
            assert session.stdout.readline().strip() == "held"
            yield
        finally:
            session.stdin.write("ROLLBACK;\n")
            session.stdin.close()
            session.wait(10)

    def create_database(self, prefix="taskwire"):
        """A new empty database; returns its libpq connection string."""
        self.databases += 1
        name = f"{prefix}_{os.getpid()}_{self.databases}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def url(self, database):
        return f"host={self.address} port={self.port} user=postgres dbname={database}"

    @classmethod
    def destroy_all(cls):
        for cluster in list(cls.live):
            cluster.destroy()


atexit.register(Postgres.destroy_all)


def main(argv):
    """`pg.py run -- COMMAND...`: COMMAND with TASKWIRE_TEST_PG_URL naming a new database of a
    new cluster, removed when COMMAND ends; COMMAND's exit status."""
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--":
        print("usage: pg.py run -- COMMAND...", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        cluster = Postgres.shared()
        env = dict(os.environ, TASKWIRE_TEST_PG_URL=cluster.create_database())
        return subprocess.run(argv[2:], env=env).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        Postgres.destroy_all()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
