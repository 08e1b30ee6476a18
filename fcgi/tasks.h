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

void tasks_session(struct app *app, const struct request *req, const char *id);
void tasks_health(struct app *app, const struct request *req, const char *id);
void tasks_types(struct app *app, const struct request *req, const char *id);
/* POST /api/tasks: checked here, answered once the store has it (app_submit: at once, or with
 * the other submissions of the thread's batch). */
void tasks_create(struct app *app, const struct request *req, const char *id);
void tasks_list(struct app *app, const struct request *req, const char *id);
void tasks_get(struct app *app, const struct request *req, const char *id);
void tasks_cancel(struct app *app, const struct request *req, const char *id);
void tasks_retry(struct app *app, const struct request *req, const char *id);
void tasks_delete(struct app *app, const struct request *req, const char *id);

#endif
