"""The fault suite as a test: one run of tests/faults/driver.py (FAULT_SECONDS of faults,
default 30; FAULT_SEED repeats a run's choices) against the programs in $TASKWIRE_BUILD.  The
summary table goes to stdout."""
import os

import driver


def test_nothing_is_lost_while_parts_crash():
    """Under load, with workers, the relay, the FastCGI handler and lighttpd killed every few
    seconds and a worker frozen past its lease, every accepted task still ends succeeded (run
    again on a live worker within its lease and two seconds when its worker died), no page
    hears a lost attempt after the new one began, and every page ends at the store's state.
    If this broke, a user would see a task fail, stall or run twice when a server crashed."""
    seconds = float(os.environ.get("FAULT_SECONDS", "30"))
    result = driver.run(seconds=seconds, seed=int(os.environ["FAULT_SEED"])
                        if os.environ.get("FAULT_SEED") else None)
    print("\n" + result.summary, flush=True)
    assert not result.failures, "\n".join(result.failures)
