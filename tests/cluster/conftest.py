"""The cluster test's pytest setup: the scenario importable, and SIGTERM (a CI timeout)
unwinding like Ctrl-C so every process, namespace and the bridge are removed."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_sessionstart(session):
    signal.signal(signal.SIGTERM, signal.default_int_handler)
