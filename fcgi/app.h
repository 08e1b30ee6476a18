/* app.h: what outlives a request in the handler: config, store, secret and the PUSH socket.
 *
 * One app per serving thread (its own store connection); the threads of a process share the
 * ZeroMQ context, the intake that commits their submissions together, and one PUSH socket, the
 * intake's app's (a socket each reconnected to a stopped worker pool ten times a second).
 * Everything else belongs to one request and is freed when it ends.  The PUSH socket's queue is
 * bounded by APP_PUSH_HWM; when full (worker gone for long) nudges are dropped, which only
 * delays tasks until the worker's next scan of the store.
 */
#ifndef TW_FCGI_APP_H
#define TW_FCGI_APP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "intake.h"
#include "store.h"
#include "token.h"

#define APP_PUSH_HWM 1000       /* nudges queued toward the worker before dropping */
#define APP_PUSH_LINGER 250     /* ms a process exiting waits to flush its nudges (CGI mode) */
#define APP_NUDGE_WARN_MS 10000 /* at most one nudge_dropped line per socket this often */

struct app {
    const struct config *cfg;
    struct store *store;
    unsigned char secret[TOKEN_SECRET_MAX];
    size_t secret_len;
    void *zmq_context; /* the app's own, or borrowed when zmq_shared */
    int zmq_shared;
    void *push;                /* PUSH to the worker's tasks endpoint; NULL with a nudger */
    struct app *nudger;        /* borrowed: the app whose PUSH socket this one uses, or NULL */
    pthread_mutex_t push_lock; /* held while a thread sends on push */
    struct intake *intake;     /* borrowed: the process's; NULL: submissions commit alone */
    unsigned long long nudges_dropped; /* since the last nudge_dropped line */
    int64_t nudge_warned_ms;           /* when that line was written (0: never) */
};

/* Open the store, load (or create) the secret and connect the PUSH socket.  cfg, zmq_context,
 * intake and nudger are borrowed and must outlive the app; a NULL zmq_context makes the app
 * its own, a NULL intake commits each submission alone, a nudger's PUSH socket replaces the
 * app's own.  Caller owns; free with app_destroy().  NULL with err on failure. */
struct app *app_new(const struct config *cfg, void *zmq_context, struct intake *intake,
                    struct app *nudger, char *err, size_t errlen);

/* Insert the tasks of subs[0..count) (see store_tasks_insert), with the other threads'
 * submissions when the app has an intake, and nudge the worker pool about each one stored. */
void app_tasks_insert(struct app *app, struct store_submission *const *subs, size_t count);

/* The intake's report of a stored task (an intake_committed_fn; app is a struct app): nudge
 * the worker pool on app's PUSH socket. */
void app_task_committed(void *app, const struct store_submission *sub);

/* NULL-safe; sets *app to NULL. */
void app_destroy(struct app **app);

/* Nudge the worker pool: [verb][task id], never blocking; safe from any thread. */
void app_nudge(struct app *app, const char *verb, const char *task_id);

#endif
