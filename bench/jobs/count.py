#!/usr/bin/python3
"""Instructions the worker spends per no-op job in a drain, counted with callgrind.

    /usr/bin/python3 bench/jobs/count.py [--jobs N] [--build DIR] [--keep DIR]

A stack (tests/stack.py: lighttpd, the handler, SQLite) takes N sleep tasks of duration_ms 0
with no worker running; then a worker starts under valgrind's callgrind and drains them.  The
count is of instructions, not time, so it is the same on a busy machine as on a quiet one: a
change to the worker's path can be judged by it while other work shares the cores (the jobs
per second of run.py need a quiet machine).  Prints the total, the instructions per job and
the inclusive share of the store's and the events' main functions; --keep keeps the
callgrind file (callgrind_annotate --inclusive=yes FILE for the rest).
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)

from stack import Stack  # noqa: E402
from run import TW_MAX_QUEUED_LIFTED, TW_SLEEP, TaskwireClient  # noqa: E402

SHOWN = ("pool_dispatch", "pool_intake", "job_run", "store_tasks_claim", "store_tasks_finish",
         "store_tasks_announce", "store_row_task", "protocol_task_event")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--keep", help="directory to keep the callgrind file in")
    a = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("count.py: needs valgrind")
    tmp = tempfile.mkdtemp(prefix="taskwire-count-")
    try:
        build = os.path.join(tmp, "build")
        os.mkdir(build)
        for name in ("taskwire.fcgi", "taskwire-relay"):
            shutil.copy2(os.path.join(a.build, name), build)
        shutil.copy2(os.path.join(a.build, "taskwire-worker"), os.path.join(build, "worker.bin"))
        out = os.path.join(tmp, "callgrind.out")
        wrapper = os.path.join(build, "taskwire-worker")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={out} "
                    f"{build}/worker.bin \"$@\"\n")
        os.chmod(wrapper, 0o755)
        stack = Stack(build=build, worker=False, worker_settings={"concurrency": 16},
                      http_settings={"max_queued": TW_MAX_QUEUED_LIFTED,
                                     "submit_rate": 1000000, "submit_burst": 1000000})
        stack.start()
        try:
            client = TaskwireClient(stack.http_port)
            for _ in range(a.jobs):
                status, body = client.submit(TW_SLEEP)
                if status != 202:
                    sys.exit(f"count.py: POST /api/tasks answered {status}: {body}")
            stack.start_worker()
            deadline = time.monotonic() + 60 + a.jobs / 20
            done = 0
            while time.monotonic() < deadline:
                done = stack.store_query(
                    "SELECT count(*) FROM tasks WHERE status = 'succeeded'")[0][0]
                if done >= a.jobs:
                    break
                time.sleep(0.2)
            stack.stop_worker()  # callgrind writes its file as the worker exits
        finally:
            stack.close()
        if done < a.jobs:
            sys.exit(f"count.py: {done} of {a.jobs} jobs succeeded in time")
        report = subprocess.run(["callgrind_annotate", "--inclusive=yes", out],
                                capture_output=True, text=True, check=True).stdout
        total = None
        rows = {}
        for line in report.splitlines():
            parts = line.split()
            if not parts or not parts[0][0].isdigit():
                continue
            count = int(parts[0].replace(",", ""))
            if "PROGRAM TOTALS" in line:
                total = count
            for name in SHOWN:
                if f":{name} [" in line and name not in rows:
                    rows[name] = count
        print(f"{a.jobs} jobs: {total:,} instructions in the worker, {total / a.jobs:,.0f} a job")
        for name in SHOWN:
            if name in rows:
                print(f"  {name:24s} {rows[name] / a.jobs:9,.0f} a job "
                      f"({100 * rows[name] / total:4.1f}%)")
        if a.keep:
            os.makedirs(a.keep, exist_ok=True)
            shutil.copy2(out, a.keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
