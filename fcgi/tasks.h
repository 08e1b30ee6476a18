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

/* The caller's client id (and grants, may be NULL: its token's channels claim) from the bearer
 * token: 0, or TW_E_UNAUTHORIZED with the 401 written. */
int tasks_authorize_grants(struct app *app, const struct request *req,
                           char client_id[TOKEN_ID_SIZE], struct token_grants *grants);

void tasks_session(struct app *app, const struct request *req, const char *id);
void tasks_health(struct app *app, const struct request *req, const char *id);
void tasks_types(struct app *app, const struct request *req, const char *id);
/* POST /api/tasks: checked here, answered once the store has it (app_submit: at once, or with
 * the other submissions of the thread's batch). */
void tasks_create(struct app *app, const struct request *req, const char *id);
void tasks_list(struct app *app, const struct request *req, const char *id);
void tasks_get(struct app *app, const struct request *req, const char *id);
/* The changes to a task that a client (client_id, its own tasks) or an operator (NULL, any
 * task) may make, as the public and the admin API share them: 0 once done (the change logged,
 * *task the task after it where given), or the error code with its reply written.  *task is
 * the caller's to json_decref.  A cancel or a retry is then the caller's to nudge (app_nudge),
 * once it has read what it replies: a worker may change the task at once (it publishes the
 * cancelled event, or the retrying event and the start). */
int tasks_change_cancel(struct app *app, const struct request *req, const char *id,
                        const char *client_id, json_t **task);
int tasks_change_retry(struct app *app, const struct request *req, const char *id,
                       const char *client_id, json_t **task);
int tasks_change_delete(struct app *app, const struct request *req, const char *id,
                        const char *client_id);

void tasks_cancel(struct app *app, const struct request *req, const char *id);
void tasks_retry(struct app *app, const struct request *req, const char *id);
void tasks_delete(struct app *app, const struct request *req, const char *id);

#endif
