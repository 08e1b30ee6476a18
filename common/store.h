/* store.h: the durable task store, the one source of truth about tasks: one interface, two
 * backends ([store] backend): SQLite (WAL, a file of this host: store_sqlite.c) and PostgreSQL
 * (a server every host reaches: store_pg.c), with the same semantics and the same JSON.
 *
 * The store is also the queue: a task answered 202 is a row with status "queued" before the
 * reply is written; workers claim rows atomically, so a task runs at most once per claim and
 * a nudge lost on the wire delays a task by one scan, never loses it.  A claim holds a lease
 * its worker renews; an expired one is taken back, and every write of a worker names the
 * attempt it belongs to (the fencing token), so a stale attempt's writes change nothing.  Every
 * change of a task raises its "seq" by one, so readers can order what they see.
 *
 * Task objects are JSON: id, client_id, type, name, params, status, progress (0..100),
 * message, result (JSON or null), error (string or null), attempts (started so far; the
 * current attempt's fencing token), max_attempts, priority, errors (one entry per ended
 * attempt: attempt, at, error, worker, host), seq, created_at, run_at, started_at,
 * finished_at (ISO 8601 or null), channels (the channel names its events also go to, as
 * submitted; [] for none).
 *
 * The schema carries a version (SQLite: PRAGMA user_version; PostgreSQL: a schema_version
 * table): an older one is upgraded on open, a newer one than the program knows is refused with
 * a clear error.
 *
 * A struct store is one connection (SQLite or libpq): use one per thread.  Every function returns 0
 * or a negative TW_E_* code; a returned task (json_t **) is new and owned by the caller.
 *
 * When the disk is full, the file or its file system refuses writes, or I/O fails, a change
 * fails whole (its transaction is rolled back) and nothing waits: the functions a client's
 * request calls (store_tasks_insert, _cancel, _retry, _delete, _get, _list and
 * store_check_writable) answer TW_E_STORE_FULL, TW_E_STORE_READONLY or TW_E_STORE_IO (503s
 * naming the store; TW_E_STORE_BUSY for another writer's lock held past busy_timeout_ms), the
 * others TW_E_STORE, with store_problem() saying why.  Each connection logs such a problem
 * once, when it begins, and once when a write lands again; every process of the store sees the
 * latest one (store_check_writable).  A connection SQLite could open only read-only is opened
 * again for writing, at most every second, once the file allows it.  On PostgreSQL a server
 * that cannot be reached (or a connection lost) is TW_E_STORE_UNREACHABLE, the store's problem
 * until a call gets through again: each call after a lost connection connects anew.
 */
#ifndef TW_COMMON_STORE_H
#define TW_COMMON_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "presence_wire.h"

#define STORE_STATUS_QUEUED "queued"
#define STORE_STATUS_RUNNING "running"
#define STORE_STATUS_SUCCEEDED "succeeded"
#define STORE_STATUS_FAILED "failed"
#define STORE_STATUS_CANCELLED "cancelled"

#define STORE_LIST_DEFAULT 50  /* tasks per page when no limit is given */
#define STORE_LIST_MAX 200     /* most tasks per page */
#define STORE_MESSAGE_MAX 1024 /* bytes of a progress message kept; longer is cut */
#define STORE_ERROR_MAX 4096   /* bytes of an error text kept; longer keeps the tail */
#define STORE_NAME_MAX 200     /* bytes of a task name */
#define STORE_SCHEMA_VERSION                                                                       \
    7 /* 1: before leases (no user_version); 2: leases, retries;                                   \
         3: workers' host, per-minute counts; 4: a task's channels; 5: who announced a task;       \
         6: presence; 7: channel history (channel_streams, channel_history) */

struct store;
struct config;

/* Which backend holds the tasks, and where. */
enum store_backend {
    STORE_BACKEND_SQLITE,    /* path: a database file of this host */
    STORE_BACKEND_POSTGRESQL /* url: a libpq connection string */
};

struct store_options {
    enum store_backend backend;
    const char *path;    /* SQLite's database file */
    const char *url;     /* PostgreSQL's connection string */
    int busy_timeout_ms; /* how long a write waits for another writer's lock (PostgreSQL:
                            lock_timeout), then TW_E_STORE_BUSY */
};

/* The options cfg's [store] section names; the strings are borrowed from cfg. */
struct store_options store_options_of(const struct config *cfg);

/* Open (creating if needed) the database options name and its schema (upgrading an older one).
 * Caller owns; free with store_destroy().  NULL with the reason in err on failure. */
struct store *store_new(const struct store_options *options, char *err, size_t errlen);

/* Group commit for this connection (the handler's; on PostgreSQL a no-op that returns 0: a
 * COMMIT returns once the server has it on disk, synchronous_commit = on, and the server shares
 * flushes of concurrent commits itself): its commits (store_tasks_insert,
 * store_task_cancel) return once on disk, as before, but concurrent commits of all processes
 * that turned it on share one sync of the WAL, taken outside SQLite's writer lock.  The shared
 * counters live in the database's "-queue" file (mapped by every connection; it also carries
 * the latest write problem).  0, or TW_E_STORE when unavailable (the connection then stays
 * synchronous=FULL, equally durable). */
int store_group_commit(struct store *store);

/* WAL syncs this connection made for group commit (for tests and measurements; 0 on
 * PostgreSQL). */
uint64_t store_sync_count(const struct store *store);

/* Close the connection.  NULL-safe; sets *store to NULL. */
void store_destroy(struct store **store);

/* 1 when the status is final (succeeded, failed, cancelled), else 0. */
int store_status_is_final(const char *status);

/* 1 when text is one of the five statuses, else 0. */
int store_status_is_valid(const char *status);

/* How long an Idempotency-Key holds: the same key from the same client within this window
 * answers the task it made. */
#define STORE_IDEMPOTENCY_MS (24LL * 3600 * 1000)
#define STORE_IDEMPOTENCY_KEY_MAX 255 /* bytes of an Idempotency-Key */
#define STORE_HASH_SIZE 65            /* a request digest in hex, NUL included */
#define STORE_PRUNE_BATCH 500         /* finished tasks deleted per transaction by pruning */
#define STORE_CLAIM_MAX 64            /* tasks claimed in one transaction at most */
/* How long after a worker announced a task no other worker may claim it: the queued event,
 * handed to ZeroMQ before the announcement commits, normally leaves the worker's I/O thread
 * within microseconds; this covers a thread that the machine's scheduler holds off for a few
 * tens of milliseconds. */
#define STORE_ANNOUNCE_SETTLE_MS 50
#define STORE_HOST_MAX 64          /* bytes of a worker's host name kept */
#define STORE_RATE_IDLE_MS 3600000 /* a client's submission bucket is forgotten after this */

/* One queued task (seq 1, a new id from token_ordered_id) to insert: the inputs are borrowed;
 * store_tasks_insert() fills task (a new reference the caller owns, or NULL), replayed and rc
 * (0 or a TW_E_* code).
 *   run_at_ms       when the first attempt may start (ms since the epoch); 0: now.
 *   max_queued      the client's queued tasks at most, this one included; 0: no limit
 *                   (TW_E_TOO_MANY_TASKS beyond it).
 *   idempotency_key with request_hash (the submission's digest): a key seen from this client
 *                   within STORE_IDEMPOTENCY_MS answers its task (replayed = 1) when the digest
 *                   matches, TW_E_IDEMPOTENCY_MISMATCH when it does not.
 *   submit_rate     with submit_burst: the client's token bucket (common/bucket.h), a row of
 *                   the store's submit_rate table shared by every process: a submission that
 *                   would make a task takes a token (in the batch's transaction, so no two
 *                   processes spend the same one); with none it is TW_E_TOO_MANY_REQUESTS and
 *                   retry_after_ms says when one will be there.  0: no limit.  A client idle
 *                   for STORE_RATE_IDLE_MS is forgotten by pruning (it starts full again). */
struct store_submission {
    const char *client_id, *type, *name;
    const json_t *params;
    int priority;
    int64_t run_at_ms;
    int max_attempts;
    int max_queued;
    const char *idempotency_key;
    const char *request_hash;
    const char *channels; /* a JSON array of channel names (checked by the caller), NULL: [] */
    int submit_rate, submit_burst;
    int64_t retry_after_ms;
    json_t *task;
    int replayed;
    int rc;
};

/* Insert count tasks (one or more) in one transaction with one sync: each submission succeeds
 * or fails on its own (its rc), and those that succeed are on disk when this returns.  Returns
 * 0, or the failure of the transaction as a whole (every rc says so and no task is kept):
 * TW_E_STORE, or a 503 (TW_E_STORE_FULL, ...) when the store is only full, read-only or held. */
int store_tasks_insert(struct store *store, struct store_submission *const *subs, size_t count);

/* The task with id, if client_id is NULL or owns it; TW_E_NOT_FOUND otherwise. */
int store_task_get(struct store *store, const char *id, const char *client_id, json_t **task);

/* client_id's tasks, newest first: at most limit (1..STORE_LIST_MAX), only status if given,
 * only those older than the task id before if given.  *tasks is a new array. */
int store_task_list(struct store *store, const char *client_id, const char *status,
                    const char *before, int limit, json_t **tasks);

/* Cancel: a queued task (waiting for its first attempt or for a retry) becomes cancelled at once
 * (*task has the final state, *now_final=1); a running one is marked cancel-requested for its
 * worker (*now_final=0); a finished one is TW_E_CONFLICT.  client_id NULL means any owner. */
int store_task_cancel(struct store *store, const char *id, const char *client_id, int *now_final,
                      json_t **task);

/* A failed or cancelled task gets a new attempt: queued, runnable now, its attempt budget
 * raised to one more than it used.  TW_E_CONFLICT when it is queued, running or succeeded. */
int store_task_retry(struct store *store, const char *id, const char *client_id, json_t **task);

/* Remove a finished task.  TW_E_CONFLICT while it is queued or running. */
int store_task_delete(struct store *store, const char *id, const char *client_id);

/* Mark a queued task as announced: 0 when this call did (the caller publishes its queued
 * event, *task is its state), TW_E_NOT_FOUND when it was announced already or is not queued.
 * So every task's queued event goes out once, whichever worker or restart sees it first.
 * worker_id is the announcing worker's: for STORE_ANNOUNCE_SETTLE_MS after it, only that
 * worker may claim the task (store_tasks_claim), so that the started event of another worker,
 * which reaches a relay over another connection, cannot overtake the queued event on its way. */
int store_task_announce(struct store *store, const char *id, const char *worker_id, json_t **task);

/* store_task_announce for each of ids[0..count), in as few statements as the backend can
 * (inside the caller's transaction when one is open): the number announced, their states in
 * tasks[0..n) (caller owns), or a negative code (tasks then holds none). */
int store_tasks_announce(struct store *store, const char *worker_id, const char *const *ids,
                         size_t count, json_t **tasks);

/* After a cancel nudge (status "cancelled", a task cancelled while queued) or a retry nudge
 * (status "queued"): 0 when this call is the one to publish the change (*task is its state),
 * TW_E_NOT_FOUND when the task is not in that status, or another worker announced it already.
 * On PostgreSQL a nudge reaches every worker (STORE_NOTIFY_CHANNEL): the change's statement
 * clears the task's announced flag and the first call sets it, so one worker publishes.  On
 * SQLite a nudge reaches one worker: every call that finds the status answers it.  A retry's
 * announcement holds other workers' claims off as store_task_announce's does (PostgreSQL; on
 * SQLite the one worker that heard the nudge is the only one that knows of it until its next
 * scan). */
int store_task_announce_change(struct store *store, const char *id, const char *status,
                               const char *worker_id, json_t **task);

/* PostgreSQL: the NOTIFY channel of the nudges.  store_tasks_insert, store_task_cancel and
 * store_task_retry issue, in the transaction of their change, NOTIFY STORE_NOTIFY_CHANNEL with
 * the payload "VERB TASK_ID" (protocol.h's verbs), which the server delivers to every
 * listening worker once that transaction commits (never before the row can be read).  SQLite
 * has no such thing: the handler pushes its nudges over ZeroMQ. */
#define STORE_NOTIFY_CHANNEL "taskwire_nudge"

/* 1 when some queued task could be claimed now (limits as in store_tasks_claim), 0 when none,
 * or a negative code.  A read: it spares an idle worker's scans a write transaction. */
int store_task_claimable(struct store *store, const char *limits);

/* Claim up to max (1..STORE_CLAIM_MAX) runnable tasks for worker_id on host, in one
 * transaction (the caller's, if one is open): highest priority first, then oldest; only tasks whose
 * run_at has come; no more running of a type than limits allows (a JSON object {"type": limit}, or
 * NULL for none), counted across every worker of the store.  Each becomes running with attempts+1
 * (its fencing token) and a lease until now + lease_ms.  Fills tasks[0..n) (new references to
 * each whole task as the claim left it, as store_task_get gives it: what its started event
 * carries, so the one who runs it need not read it again), announce[i] (1 when the task's
 * queued event was never published: publish it first, built from the task as it was) and
 * waited_ms[i] (the time from its run_at to this start); returns n (0 when nothing is
 * runnable) or a negative code. */
int store_tasks_claim(struct store *store, const char *worker_id, const char *host,
                      int64_t lease_ms, const char *limits, size_t max, json_t **tasks,
                      int *announce, int64_t *waited_ms);

/* Renew worker_id's leases until now + lease_ms.  *held is a new array of {"id", "attempts"}
 * of every task the worker still holds; a task missing from it was taken back (its lease ran
 * out and another worker swept it): the worker must stop it and write nothing more about it. */
int store_leases_renew(struct store *store, const char *worker_id, int64_t lease_ms, json_t **held);

/* Running tasks whose lease has run out: a new array of task objects, each with "worker" and
 * "host" of the attempt that was lost and "cancel_requested" (true/false).  A read; act on
 * each with store_task_take_back. */
int store_leases_expired(struct store *store, json_t **expired);

/* What becomes of a task taken back from a lost worker, or of an attempt that ended. */
enum store_next { STORE_NEXT_RETRY, STORE_NEXT_FAIL, STORE_NEXT_CANCEL };

/* Take back attempt of task id, whose lease has run out (refused with TW_E_FENCED if it was
 * renewed or taken meanwhile): retry (queued, runnable at run_at_ms), fail (failed, error
 * "worker lost") or cancel (a cancel was requested).  error_entry (a JSON object text, the
 * lost attempt's record) is appended to the task's errors. */
int store_task_take_back(struct store *store, const char *id, int attempt, enum store_next next,
                         int64_t run_at_ms, const char *error_entry, json_t **task);

/* Every write a worker makes about a running task names its attempt (the fencing token): a
 * write of an attempt that is no longer the task's current running one is refused with
 * TW_E_FENCED and changes nothing. */

/* Put a running task back in the queue (a worker stopping before it could finish): status
 * queued, progress 0, message as given; it keeps its place by age. */
int store_task_requeue(struct store *store, const char *id, int attempt, const char *message,
                       json_t **task);

/* Record progress (clamped to 0..100) and message of a running task. */
int store_task_progress(struct store *store, const char *id, int attempt, int progress,
                        const char *message, json_t **task);

/* Finish a running task with a final status at at_ms (finished_at; 0: now); result (borrowed,
 * may be NULL) and error (may be NULL) are stored as given; message replaces the step message
 * when not NULL; error_entry (a JSON object text, or NULL) is appended to errors.  Succeeded
 * sets progress to 100. */
int store_task_finish(struct store *store, const char *id, int attempt, const char *status,
                      const json_t *result, const char *error, const char *message,
                      const char *error_entry, int64_t at_ms, json_t **task);

/* One final state of a batch for store_tasks_finish: the fields as store_task_finish takes
 * them (borrowed), and what became of it. */
struct store_finish {
    const char *id;
    int attempt;
    const char *status;
    const json_t *result;
    const char *error;
    const char *message;
    const char *error_entry;
    int64_t at_ms;
    int rc;      /* out: 0 stored, TW_E_FENCED when that attempt no longer runs */
    int64_t seq; /* out: the task's seq after it, when stored */
};

/* store_task_finish for each of items (no rows built), in as few statements as the backend
 * can.  0 when every item has its rc (each stored or fenced, as a lone store_task_finish
 * would have been); another code when the store failed, and then, inside the caller's
 * transaction, the caller rolls it back. */
int store_tasks_finish(struct store *store, struct store_finish *items, size_t count);

/* The seq of the task the last successful change returned.  The changes below accept a NULL
 * task: the change is made and only its seq kept here (a caller that knows the new state
 * spares building it). */
int64_t store_last_seq(const struct store *store);

/* End a running attempt that will be retried: status queued, runnable at run_at_ms, error and
 * message as given, error_entry appended to errors. */
int store_task_retry_later(struct store *store, const char *id, int attempt, const char *error,
                           const char *error_entry, int64_t run_at_ms, json_t **task);

/* For a running attempt: 1 if a cancel was requested, 0 if not, TW_E_FENCED when the attempt is
 * no longer the task's current running one, or another negative code. */
int store_task_check(struct store *store, const char *id, int attempt);

/* Record that worker_id (running `concurrency` slots) is alive now. */
int store_worker_heartbeat(struct store *store, const char *worker_id, int concurrency);

/* Forget worker_id (clean shutdown). */
int store_worker_remove(struct store *store, const char *worker_id);

/* Number of workers whose heartbeat is younger than stale_after_ms, or a negative code;
 * forgets workers silent for longer. */
int store_workers_alive(struct store *store, int64_t stale_after_ms);

/* The tasks queued and running, by type: *depths (caller owns; json_decref()) is an array of
 * {"type":..,"status":"queued"|"running","count":N}, types with none left out.  0, or a
 * negative code. */
int store_queue_depths(struct store *store, json_t **depths);

/* Delete up to STORE_PRUNE_BATCH tasks finished more than keep_ms ago, and the idempotency
 * keys past their window and submission buckets idle for STORE_RATE_IDLE_MS (as many of
 * each), in one short transaction.  Returns the number of tasks deleted (call
 * again while it is STORE_PRUNE_BATCH) or a negative code. */
int store_tasks_prune(struct store *store, int64_t keep_ms);

/* A write transaction around several of the calls above (the worker pool's turn: the outcomes
 * of its slots and its claims, one commit for all).  Inside one, the calls do not commit;
 * a failed commit is rolled back.  0 or TW_E_STORE. */
int store_transaction_begin(struct store *store);
int store_transaction_commit(struct store *store);
void store_transaction_rollback(struct store *store);

/* The worker's connections: SQLite commits with synchronous=NORMAL: a worker's changes
 * survive any crash of a process; an OS crash or power loss may undo its last ones (a task then
 * runs again, which at least once allows).  Submissions and cancels keep their sync.
 * PostgreSQL keeps synchronous_commit on: its server can crash alone, and a final state a
 * client was told of must not come undone. */
int store_worker_durability(struct store *store);

/* 0 when the database accepts writes now, else why not: TW_E_STORE_BUSY (another writer holds
 * it), TW_E_STORE_FULL, TW_E_STORE_READONLY or TW_E_STORE_IO (the latest write any process made
 * failed so, and none has landed since; one older than a couple of seconds is tried again with
 * a write of a probe row), or TW_E_STORE. */
int store_check_writable(struct store *store);

/* The problem this connection's writes keep failing with (TW_E_STORE_FULL, TW_E_STORE_READONLY,
 * TW_E_STORE_IO), or 0 once one of its writes landed (or none failed). */
int store_problem(const struct store *store);

/* ---- channel history: the messages of POST /api/publish kept per channel for recovery by
 * offset (docs/PROTOCOL.md, "History and recovery") ----
 *
 * A channel with history has a stream: a random epoch, chosen when the stream is made, and
 * the offset of its last message, which grows by one per message stored.  Each message is a
 * row (channel, offset, the time it was stored, when it expires, its text); a channel keeps
 * at most its namespace's history_size rows and none past history_ttl.  A stream that keeps
 * no message and whose own ttl ran out is deleted by pruning, and so is history lost with the
 * store itself: the channel's next message starts a new stream, a new epoch from offset 1.
 * So (epoch, offset) names one message for as long as it is kept, and a reader that finds
 * another epoch than its own knows that what it had may be gone. */

#define STORE_EPOCH_SIZE 17              /* an epoch: 16 hex digits, NUL included */
#define STORE_HISTORY_BATCH_MAX 256      /* messages one store_history_append takes at most */
#define STORE_HISTORY_READ_BYTES 1048576 /* payload bytes a read returns (past its first) */

/* One message of store_history_append's batch: the inputs are borrowed; the store fills
 * offset and epoch. */
struct store_history_item {
    const char *channel;          /* a checked channel name (channel.h), NUL-terminated */
    const char *payload;          /* the message as published, without its position; UTF-8 */
    int keep;                     /* its namespace's history_size (1..): rows the channel keeps */
    int64_t ttl_ms;               /* its namespace's history_ttl, in ms */
    int64_t offset;               /* out: its offset in the channel's stream */
    char epoch[STORE_EPOCH_SIZE]; /* out: the stream's epoch */
};

/* Give each of items[0..count) (1..STORE_HISTORY_BATCH_MAX) the next offset of its channel's
 * stream (a new stream, with a new epoch and offsets from 1, for a channel that has none),
 * store it, and trim each channel of the batch to its newest `keep` rows and to those within
 * their ttl: one transaction (the caller's, when one is open).  Messages of one channel get
 * consecutive offsets in the items' order.  Between writers (the hosts of one PostgreSQL) the
 * stream's row is locked from its update to the commit, so a channel's offsets are distinct
 * and without gaps, in the order the transactions commit; the rows are locked in byte order of
 * the channels' names, so two batches never wait for each other crosswise.  0 with every
 * item's offset and epoch set, or a negative code (nothing stored). */
int store_history_append(struct store *store, struct store_history_item *items, size_t count);

/* What a reader finds of a channel: its stream, and a page of its kept messages. */
struct store_history_page {
    char epoch[STORE_EPOCH_SIZE]; /* the stream's epoch; "" when the channel has no stream */
    int64_t last_offset;          /* the stream's last offset; 0 without a stream */
    int64_t oldest_offset;        /* the oldest offset kept; last_offset + 1 when none is */
    json_t *messages;             /* {"offset": N, "payload": "text"} of each, oldest first */
};

/* The stream of channel and its kept messages with an offset above since, oldest first, all
 * as of one moment: at most limit (1..), and none more once STORE_HISTORY_READ_BYTES of
 * payloads are in (the first one always is).  A message past its ttl is not kept, whether or
 * not pruning has removed it yet.  0 with *page filled (page->messages a new array, the
 * caller's to json_decref), or a negative code. */
int store_history_read(struct store *store, const char *channel, int64_t since, int limit,
                       struct store_history_page *page);

/* Delete up to STORE_PRUNE_BATCH messages past their ttl, and as many streams past theirs that
 * keep no message, in one short transaction.  Returns the number of messages deleted (call
 * again while it is STORE_PRUNE_BATCH) or a negative code. */
int store_history_prune(struct store *store);
/* ---- presence: who is in which channel, as the relays report it (common/presence_wire.h) ----
 *
 * One row per (channel, client id, relay id): that relay's connections of the client in the
 * channel, the relay's seq of the message that set it, and when it expires (the relay's
 * ttl_ms after the latest message of that relay: each renews its rows set since the relay's
 * latest full resend began, presence_wire.h).  A row set to
 * 0 connections stays, unrenewed, until it expires: a message of a lower seq (applied late
 * by another pool) cannot bring it back.  A channel's total is the sum over its relays.
 * Each channel has a version that rises with every change made to it (at least by one, and
 * never below the wall clock in ms, so a channel forgotten and made again still rises); a
 * change's version is the one its event carries, and the snapshot says the version it is of.
 * The changes of every pool are made one transaction at a time (on PostgreSQL a
 * transaction-scoped advisory lock, on SQLite its writer lock), so the totals a change reads
 * and the versions it gives are those of the changes before it, and two pools' changes (a
 * relay's updates spread over them, a sweep) never deadlock.  A presence transaction is a
 * few statements per entry: they are small and short. */

#define STORE_PRESENCE_LIST_MAX 1000      /* clients of one snapshot at most */
#define STORE_PRESENCE_SWEEP_CHANNELS 256 /* channels one sweep clears at most (then the next) */
#define STORE_PRESENCE_FORGET_MS 3600000  /* an empty channel's version is kept this long */

/* Apply a relay's update in one transaction: every entry (its row replaced when update->seq is
 * higher than the row's), then the renewal to now_ms + ttl_ms of the relay's rows set at
 * update->since or later; or, with update->gone, the removal of all the relay's rows.
 * *changes (caller owns; json_decref) is a new array of {"channel","client_id","before",
 * "after","version"}: each (channel, client) whose total changed.  0, or a negative code
 * (nothing applied). */
int store_presence_apply(struct store *store, const char *relay_id,
                         const struct presence_update *update, int64_t now_ms, json_t **changes);

/* Remove the rows expired before now_ms (a relay that died, or lost its way to every pool),
 * at most STORE_PRESENCE_SWEEP_CHANNELS channels' worth, in one transaction; *changes as
 * above.  With forget_before_ms > 0, also forget the versions of channels without rows
 * changed last before then.  *rows: the rows with connections left.  0, or a negative code. */
int store_presence_sweep(struct store *store, int64_t now_ms, int64_t forget_before_ms,
                         json_t **changes, int64_t *rows);

/* The snapshot of channel: *clients a new array of {"client_id","connections"} sorted by
 * client id (at most STORE_PRESENCE_LIST_MAX), *version the channel's version (0: none yet),
 * read in one statement.  0, or a negative code. */
int store_presence_list(struct store *store, const char *channel, json_t **clients,
                        int64_t *version);

/* ---- the operator's view (the admin API): every client's tasks, workers and counts ---- */

#define STORE_ADMIN_LIST_DEFAULT 50 /* tasks per admin page when no limit is given */
#define STORE_ADMIN_LIST_MAX 500    /* most tasks per admin page */
#define STORE_STATS_MINUTES_DEFAULT 60
#define STORE_STATS_MINUTES_MAX 1440 /* a day of per-minute counts; twice that is kept */

/* What an admin listing keeps (NULL or 0: any). */
struct store_admin_filter {
    const char *status, *type, *client_id;
    const char *q;      /* a task id or client id, or the start of one (lowercase hex) */
    int64_t before_seq; /* only tasks stored before this one (its "seqno"); 0: from the newest */
    int limit;          /* 1..STORE_ADMIN_LIST_MAX */
};

/* The task with id, whoever owns it, with worker_id (or null) and seqno. */
int store_admin_task_get(struct store *store, const char *id, json_t **task);

/* Tasks of every client, newest first, as filter says: *tasks is a new array; *next is the
 * seqno to pass as before_seq for the next page, or 0 when this one was the last. */
int store_admin_task_list(struct store *store, const struct store_admin_filter *filter,
                          json_t **tasks, int64_t *next);

/* The workers that sent a heartbeat (new array of {"id","host","pid","concurrency",
 * "heartbeat_age_ms","running":[{"id","type","client_id","attempts","started_at"}]}), and the
 * queued and running tasks per type (new array of {"type","queued","running"}). */
int store_admin_status(struct store *store, json_t **workers, json_t **queues);

/* The last `minutes` minutes (1..STORE_STATS_MINUTES_MAX, the current one included), oldest
 * first, one row each: {"t","submitted","started","succeeded","failed","queued" (depth at the
 * minute's end, or now for the current one)}; and per type the tasks that succeeded or failed
 * in that window, by their last attempt's time from start to end (nearest rank):
 * {"type","count","p50_ms","p99_ms"}.  Both new arrays. */
int store_admin_stats(struct store *store, int minutes, json_t **rows, json_t **durations);

#endif
