/* tasks.h: the REST handlers.  Each writes exactly one reply through reply.h.
 * id is the {id} path segment (or "" for routes without one), borrowed for the call. */
#ifndef TW_FCGI_TASKS_H
#define TW_FCGI_TASKS_H

#include <jansson.h>

#include "app.h"
#include "config.h"
#include "request.h"
#include "store.h"
#include "token.h"

/* A task submission between its check and its answer.  POST /api/tasks goes in two steps so
 * that a thread holding several requests inserts their tasks in one call. */
struct tasks_pending {
    struct store_submission sub; /* to insert; points into this struct and body */
    char client_id[TOKEN_ID_SIZE];
    json_t *body, *params; /* owned until tasks_create_end */
    const struct config_type *type;
    char request_hash[STORE_HASH_SIZE]; /* the body's digest, with an Idempotency-Key */
};

void tasks_session(struct app *app, const struct request *req, const char *id);
void tasks_health(struct app *app, const struct request *req, const char *id);
void tasks_types(struct app *app, const struct request *req, const char *id);
void tasks_create(struct app *app, const struct request *req, const char *id);
/* Check a POST /api/tasks: 1 when *pending is ready to insert (pending->sub), to be answered by
 * tasks_create_end once inserted; 0 when the request has been answered (an error). */
int tasks_create_begin(struct app *app, const struct request *req, struct tasks_pending *pending);
/* Answer req from pending->sub's result and free what pending holds. */
void tasks_create_end(const struct request *req, struct tasks_pending *pending);
void tasks_list(struct app *app, const struct request *req, const char *id);
void tasks_get(struct app *app, const struct request *req, const char *id);
void tasks_cancel(struct app *app, const struct request *req, const char *id);
void tasks_retry(struct app *app, const struct request *req, const char *id);
void tasks_delete(struct app *app, const struct request *req, const char *id);

#endif
