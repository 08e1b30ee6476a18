"""The stack on the PostgreSQL store (tests/pg.py's throwaway cluster): an outage of the server
under a running stack answers 503 and heals by itself, and the stacks of two hosts share one
database's tasks and its type limits.  The rest of the durable engine's tests run on it through
`make test-integration-pg`."""
import os

from conftest import start_stack
from stack import wait_for


def _alive(stack):
    return [name for name, process in stack.processes.items() if process.poll() is not None]


def test_an_outage_of_the_server_answers_503_and_heals_without_a_restart(request):
    """While the database server is down, submissions and health answer 503 naming the store's
    server; once it is back, every program takes work again without a restart, and the task
    submitted before the outage is still there."""
    stack = start_stack(request, store="postgresql")
    token = stack.session()["token"]
    before = stack.submit(token, "sleep", {"duration_ms": 0})
    assert stack.wait_final(token, before["id"], 20)["status"] == "succeeded"
    body = {"type": "sleep", "params": {"duration_ms": 0}}
    stack.postgres.stop()
    try:
        status, headers, answer = stack.request("POST", "/api/tasks", body, token)
        assert status == 503 and answer["error"]["code"] == "unavailable", (status, answer)
        assert "server cannot be reached" in answer["error"]["message"], answer
        assert headers["Retry-After"] == "1"
        status, _, health = stack.request("GET", "/api/health")
        assert status == 503 and health["store"] == "down", health
        assert "cannot be reached" in health["store_error"], health
    finally:
        stack.postgres.start()
    wait_for(lambda: stack.request("GET", "/api/health")[0] == 200, 20,
             "health to answer 200 again")
    status, _, after = stack.request("POST", "/api/tasks", body, token)
    assert status == 202, after
    assert stack.wait_final(token, after["id"], 20)["status"] == "succeeded"
    assert stack.task(token, before["id"])["status"] == "succeeded"
    assert not _alive(stack), f"processes ended: {_alive(stack)}"
    assert "event=store_recovered" in stack.logs()


def test_two_hosts_share_the_tasks_and_a_type_limit(request):
    """Two stacks (two hosts) on one database: a task submitted to a host without a worker runs
    on the other host's worker and is read on either; with both workers running, a type limited
    to one never runs twice at once across them."""
    limit = {"sleep": {"concurrency": 1}}
    first = start_stack(request, store="postgresql", worker=False, type_settings=limit,
                        worker_settings={"concurrency": 2})
    with open(first.secret_path, "rb") as f:
        secret = f.read()
    second = start_stack(request, store_url=first.store_url, secret=secret,
                         type_settings=limit, worker_settings={"concurrency": 2})
    token = first.session()["token"]
    body = {"duration_ms": 200, "steps": 1}
    shared = [first.submit(token, "sleep", body) for _ in range(2)]
    for task in shared:
        assert second.wait_final(token, task["id"], 20)["status"] == "succeeded"
        assert first.task(token, task["id"])["status"] == "succeeded"
    ran = {row[0] for row in first.store_query("SELECT DISTINCT worker_id FROM tasks")}
    assert ran == {second.worker_id()}, ran

    first.start_worker()
    tasks = [stack.submit(token, "sleep", body) for stack in (first, second) * 3]
    done = sorted((first.wait_final(token, t["id"], 30) for t in tasks),
                  key=lambda t: t["started_at"])
    assert all(task["status"] == "succeeded" for task in done), done
    for earlier, later in zip(done, done[1:]):
        assert later["started_at"] >= earlier["finished_at"], (earlier, later)


def test_workers_of_another_host_wake_on_notify_and_listen_again_after_a_restart(request):
    """A worker whose scan is a minute away still starts a task submitted on another host at
    once (the submission's NOTIFY), stops a task cancelled there within JOB_CANCEL_POLL_MS, and
    hears submissions again once the database server has restarted (its LISTEN connection
    came back by itself)."""
    import time
    first = start_stack(request, store="postgresql", worker=False)
    with open(first.secret_path, "rb") as f:
        secret = f.read()
    second = start_stack(request, store_url=first.store_url, secret=secret,
                         worker_settings={"scan_interval_ms": 60000})
    worker_log = os.path.join(second.tmp, "worker.log")
    wait_for(lambda: "event=listening" in open(worker_log).read(), 10, "the worker's LISTEN")
    token = first.session()["token"]
    quick = first.submit(token, "sleep", {"duration_ms": 0})
    assert first.wait_final(token, quick["id"], 5)["status"] == "succeeded"

    long = first.submit(token, "sleep", {"duration_ms": 30000, "steps": 30})
    first.wait_status(token, long["id"], ("running",), 5)
    asked = time.monotonic()
    status, body = first.cancel(token, long["id"])
    assert status == 202, body
    assert first.wait_final(token, long["id"], 5)["status"] == "cancelled"
    assert time.monotonic() - asked < 1.0

    first.postgres.stop()
    first.postgres.start()
    wait_for(lambda: open(worker_log).read().count("event=listening") >= 2, 20,
             "the worker's LISTEN again after the restart")
    # A handler thread finds its connection gone at its first call (503), as a page would: try
    # again, as its Retry-After says.
    body = {"type": "sleep", "params": {"duration_ms": 0}}
    again = wait_for(lambda: (lambda r: r[2] if r[0] == 202 else None)(
        first.request("POST", "/api/tasks", body, token)), 20, "a submission answered 202")
    wait_for(lambda: (first.task(token, again["id"]) or {}).get("status") == "succeeded", 5,
             "the task submitted after the restart to succeed")
    assert not _alive(first) and not _alive(second)


def test_a_cancel_and_a_retry_heard_by_two_hosts_are_announced_once(request):
    """Every worker hears every nudge on PostgreSQL: a task cancelled while queued (its start a
    minute away) and a failed task retried over REST each reach the page as one event, not one
    per worker host, and the retried task runs again once."""
    import asyncio
    import json
    from conftest import connect, deliverable, next_text, run
    from stack import free_port
    # Both hosts' workers connect their events to the first host's relay (Scaling out).
    ingress = f"tcp://127.0.0.1:{free_port()}"
    first = start_stack(request, store="postgresql", relay_settings={"events_listen": ingress},
                        worker_zmq_settings={"relays": ingress})
    with open(first.secret_path, "rb") as f:
        secret = f.read()
    second = start_stack(request, store_url=first.store_url, secret=secret,
                         zmq_settings={"relays": ingress})
    relay_log = os.path.join(first.tmp, "relay.log")
    wait_for(lambda: open(relay_log).read().count("event=upstream_connected") >= 2, 10,
             "both workers connected to the first host's relay")
    for stack in (first, second):
        log = os.path.join(stack.tmp, "worker.log")
        wait_for(lambda: "event=listening" in open(log).read(), 10, "each worker's LISTEN")
    session = first.session()
    token = session["token"]

    async def go():
        ws, _ = await connect(first, token)
        await deliverable(first, session["client_id"], ws)
        later = first.request("POST", "/api/tasks", {"type": "sleep", "params": {},
                                                     "delay_ms": 60000}, token)[2]
        failed = first.submit(token, "steps", {"count": 1, "fail": True})
        assert first.wait_final(token, failed["id"])["status"] == "failed"
        assert first.cancel(token, later["id"])[0] == 202
        status, _, body = first.request("POST", f"/api/tasks/{failed['id']}/retry", token=token)
        assert status == 202, body
        events, ended = [], set()
        while ended != {"cancelled", "failed again"}:
            message = json.loads(await next_text(ws, 10))
            if message.get("type") != "task":
                continue
            task = message["task"]
            events.append((task["id"], message["event"], message["seq"]))
            if task["id"] == later["id"] and message["event"] == "cancelled":
                ended.add("cancelled")
            if task["id"] == failed["id"] and message["event"] == "failed" and \
                    task["attempts"] == 2:
                ended.add("failed again")
        # A moment for any second announcement to arrive (it would be published at once).
        try:
            while True:
                message = json.loads(await next_text(ws, 0.5))
                if message.get("type") == "task":
                    events.append((message["task"]["id"], message["event"], message["seq"]))
        except (asyncio.TimeoutError, AssertionError):
            pass
        await ws.close()
        return later, failed, events
    later, failed, events = run(go())
    assert len(events) == len(set(events)), f"an event reached the page twice: {events}"
    cancelled = [e for e in events if e[0] == later["id"] and e[1] == "cancelled"]
    assert len(cancelled) == 1, events
    retried = [e for e in events if e[0] == failed["id"] and e[1] in ("retrying", "queued")
               and e[2] > 1]
    assert len(retried) == 1, events
    again = first.task(token, failed["id"])
    assert again["status"] == "failed" and again["attempts"] == 2, again
