"""tests/pg.py, the throwaway PostgreSQL the store's PostgreSQL tests will run on: it must
start without a database service, keep its data across a stop and a start (the outage test),
and never outlive the test process, even one that fails or is interrupted (CI would be left
with a server on a port, and a later run's initdb would fight it)."""
import os
import subprocess
import sys
import textwrap

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TESTS)
from pg import Postgres  # noqa: E402


def test_a_database_survives_a_stop_and_a_start():
    """An outage test that restarted the store would find it empty, and test nothing."""
    cluster = Postgres.shared()
    url = cluster.create_database()
    name = url.rsplit("dbname=", 1)[1]
    cluster.psql("CREATE TABLE t (x integer); INSERT INTO t VALUES (7)", name)
    cluster.stop()
    with pytest.raises(RuntimeError):
        cluster.psql("SELECT 1", name)
    cluster.start()
    assert cluster.psql("SELECT x FROM t", name).strip() == "7"
    assert cluster.create_database() != url


@pytest.mark.parametrize("ending", ["raise SystemExit(1)", "raise KeyboardInterrupt",
                                    "raise RuntimeError('a failing test')"])
def test_the_cluster_is_gone_when_its_process_ends(ending):
    """A test process that failed or was interrupted would leave a PostgreSQL server behind."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        from pg import Postgres
        cluster = Postgres.shared()
        print(cluster.dir, flush=True)
        {ending}
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    where = done.stdout.split()[0]
    assert not os.path.exists(where), done.stderr
    servers = subprocess.run(["pgrep", "-f", f"-k {where}"], capture_output=True, text=True)
    assert servers.stdout == "", "a postgres outlived its test process"
