/* app.h: what outlives a request in the handler: config, store, secret and the PUSH socket.
 *
 * Everything else belongs to one request and is freed when it ends.  The PUSH socket's queue is
 * bounded by APP_PUSH_HWM; when full (worker gone for long) nudges are dropped, which only
 * delays tasks until the worker's next scan of the store.
 */
#ifndef TW_FCGI_APP_H
#define TW_FCGI_APP_H

#include <stddef.h>

#include "config.h"
#include "store.h"
#include "token.h"

#define APP_PUSH_HWM 1000   /* nudges queued toward the worker before dropping */
#define APP_PUSH_LINGER 250 /* ms a process exiting waits to flush its nudges (CGI mode) */

struct app {
    const struct config *cfg;
    struct store *store;
    unsigned char secret[TOKEN_SECRET_MAX];
    size_t secret_len;
    void *zmq_context;
    void *push; /* PUSH to the worker's tasks endpoint */
};

/* Open the store, load (or create) the secret and connect the PUSH socket.  cfg is borrowed
 * and must outlive the app.  Caller owns; free with app_destroy().  NULL with err on failure. */
struct app *app_new(const struct config *cfg, char *err, size_t errlen);

/* NULL-safe; sets *app to NULL. */
void app_destroy(struct app **app);

/* Nudge the worker pool: [verb][task id], never blocking. */
void app_nudge(struct app *app, const char *verb, const char *task_id);

#endif
