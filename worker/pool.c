/* pool.c: the worker pool's loop: intake, dispatch, events, heartbeat and reaping. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "errors.h"
#include "job.h"
#include "log.h"
#include "protocol.h"
#include "slot.h"
#include "store.h"
#include "token.h"

#define POOL_FRAME_MAX 256       /* bytes of a nudge frame or a client id kept */
#define POOL_BATCH 256           /* messages handled per socket per turn, for fairness */

#define POOL_ANNOUNCED 256

struct pool {
    const struct config *cfg;
    char worker_id[TOKEN_ID_SIZE];
    struct store *store;
    void *zmq;
    void *tasks;                 /* PULL: nudges */
    void *slot_events;           /* PULL: events and done marks from the slots */
    void *publisher;             /* PUB: every event, to the proxy */
    void *xsub, *xpub;           /* handed to the proxy thread */
    pthread_t proxy;
    int proxy_started;
    int concurrency;
    struct slot **slots;
    int64_t next_scan_ms, next_heartbeat_ms;
    /* Tasks this pool announced as queued, most recent POOL_ANNOUNCED of them: a task is
     * announced once, by its nudge or, when a scan gets to it first, just before it starts. */
    char announced[POOL_ANNOUNCED][TOKEN_ID_SIZE];
    unsigned announced_next;
};

static void *
pool_proxy_main(void *arg)
{
    struct pool *pool = arg;
    zmq_proxy(pool->xsub, pool->xpub, NULL); /* returns when the context shuts down */
    zmq_close(pool->xsub);
    zmq_close(pool->xpub);
    return NULL;
}

/* A socket of type with the pool's options, bound to each endpoint given. */
static void *
pool_socket(struct pool *pool, int type, const char *first, const char *second, char *err,
            size_t errlen)
{
    int hwm = POOL_HWM, linger = 0;
    void *socket = zmq_socket(pool->zmq, type);
    if (!socket || zmq_setsockopt(socket, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(socket, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger) != 0) {
        snprintf(err, errlen, "socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (first && zmq_bind(socket, first) != 0) {
        snprintf(err, errlen, "cannot bind %s: %s", first, zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (second && zmq_bind(socket, second) != 0) {
        snprintf(err, errlen, "cannot bind %s: %s", second, zmq_strerror(zmq_errno()));
        goto fail;
    }
    return socket;
fail:
    if (socket)
        zmq_close(socket);
    return NULL;
}

struct pool *
pool_new(const struct config *cfg, char *err, size_t errlen)
{
    struct pool *pool = calloc(1, sizeof *pool);
    if (!pool) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pool->cfg = cfg;
    pool->concurrency = cfg->concurrency;
    if (pool->concurrency <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        pool->concurrency = cores > 0 ? (int)cores : 1;
    }
    if (token_random_id(pool->worker_id) != 0) {
        snprintf(err, errlen, "no randomness for the worker id");
        goto fail;
    }
    pool->store = store_new(cfg->database, cfg->busy_timeout_ms, err, errlen);
    if (!pool->store)
        goto fail;
    pool->zmq = zmq_ctx_new();
    if (!pool->zmq) {
        snprintf(err, errlen, "zmq: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    pool->tasks = pool_socket(pool, ZMQ_PULL, cfg->tasks_endpoint, NULL, err, errlen);
    if (!pool->tasks)
        goto fail;
    pool->slot_events = pool_socket(pool, ZMQ_PULL, SLOT_ENDPOINT, NULL, err, errlen);
    if (!pool->slot_events)
        goto fail;
    pool->xsub = pool_socket(pool, ZMQ_XSUB, cfg->publish_endpoint, POOL_PUBLISH_INPROC, err,
                             errlen);
    if (!pool->xsub)
        goto fail;
    pool->xpub = pool_socket(pool, ZMQ_XPUB, cfg->events_endpoint, NULL, err, errlen);
    if (!pool->xpub)
        goto fail;
    pool->publisher = pool_socket(pool, ZMQ_PUB, NULL, NULL, err, errlen);
    if (!pool->publisher || zmq_connect(pool->publisher, POOL_PUBLISH_INPROC) != 0) {
        snprintf(err, errlen, "publisher: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (pthread_create(&pool->proxy, NULL, pool_proxy_main, pool) != 0) {
        snprintf(err, errlen, "cannot start the proxy thread");
        goto fail;
    }
    pool->proxy_started = 1;
    pool->slots = calloc((size_t)pool->concurrency, sizeof *pool->slots);
    if (!pool->slots) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < pool->concurrency; i++) {
        pool->slots[i] = slot_new(cfg, pool->zmq, i, err, errlen);
        if (!pool->slots[i])
            goto fail;
    }
    pool->cfg = cfg;
    return pool;
fail:
    pool_destroy(&pool);
    return NULL;
}

void
pool_destroy(struct pool **pool)
{
    if (!pool || !*pool)
        return;
    struct pool *p = *pool;
    if (p->slots) {
        for (int i = 0; i < p->concurrency; i++)
            slot_destroy(&p->slots[i]);
        free(p->slots);
    }
    if (p->store)
        store_worker_remove(p->store, p->worker_id);
    if (p->tasks)
        zmq_close(p->tasks);
    if (p->slot_events)
        zmq_close(p->slot_events);
    if (p->publisher)
        zmq_close(p->publisher);
    if (p->zmq)
        zmq_ctx_shutdown(p->zmq);
    if (p->proxy_started) {
        pthread_join(p->proxy, NULL);
    } else {
        if (p->xsub)
            zmq_close(p->xsub);
        if (p->xpub)
            zmq_close(p->xpub);
    }
    if (p->zmq)
        zmq_ctx_term(p->zmq);
    store_destroy(&p->store);
    free(p);
    *pool = NULL;
}

/* Publish [client id][payload] on the events wire. */
static void
pool_publish(struct pool *pool, const char *client_id, size_t client_len, const char *payload,
             size_t payload_len)
{
    if (zmq_send(pool->publisher, client_id, client_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(pool->publisher, payload, payload_len, ZMQ_DONTWAIT) < 0)
        log_warn("event=publish_failed client=%.*s error=\"%s\"", (int)client_len, client_id,
                 zmq_strerror(zmq_errno()));
}

/* Publish the event that announces task's current state. */
static void
pool_publish_task(struct pool *pool, const char *event, const json_t *task)
{
    const char *client_id = json_string_value(json_object_get(task, "client_id"));
    char *payload = protocol_task_event(event, task);
    if (client_id && payload)
        pool_publish(pool, client_id, strlen(client_id), payload, strlen(payload));
    free(payload);
}

/* Publish task's queued event unless this pool already did: every task's events then begin
 * with queued, also when a scan claims it before its nudge arrives. */
static void
pool_announce_queued(struct pool *pool, json_t *task)
{
    const char *id = json_string_value(json_object_get(task, "id"));
    const char *status = json_string_value(json_object_get(task, "status"));
    if (!id || !status || strcmp(status, STORE_STATUS_QUEUED) != 0)
        return;
    for (unsigned i = 0; i < POOL_ANNOUNCED; i++)
        if (strcmp(pool->announced[i], id) == 0)
            return;
    snprintf(pool->announced[pool->announced_next], TOKEN_ID_SIZE, "%s", id);
    pool->announced_next = (pool->announced_next + 1) % POOL_ANNOUNCED;
    pool_publish_task(pool, PROTOCOL_EVENT_QUEUED, task);
}

/* Claim queued tasks for every idle slot. */
static void
pool_dispatch(struct pool *pool)
{
    for (int i = 0; i < pool->concurrency; i++) {
        if (slot_busy(pool->slots[i]))
            continue;
        /* The look at the queue also spares the claim's write transaction when it is empty
         * (every scan of an idle worker). */
        json_t *next = NULL;
        int found = store_task_oldest_queued(pool->store, &next);
        if (found != 0) {
            if (found != TW_E_NOT_FOUND)
                log_warn("event=queue_read_failed error=%s", tw_error_name(found));
            return;
        }
        pool_announce_queued(pool, next);
        json_decref(next);
        json_t *task = NULL;
        int rc = store_task_claim(pool->store, pool->worker_id, &task);
        if (rc != 0) {
            if (rc != TW_E_NOT_FOUND)
                log_warn("event=claim_failed error=%s", tw_error_name(rc));
            return;
        }
        log_info("event=task_started task=%s client=%s type=%s",
                 json_string_value(json_object_get(task, "id")),
                 json_string_value(json_object_get(task, "client_id")),
                 json_string_value(json_object_get(task, "type")));
        pool_publish_task(pool, PROTOCOL_EVENT_STARTED, task);
        slot_assign(pool->slots[i], &task);
    }
}

/* A submit nudge: announce the task as queued (if nobody took it yet) and dispatch. */
static void
pool_on_submit(struct pool *pool, const char *id)
{
    json_t *task = NULL;
    if (store_task_get(pool->store, id, NULL, &task) == 0) {
        pool_announce_queued(pool, task);
        json_decref(task);
    }
    pool_dispatch(pool);
}

/* A cancel nudge: stop the task if one of our slots runs it; announce a task the handler
 * cancelled while queued.  A task running on another worker is found there in the store. */
static void
pool_on_cancel(struct pool *pool, const char *id)
{
    for (int i = 0; i < pool->concurrency; i++) {
        const char *running = slot_task_id(pool->slots[i]);
        if (running && strcmp(running, id) == 0) {
            slot_stop(pool->slots[i], JOB_STOP_CANCEL);
            return;
        }
    }
    json_t *task = NULL;
    if (store_task_get(pool->store, id, NULL, &task) != 0)
        return;
    const char *status = json_string_value(json_object_get(task, "status"));
    if (status && strcmp(status, STORE_STATUS_CANCELLED) == 0)
        pool_publish_task(pool, PROTOCOL_EVENT_CANCELLED, task);
    json_decref(task);
}

/* Copy a received frame into text (NUL-terminated); 0, or -1 when it does not fit. */
static int
pool_frame_text(zmq_msg_t *frame, char *text, size_t size)
{
    size_t length = zmq_msg_size(frame);
    if (length >= size)
        return -1;
    memcpy(text, zmq_msg_data(frame), length);
    text[length] = '\0';
    return 0;
}

/* Read one whole multipart message into at most max frames; returns the frame count (extra
 * frames are discarded), 0 when nothing is waiting, -1 on error. */
static int
pool_receive(void *socket, zmq_msg_t *frames, int max)
{
    int count = 0, more = 1;
    while (more) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, socket, count == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(&frame);
            return count == 0 && zmq_errno() == EAGAIN ? 0 : -1;
        }
        more = zmq_msg_more(&frame);
        if (count < max)
            frames[count++] = frame;
        else
            zmq_msg_close(&frame);
    }
    return count;
}

static void
pool_close_frames(zmq_msg_t *frames, int count)
{
    for (int i = 0; i < count; i++)
        zmq_msg_close(&frames[i]);
}

/* Handle every nudge waiting on the tasks socket (up to a batch). */
static void
pool_intake(struct pool *pool)
{
    for (int n = 0; n < POOL_BATCH; n++) {
        zmq_msg_t frames[2];
        int count = pool_receive(pool->tasks, frames, 2);
        if (count <= 0)
            return;
        char verb[PROTOCOL_VERB_MAX], id[POOL_FRAME_MAX];
        if (count != 2 || pool_frame_text(&frames[0], verb, sizeof verb) != 0 ||
            pool_frame_text(&frames[1], id, sizeof id) != 0 ||
            strlen(id) != TOKEN_ID_SIZE - 1) {
            log_warn("event=bad_nudge frames=%d", count);
        } else if (strcmp(verb, PROTOCOL_VERB_SUBMIT) == 0) {
            pool_on_submit(pool, id);
        } else if (strcmp(verb, PROTOCOL_VERB_CANCEL) == 0) {
            pool_on_cancel(pool, id);
        } else {
            log_warn("event=bad_nudge verb=%s", verb);
        }
        pool_close_frames(frames, count);
    }
}

/* Forward the slots' events, and put slots that are done back to work.  Returns the number
 * of done marks seen. */
static int
pool_collect(struct pool *pool, int wait_ms)
{
    int done = 0;
    for (int n = 0; n < POOL_BATCH * 4; n++) {
        if (wait_ms > 0) {
            zmq_pollitem_t item = {.socket = pool->slot_events, .events = ZMQ_POLLIN};
            if (zmq_poll(&item, 1, wait_ms) <= 0)
                return done;
        }
        zmq_msg_t frames[3];
        int count = pool_receive(pool->slot_events, frames, 3);
        if (count <= 0)
            return done;
        const char *kind = zmq_msg_data(&frames[0]);
        size_t kind_len = zmq_msg_size(&frames[0]);
        if (count == 3 && kind_len == strlen(SLOT_FRAME_EVENT) &&
            memcmp(kind, SLOT_FRAME_EVENT, kind_len) == 0) {
            pool_publish(pool, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]),
                         zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2]));
        } else if (count == 2) {
            char index[16];
            if (pool_frame_text(&frames[1], index, sizeof index) == 0) {
                int i = atoi(index); /* our own frame, written by slot.c */
                if (i >= 0 && i < pool->concurrency)
                    slot_release(pool->slots[i]);
                done++;
            }
        }
        pool_close_frames(frames, count);
    }
    return done;
}

/* Heartbeat, and fail the running tasks of dead workers. */
static void
pool_heartbeat(struct pool *pool)
{
    if (store_worker_heartbeat(pool->store, pool->worker_id, pool->concurrency) != 0)
        return;
    json_t *reaped = NULL;
    if (store_tasks_reap(pool->store, pool->cfg->stale_after_ms, &reaped) != 0)
        return;
    size_t i;
    json_t *task;
    json_array_foreach(reaped, i, task) {
        log_warn("event=task_reaped task=%s error=\"worker lost\"",
                 json_string_value(json_object_get(task, "id")));
        pool_publish_task(pool, PROTOCOL_EVENT_FAILED, task);
    }
    json_decref(reaped);
}

static int
pool_busy_count(const struct pool *pool)
{
    int busy = 0;
    for (int i = 0; i < pool->concurrency; i++)
        busy += slot_busy(pool->slots[i]);
    return busy;
}

void
pool_run(struct pool *pool, volatile sig_atomic_t *quit)
{
    int64_t now = clock_mono_ms();
    pool_heartbeat(pool);
    pool->next_heartbeat_ms = now + pool->cfg->heartbeat_ms;
    pool->next_scan_ms = now; /* tasks queued while no worker ran go first */
    while (!*quit) {
        now = clock_mono_ms();
        if (now >= pool->next_heartbeat_ms) {
            pool_heartbeat(pool);
            pool->next_heartbeat_ms = now + pool->cfg->heartbeat_ms;
        }
        if (now >= pool->next_scan_ms) {
            pool_dispatch(pool);
            pool->next_scan_ms = now + pool->cfg->scan_interval_ms;
        }
        int64_t next = pool->next_heartbeat_ms < pool->next_scan_ms ? pool->next_heartbeat_ms
                                                                    : pool->next_scan_ms;
        long timeout = (long)(next - clock_mono_ms());
        zmq_pollitem_t items[2] = {{.socket = pool->tasks, .events = ZMQ_POLLIN},
                                   {.socket = pool->slot_events, .events = ZMQ_POLLIN}};
        if (zmq_poll(items, 2, timeout < 0 ? 0 : timeout) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            log_error("event=poll_failed error=\"%s\"", zmq_strerror(zmq_errno()));
            break;
        }
        if (items[1].revents & ZMQ_POLLIN && pool_collect(pool, 0) > 0)
            pool_dispatch(pool);
        if (items[0].revents & ZMQ_POLLIN)
            pool_intake(pool);
    }

    /* Stop: running tasks go back to the queue, and their events still go out. */
    int busy = pool_busy_count(pool);
    log_info("event=stopping running=%d", busy);
    for (int i = 0; i < pool->concurrency; i++)
        if (slot_busy(pool->slots[i]))
            slot_stop(pool->slots[i], JOB_STOP_SHUTDOWN);
    int64_t deadline = clock_mono_ms() + POOL_SHUTDOWN_MS;
    while (pool_busy_count(pool) > 0 && clock_mono_ms() < deadline)
        pool_collect(pool, 100);
    pool_collect(pool, 0);
}
