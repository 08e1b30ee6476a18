/* admin.h: the admin REST API (/api/admin/...): every client's tasks, the workers, the queues,
 * the relays and per-minute counts, for operators (the dashboard at /admin/, `taskwire`).
 *
 * Off (every path 404) unless [admin] key_file is set, and while the file it names does not
 * exist (an install's config names one the operator makes).  Each request carries
 * "Authorization: Bearer <key>", the key file's (adminkey.h), compared in
 * constant time; the file is read for every request, so a new key holds at once (a file that
 * cannot be read, or holds anything else, answers 500 and is logged).  Cancel, retry and delete are
 * the public API's changes for any owner, nudging the worker pool the same way.
 */
#ifndef TW_FCGI_ADMIN_H
#define TW_FCGI_ADMIN_H

#include "app.h"
#include "request.h"

#define ADMIN_RELAY_TIMEOUT_MS 500 /* one relay's /status, connection included (all at once) */
#define ADMIN_RELAY_BODY_MAX 8192  /* bytes of a relay's /status kept */

/* Once per process, before any thread starts (libcurl's global state), when [admin] key_file
 * is set: the admin handlers run only then. */
int admin_global_init(void);

void admin_tasks_list(struct app *app, const struct request *req, const char *id);
void admin_task_get(struct app *app, const struct request *req, const char *id);
void admin_task_cancel(struct app *app, const struct request *req, const char *id);
void admin_task_retry(struct app *app, const struct request *req, const char *id);
void admin_task_delete(struct app *app, const struct request *req, const char *id);
void admin_status(struct app *app, const struct request *req, const char *id);
void admin_stats(struct app *app, const struct request *req, const char *id);

#endif
