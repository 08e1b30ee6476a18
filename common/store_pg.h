/* store_pg.h: the task store on PostgreSQL (libpq), the backend of [store] backend =
 * postgresql; its callers use store.h (store_new), this header is for the schema alone.
 *
 * The schema is created in an empty database, or upgraded from an older version, on open, and
 * its version kept in a schema_version table (one row); a database whose schema is newer than
 * STORE_PG_SCHEMA_VERSION is refused with an error naming both versions, never written to.
 * Several processes opening one database at once take turns on a transaction-scoped advisory
 * lock, so exactly one creates or upgrades it.
 *
 * Times are integers of ms since the epoch and JSON is kept as text, as in store_sqlite.c, so
 * the same task reads back as the same JSON from either backend.
 */
#ifndef TW_COMMON_STORE_PG_H
#define TW_COMMON_STORE_PG_H

#include <libpq-fe.h>
#include <stddef.h>

#define STORE_PG_SCHEMA_VERSION                                                                    \
    4 /* 1: tasks, workers, idempotency, submit_rate; 2: task_minutes (a trigger), probe;          \
         3: a task's channels; 4: presence */

/* Create the schema in conn's database, upgrade it, or find it current, in one transaction.
 * conn is borrowed and must have no transaction open.  0, or TW_E_STORE with the reason in err
 * (the server's message, or the versions when the schema is newer than this program's). */
int store_pg_schema_open(PGconn *conn, char *err, size_t errlen);

#endif
