/* app.h: what outlives a request in the handler: config, store, secret and the PUSH socket.
 *
 * One app per serving thread (its own store connection); the threads of a process share the
 * ZeroMQ context, the intake that commits their submissions together, and one PUSH socket, the
 * intake's app's (a socket each reconnected to a stopped worker pool ten times a second).
 * A thread serving several requests at once opens a batch: their task submissions (app_submit)
 * are then held, inserted in one call when it closes, and answered after; at most
 * APP_BATCH_MAX are held, and one more is inserted and answered at once.
 * Everything else belongs to one request and is freed when it ends.  The PUSH socket's queue is
 * bounded by APP_PUSH_HWM; when full (worker gone for long) nudges are dropped, which only
 * delays tasks until the worker's next scan of the store.  On PostgreSQL the store's NOTIFY in
 * the change's own transaction reaches every worker host (store.h, STORE_NOTIFY_CHANNEL), and
 * app_nudge does nothing: the PUSH carries only the publish API's messages.  The PUSH connects
 * to every pool of [zmq] tasks; with one, its messages queue while that pool restarts (a CGI
 * process's too, sent before its connection is up); with several it has ZMQ_IMMEDIATE, so a
 * pool that is down holds none of them, and a new socket waits up to APP_CONNECT_WAIT_MS for
 * its first connection before it refuses a message.
 */
#ifndef TW_FCGI_APP_H
#define TW_FCGI_APP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "curve.h"
#include "intake.h"
#include "store.h"
#include "token.h"

#define APP_PUSH_HWM 1000       /* nudges queued toward the worker before dropping */
#define APP_PUSH_LINGER 250     /* ms a process exiting waits to flush its nudges (CGI mode) */
#define APP_NUDGE_WARN_MS 10000 /* at most one nudge_dropped line per socket this often */
#define APP_BATCH_MAX 16        /* submissions an open batch holds at most */
#define APP_CONNECT_WAIT_MS 300 /* a new PUSH to several pools waits this for a connection */

struct request;

/* Answers a held submission's request once its insert is done; data is app_submit's. */
typedef void app_answer_fn(void *data);

struct app_held {
    const struct request *req; /* borrowed: whose answer waits */
    struct store_submission *sub;
    app_answer_fn *answer;
    void *data;
};

struct app {
    const struct config *cfg;
    struct store *store;
    unsigned char secret[TOKEN_SECRET_MAX];
    size_t secret_len;
    void *zmq_context; /* the app's own, or borrowed when zmq_shared */
    int zmq_shared;
    void *push;                /* PUSH to the worker's tasks endpoint; NULL with a nudger */
    int notify_nudges;         /* PostgreSQL: nudges go by the store's NOTIFY, push publishes */
    struct curve *curve;       /* push's CURVE keys, or NULL ([zmq] curve off, or a nudger) */
    int push_immediate;        /* push has ZMQ_IMMEDIATE (several pools in [zmq] tasks) */
    int64_t push_since_ms;     /* when push was made (app_wait_connected) */
    struct app *nudger;        /* borrowed: the app whose PUSH socket this one uses, or NULL */
    pthread_mutex_t push_lock; /* held while a thread sends on push */
    struct intake *intake;     /* borrowed: the process's; NULL: submissions commit alone */
    unsigned long long nudges_dropped; /* since the last nudge_dropped line */
    int64_t nudge_warned_ms;           /* when that line was written (0: never) */
    int batching;                      /* a batch is open (app_batch_open) */
    size_t held_count;                 /* submissions it holds */
    struct app_held held[APP_BATCH_MAX];
};

/* Hand a server's message (payload, len) for ZeroMQ topic (topic, topic_len) to the worker
 * pool over the PUSH socket ([publish][topic][payload], common/protocol.h), which publishes it
 * on the events wire.  0, or TW_E_UNAVAILABLE when the socket cannot take it now (its queue of
 * APP_PUSH_HWM is full: the pool has been away). */
int app_publish(struct app *app, const char *topic, size_t topic_len, const char *payload,
                size_t len);

/* Open the store, load (or create) the secret and connect the PUSH socket.  cfg, zmq_context,
 * intake and nudger are borrowed and must outlive the app; a NULL zmq_context makes the app
 * its own, a NULL intake commits each submission alone, a nudger's PUSH socket replaces the
 * app's own.  Caller owns; free with app_destroy().  NULL with err on failure. */
struct app *app_new(const struct config *cfg, void *zmq_context, struct intake *intake,
                    struct app *nudger, char *err, size_t errlen);

/* Insert sub (see store_tasks_insert: its rc and task are set), with the other threads'
 * submissions when the app has an intake, nudge the worker pool when it is stored, then call
 * answer(data), which answers req.  With a batch open and room in it, all of this waits for
 * app_batch_close; else it happens now.  sub, req and data are borrowed until answer runs. */
void app_submit(struct app *app, const struct request *req, struct store_submission *sub,
                app_answer_fn *answer, void *data);

/* Hold the submissions app_submit is given from now on, until app_batch_close. */
void app_batch_open(struct app *app);

/* 1 when req's answer is held by the open batch (it comes at app_batch_close). */
int app_batch_holds(const struct app *app, const struct request *req);

/* Insert every held submission in one call, answer each and close the batch. */
void app_batch_close(struct app *app);

/* Answer every held submission with the error rc (a TW_E_* code) without inserting it, and
 * close the batch. */
void app_batch_refuse(struct app *app, int rc);

/* The intake's report of a stored task (an intake_committed_fn; app is a struct app): nudge
 * the worker pool on app's PUSH socket. */
void app_task_committed(void *app, const struct store_submission *sub);

/* NULL-safe; sets *app to NULL. */
void app_destroy(struct app **app);

/* Nudge the worker pool: [verb][task id], never blocking; safe from any thread. */
void app_nudge(struct app *app, const char *verb, const char *task_id);

#endif
