"""The fault suite's pytest setup: the driver importable, and SIGTERM (a CI timeout) unwinding
like Ctrl-C so the stack is stopped and the frozen worker thawed."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_sessionstart(session):
    signal.signal(signal.SIGTERM, signal.default_int_handler)
