/* app.c: the handler's long-lived context. */
#include "app.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "errors.h"
#include "log.h"
#include "protocol.h"
#include "wire.h"

struct app *
app_new(const struct config *cfg, void *zmq_context, struct intake *intake, struct app *nudger,
        char *err, size_t errlen)
{
    struct app *app = calloc(1, sizeof *app);
    if (!app) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    app->cfg = cfg;
    app->intake = intake;
    app->nudger = nudger;
    if (pthread_mutex_init(&app->push_lock, NULL) != 0) {
        free(app);
        snprintf(err, errlen, "cannot make a lock");
        return NULL;
    }
    if (token_secret_load(cfg->secret_file, 1, app->secret, &app->secret_len, err, errlen) != 0)
        goto fail;
    struct store_options options = store_options_of(cfg);
    app->store = store_new(&options, err, errlen);
    if (!app->store)
        goto fail;
    /* Submissions of all handler processes share disk flushes; without it each waits for its
     * own, equally durable. */
    if (store_group_commit(app->store) != 0)
        log_warn("event=group_commit_off database=%s", cfg->database);
    if (nudger)
        return app; /* nudges go out on the nudger's socket */
    /* On PostgreSQL the store's NOTIFY nudges every worker host (store.h): the PUSH carries
     * only the publish API's messages, to the pool of [zmq] tasks, which puts them on the
     * events wire of every relay. */
    app->notify_nudges = cfg->store_backend == CONFIG_STORE_POSTGRESQL;
    app->zmq_shared = zmq_context != NULL;
    app->zmq_context = zmq_context ? zmq_context : zmq_ctx_new();
    const char *endpoints[CONFIG_ENDPOINTS_MAX];
    for (size_t i = 0; i < cfg->tasks_endpoints.count; i++)
        endpoints[i] = cfg->tasks_endpoints.endpoints[i];
    if (curve_load(cfg, CURVE_ROLE_CLIENT, endpoints, cfg->tasks_endpoints.count, &app->curve, err,
                   errlen) != 0)
        goto fail;
    /* Every pool of [zmq] tasks: a publish goes to one of those connected (round robin), and
     * each puts it on the events wire of every relay. */
    struct wire_options push = {.send_hwm = APP_PUSH_HWM,
                                .recv_hwm = WIRE_DEFAULT,
                                .linger_ms = APP_PUSH_LINGER,
                                .connect_list = &cfg->tasks_endpoints,
                                .immediate = cfg->tasks_endpoints.count > 1,
                                .curve = app->curve};
    app->push = wire_socket(app->zmq_context, ZMQ_PUSH, &push, err, errlen);
    if (!app->push)
        goto fail;
    app->push_immediate = push.immediate;
    app->push_since_ms = clock_mono_ms();
    return app;
fail:
    app_destroy(&app);
    return NULL;
}

void
app_destroy(struct app **app)
{
    if (!app || !*app)
        return;
    if ((*app)->push)
        zmq_close((*app)->push);
    if ((*app)->zmq_context && !(*app)->zmq_shared)
        zmq_ctx_term((*app)->zmq_context);
    curve_destroy(&(*app)->curve);
    store_destroy(&(*app)->store);
    pthread_mutex_destroy(&(*app)->push_lock);
    OPENSSL_cleanse((*app)->secret, sizeof(*app)->secret);
    free(*app);
    *app = NULL;
}

static void app_wait_connected(struct app *via);

/* Send one nudge on via's socket; via's lock is held. */
static void
app_nudge_locked(struct app *via, const char *verb, const char *task_id)
{
    app_wait_connected(via);
    if (zmq_send(via->push, verb, strlen(verb), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
        zmq_send(via->push, task_id, strlen(task_id), ZMQ_DONTWAIT) >= 0)
        return;
    /* With the worker pool down every request drops its nudge: one line per
     * APP_NUDGE_WARN_MS says so, with the count, rather than one line per request. */
    via->nudges_dropped++;
    int64_t now = clock_mono_ms();
    if (via->nudge_warned_ms && now - via->nudge_warned_ms < APP_NUDGE_WARN_MS)
        return;
    log_warn("event=nudge_dropped verb=%s task=%s dropped=%llu error=\"%s\"", verb, task_id,
             via->nudges_dropped, zmq_strerror(zmq_errno()));
    via->nudge_warned_ms = now;
    via->nudges_dropped = 0;
}

void
app_nudge(struct app *app, const char *verb, const char *task_id)
{
    struct app *via = app->nudger ? app->nudger : app;
    if (via->notify_nudges)
        return; /* PostgreSQL: the change's own transaction nudged (STORE_NOTIFY_CHANNEL) */
    pthread_mutex_lock(&via->push_lock);
    app_nudge_locked(via, verb, task_id);
    pthread_mutex_unlock(&via->push_lock);
}

/* A socket with ZMQ_IMMEDIATE takes nothing until a connection is up: within
 * APP_CONNECT_WAIT_MS of its start (a CGI process sends right away) wait for one, at most
 * that long; later, none up means no pool is there.  via's lock is held. */
static void
app_wait_connected(struct app *via)
{
    int64_t left = via->push_since_ms + APP_CONNECT_WAIT_MS - clock_mono_ms();
    if (!via->push_immediate || left <= 0)
        return;
    zmq_pollitem_t item = {.socket = via->push, .events = ZMQ_POLLOUT};
    zmq_poll(&item, 1, (long)left);
}

int
app_publish(struct app *app, const char *topic, size_t topic_len, const char *payload, size_t len)
{
    struct app *via = app->nudger ? app->nudger : app;
    pthread_mutex_lock(&via->push_lock);
    app_wait_connected(via);
    int ok = zmq_send(via->push, PROTOCOL_VERB_PUBLISH, strlen(PROTOCOL_VERB_PUBLISH),
                      ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
             zmq_send(via->push, topic, topic_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
             zmq_send(via->push, payload, len, ZMQ_DONTWAIT) >= 0;
    pthread_mutex_unlock(&via->push_lock);
    return ok ? 0 : TW_E_UNAVAILABLE;
}

void
app_task_committed(void *app, const struct store_submission *sub)
{
    if (!sub->replayed) /* a replay's task was nudged when it was made */
        app_nudge(app, PROTOCOL_VERB_SUBMIT, json_string_value(json_object_get(sub->task, "id")));
}

/* Insert the tasks of subs[0..count) and nudge the worker pool about each one stored. */
static void
app_tasks_insert(struct app *app, struct store_submission *const *subs, size_t count)
{
    if (app->intake) {
        intake_submit(app->intake, subs, count);
        return;
    }
    store_tasks_insert(app->store, subs, count);
    for (size_t i = 0; i < count; i++)
        if (subs[i]->rc == 0)
            app_task_committed(app, subs[i]);
}

void
app_submit(struct app *app, const struct request *req, struct store_submission *sub,
           app_answer_fn *answer, void *data)
{
    if (app->batching && app->held_count < APP_BATCH_MAX) {
        app->held[app->held_count++] =
            (struct app_held){.req = req, .sub = sub, .answer = answer, .data = data};
        return;
    }
    app_tasks_insert(app, &sub, 1);
    answer(data);
}

void
app_batch_open(struct app *app)
{
    app->batching = 1;
    app->held_count = 0;
}

int
app_batch_holds(const struct app *app, const struct request *req)
{
    for (size_t i = 0; i < app->held_count; i++)
        if (app->held[i].req == req)
            return 1;
    return 0;
}

void
app_batch_close(struct app *app)
{
    struct store_submission *subs[APP_BATCH_MAX];
    for (size_t i = 0; i < app->held_count; i++)
        subs[i] = app->held[i].sub;
    if (app->held_count > 0)
        app_tasks_insert(app, subs, app->held_count);
    for (size_t i = 0; i < app->held_count; i++)
        app->held[i].answer(app->held[i].data);
    app->held_count = 0;
    app->batching = 0;
}

void
app_batch_refuse(struct app *app, int rc)
{
    for (size_t i = 0; i < app->held_count; i++) {
        app->held[i].sub->rc = rc;
        app->held[i].answer(app->held[i].data);
    }
    app->held_count = 0;
    app->batching = 0;
}
