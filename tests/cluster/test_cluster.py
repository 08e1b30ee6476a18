"""taskwire on nine hosts (network namespaces) while a worker host dies, another is cut off past
its lease, a relay dies and PostgreSQL restarts: every accepted task succeeds once, every page
ends at the store's truth in seq order (tests/cluster/scenario.py)."""
import os

import scenario


def test_cluster_survives_its_hosts_failing():
    """What a user would notice if it broke: a task lost or run twice when a host fails, a page
    left showing a stale state, or a page that never hears of its tasks again."""
    failures, report = scenario.run(os.environ.get("TASKWIRE_BUILD"))
    print("\n" + report)
    assert not failures, report
