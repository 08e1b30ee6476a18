/* store_pg.h: the beginning of the task store on PostgreSQL (libpq): its schema.
 *
 * Not yet a backend: the programs cannot select it ([store] backend = postgresql is refused),
 * and nothing but its unit test calls it.  What is here is the part every later one rests on:
 * the schema is created in an empty database and its version kept in a schema_version table
 * (one row); a database whose schema is newer than STORE_PG_SCHEMA_VERSION is refused with an
 * error naming both versions, never written to.  Several processes opening one new database at
 * once take turns on a transaction-scoped advisory lock, so exactly one creates it.
 *
 * Times are integers of ms since the epoch and JSON is kept as text, as in store_sqlite.c, so
 * the same task reads back as the same JSON from either backend.
 */
#ifndef TW_COMMON_STORE_PG_H
#define TW_COMMON_STORE_PG_H

#include <libpq-fe.h>
#include <stddef.h>

#define STORE_PG_SCHEMA_VERSION 1 /* 1: tasks, workers, idempotency, submit_rate */

/* Create the schema in conn's database, or find it current, in one transaction.  conn is
 * borrowed and must have no transaction open.  0, or TW_E_STORE with the reason in err (the
 * server's message, or the versions when the schema is newer than this program's). */
int store_pg_schema_open(PGconn *conn, char *err, size_t errlen);

#endif
