"""The fault suite's checks: what a run of driver.py left behind (its faults, each session's
messages and view, the store's final rows) judged against what the job engine promises, and the
summary table a report quotes.  analyse(run) returns a Result: failures (one sentence each),
numbers and summary."""
import datetime
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from stack import FINAL  # noqa: E402

RERUN_SLACK_MS = 2000  # a lost task runs again within lease_ms + this (p99)
DEFAULT_MAX_ATTEMPTS = 3  # when the store has no max_attempts column


def percentile(values, p):
    """Nearest-rank percentile of values (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Result:
    def __init__(self, run):
        self.run = run
        self.failures = []
        self.numbers = {}
        self.summary = ""


def analyse(run):
    result = Result(run)
    fail, numbers = result.failures.append, result.numbers
    rows = run.final_rows
    clients = run.clients
    answered = run.answered()
    owner = {task_id: client for client in clients for task_id in client.tasks}
    fail_if = lambda condition, text: fail(text) if condition else None  # noqa: E731

    kinds = {fault["kind"] for fault in run.faults}
    missing_kinds = {"worker", "relay", "fcgi", "lighttpd", "freeze"} - kinds
    fail_if(missing_kinds, f"no fault of kind {', '.join(sorted(missing_kinds))} happened (a "
            "run needs about 20 s of faults for every kind)")
    if run.listener.error:
        fail(f"the WebSocket loop died: {run.listener.error}")
    for problem in run.problems:
        fail(problem)

    submission_checks(clients, rows, answered, run.minimum_tasks, fail, numbers)
    store_checks(answered, rows, fail, numbers)

    lost_attempts = {}  # task id -> attempts lost to a fault we made
    for death in run.deaths:
        for task_id, attempt in death["lost"]:
            lost_attempts.setdefault(task_id, set()).add(attempt)
    freeze = run.freezer.record or {}
    if freeze.get("attempt"):
        lost_attempts.setdefault(freeze["task"], set()).add(freeze["attempt"])
    exhausted, bad = [], []
    for task_id in answered:
        row = rows.get(task_id)
        if not row or row["status"] == "succeeded":
            continue
        budget = row.get("max_attempts") or DEFAULT_MAX_ATTEMPTS
        if row["attempts"] >= budget and lost_attempts.get(task_id, set()) >= \
                set(range(1, row["attempts"] + 1)):
            exhausted.append(task_id)
        else:
            bad.append(row)
    numbers["exhausted"] = len(exhausted)
    numbers["retried_tasks"] = sum(1 for i in answered if rows.get(i, {}).get("attempts", 0) > 1)
    fail_if(bad, f"{len(bad)} tasks did not succeed, e.g. " + "; ".join(
        f"{r['id']} {r['status']} attempts={r['attempts']} error={r['error']!r}" for r in bad[:3]))

    client_checks(clients, rows, fail, numbers)

    # Reruns of the tasks a killed worker held.
    delays, not_rerun, unmeasured = [], [], []
    starts = started_events(clients)
    for death in run.deaths:
        for task_id, attempt in death["lost"]:
            row = rows.get(task_id) or {}
            delay = rerun_delay(starts, clients, row, task_id, attempt, death["at"])
            budget = row.get("max_attempts") or DEFAULT_MAX_ATTEMPTS
            if delay is not None:
                delays.append(delay)
            elif row.get("attempts", 0) > attempt:
                unmeasured.append(task_id)
            elif attempt < budget:
                not_rerun.append((task_id, attempt, row.get("status"), row.get("error")))
    numbers["lost"] = sum(len(d["lost"]) for d in run.deaths)
    numbers["delays"] = delays
    numbers["not_rerun"] = len(not_rerun)
    numbers["unmeasured"] = len(unmeasured)
    bound = (run.lease_ms + RERUN_SLACK_MS) / 1000
    numbers["bound"] = bound
    fail_if(not_rerun, f"{len(not_rerun)} tasks of killed workers never ran again (task, lost "
            f"attempt, status, error), e.g. {not_rerun[:3]}")
    p99 = percentile(delays, 99)
    if p99 is not None and p99 > bound:
        fail(f"p99 of the rerun delays is {p99:.2f} s, above lease_ms + "
             f"{RERUN_SLACK_MS / 1000:.0f} s = {bound:.2f} s")

    # The frozen worker.
    numbers["freeze"] = check_freeze(run, fail, owner, rows, bound)

    # The processes.
    fail_if(run.sanitizer, "sanitizer reports:\n" + "\n".join(run.sanitizer[:10]))
    fail_if(run.leftovers, f"processes outlived their parent: {run.leftovers}")
    crashed = [u for u in run.unexpected if not (u["after_freeze"] and u["status"] == 0)]
    fail_if(crashed, f"processes exited by themselves: {crashed}")
    result.summary = summary(run, numbers, result.failures)
    return result


def submission_checks(clients, rows, answered, minimum, fail, numbers):
    """Every submission answered 202/200 (at least minimum tasks), each Idempotency-Key with one
    task, no task in the store that no submission was answered with; fills numbers."""
    fail_if = lambda condition, text: fail(text) if condition else None  # noqa: E731
    submissions = [s for c in clients for s in c.submissions]
    unanswered = [s for s in submissions if not s["task"]]
    retried = [s for s in submissions if len(s["tries"]) > 1]
    replayed = [s for s in submissions if s["task"] and s["tries"][-1][1] == 200]
    numbers.update(tasks=len(answered), submissions=len(submissions), retried=len(retried),
                   tries=sum(len(s["tries"]) for s in submissions), replayed=len(replayed))
    fail_if(unanswered, f"{len(unanswered)} submissions never answered 202/200, e.g. "
            f"{[(s['body']['type'], s['error']) for s in unanswered[:3]]}")
    fail_if(len(answered) < minimum, f"only {len(answered)} tasks answered, {minimum} wanted")
    split = [s for s in submissions if len({t[2] for t in s["tries"] if t[1] in (200, 202)}) > 1]
    fail_if(split, f"{len(split)} Idempotency-Keys answered with more than one task")
    ids_by_client = {}
    for row in rows.values():
        ids_by_client.setdefault(row["client_id"], set()).add(row["id"])
    duplicates = sum(len(ids_by_client.get(c.client_id, set()) - set(c.tasks)) for c in clients)
    numbers["duplicates"] = duplicates
    fail_if(duplicates, f"{duplicates} tasks in the store that no submission was answered with "
            "(a retried submission made a second task: is Idempotency-Key honoured?)")


def store_checks(answered, rows, fail, numbers):
    """Every answered task is in the store and final; numbers gets "statuses"."""
    fail_if = lambda condition, text: fail(text) if condition else None  # noqa: E731
    missing = [i for i in answered if i not in rows]
    fail_if(missing, f"{len(missing)} answered tasks are not in the store, e.g. {missing[:3]}")
    statuses = {}
    for task_id in answered:
        if task_id in rows:
            statuses[rows[task_id]["status"]] = statuses.get(rows[task_id]["status"], 0) + 1
    numbers["statuses"] = statuses
    open_tasks = statuses.get("queued", 0) + statuses.get("running", 0)
    fail_if(open_tasks, f"{open_tasks} tasks left queued or running")


def client_checks(clients, rows, fail, numbers):
    """Each client's events (in seq order, no repeats, never an older attempt after a newer one, no
    queued event late) and its last view of each task (equal to the store); fills numbers."""
    fail_if = lambda condition, text: fail(text) if condition else None  # noqa: E731
    regressions, duplicate_events, older_attempt, queued_late, events = [], [], [], [], 0
    final_seen, final_after = 0, []
    diverging = []
    for client in clients:
        per_task = {}
        for at, number, message in client.events:
            if message.get("type") != "task":
                continue
            events += 1
            task = message["task"]
            seen = per_task.setdefault(task["id"], {"seq": 0, "attempt": 0, "count": 0})
            if message["seq"] < seen["seq"]:
                regressions.append((task["id"], seen["seq"], message["seq"]))
            elif message["seq"] == seen["seq"]:
                duplicate_events.append((task["id"], message["event"], message["seq"]))
            if task.get("attempts", 0) < seen["attempt"]:
                older_attempt.append((task["id"], seen["attempt"], task.get("attempts"),
                                      message["event"]))
            if message["event"] == "queued" and seen["count"]:
                queued_late.append((task["id"], message["seq"]))
            seen["seq"] = max(seen["seq"], message["seq"])
            seen["attempt"] = max(seen["attempt"], task.get("attempts", 0))
            seen["count"] += 1
            if message["event"] in FINAL and task["id"] in rows:
                final_seen += 1
                if message["seq"] != rows[task["id"]]["seq"]:
                    final_after.append((task["id"], message["seq"], rows[task["id"]]["seq"]))
        view = client.snapshot()
        for task_id in client.tasks:
            row = rows.get(task_id)
            mine = view.get(task_id, {})
            if row and (mine.get("status"), mine.get("seq")) != (row["status"], row["seq"]):
                diverging.append((client.index, task_id, mine.get("status"), mine.get("seq"),
                                  row["status"], row["seq"]))
    listener_errors = [e for c in clients for e in c.errors]
    fail_if(listener_errors, f"{len(listener_errors)} unexpected errors on the pages' "
            f"WebSockets, e.g. {listener_errors[:3]}")
    numbers.update(events=events, final_seen=final_seen, regressions=len(regressions),
                   duplicate_events=len(duplicate_events), older_attempt=len(older_attempt),
                   connections=sum(c.connections for c in clients),
                   lists=sum(c.lists for c in clients),
                   unconfirmed=sum(c.unconfirmed for c in clients))
    fail_if(diverging, f"{len(diverging)} tasks where a client's view differs from the store "
            f"(client, task, view status/seq, store status/seq), e.g. {diverging[:3]}")
    fail_if(final_after, f"{len(final_after)} tasks changed after their final event, e.g. "
            f"{final_after[:3]}")
    fail_if(regressions, f"{len(regressions)} events arrived after one with a higher seq, e.g. "
            f"{regressions[:3]}")
    fail_if(duplicate_events, f"{len(duplicate_events)} events repeated a seq already received "
            f"(task, event, seq), e.g. {duplicate_events[:3]}")
    fail_if(older_attempt, f"{len(older_attempt)} events of an older attempt arrived after one "
            f"of a newer attempt (task, newer, older, event), e.g. {older_attempt[:3]}")
    fail_if(queued_late, f"{len(queued_late)} queued events after another event of their task, "
            f"e.g. {queued_late[:3]}")


def started_events(clients):
    """{task id: [(receive time, attempt)]} of every started event, in arrival order."""
    starts = {}
    for client in clients:
        for at, _, message in client.events:
            if message.get("type") == "task" and message["event"] == "started":
                starts.setdefault(message["task"]["id"], []).append(
                    (at, message["task"].get("attempts", 0)))
    return starts


def rerun_delay(starts, clients, row, task_id, attempt, died_at):
    """Seconds from a worker's death to the start of the next attempt of a task it held: when
    that attempt's started event arrived, else its started_at from any copy of the task a page
    saw (a listing, when the event fell in a gap) or from the store (when it was the last
    attempt); None when nothing shows that start."""
    for at, started in starts.get(task_id, []):
        if started == attempt + 1 and at >= died_at:
            return at - died_at
    for client in clients:
        seen = client.starts.get(task_id, {}).get(attempt + 1)
        if seen:
            return iso_seconds(seen) - died_at
    if row and row.get("attempts") == attempt + 1 and isinstance(row.get("started_at"), int):
        return row["started_at"] / 1000 - died_at
    return None


def iso_seconds(text):
    """Seconds since the epoch of "YYYY-MM-DDTHH:MM:SS.mmmZ"."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def marked_by(value, pid):
    return value is not None and f"worker={pid}" in str(value) or \
        value is not None and f'"worker":{pid}' in str(value)


def check_freeze(run, fail, owner, rows, bound):
    """The frozen worker wrote nothing about its task once thawed, and no page heard it."""
    record = run.freezer.record
    if not record:
        fail("the freeze never happened (the run was too short)")
        return None
    if record.get("problem"):
        fail(f"the freeze was not done: {record['problem']}")
        return None
    task_id, attempt, pid = record["task"], record["attempt"], record["pid"]
    out = {"task": task_id, "attempt": attempt, "held_s": record["held_s"],
           "newer_at_cont": record["newer_running_at_cont"], "writes": 0, "events": 0,
           "thawed_in_write": record["thawed_in_write"], "locked": bool(record["locked"])}
    final = rows.get(task_id) or {}
    newest = max([final.get("attempts", 0)] +
                 [r["attempts"] for _, r in record["snapshots"] if r])
    out["newest_attempt"] = newest
    if newest <= attempt:
        fail(f"frozen worker: its task {task_id} never got a newer attempt than {attempt} "
             f"(store: {final.get('status')}, error {final.get('error')!r})")
    at_cont = record["row_at_cont"] or {}
    errors_at_cont = errors_of(at_cont, attempt)
    states = {row["seq"]: row for _, row in record["snapshots"] if row}
    for row in states.values():
        # A later attempt may run on the thawed worker itself (claimed after SIGCONT): its
        # states name the same process and are its own, not the lost attempt's.
        if row["seq"] <= at_cont.get("seq", 0) or row.get("attempts", 0) > attempt:
            continue
        if marked_by(row.get("message"), pid) or marked_by(row.get("result"), pid) or \
                errors_of(row, attempt) > errors_at_cont:
            out["writes"] += 1
    if final and final.get("seq", 0) > at_cont.get("seq", 0) and \
            (marked_by(final.get("result"), pid) and final.get("attempts") == attempt):
        out["writes"] += 1
    if out["writes"]:
        fail(f"frozen worker: {out['writes']} states of its task in the store (seq) came from "
             f"it after SIGCONT")
    client = owner.get(task_id)
    first_newer = None
    for at, _, message in client.events if client else []:
        if message.get("type") != "task" or message["task"]["id"] != task_id:
            continue
        task = message["task"]
        if task.get("attempts", 0) > attempt and first_newer is None:
            first_newer = at
        late = first_newer is not None and task.get("attempts", 0) <= attempt
        heard = at >= record["cont_at"] and task.get("attempts", 0) <= attempt and \
            marked_by(task.get("message"), pid)
        if late or heard:
            out["events"] += 1
    if out["events"]:
        fail(f"frozen worker: {out['events']} events of its lost attempt reached the page "
             "after SIGCONT or after the newer attempt's first event")
    delay = rerun_delay(started_events(clients_of(client)), clients_of(client), final,
                        task_id, attempt, record["stopped_at"])
    out["rerun_s"] = delay
    if delay is not None and delay > bound:
        fail(f"frozen worker: its task ran again {delay:.2f} s after SIGSTOP, above {bound:.2f} s")
    return out


def clients_of(client):
    return [client] if client else []


def errors_of(row, attempt):
    """How many entries of row's errors name attempt."""
    try:
        entries = json.loads(row.get("errors") or "[]")
    except (TypeError, ValueError):
        return 0
    return sum(1 for e in entries if isinstance(e, dict) and e.get("attempt") == attempt)


def summary(run, n, failures):
    """The table a report quotes."""
    kinds = {}
    for fault in run.faults:
        kinds[fault["kind"]] = kinds.get(fault["kind"], 0) + 1
    delays = n.get("delays", [])
    fmt = lambda v: "-" if v is None else f"{v:.2f} s"  # noqa: E731
    freeze = n.get("freeze") or {}
    rows = [
        ("run", f"{run.seconds:.0f} s of faults, {run.client_count} clients, seed {run.seed}, "
                f"lease {run.lease_ms} ms"),
        ("tasks answered", f"{n['tasks']} (submissions retried {n['retried']}, tries "
                           f"{n['tries']}, answered 200 on a retry {n['replayed']})"),
        ("faults", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"),
        ("final states", ", ".join(f"{k} {v}" for k, v in sorted(n["statuses"].items()))),
        ("retried tasks", f"{n['retried_tasks']} with more than one attempt; "
                          f"{n['exhausted']} out of attempts to faults"),
        ("lost to killed workers", f"{n['lost']} running tasks; ran again {len(delays)} "
                                   f"(and {n['unmeasured']} whose next start no copy showed), "
                                   f"never {n['not_rerun']}"),
        ("rerun delay", f"p50 {fmt(percentile(delays, 50))}  p99 {fmt(percentile(delays, 99))}"
                        f"  max {fmt(max(delays) if delays else None)}  (bound "
                        f"{n['bound']:.2f} s)"),
        ("duplicates", f"{n['duplicates']} tasks, {n['duplicate_events']} events"),
        ("events", f"{n['events']} on {n['connections']} connections; final event seen for "
                   f"{n['final_seen']} of {n['tasks']} tasks; {n['lists']} REST listings; "
                   f"{n['unconfirmed']} connections whose probe never came back"),
        ("order", f"{n['regressions']} seq regressions, {n['older_attempt']} older-attempt "
                  f"events after newer"),
        ("frozen worker", (f"task attempt {freeze['attempt']} -> {freeze['newest_attempt']}, "
                           f"held {freeze['held_s']:.2f} s, newer attempt running at SIGCONT "
                           f"{freeze['newer_at_cont']}, rerun {fmt(freeze.get('rerun_s'))}; "
                           f"writes after SIGCONT {freeze['writes']}, late events "
                           f"{freeze['events']}; stops inside a store write thawed first "
                           f"{freeze['thawed_in_write']}"
                           + (", kept one holding a write lock" if freeze["locked"] else ""))
                          if freeze else "not done"),
        ("verdict", "PASS" if not failures else f"FAIL ({len(failures)} checks)"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["fault suite summary", "-" * 19]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"  FAIL: {f}" for f in failures]
    return "\n".join(lines)
