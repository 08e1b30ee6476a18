/* store.c: the task store on SQLite (WAL; a 202 means the row is on disk: synchronous=FULL, or
 * group commit in the handler, see store_group_commit).
 *
 * Statements are prepared once per connection on first use (store_statements[] is the one list
 * of SQL); every change of a task is a single UPDATE ... RETURNING, so it is atomic between
 * processes and hands back the new row, seq included.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "errors.h"
#include "log.h"
#include "token.h"

#define TASK_COLUMNS                                                                               \
    "id, client_id, type, name, params, status, progress, message, result, error, attempts, "      \
    "seq, created_at, started_at, finished_at"
#define OWNER "(?2 IS NULL OR client_id = ?2)"

static const char store_schema[] =
    "PRAGMA journal_mode = WAL;"
    "PRAGMA synchronous = FULL;"
    "CREATE TABLE IF NOT EXISTS tasks ("
    " seqno INTEGER PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE,"
    " client_id TEXT NOT NULL,"
    " type TEXT NOT NULL,"
    " name TEXT NOT NULL DEFAULT '',"
    " params TEXT NOT NULL DEFAULT '{}',"
    " status TEXT NOT NULL,"
    " progress INTEGER NOT NULL DEFAULT 0,"
    " message TEXT NOT NULL DEFAULT '',"
    " result TEXT,"
    " error TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " seq INTEGER NOT NULL DEFAULT 1,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0,"
    " worker_id TEXT,"
    " created_at INTEGER NOT NULL,"
    " started_at INTEGER,"
    " finished_at INTEGER);"
    "CREATE INDEX IF NOT EXISTS tasks_by_client ON tasks (client_id, seqno);"
    "CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, seqno);"
    "CREATE TABLE IF NOT EXISTS workers ("
    " id TEXT PRIMARY KEY, pid INTEGER NOT NULL, concurrency INTEGER NOT NULL,"
    " started_at INTEGER NOT NULL, heartbeat_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at INTEGER);";

enum statement {
    ST_INSERT,
    ST_GET,
    ST_LIST,
    ST_CANCEL_QUEUED,
    ST_CANCEL_RUNNING,
    ST_CLAIM,
    ST_OLDEST_QUEUED,
    ST_PROGRESS,
    ST_FINISH,
    ST_CANCEL_REQUESTED,
    ST_HEARTBEAT,
    ST_WORKER_REMOVE,
    ST_WORKERS_ALIVE,
    ST_REAP,
    ST_WORKERS_FORGET,
    ST_REQUEUE,
    ST_COUNT
};

static const char *const store_statements[ST_COUNT] = {
    [ST_INSERT] = "INSERT INTO tasks (id, client_id, type, name, params, status, message, "
                  "created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', 'queued', ?6) RETURNING " TASK_COLUMNS,
    [ST_GET] = "SELECT " TASK_COLUMNS " FROM tasks WHERE id = ?1 AND " OWNER,
    [ST_LIST] = "SELECT " TASK_COLUMNS " FROM tasks WHERE client_id = ?1"
                " AND (?2 IS NULL OR status = ?2)"
                " AND (?3 IS NULL OR seqno < (SELECT seqno FROM tasks WHERE id = ?3))"
                " ORDER BY seqno DESC LIMIT ?4",
    [ST_CANCEL_QUEUED] = "UPDATE tasks SET status = 'cancelled', message = 'cancelled',"
                         " finished_at = ?3, seq = seq + 1, cancel_requested = 1"
                         " WHERE id = ?1 AND " OWNER " AND status = 'queued' RETURNING " TASK_COLUMNS,
    [ST_CANCEL_RUNNING] = "UPDATE tasks SET cancel_requested = 1"
                          " WHERE id = ?1 AND " OWNER " AND status = 'running' RETURNING " TASK_COLUMNS,
    [ST_CLAIM] = "UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = ?2,"
                 " worker_id = ?1, seq = seq + 1, message = 'started'"
                 " WHERE seqno = (SELECT seqno FROM tasks WHERE status = 'queued'"
                 " ORDER BY seqno LIMIT 1) AND status = 'queued' RETURNING " TASK_COLUMNS,
    [ST_OLDEST_QUEUED] = "SELECT " TASK_COLUMNS " FROM tasks WHERE status = 'queued'"
                         " ORDER BY seqno LIMIT 1",
    [ST_PROGRESS] = "UPDATE tasks SET progress = ?2, message = ?3, seq = seq + 1"
                    " WHERE id = ?1 AND status = 'running' RETURNING " TASK_COLUMNS,
    [ST_FINISH] = "UPDATE tasks SET status = ?2, result = ?3, error = ?4,"
                  " message = COALESCE(?5, message),"
                  " progress = CASE WHEN ?2 = 'succeeded' THEN 100 ELSE progress END,"
                  " finished_at = ?6, seq = seq + 1"
                  " WHERE id = ?1 AND status = 'running' RETURNING " TASK_COLUMNS,
    [ST_CANCEL_REQUESTED] = "SELECT cancel_requested FROM tasks WHERE id = ?1",
    [ST_HEARTBEAT] = "INSERT INTO workers (id, pid, concurrency, started_at, heartbeat_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (id) DO UPDATE"
                     " SET heartbeat_at = excluded.heartbeat_at",
    [ST_WORKER_REMOVE] = "DELETE FROM workers WHERE id = ?1",
    [ST_WORKERS_ALIVE] = "SELECT count(*) FROM workers WHERE heartbeat_at > ?1",
    [ST_REAP] = "UPDATE tasks SET status = 'failed', error = 'worker lost', finished_at = ?2,"
                " seq = seq + 1 WHERE status = 'running' AND (worker_id IS NULL OR worker_id"
                " NOT IN (SELECT id FROM workers WHERE heartbeat_at > ?1)) RETURNING " TASK_COLUMNS,
    [ST_WORKERS_FORGET] = "DELETE FROM workers WHERE heartbeat_at <= ?1",
    [ST_REQUEUE] = "UPDATE tasks SET status = 'queued', progress = 0, message = ?2,"
                   " started_at = NULL, worker_id = NULL, seq = seq + 1"
                   " WHERE id = ?1 AND status = 'running' RETURNING " TASK_COLUMNS,
};

#define STORE_BOOT_ID_SIZE 40 /* bytes kept of /proc/sys/kernel/random/boot_id */

/* Group commit's counters, shared by every process through a mapping of the "-queue" file.
 * They count commits made since boot_id's boot; a reboot (a power loss included) resets them,
 * so a count from before it never vouches for a commit after it. */
struct store_shared {
    char boot_id[STORE_BOOT_ID_SIZE];
    uint64_t committed; /* tickets handed out: one per commit, taken after the commit */
    uint64_t synced;    /* every commit with a ticket up to this one is on disk */
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *statements[ST_COUNT];
    int queue_fd;   /* the database's "-queue" file: submissions take turns on its flock */
    struct store_shared *shared; /* non-NULL once store_group_commit() is on */
    sqlite3_int64 changes_seen;  /* sqlite3_total_changes64 when this connection last synced */
    uint64_t syncs;              /* WAL syncs this connection made for group commit */
};

/* Submissions from several handler processes take turns on a kernel lock before they ask
 * SQLite for its writer lock: the kernel wakes the next one the moment the lock is free,
 * where SQLite's busy handler would poll with sleeps of up to 100 ms (second-long waits under
 * load).  Advisory, and only an ordering: without it, the busy handler still decides. */
/* The database file's permission bits (0600 when it cannot be read), for the files beside it:
 * whoever may write the database may take a turn. */
static mode_t
store_file_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (st.st_mode & 0666) : 0600;
}

static void
store_queue_enter(struct store *store)
{
    while (store->queue_fd >= 0 && flock(store->queue_fd, LOCK_EX) != 0 && errno == EINTR)
        ;
}

static void
store_queue_leave(struct store *store)
{
    if (store->queue_fd >= 0)
        flock(store->queue_fd, LOCK_UN);
}

/* The sync turn: an open-file-description lock on the "-queue" file's first byte, apart from
 * the flock that orders submissions (Linux keeps the two kinds of lock apart). */
static int
store_sync_turn(struct store *store, short type)
{
    struct flock turn = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int rc;
    while ((rc = fcntl(store->queue_fd, F_OFD_SETLKW, &turn)) != 0 && errno == EINTR)
        ;
    return rc;
}

static int
store_fail(struct store *store, const char *what)
{
    log_error("event=store_error op=%s error=\"%s\"", what, sqlite3_errmsg(store->db));
    return TW_E_STORE;
}

/* The prepared statement for which, reset and unbound; NULL after logging on failure. */
static sqlite3_stmt *
store_statement(struct store *store, enum statement which)
{
    sqlite3_stmt *stmt = store->statements[which];
    if (!stmt) {
        if (sqlite3_prepare_v3(store->db, store_statements[which], -1, SQLITE_PREPARE_PERSISTENT,
                               &stmt, NULL) != SQLITE_OK) {
            store_fail(store, "prepare");
            return NULL;
        }
        store->statements[which] = stmt;
    }
    return stmt;
}

static void
store_statement_done(sqlite3_stmt *stmt)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

struct store *
store_new(const char *path, int busy_timeout_ms, char *err, size_t errlen)
{
    struct store *store = calloc(1, sizeof *store);
    if (!store) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    store->queue_fd = -1;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &store->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path,
                 store->db ? sqlite3_errmsg(store->db) : "cannot open");
        goto fail;
    }
    sqlite3_busy_timeout(store->db, busy_timeout_ms);
    char queue_path[4096];
    if (snprintf(queue_path, sizeof queue_path, "%s-queue", path) < (int)sizeof queue_path)
        store->queue_fd = open(queue_path, O_RDWR | O_CREAT | O_CLOEXEC, store_file_mode(path));
    char *message = NULL;
    if (sqlite3_exec(store->db, store_schema, NULL, NULL, &message) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, message ? message : "cannot create the schema");
        sqlite3_free(message);
        goto fail;
    }
    return store;
fail:
    store_destroy(&store);
    return NULL;
}

void
store_destroy(struct store **store)
{
    if (!store || !*store)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize((*store)->statements[i]);
    sqlite3_close((*store)->db);
    if ((*store)->shared)
        munmap((*store)->shared, sizeof *(*store)->shared);
    if ((*store)->queue_fd >= 0)
        close((*store)->queue_fd);
    free(*store);
    *store = NULL;
}

static int
store_exec(struct store *store, const char *sql)
{
    return sqlite3_exec(store->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : store_fail(store, sql);
}

/* Group commit.  With synchronous=FULL, SQLite syncs the WAL inside every commit, while it
 * holds the one writer lock: concurrent submissions queue for a disk flush each.  Here the
 * connection commits with synchronous=NORMAL (SQLite still syncs around checkpoints and WAL
 * reuse) and makes the commit durable itself, after the writer lock is released: it takes a
 * ticket, and one process at a time syncs the WAL for every ticket handed out so far.  A
 * commit that a sync already covered returns without one, so the processes' commits share
 * flushes.  A function returns only once its commit is on disk, as with FULL. */
int
store_group_commit(struct store *store)
{
    char boot_id[STORE_BOOT_ID_SIZE] = {0};
    FILE *boot = fopen("/proc/sys/kernel/random/boot_id", "re");
    size_t got = boot ? fread(boot_id, 1, sizeof boot_id - 1, boot) : 0;
    if (boot)
        fclose(boot);
    struct stat st;
    if (got == 0 || store->queue_fd < 0 || fstat(store->queue_fd, &st) != 0 ||
        ((size_t)st.st_size < sizeof(struct store_shared) &&
         ftruncate(store->queue_fd, sizeof(struct store_shared)) != 0))
        return TW_E_STORE;
    void *map = mmap(NULL, sizeof(struct store_shared), PROT_READ | PROT_WRITE, MAP_SHARED,
                     store->queue_fd, 0);
    if (map == MAP_FAILED)
        return TW_E_STORE;
    struct store_shared *shared = map;
    if (store_sync_turn(store, F_WRLCK) != 0) {
        munmap(map, sizeof *shared);
        return TW_E_STORE;
    }
    if (memcmp(shared->boot_id, boot_id, sizeof boot_id) != 0) {
        __atomic_store_n(&shared->committed, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&shared->synced, 0, __ATOMIC_SEQ_CST);
        memcpy(shared->boot_id, boot_id, sizeof boot_id);
    }
    store_sync_turn(store, F_UNLCK);
    if (store_exec(store, "PRAGMA synchronous = NORMAL") != 0) {
        munmap(map, sizeof *shared);
        return TW_E_STORE;
    }
    store->shared = shared;
    store->changes_seen = sqlite3_total_changes64(store->db);
    return 0;
}

/* Sync the WAL through SQLite's own file object, as its FULL commit would. */
static int
store_sync_wal(struct store *store)
{
    sqlite3_file *wal = NULL;
    if (sqlite3_file_control(store->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) != SQLITE_OK ||
        !wal || !wal->pMethods || wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL) != SQLITE_OK)
        return store_fail(store, "sync");
    store->syncs++;
    return 0;
}

/* After a commit (outside SQLite's writer lock): 0 once it is on disk. */
static int
store_commit_durable(struct store *store)
{
    sqlite3_int64 changes = sqlite3_total_changes64(store->db);
    if (!store->shared || changes == store->changes_seen)
        return 0; /* FULL synced it already, or nothing was written */
    store->changes_seen = changes;
    struct store_shared *shared = store->shared;
    uint64_t ticket = __atomic_add_fetch(&shared->committed, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&shared->synced, __ATOMIC_SEQ_CST) >= ticket)
        return 0;
    if (store_sync_turn(store, F_WRLCK) != 0)
        return store_sync_wal(store);
    int rc = 0;
    if (__atomic_load_n(&shared->synced, __ATOMIC_SEQ_CST) < ticket) {
        /* Every ticket up to upto was taken after its commit was written: this sync covers
         * them all, whoever made them. */
        uint64_t upto = __atomic_load_n(&shared->committed, __ATOMIC_SEQ_CST);
        rc = store_sync_wal(store);
        if (rc == 0 && upto > __atomic_load_n(&shared->synced, __ATOMIC_SEQ_CST))
            __atomic_store_n(&shared->synced, upto, __ATOMIC_SEQ_CST);
    }
    store_sync_turn(store, F_UNLCK);
    return rc;
}

uint64_t
store_sync_count(const struct store *store)
{
    return store->syncs;
}

int
store_status_is_final(const char *status)
{
    return strcmp(status, STORE_STATUS_SUCCEEDED) == 0 ||
           strcmp(status, STORE_STATUS_FAILED) == 0 || strcmp(status, STORE_STATUS_CANCELLED) == 0;
}

int
store_status_is_valid(const char *status)
{
    return strcmp(status, STORE_STATUS_QUEUED) == 0 ||
           strcmp(status, STORE_STATUS_RUNNING) == 0 || store_status_is_final(status);
}

/* A JSON string of text; bytes that are not valid UTF-8 turn the non-ASCII bytes into '?',
 * since exec programs can write anything to stderr. */
static json_t *
store_json_text(const unsigned char *text, int length)
{
    if (!text)
        return json_null();
    json_t *value = json_stringn((const char *)text, (size_t)length);
    if (value)
        return value;
    char *copy = malloc((size_t)length + 1);
    if (!copy)
        return NULL;
    for (int i = 0; i < length; i++)
        copy[i] = text[i] < 0x80 && text[i] ? (char)text[i] : '?';
    value = json_stringn(copy, (size_t)length);
    free(copy);
    return value;
}

static json_t *
store_json_time(sqlite3_stmt *stmt, int column)
{
    if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
        return json_null();
    char stamp[CLOCK_ISO8601_SIZE];
    return json_string(clock_iso8601(sqlite3_column_int64(stmt, column), stamp, sizeof stamp));
}

static json_t *
store_json_column(sqlite3_stmt *stmt, int column)
{
    return store_json_text(sqlite3_column_text(stmt, column), sqlite3_column_bytes(stmt, column));
}

static json_t *
store_json_document(sqlite3_stmt *stmt, int column)
{
    if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
        return json_null();
    json_error_t error;
    json_t *value = json_loadb((const char *)sqlite3_column_text(stmt, column),
                               (size_t)sqlite3_column_bytes(stmt, column), JSON_DECODE_ANY, &error);
    return value ? value : json_null();
}

/* The task object of the current row (TASK_COLUMNS order); NULL on allocation failure. */
static json_t *
store_row_task(sqlite3_stmt *stmt)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:I, s:I, s:o, s:o, s:o}",
                     "id", store_json_column(stmt, 0), "client_id", store_json_column(stmt, 1),
                     "type", store_json_column(stmt, 2), "name", store_json_column(stmt, 3),
                     "params", store_json_document(stmt, 4), "status", store_json_column(stmt, 5),
                     "progress", (json_int_t)sqlite3_column_int64(stmt, 6), "message",
                     store_json_column(stmt, 7), "result", store_json_document(stmt, 8), "error",
                     store_json_column(stmt, 9), "attempts",
                     (json_int_t)sqlite3_column_int64(stmt, 10), "seq",
                     (json_int_t)sqlite3_column_int64(stmt, 11), "created_at",
                     store_json_time(stmt, 12), "started_at", store_json_time(stmt, 13),
                     "finished_at", store_json_time(stmt, 14));
}

/* Step stmt expecting at most one row: 0 with *task set, TW_E_NOT_FOUND without a row. */
static int
store_step_task(struct store *store, sqlite3_stmt *stmt, const char *what, json_t **task)
{
    int rc = sqlite3_step(stmt);
    int result;
    if (rc == SQLITE_ROW) {
        *task = store_row_task(stmt);
        result = *task ? 0 : TW_E_NOMEM;
        /* Finish the statement so an UPDATE ... RETURNING commits now. */
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
            ;
        if (rc != SQLITE_DONE && result == 0) {
            json_decref(*task);
            *task = NULL;
            result = store_fail(store, what);
        }
    } else if (rc == SQLITE_DONE) {
        result = TW_E_NOT_FOUND;
    } else {
        result = store_fail(store, what);
    }
    store_statement_done(stmt);
    return result;
}

static void
bind_text(sqlite3_stmt *stmt, int index, const char *text)
{
    if (text)
        sqlite3_bind_text(stmt, index, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, index);
}

/* Every submission of a batch fails with rc; the tasks already made are dropped. */
static void
store_submissions_fail(struct store_submission *const *subs, size_t count, int rc)
{
    for (size_t i = 0; i < count; i++) {
        json_decref(subs[i]->task);
        subs[i]->task = NULL;
        subs[i]->rc = rc;
    }
}

/* One submission's INSERT inside the batch's transaction. */
static int
store_submission_insert(struct store *store, sqlite3_stmt *stmt, struct store_submission *sub)
{
    char id[TOKEN_ID_SIZE];
    int64_t now = clock_now_ms();
    if (token_ordered_id(now, id) != 0)
        return TW_E_INTERNAL;
    char *params_text = json_dumps(sub->params, JSON_COMPACT | JSON_SORT_KEYS);
    if (!params_text)
        return TW_E_NOMEM;
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, sub->client_id);
    bind_text(stmt, 3, sub->type);
    bind_text(stmt, 4, sub->name ? sub->name : "");
    bind_text(stmt, 5, params_text);
    sqlite3_bind_int64(stmt, 6, now);
    int rc = store_step_task(store, stmt, "insert", &sub->task);
    free(params_text);
    return rc == TW_E_NOT_FOUND ? TW_E_STORE : rc;
}

int
store_tasks_insert(struct store *store, struct store_submission *const *subs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        subs[i]->task = NULL;
        subs[i]->rc = TW_E_STORE;
    }
    sqlite3_stmt *stmt = store_statement(store, ST_INSERT);
    if (!stmt)
        return TW_E_STORE;
    store_queue_enter(store);
    if (store_exec(store, "BEGIN IMMEDIATE") != 0) {
        store_queue_leave(store);
        return TW_E_STORE;
    }
    int any = 0;
    for (size_t i = 0; i < count; i++) {
        subs[i]->rc = store_submission_insert(store, stmt, subs[i]);
        any |= subs[i]->rc == 0;
        /* A failed INSERT undoes itself alone, unless SQLite had to end the transaction (a
         * full disk, an I/O error): then the rows before it are gone too. */
        if (subs[i]->rc != 0 && sqlite3_get_autocommit(store->db)) {
            store_submissions_fail(subs, count, TW_E_STORE);
            store_queue_leave(store);
            return TW_E_STORE;
        }
    }
    int rc = store_exec(store, any ? "COMMIT" : "ROLLBACK");
    if (rc != 0 && any)
        store_exec(store, "ROLLBACK");
    store_queue_leave(store);
    if (rc == 0 && any)
        rc = store_commit_durable(store);
    if (rc != 0)
        store_submissions_fail(subs, count, TW_E_STORE);
    return rc;
}

int
store_task_get(struct store *store, const char *id, const char *client_id, json_t **task)
{
    sqlite3_stmt *stmt = store_statement(store, ST_GET);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, client_id);
    return store_step_task(store, stmt, "get", task);
}

int
store_task_list(struct store *store, const char *client_id, const char *status,
                const char *before, int limit, json_t **tasks)
{
    if (limit < 1 || limit > STORE_LIST_MAX)
        return TW_E_BAD_REQUEST;
    sqlite3_stmt *stmt = store_statement(store, ST_LIST);
    if (!stmt)
        return TW_E_STORE;
    json_t *list = json_array();
    if (!list)
        return TW_E_NOMEM;
    bind_text(stmt, 1, client_id);
    bind_text(stmt, 2, status);
    bind_text(stmt, 3, before);
    sqlite3_bind_int(stmt, 4, limit);
    int rc, result = 0;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (json_array_append_new(list, store_row_task(stmt)) != 0) {
            result = TW_E_NOMEM;
            break;
        }
    }
    if (result == 0 && rc != SQLITE_DONE)
        result = store_fail(store, "list");
    store_statement_done(stmt);
    if (result == 0)
        *tasks = list;
    else
        json_decref(list);
    return result;
}

int
store_task_cancel(struct store *store, const char *id, const char *client_id, int *now_final,
                  json_t **task)
{
    if (store_exec(store, "BEGIN IMMEDIATE") != 0)
        return TW_E_STORE;
    sqlite3_stmt *stmt = store_statement(store, ST_CANCEL_QUEUED);
    int rc = TW_E_STORE;
    if (!stmt)
        goto out;
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, client_id);
    sqlite3_bind_int64(stmt, 3, clock_now_ms());
    rc = store_step_task(store, stmt, "cancel", task);
    *now_final = rc == 0;
    if (rc != TW_E_NOT_FOUND)
        goto out;
    if (!(stmt = store_statement(store, ST_CANCEL_RUNNING))) {
        rc = TW_E_STORE;
        goto out;
    }
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, client_id);
    rc = store_step_task(store, stmt, "cancel", task);
    if (rc != TW_E_NOT_FOUND)
        goto out;
    json_t *existing = NULL;
    rc = store_task_get(store, id, client_id, &existing);
    if (rc == 0) {
        json_decref(existing);
        rc = TW_E_CONFLICT;
    }
out:
    if (rc == 0 || rc == TW_E_NOT_FOUND || rc == TW_E_CONFLICT) {
        if (store_exec(store, "COMMIT") != 0) {
            if (rc == 0) {
                json_decref(*task);
                *task = NULL;
            }
            store_exec(store, "ROLLBACK");
            return TW_E_STORE;
        }
        if (store_commit_durable(store) != 0) {
            if (rc == 0) {
                json_decref(*task);
                *task = NULL;
            }
            return TW_E_STORE;
        }
    } else {
        store_exec(store, "ROLLBACK");
    }
    return rc;
}

int
store_task_oldest_queued(struct store *store, json_t **task)
{
    sqlite3_stmt *stmt = store_statement(store, ST_OLDEST_QUEUED);
    return stmt ? store_step_task(store, stmt, "oldest_queued", task) : TW_E_STORE;
}

int
store_task_claim(struct store *store, const char *worker_id, json_t **task)
{
    sqlite3_stmt *stmt = store_statement(store, ST_CLAIM);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, worker_id);
    sqlite3_bind_int64(stmt, 2, clock_now_ms());
    return store_step_task(store, stmt, "claim", task);
}

int
store_task_requeue(struct store *store, const char *id, const char *message, json_t **task)
{
    sqlite3_stmt *stmt = store_statement(store, ST_REQUEUE);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, message);
    int rc = store_step_task(store, stmt, "requeue", task);
    return rc == TW_E_NOT_FOUND ? TW_E_CONFLICT : rc;
}

/* text cut to at most max bytes, keeping the head (keep_tail 0) or the tail; borrowed. */
static const char *
store_cut(const char *text, size_t max, int keep_tail, int *length)
{
    size_t full = strlen(text);
    *length = (int)(full > max ? max : full);
    return keep_tail && full > max ? text + (full - max) : text;
}

int
store_task_progress(struct store *store, const char *id, int progress, const char *message,
                    json_t **task)
{
    sqlite3_stmt *stmt = store_statement(store, ST_PROGRESS);
    if (!stmt)
        return TW_E_STORE;
    int length;
    const char *text = store_cut(message ? message : "", STORE_MESSAGE_MAX, 0, &length);
    bind_text(stmt, 1, id);
    sqlite3_bind_int(stmt, 2, progress < 0 ? 0 : progress > 100 ? 100 : progress);
    sqlite3_bind_text(stmt, 3, text, length, SQLITE_TRANSIENT);
    int rc = store_step_task(store, stmt, "progress", task);
    return rc == TW_E_NOT_FOUND ? TW_E_CONFLICT : rc;
}

int
store_task_finish(struct store *store, const char *id, const char *status, const json_t *result,
                  const char *error, const char *message, json_t **task)
{
    if (!store_status_is_final(status))
        return TW_E_INTERNAL;
    char *result_text = NULL;
    if (result && !json_is_null(result)) {
        result_text = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!result_text)
            return TW_E_NOMEM;
    }
    int rc = TW_E_STORE;
    sqlite3_stmt *stmt = store_statement(store, ST_FINISH);
    if (stmt) {
        bind_text(stmt, 1, id);
        bind_text(stmt, 2, status);
        bind_text(stmt, 3, result_text);
        if (error) {
            int length;
            const char *tail = store_cut(error, STORE_ERROR_MAX, 1, &length);
            sqlite3_bind_text(stmt, 4, tail, length, SQLITE_TRANSIENT);
        }
        if (message) {
            int length;
            const char *head = store_cut(message, STORE_MESSAGE_MAX, 0, &length);
            sqlite3_bind_text(stmt, 5, head, length, SQLITE_TRANSIENT);
        }
        sqlite3_bind_int64(stmt, 6, clock_now_ms());
        rc = store_step_task(store, stmt, "finish", task);
        if (rc == TW_E_NOT_FOUND)
            rc = TW_E_CONFLICT;
    }
    free(result_text);
    return rc;
}

int
store_task_cancel_requested(struct store *store, const char *id)
{
    sqlite3_stmt *stmt = store_statement(store, ST_CANCEL_REQUESTED);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    int rc = sqlite3_step(stmt);
    int result = rc == SQLITE_ROW    ? sqlite3_column_int(stmt, 0) != 0
                 : rc == SQLITE_DONE ? TW_E_NOT_FOUND
                                     : store_fail(store, "cancel_requested");
    store_statement_done(stmt);
    return result;
}

/* Run a statement that returns no rows (or one count); 0, or the count when counting. */
static int
store_run(struct store *store, sqlite3_stmt *stmt, const char *what)
{
    int rc = sqlite3_step(stmt);
    int result = rc == SQLITE_ROW    ? sqlite3_column_int(stmt, 0)
                 : rc == SQLITE_DONE ? 0
                                     : store_fail(store, what);
    store_statement_done(stmt);
    return result;
}

int
store_worker_heartbeat(struct store *store, const char *worker_id, int concurrency)
{
    sqlite3_stmt *stmt = store_statement(store, ST_HEARTBEAT);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, worker_id);
    sqlite3_bind_int(stmt, 2, (int)getpid());
    sqlite3_bind_int(stmt, 3, concurrency);
    sqlite3_bind_int64(stmt, 4, clock_now_ms());
    return store_run(store, stmt, "heartbeat");
}

int
store_worker_remove(struct store *store, const char *worker_id)
{
    sqlite3_stmt *stmt = store_statement(store, ST_WORKER_REMOVE);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, worker_id);
    return store_run(store, stmt, "worker_remove");
}

int
store_workers_alive(struct store *store, int64_t stale_after_ms)
{
    sqlite3_stmt *stmt = store_statement(store, ST_WORKERS_ALIVE);
    if (!stmt)
        return TW_E_STORE;
    sqlite3_bind_int64(stmt, 1, clock_now_ms() - stale_after_ms);
    return store_run(store, stmt, "workers_alive");
}

int
store_tasks_reap(struct store *store, int64_t stale_after_ms, json_t **reaped)
{
    int64_t now = clock_now_ms();
    sqlite3_stmt *stmt = store_statement(store, ST_REAP);
    if (!stmt)
        return TW_E_STORE;
    json_t *list = json_array();
    if (!list)
        return TW_E_NOMEM;
    sqlite3_bind_int64(stmt, 1, now - stale_after_ms);
    sqlite3_bind_int64(stmt, 2, now);
    int rc, result = 0;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        if (json_array_append_new(list, store_row_task(stmt)) != 0)
            result = TW_E_NOMEM; /* keep stepping: the UPDATE must complete */
    if (rc != SQLITE_DONE)
        result = store_fail(store, "reap");
    store_statement_done(stmt);
    if (result == 0 && (stmt = store_statement(store, ST_WORKERS_FORGET)) != NULL) {
        sqlite3_bind_int64(stmt, 1, now - stale_after_ms);
        store_run(store, stmt, "workers_forget");
    }
    if (result == 0)
        *reaped = list;
    else
        json_decref(list);
    return result;
}

int
store_check_writable(struct store *store)
{
    if (sqlite3_exec(store->db,
                     "BEGIN IMMEDIATE; INSERT OR REPLACE INTO probe (id, at) VALUES (1, 0);",
                     NULL, NULL, NULL) != SQLITE_OK) {
        store_exec(store, "ROLLBACK");
        return store_fail(store, "check_writable");
    }
    return store_exec(store, "ROLLBACK");
}
