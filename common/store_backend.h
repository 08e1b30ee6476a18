/* store_backend.h: what store.c offers the store's backends (store_sqlite.c), so that every
 * backend answers the same JSON for the same task.  Not for the store's callers: they include
 * store.h only.
 */
#ifndef TW_COMMON_STORE_BACKEND_H
#define TW_COMMON_STORE_BACKEND_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A JSON string of text (length bytes), or null for NULL text; bytes that are not valid UTF-8
 * turn the non-ASCII bytes into '?', since exec programs can write anything to stderr.  New
 * reference, or NULL when out of memory. */
json_t *store_json_text(const unsigned char *text, int length);

/* text cut to at most max bytes, keeping the head (keep_tail 0) or the tail; *length is the
 * part's length.  Borrowed from text. */
const char *store_cut(const char *text, size_t max, int keep_tail, int *length);

/* The per-minute counts counts (an array of {"minute","submitted","started","succeeded",
 * "failed","queued"}, newest first, minutes after last included; "queued" the change of the
 * queue in that minute) made into one row per minute of [first, last], oldest first, with the
 * queued depth at each minute's end, walking back from queued_now.  New array (caller owns),
 * or NULL when out of memory; counts is borrowed. */
json_t *store_minutes_fill(json_t *counts, int64_t first, int64_t last, int64_t queued_now);

/* The tasks and workers tables as every backend makes them, so the columns are one list:
 * seqno (the key that orders rows as stored), a time or counter column (ms since the epoch)
 * and a flag column (false by default) in the backend's types. */
#define STORE_TASKS_TABLE(seqno, time, flag)                                                       \
    "CREATE TABLE tasks ("                                                                         \
    " seqno " seqno ","                                                                            \
    " id TEXT NOT NULL UNIQUE,"                                                                    \
    " client_id TEXT NOT NULL,"                                                                    \
    " type TEXT NOT NULL,"                                                                         \
    " name TEXT NOT NULL DEFAULT '',"                                                              \
    " params TEXT NOT NULL DEFAULT '{}',"                                                          \
    " status TEXT NOT NULL,"                                                                       \
    " progress INTEGER NOT NULL DEFAULT 0,"                                                        \
    " message TEXT NOT NULL DEFAULT '',"                                                           \
    " result TEXT,"                                                                                \
    " error TEXT,"                                                                                 \
    " attempts INTEGER NOT NULL DEFAULT 0,"                                                        \
    " seq " time " NOT NULL DEFAULT 1,"                                                            \
    " cancel_requested " flag ","                                                                  \
    " worker_id TEXT,"                                                                             \
    " created_at " time " NOT NULL,"                                                               \
    " started_at " time ","                                                                        \
    " finished_at " time ","                                                                       \
    " max_attempts INTEGER NOT NULL DEFAULT 3,"                                                    \
    " priority INTEGER NOT NULL DEFAULT 0,"                                                        \
    " errors TEXT NOT NULL DEFAULT '[]',"                                                          \
    " run_at " time " NOT NULL DEFAULT 0,"                                                         \
    " lease_expires_at " time ","                                                                  \
    " worker_host TEXT,"                                                                           \
    " announced " flag ");"
#define STORE_WORKERS_TABLE(time)                                                                  \
    "CREATE TABLE workers ("                                                                       \
    " id TEXT PRIMARY KEY, pid INTEGER NOT NULL, concurrency INTEGER NOT NULL,"                    \
    " started_at " time " NOT NULL, heartbeat_at " time " NOT NULL,"                               \
    " host TEXT NOT NULL DEFAULT '');"

#endif
