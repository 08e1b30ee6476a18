#!/usr/bin/python3
"""celery_peer.py: the Celery peer of the job-queue benchmark (Redis broker and result backend).

    celery_peer.py enqueue '{"jobs":N}'                  apply_async N times on one connection
    celery_peer.py produce '{"rate":R,"seconds":S,"out":F}'  apply_async at a rate
    celery_peer.py listen  '{"expect":N,"out":F}'        the result backend's notifications
    celery_peer.py counts  '{}'                          the broker queue's length
    python3 -m celery -A celery_peer worker ...          the worker (run.py starts it)

The Redis URL comes from $BENCH_REDIS_URL.  The task returns [i, the time it started]; the
result backend stores that result and PUBLISHes it on the channel celery-task-meta-<id> (what
AsyncResult.get() waits on), so the listener, subscribed to that pattern, learns both when a job
started and when it became final.  Times are CLOCK_MONOTONIC nanoseconds, as in the harness.
"""
import json
import os
import signal
import sys
import time

from celery import Celery
from celery.signals import worker_ready

BROKER = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "4")),
    worker_disable_rate_limits=True,  # no task has one; Celery's documented shortcut
    worker_redirect_stdouts=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop(i):
    return [i, time.monotonic_ns()]


def say(event, **fields):
    sys.__stdout__.write(json.dumps(dict(event=event, **fields)) + "\n")
    sys.__stdout__.flush()


@worker_ready.connect
def announce_ready(**_):
    say("ready", t=time.monotonic_ns())


def enqueue(options):
    t = time.monotonic_ns()
    with app.producer_or_acquire() as producer:
        for i in range(options["jobs"]):
            noop.apply_async((i,), producer=producer)
    say("enqueued", jobs=options["jobs"], seconds=(time.monotonic_ns() - t) / 1e9)


def produce(options):
    rate, total = options["rate"], round(options["rate"] * options["seconds"])
    submit, ack, errors, max_lag = {}, {}, 0, 0
    with app.producer_or_acquire() as producer:
        start = time.monotonic_ns()
        for i in range(total):
            due = start + i * 1e9 / rate
            wait = due - time.monotonic_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
            t = time.monotonic_ns()
            max_lag = max(max_lag, t - due)
            submit[i] = t
            try:
                noop.apply_async((i,), producer=producer)
                ack[i] = time.monotonic_ns()
            except Exception:  # counted and reported; the run shows the loss
                errors += 1
    with open(options["out"], "w") as f:
        json.dump({"submit": submit, "ack": ack, "max_lag_ms": max_lag / 1e6, "errors": errors}, f)
    say("produced", jobs=total, max_lag_ms=max_lag / 1e6, errors=errors)


def listen(options):
    client = app.backend.client
    pubsub = client.pubsub()
    pubsub.psubscribe("celery-task-meta-*")
    while True:  # the server's confirmation: from here on no result is missed
        message = pubsub.get_message(timeout=5.0)
        if message and message["type"] == "psubscribe":
            break
    start, final, failed = {}, {}, 0
    expect = options.get("expect", 0)
    first = last = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    say("ready", t=time.monotonic_ns())
    told = False
    while not stop:
        message = pubsub.get_message(timeout=0.2)
        if message is None or message["type"] != "pmessage":
            continue
        t = time.monotonic_ns()
        meta = json.loads(message["data"])
        if meta.get("status") != "SUCCESS":
            failed += 1
            continue
        i, started = meta["result"]
        start[i], final[i], last = started, t, t
        first = min(first, started) if first else started
        if expect and len(final) >= expect and not told:
            told = True
            say("done", count=len(final), first_start=first, last_final=last)
    if options.get("out"):
        with open(options["out"], "w") as f:
            json.dump({"start": start, "final": final, "count": len(final), "failed": failed}, f)


def counts(options):
    client = app.backend.client
    keys = sum(1 for _ in client.scan_iter("celery-task-meta-*", count=1000))
    say("counts", queued=client.llen("celery"), results=keys)


ROLES = {"enqueue": enqueue, "produce": produce, "listen": listen, "counts": counts}

if __name__ == "__main__":
    ROLES[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
