"""The durable job engine: leases and the rerun of a dead worker's task, retries and their
states, the retry and delete endpoints, scheduling and admission, idempotent submission, one
queued event per task, and a pool that sleeps without spinning.  On the store
$TASKWIRE_TEST_STORE names (sqlite by default; `make test-integration-pg` runs them on
PostgreSQL too)."""
import asyncio
import concurrent.futures
import json
import os
import signal
import time

import zmq
import zmq.asyncio

from conftest import connect, deliverable, recv_json, run, start_stack, task_events, wait_for
from stack import Stack, group_alive


def _events(stack, token, client_id, submit, timeout=20):
    """Submit through submit() once the page's WebSocket hears the client id, and return the
    task and every event of it until its final one."""
    async def go():
        ws, _ = await connect(stack, token, direct=True)
        await deliverable(stack, client_id, ws)
        task = submit()
        events = await task_events(ws, task["id"], timeout)
        await ws.close()
        return task, events
    return run(go(), timeout=timeout + 10)


def _cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_sleeping_tasks_leave_the_worker_idle(request):
    """A pool running sleep tasks waits for them: a few ticks of CPU, not a core spinning on
    timed waits that return at once."""
    stack = start_stack(request, worker_settings={"concurrency": 4})
    token = stack.session()["token"]
    tasks = [stack.submit(token, "sleep", {"duration_ms": 8000, "steps": 2}) for _ in range(4)]
    for task in tasks:
        stack.wait_status(token, task["id"], ("running",), 10)
    pid = stack.processes["worker"].pid
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    before, start = _cpu_ticks(pid), time.monotonic()
    time.sleep(3)  # the measurement window itself, not a wait for an event
    used = (_cpu_ticks(pid) - before) / ticks_per_s / (time.monotonic() - start)
    print(f"worker CPU with 4 sleeping tasks: {used * 100:.1f}% of a core")
    assert used < 0.15, f"the pool used {used * 100:.0f}% of a core while its tasks slept"
    for task in tasks:
        assert stack.task(token, task["id"])["status"] == "running"


def test_killed_worker_task_runs_again(request):
    """A task whose worker died runs again on the next worker within the lease plus a sweep:
    its errors name the lost attempt's worker and host, and its events begin with one queued."""
    stack = start_stack(request)
    session = stack.session()
    token = session["token"]

    async def go():
        ws, _ = await connect(stack, token, direct=True)
        await deliverable(stack, session["client_id"], ws)
        task = stack.submit(token, "sleep", {"duration_ms": 1500, "steps": 3})
        # Killed once its first step reached the page: what a worker published in the
        # instant before SIGKILL may die with it (the page's resync covers that).
        events = []
        while not any(e["event"] == "progress" for e in events):
            message = await recv_json(ws, 10)
            if message.get("type") == "task" and message["task"]["id"] == task["id"]:
                events.append(message)
        stack.kill_worker()
        stack.start_worker()
        events += await task_events(ws, task["id"], 20)
        await ws.close()
        return task, events
    task, events = run(go(), timeout=40)
    kinds = [e["event"] for e in events]
    assert kinds.count("queued") == 1 and kinds[0] == "queued", kinds
    assert "retrying" in kinds and kinds[-1] == "succeeded", kinds
    final = stack.task(token, task["id"])
    assert events[-1]["task"] == final, "the final event and the store disagree"
    assert final["status"] == "succeeded" and final["attempts"] == 2, final
    assert len(final["errors"]) == 1
    lost = final["errors"][0]
    assert lost["attempt"] == 1 and lost["error"] == "worker lost"
    assert lost["worker"] and lost["host"] == os.uname().nodename
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs), "events went out of order"


def test_on_lost_fail_ends_the_task(request):
    """A type with on_lost = fail does not run twice: its task fails as worker lost, and the
    program died with its worker."""
    stack = start_stack(request, type_settings={"stall": {"on_lost": "fail"}})
    token = stack.session()["token"]
    task = stack.submit(token, "stall", {"trap": True})
    pidfile = os.path.join(stack.tmp, f"stall-{task['id']}.pid")
    wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), 10, "the program")
    pid = int(open(pidfile).read())
    stack.kill_worker()
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z", 5,
             "the program to die with its worker")
    stack.start_worker()
    final = stack.wait_final(token, task["id"], 10)
    assert final["status"] == "failed" and final["error"] == "worker lost", final
    assert final["attempts"] == 1 and final["errors"][0]["error"] == "worker lost"


def test_failed_attempts_retry_with_backoff_until_the_budget(request):
    """A type that retries failures runs its task max_attempts times, says when each retry
    starts, and ends failed with one error per attempt."""
    stack = start_stack(request, type_settings={"steps": {
        "retry_on": "failed", "max_attempts": 3, "retry_base_ms": 200, "retry_max_ms": 400}})
    session = stack.session()
    token = session["token"]
    task, events = _events(stack, token, session["client_id"],
                           lambda: stack.submit(token, "steps", {"count": 1, "fail": True}))
    kinds = [e["event"] for e in events]
    assert kinds.count("started") == 3 and kinds.count("retrying") == 2, kinds
    assert kinds[-1] == "failed"
    for retrying in (e for e in events if e["event"] == "retrying"):
        assert retrying["task"]["status"] == "queued"
        assert retrying["task"]["run_at"] >= retrying["task"]["errors"][-1]["at"]
    final = events[-1]["task"]
    assert final == stack.task(token, task["id"]), "the final event and the store disagree"
    for retrying in (e for e in events if e["event"] == "retrying"):
        assert retrying["task"]["seq"] < final["seq"]
    assert final["attempts"] == 3 and final["max_attempts"] == 3
    assert [e["attempt"] for e in final["errors"]] == [1, 2, 3]
    assert "something went wrong" in final["error"]


def test_retry_and_delete_endpoints(request):
    """A failed task can be run again over REST; a finished one removed; neither applies to a
    task still queued or running."""
    stack = start_stack(request)
    token = stack.session()["token"]
    failed = stack.submit(token, "steps", {"count": 1, "fail": True})
    assert stack.wait_final(token, failed["id"])["status"] == "failed"
    status, _, body = stack.request("POST", f"/api/tasks/{failed['id']}/retry", token=token)
    assert status == 202 and body["status"] == "queued", body
    again = stack.wait_final(token, failed["id"])
    assert again["status"] == "failed" and again["attempts"] == 2
    assert len(again["errors"]) == 2

    running = stack.submit(token, "sleep", {"duration_ms": 5000, "steps": 1})
    stack.wait_status(token, running["id"], ("running",), 5)
    assert stack.request("POST", f"/api/tasks/{running['id']}/retry", token=token)[0] == 409
    status, _, body = stack.request("DELETE", f"/api/tasks/{running['id']}", token=token)
    assert status == 409 and body["error"]["code"] == "conflict"
    assert stack.cancel(token, running["id"])[0] == 202
    stack.wait_final(token, running["id"])

    status, _, body = stack.request("DELETE", f"/api/tasks/{failed['id']}", token=token)
    assert status == 204 and body is None
    assert stack.request("GET", f"/api/tasks/{failed['id']}", token=token)[0] == 404
    assert stack.request("DELETE", f"/api/tasks/{failed['id']}", token=token)[0] == 404
    other = stack.session()["token"]
    assert stack.request("DELETE", f"/api/tasks/{running['id']}", token=other)[0] == 404


def test_cancel_reaches_a_task_waiting_to_retry(request):
    """A task between attempts is cancelled at once, and never starts again."""
    stack = start_stack(request, type_settings={"steps": {
        "retry_on": "failed", "retry_base_ms": 60000, "retry_max_ms": 60000}})
    token = stack.session()["token"]
    task = stack.submit(token, "steps", {"count": 1, "fail": True})

    def waiting():
        current = stack.task(token, task["id"])
        return current if current["status"] == "queued" and current["errors"] else None
    wait_for(waiting, 10, "the task to wait for its retry")
    status, body = stack.cancel(token, task["id"])
    assert status == 202 and body["status"] == "cancelled", body


def test_priority_then_age(request):
    """Higher priority starts first, then the oldest."""
    stack = start_stack(request, worker=False, worker_settings={"concurrency": 1})
    token = stack.session()["token"]
    low = stack.request("POST", "/api/tasks", {"type": "sleep", "params": {"duration_ms": 0}},
                        token)[2]
    high = stack.request("POST", "/api/tasks", {"type": "sleep", "priority": 5,
                                                "params": {"duration_ms": 0}}, token)[2]
    also_low = stack.request("POST", "/api/tasks", {"type": "sleep", "priority": 0,
                                                    "params": {"duration_ms": 0}}, token)[2]
    assert high["priority"] == 5 and low["priority"] == 0
    stack.start_worker()
    done = [stack.wait_final(token, t["id"]) for t in (high, low, also_low)]
    starts = [t["started_at"] for t in done]
    assert starts == sorted(starts), [(t["priority"], t["started_at"]) for t in done]


def test_run_at_and_delay_ms(request):
    """A scheduled task waits queued with its start time, and starts within a scan interval
    of it."""
    stack = start_stack(request)
    token = stack.session()["token"]
    status, _, task = stack.request("POST", "/api/tasks", {
        "type": "sleep", "delay_ms": 1500, "params": {"duration_ms": 0}}, token)
    assert status == 202 and task["status"] == "queued"
    created = task["created_at"]
    assert task["run_at"] > created
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 2)) + "+00:00"
    status, _, dated = stack.request("POST", "/api/tasks", {
        "type": "sleep", "run_at": at, "params": {"duration_ms": 0}}, token)
    assert status == 202 and dated["run_at"].startswith(at[:19]), dated
    time.sleep(0.8)  # well before either start time: both still wait
    assert stack.task(token, task["id"])["status"] == "queued"
    first = stack.wait_final(token, task["id"], 10)
    second = stack.wait_final(token, dated["id"], 10)
    for done in (first, second):
        assert done["started_at"] >= done["run_at"], done
    # Started within a scan interval (200 ms in tests) and some slack of its time.
    lag = _iso_ms(first["started_at"]) - _iso_ms(first["run_at"])
    assert 0 <= lag < 1000, lag


def _iso_ms(text):
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def test_type_concurrency_holds_across_slots(request):
    """A type limited to one running task never runs two at once, though the pool has room."""
    stack = start_stack(request, worker_settings={"concurrency": 3},
                        type_settings={"sleep": {"concurrency": 1}})
    token = stack.session()["token"]
    tasks = [stack.submit(token, "sleep", {"duration_ms": 300, "steps": 1}) for _ in range(3)]
    done = sorted((stack.wait_final(token, t["id"], 20) for t in tasks),
                  key=lambda t: t["started_at"])
    for earlier, later in zip(done, done[1:]):
        assert later["started_at"] >= earlier["finished_at"], (earlier, later)


def _with_http(stack, section="http", **keys):
    """Add keys to a section ([http] unless given) of the stack's config before it starts."""
    with open(stack.config_path) as f:
        text = f.read()
    extra = "".join(f"{key} = {value}\n" for key, value in keys.items())
    with open(stack.config_path, "w") as f:
        f.write(text.replace(f"[{section}]\n", f"[{section}]\n" + extra, 1))


def _stack_with_http(request, worker=True, section="http", **keys):
    stack = Stack(worker=worker)
    _with_http(stack, section, **keys)

    def finish():
        stack.close()
        assert not stack.sanitizer_reports(), stack.sanitizer_reports()
    request.addfinalizer(finish)
    return stack.start()


def test_queued_tasks_per_client_are_bounded(request):
    """A client past [http] max_queued gets 429 too_many_tasks with Retry-After; others are
    not affected."""
    stack = _stack_with_http(request, worker=False, max_queued=3)
    token = stack.session()["token"]
    for _ in range(3):
        stack.submit(token, "sleep", {"duration_ms": 0})
    status, headers, body = stack.request("POST", "/api/tasks", {"type": "sleep"}, token)
    assert status == 429 and body["error"]["code"] == "too_many_tasks", body
    assert headers["Retry-After"] == "1"
    assert stack.submit(stack.session()["token"], "sleep", {"duration_ms": 0})["status"] == \
        "queued"
    listed = stack.request("GET", "/api/tasks", token=token)[2]["tasks"]
    assert len(listed) == 3


def test_idempotency_key_answers_the_original_task(request):
    """The same Idempotency-Key from the same client answers the task it made (200); with a
    different body it is 422; another client's key is its own."""
    stack = start_stack(request)
    token = stack.session()["token"]
    body = {"type": "sleep", "params": {"duration_ms": 0}}
    key = {"Idempotency-Key": "order-42"}
    status, _, first = stack.request("POST", "/api/tasks", body, token, headers=key)
    assert status == 202
    status, _, again = stack.request("POST", "/api/tasks", body, token, headers=key)
    assert status == 200 and again["id"] == first["id"], again
    status, _, other = stack.request("POST", "/api/tasks", dict(body, name="other"), token,
                                     headers=key)
    assert status == 422 and other["error"]["code"] == "idempotency_mismatch", other
    status, _, mine = stack.request("POST", "/api/tasks", body, stack.session()["token"],
                                    headers=key)
    assert status == 202 and mine["id"] != first["id"]
    status, _, bad = stack.request("POST", "/api/tasks", body, token,
                                   headers={"Idempotency-Key": "x" * 300})
    assert status == 400 and "Idempotency-Key" in bad["error"]["message"]
    assert len(stack.request("GET", "/api/tasks", token=token)[2]["tasks"]) == 1


def _final_in_store(stack):
    """How many tasks of the stack's store are final (a read-only look; 0 while it is busy)."""
    rows = stack.store_query("SELECT count(*) FROM tasks WHERE status IN"
                             " ('succeeded', 'failed', 'cancelled')")
    return rows[0][0] if rows else 0


def test_one_queued_event_per_task_across_a_backlog_and_restarts(request):
    """A backlog larger than any worker's memory, run by a worker that is killed and
    restarted midway, gives no task a second queued event.  Watched on a ZeroMQ tap of the
    events endpoint, which sees every event published (a page's WebSocket is bounded by the
    relay's ring: a page that far behind is closed and resyncs).  What the killed worker
    published in its last instant dies with it, and what a new one publishes before the tap's
    reconnection reaches it is not seen: neither makes a duplicate."""
    count = 400
    stack = _stack_with_http(request, worker=False, max_queued=count + 10)
    session = stack.session()
    token = session["token"]

    async def go():
        sub = zmq.asyncio.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.RECONNECT_IVL, 2)
        sub.setsockopt(zmq.SUBSCRIBE, session["client_id"].encode())
        sub.connect(stack.events_endpoint)
        # 20 ms each on 2 slots: the backlog takes seconds, so the kill lands amid it.
        body = {"type": "sleep", "params": {"duration_ms": 20, "steps": 1}}
        ids = []
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for status, _, task in pool.map(
                    lambda _: stack.request("POST", "/api/tasks", body, token), range(count)):
                assert status == 202
                ids.append(task["id"])
        stack.start_worker()
        queued, final = {}, set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        restarted = False
        try:
            while True:
                assert loop.time() < deadline, \
                    f"{count - _final_in_store(stack)} tasks unfinished"
                if not await sub.poll(500):
                    if restarted and _final_in_store(stack) == count:
                        break  # every task final and the stream quiet
                    continue
                message = json.loads((await sub.recv_multipart())[-1])
                if message.get("type") != "task":
                    continue
                task_id = message["task"]["id"]
                if message["event"] == "queued":
                    queued[task_id] = queued.get(task_id, 0) + 1
                if message["event"] in ("succeeded", "failed", "cancelled"):
                    final.add(task_id)
                if not restarted and len(final) >= count // 3:
                    restarted = True
                    await loop.run_in_executor(None, stack.kill_worker)
                    await loop.run_in_executor(None, stack.start_worker)
        finally:
            sub.close(0)
        return ids, queued, restarted
    ids, queued, restarted = run(go(), timeout=120)
    assert restarted
    twice = {i: n for i, n in queued.items() if n != 1}
    assert not twice, f"{len(twice)} tasks announced more than once"
    assert len(queued) >= count // 3, "the first worker's announcements did not arrive"


def test_every_202_survives_killing_everything(request):
    """A burst of submissions answered 202, then every process of the stack killed at once:
    every task answered is in the store."""
    stack = Stack(worker=False)
    _with_http(stack, max_queued=10000)
    request.addfinalizer(stack.close)
    stack.start()
    token = stack.session()["token"]
    body = {"type": "sleep", "params": {"duration_ms": 0}}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: stack.request("POST", "/api/tasks", body, token),
                                range(300)))
    ids = [task["id"] for status, _, task in answers if status == 202]
    assert len(ids) == 300
    for process in list(stack.processes.values()):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for process in list(stack.processes.values()):
        process.wait(10)
        wait_for(lambda: not group_alive(process.pid), 5, "the stack's processes to die")
    stored = {row[0] for row in stack.store_query("SELECT id FROM tasks")}
    missing = set(ids) - stored
    assert not missing, f"{len(missing)} tasks answered 202 are not in the store"


def test_a_store_held_by_another_writer_answers_503_and_loses_nothing(request):
    """While another process holds the database's write lock past busy_timeout_ms (a worker
    frozen inside a write), a submission answers 503 unavailable with Retry-After, not 500;
    sent again with its Idempotency-Key once the lock is free, it makes its one task."""
    stack = Stack(worker=False)
    with open(stack.config_path) as f:
        text = f.read()
    with open(stack.config_path, "w") as f:
        f.write(text.replace("busy_timeout_ms = 5000", "busy_timeout_ms = 300", 1))

    def finish():
        stack.close()
        assert not stack.sanitizer_reports(), stack.sanitizer_reports()
    request.addfinalizer(finish)
    stack.start()
    token = stack.session()["token"]
    body = {"type": "sleep", "params": {"duration_ms": 0}}
    key = {"Idempotency-Key": "held-store"}
    with stack.store_held():
        status, headers, answer = stack.request("POST", "/api/tasks", body, token, headers=key)
    assert status == 503 and answer["error"]["code"] == "unavailable", (status, answer)
    assert headers["Retry-After"] == "1"
    status, _, task = stack.request("POST", "/api/tasks", body, token, headers=key)
    assert status == 202, task
    assert [t["id"] for t in stack.request("GET", "/api/tasks", token=token)[2]["tasks"]] == \
        [task["id"]]
