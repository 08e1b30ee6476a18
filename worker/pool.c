/* pool.c: the worker pool's loop: intake, dispatch, events, heartbeat and reaping. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "channel.h"
#include "clock.h"
#include "curve.h"
#include "errors.h"
#include "history.h"
#include "job.h"
#include "log.h"
#include "notify.h"
#include "presence.h"
#include "protocol.h"
#include "retry.h"
#include "scrape.h"
#include "slot.h"
#include "store.h"
#include "token.h"
#include "wake.h"
#include "wire.h"
#include "zap.h"

#define POOL_FRAME_MAX 256 /* bytes of a nudge frame or a client id kept */
#define POOL_BATCH 256     /* messages handled per socket per turn, for fairness */

#define POOL_PRUNE_INTERVAL_MS 60000 /* how often finished tasks past keep_finished are pruned */
#define POOL_PRUNE_BATCHES 20        /* prune transactions per turn at most */

struct pool {
    const struct config *cfg;
    char worker_id[TOKEN_ID_SIZE];
    char host[STORE_HOST_MAX];
    char *limits; /* {"type": concurrency} of the limited types, or NULL */
    struct store *store;
    void *zmq;
    void *tasks;         /* PULL: nudges */
    void *slot_events;   /* PULL: events and done marks from the slots */
    void *publisher;     /* PUB: every event, to the proxy */
    void *xsub, *xpub;   /* handed to the proxy thread */
    struct curve *curve; /* the pool's CURVE keys, or NULL with [zmq] curve off */
    struct zap *zap;     /* the ZAP handler and handshake monitor, with curve on */
    struct wake *wake;   /* the LISTEN connection (PostgreSQL), or NULL (SQLite) */
    int wake_more;       /* the last read of wake filled a batch: read again without waiting */
    pthread_t proxy;
    int proxy_started;
    int concurrency;
    struct slot **slots;
    struct job_outcome **outcomes; /* ended attempts to store, one per slot at most */
    size_t outcome_count;
    int64_t next_scan_ms, next_heartbeat_ms, next_prune_ms;
    /* Monotonic time until which this pool's leases surely hold: lease_ms after the start of
     * its last renewal.  Past it (the process was frozen, or the store unreachable) it publishes
     * nothing about its tasks until a renewal says which it still holds. */
    int64_t lease_valid_until_ms;
    int stopping;      /* shutting down: outcomes are stored, nothing is claimed */
    int store_problem; /* the problem (TW_E_STORE_FULL, ...) the pool's writes fail with, or 0 */
    struct scrape *scrape;     /* the metrics port ([worker] metrics_listen), or NULL when off */
    struct notify notify;      /* the service manager's watchdog, pinged from the loop */
    struct history *history;   /* channel messages waiting for their offsets (history.h) */
    struct presence *presence; /* browser publish and presence (presence.h) */
    int presence_forget;       /* the next sweep also forgets long-empty channels */
};

/* The limited types' concurrency as a JSON object, or NULL when no type is limited. */
static char *
pool_limits(const struct config *cfg)
{
    json_t *limits = json_object();
    for (size_t i = 0; limits && i < cfg->type_count; i++)
        if (cfg->types[i].concurrency > 0)
            json_object_set_new(limits, cfg->types[i].name,
                                json_integer(cfg->types[i].concurrency));
    char *text = limits && json_object_size(limits) > 0 ? json_dumps(limits, JSON_COMPACT) : NULL;
    json_decref(limits);
    return text;
}

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
    struct wire_options options = {.send_hwm = POOL_HWM,
                                   .recv_hwm = POOL_HWM,
                                   .linger_ms = 0,
                                   .bind = {first, second},
                                   .curve = pool->curve};
    return wire_socket(pool->zmq, type, &options, err, errlen);
}

/* The events socket also connects to every relay of [zmq] relays (their events_listen), as a
 * CURVE client of theirs with curve on: a new worker host reaches every relay by itself, and
 * the relays' subscriptions come back over the same connections.  0, or -1 with err. */
static int
pool_connect_relays(struct pool *pool, char *err, size_t errlen)
{
    const struct config_endpoints *relays = &pool->cfg->relays;
    for (size_t i = 0; i < relays->count; i++) {
        const char *relay = relays->endpoints[i];
        int tcp = strncmp(relay, "tcp://", 6) == 0;
        if ((pool->curve && tcp && curve_socket_setup_relay(pool->curve, pool->xpub) != 0) ||
            zmq_connect(pool->xpub, relay) != 0) {
            snprintf(err, errlen, "[zmq] relays %s: %s", relay, zmq_strerror(zmq_errno()));
            return -1;
        }
        log_info("event=relay_connecting endpoint=%s curve=%s", relay,
                 pool->curve && tcp ? "on" : "off");
    }
    return 0;
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
    notify_init(&pool->notify);
    pool->concurrency = cfg->concurrency;
    if (pool->concurrency <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        pool->concurrency = cores > 0 ? (int)cores : 1;
    }
    if (token_random_id(pool->worker_id) != 0) {
        snprintf(err, errlen, "no randomness for the worker id");
        goto fail;
    }
    if (gethostname(pool->host, sizeof pool->host) != 0)
        snprintf(pool->host, sizeof pool->host, "unknown");
    pool->host[sizeof pool->host - 1] = '\0';
    pool->limits = pool_limits(cfg);
    if (!(pool->history = history_new(cfg))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    struct store_options options = store_options_of(cfg);
    pool->store = store_new(&options, err, errlen);
    if (!pool->store || store_worker_durability(pool->store) != 0)
        goto fail;
    if (options.backend == STORE_BACKEND_POSTGRESQL && !(pool->wake = wake_new(options.url))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    pool->zmq = zmq_ctx_new();
    if (!pool->zmq) {
        snprintf(err, errlen, "zmq: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    const char *endpoints[2 + 2 * CONFIG_ENDPOINTS_MAX] = {cfg->publish_endpoint,
                                                           cfg->events_endpoint};
    size_t endpoint_count = 2;
    for (size_t i = 0; i < cfg->relays.count; i++)
        endpoints[endpoint_count++] = cfg->relays.endpoints[i];
    for (size_t i = 0; i < cfg->tasks_endpoints.count; i++)
        endpoints[endpoint_count++] = cfg->tasks_endpoints.endpoints[i];
    if (curve_load(cfg, CURVE_ROLE_SERVER, endpoints, endpoint_count, &pool->curve, err, errlen) !=
        0)
        goto fail;
    /* The ZAP handler is bound before any CURVE socket, so no peer is let in unasked. */
    if (pool->curve && !(pool->zap = zap_new(pool->zmq, pool->curve, err, errlen)))
        goto fail;
    /* Every endpoint of [zmq] tasks: a worker host lists its own address(es) there. */
    struct wire_options tasks = {.send_hwm = POOL_HWM,
                                 .recv_hwm = POOL_HWM,
                                 .linger_ms = 0,
                                 .bind_list = &cfg->tasks_endpoints,
                                 .curve = pool->curve};
    pool->tasks = wire_socket(pool->zmq, ZMQ_PULL, &tasks, err, errlen);
    if (!pool->tasks)
        goto fail;
    pool->slot_events = pool_socket(pool, ZMQ_PULL, SLOT_ENDPOINT, NULL, err, errlen);
    if (!pool->slot_events)
        goto fail;
    pool->xsub =
        pool_socket(pool, ZMQ_XSUB, cfg->publish_endpoint, POOL_PUBLISH_INPROC, err, errlen);
    if (!pool->xsub)
        goto fail;
    pool->xpub = pool_socket(pool, ZMQ_XPUB, cfg->events_endpoint, NULL, err, errlen);
    if (!pool->xpub || pool_connect_relays(pool, err, errlen) != 0)
        goto fail;
    if (pool->zap && (zap_monitor(pool->zap, pool->tasks, "tasks", err, errlen) != 0 ||
                      zap_monitor(pool->zap, pool->xsub, "publish", err, errlen) != 0 ||
                      zap_monitor(pool->zap, pool->xpub, "events", err, errlen) != 0 ||
                      zap_start(pool->zap, err, errlen) != 0))
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
    pool->outcomes = calloc((size_t)pool->concurrency, sizeof *pool->outcomes);
    if (!pool->slots || !pool->outcomes) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < pool->concurrency; i++) {
        pool->slots[i] = slot_new(cfg, pool->zmq, i, pool->worker_id, pool->host, err, errlen);
        if (!pool->slots[i])
            goto fail;
    }
    if (cfg->worker_metrics_listen[0] && !(pool->scrape = scrape_new(cfg, err, errlen)))
        goto fail;
    scrape_slots(pool->scrape, 0, pool->concurrency);
    pool->presence = presence_new(cfg, pool->store, pool->publisher, pool->scrape);
    if (!pool->presence) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
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
    presence_destroy(&p->presence);
    scrape_destroy(&p->scrape);
    if (p->slots) {
        for (int i = 0; i < p->concurrency; i++)
            slot_destroy(&p->slots[i]);
        free(p->slots);
    }
    if (p->outcome_count > 0)
        log_warn("event=outcomes_dropped count=%zu reason=\"the store took no writes\""
                 " next=\"their tasks run again when their lease runs out\"",
                 p->outcome_count);
    for (size_t i = 0; i < p->outcome_count; i++)
        job_outcome_destroy(&p->outcomes[i]);
    free(p->outcomes);
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
    zap_destroy(&p->zap); /* its thread ends with the context's shutdown */
    if (p->zmq)
        zmq_ctx_term(p->zmq);
    curve_destroy(&p->curve);
    wake_destroy(&p->wake);
    history_destroy(&p->history);
    store_destroy(&p->store);
    free(p->limits);
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

/* Publish a task's event (payload) to its client id, then to each of its channels (a JSON
 * array of names, may be NULL), in that order every time, so each channel sees the task's
 * events in seq order. */
static void
pool_publish_event(struct pool *pool, const char *client_id, const json_t *channels,
                   const char *payload)
{
    size_t payload_len = strlen(payload);
    const char *topic;
    size_t topic_len;
    pool_publish(pool, client_id, strlen(client_id), payload, payload_len);
    for (size_t i = 0; i < json_array_size(channels); i++)
        if (channel_list_topic(channels, i, &topic, &topic_len))
            pool_publish(pool, topic, topic_len, payload, payload_len);
}

/* Publish the event that announces task's current state. */
static void
pool_publish_task(struct pool *pool, const char *event, const json_t *task)
{
    const char *client_id = json_string_value(json_object_get(task, "client_id"));
    char *payload = protocol_task_event(event, task);
    if (client_id && payload)
        pool_publish_event(pool, client_id, json_object_get(task, "channels"), payload);
    free(payload);
}

/* After a write of the pool's (what): say when the store begins or stops refusing them for a
 * problem (a full, read-only or failing disk), once each, not every turn.  Meanwhile the
 * outcomes of ended attempts wait in memory (one per slot at most) and are stored by the first
 * turn that can write; nothing new is claimed. */
static void
pool_store_watch(struct pool *pool, const char *what)
{
    int problem = store_problem(pool->store);
    if (problem == pool->store_problem)
        return;
    if (problem)
        log_warn("event=store_writes_failing op=%s problem=\"%s\" outcomes_kept=%zu", what,
                 tw_error_message(problem), pool->outcome_count);
    else
        log_info("event=store_writes_resumed outcomes_kept=%zu", pool->outcome_count);
    pool->store_problem = problem;
}

/* 1 while this pool's leases surely hold (see lease_valid_until_ms). */
static int
pool_lease_valid(const struct pool *pool)
{
    return clock_mono_ms() < pool->lease_valid_until_ms;
}

/* Store the slots' outcomes and claim runnable tasks for every idle slot, in one transaction;
 * then publish what it did.  On a failure everything is rolled back and the outcomes wait for
 * the next turn (their leases are ours and are renewed meanwhile). */
static void
pool_dispatch(struct pool *pool)
{
    struct slot *idle[STORE_CLAIM_MAX];
    size_t count = 0;
    if (pool_lease_valid(pool) && !pool->stopping)
        for (int i = 0; i < pool->concurrency && count < STORE_CLAIM_MAX; i++)
            if (!slot_busy(pool->slots[i]))
                idle[count++] = pool->slots[i];
    /* The look at the queue spares the claim a write transaction when nothing can start
     * (every scan of an idle worker). */
    int claimable = count > 0 ? store_task_claimable(pool->store, pool->limits) : 0;
    if (claimable < 0)
        log_warn("event=queue_read_failed error=%s", tw_error_name(claimable));
    if (pool->outcome_count == 0 && claimable <= 0)
        return;
    if (store_transaction_begin(pool->store) != 0) {
        pool_store_watch(pool, "settle");
        return;
    }
    size_t applied = pool->outcome_count;
    json_t *ended[applied > 0 ? applied : 1];
    const char *ended_events[applied > 0 ? applied : 1];
    int applied_rc[applied > 0 ? applied : 1];
    int rc =
        job_outcomes_apply(pool->store, pool->outcomes, applied, applied_rc, ended, ended_events);
    for (size_t i = 0; i < applied && rc == 0; i++)
        if (applied_rc[i] == TW_E_FENCED)
            log_warn("event=attempt_fenced task=%s attempt=%d", pool->outcomes[i]->id,
                     pool->outcomes[i]->attempt);
    json_t *tasks[STORE_CLAIM_MAX];
    int announce[STORE_CLAIM_MAX];
    int64_t waited_ms[STORE_CLAIM_MAX];
    int claimed = 0;
    if (rc == 0 && claimable > 0) {
        claimed = store_tasks_claim(pool->store, pool->worker_id, pool->host, pool->cfg->lease_ms,
                                    pool->limits, count, tasks, announce, waited_ms);
        rc = claimed < 0 ? claimed : 0;
    }
    if (rc == 0)
        rc = store_transaction_commit(pool->store);
    else
        store_transaction_rollback(pool->store);
    pool_store_watch(pool, "settle");
    /* Idle slots left while the queue said a task could start: it may be one another worker
     * announced a moment ago (STORE_ANNOUNCE_SETTLE_MS), so look again once that has passed
     * rather than at the next scan. */
    if (rc == 0 && claimable > 0 && (size_t)claimed < count) {
        int64_t again = clock_mono_ms() + STORE_ANNOUNCE_SETTLE_MS + 1;
        if (again < pool->next_scan_ms)
            pool->next_scan_ms = again;
    }
    if (rc != 0) {
        if (!pool->store_problem)
            log_warn("event=settle_failed error=%s", tw_error_name(rc));
        for (size_t i = 0; i < applied && pool->store_problem; i++)
            if (!pool->outcomes[i]->kept) { /* said once per outcome, not every turn */
                pool->outcomes[i]->kept = 1;
                log_info("event=outcome_kept task=%s attempt=%d event_after=%s",
                         pool->outcomes[i]->id, pool->outcomes[i]->attempt,
                         job_outcome_event(pool->outcomes[i]));
            }
        for (size_t i = 0; i < applied; i++)
            json_decref(ended[i]);
        for (int i = 0; i < claimed; i++)
            json_decref(tasks[i]);
        return;
    }
    for (size_t i = 0; i < applied; i++) {
        struct job_outcome *outcome = pool->outcomes[i];
        if (applied_rc[i] == 0) {
            log_info("event=task_%s task=%s attempt=%d", ended_events[i], outcome->id,
                     outcome->attempt);
            scrape_task_ended(pool->scrape, outcome->type, ended_events[i],
                              outcome->kind == JOB_OUTCOME_REQUEUE ? -1 : outcome->ran_ms);
            if (ended[i])
                pool_publish_task(pool, ended_events[i], ended[i]);
            else
                pool_publish_event(pool, outcome->client_id, outcome->channels, outcome->payload);
        }
        json_decref(ended[i]);
        job_outcome_destroy(&pool->outcomes[i]);
    }
    pool->outcome_count = 0;
    for (int i = 0; i < claimed; i++) {
        json_t *task = tasks[i];
        log_info("event=task_started task=%s client=%s type=%s attempt=%lld",
                 json_string_value(json_object_get(task, "id")),
                 json_string_value(json_object_get(task, "client_id")),
                 json_string_value(json_object_get(task, "type")),
                 (long long)json_integer_value(json_object_get(task, "attempts")));
        scrape_task_claimed(pool->scrape, waited_ms[i]);
        slot_assign(idle[i], &task, announce[i]);
    }
}

/* After a batch of submit nudges (dispatched already): announce as queued each task no claim
 * announced. */
static void
pool_announce(struct pool *pool, const char (*ids)[TOKEN_ID_SIZE], size_t count)
{
    /* One transaction for the batch, and its queued events published before it commits, while
     * it holds their rows: another worker's claim skips (PostgreSQL) or waits for (SQLite)
     * a row this transaction changed, so no task of the batch can be claimed and its started
     * event published by another worker before its queued event is on its way.  Published
     * after the commit, a page could get the queued event after the started one (two workers'
     * streams reach a relay over two connections).  Should the commit fail, the tasks are
     * announced again later: the same queued event twice, harmless by its seq. */
    json_t *announced[POOL_BATCH];
    const char *list[POOL_BATCH];
    if (count > POOL_BATCH)
        count = POOL_BATCH;
    for (size_t i = 0; i < count; i++)
        list[i] = ids[i];
    int in_transaction = store_transaction_begin(pool->store) == 0;
    int got = store_tasks_announce(pool->store, pool->worker_id, list, count, announced);
    size_t n = got > 0 ? (size_t)got : 0;
    for (size_t i = 0; i < n; i++) {
        pool_publish_task(pool, PROTOCOL_EVENT_QUEUED, announced[i]);
        json_decref(announced[i]);
    }
    if (in_transaction && got < 0)
        store_transaction_rollback(pool->store);
    else if (in_transaction && store_transaction_commit(pool->store) != 0)
        log_warn("event=announce_not_committed tasks=%zu", n);
}

/* A retry nudge: a finished task was given a new attempt over REST; say so (once, whichever
 * worker hears it first), and start it. */
static void
pool_on_retry(struct pool *pool, const char *id)
{
    json_t *task = NULL;
    if (store_task_announce_change(pool->store, id, STORE_STATUS_QUEUED, pool->worker_id, &task) ==
        0) {
        pool_publish_task(pool, PROTOCOL_EVENT_RETRYING, task);
        json_decref(task);
    }
    pool_dispatch(pool);
}

/* A cancel nudge: stop the task if one of our slots runs it; announce a task the handler
 * cancelled while queued (once, whichever worker hears it first).  A task running on another
 * worker is stopped there: that worker hears the same nudge on PostgreSQL, and finds the
 * request in the store at its next check otherwise. */
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
    if (store_task_announce_change(pool->store, id, STORE_STATUS_CANCELLED, pool->worker_id,
                                   &task) != 0)
        return;
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

static void
pool_close_frames(zmq_msg_t *frames, int count)
{
    for (int i = 0; i < count; i++)
        zmq_msg_close(&frames[i]);
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
        if (wire_recv(socket, &frame, count == 0) != 0) {
            zmq_msg_close(&frame);
            pool_close_frames(frames, count); /* a message cut short is dropped whole */
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

/* One nudge, off the tasks socket or heard on the LISTEN connection: a submit is collected in
 * submitted[*submits] (the caller dispatches once for the batch), a cancel or retry is acted
 * on now.  verb and id are NUL-terminated; id is TOKEN_ID_SIZE - 1 characters. */
static void
pool_nudge(struct pool *pool, const char *verb, const char *id, char (*submitted)[TOKEN_ID_SIZE],
           size_t *submits)
{
    if (strcmp(verb, PROTOCOL_VERB_SUBMIT) == 0) {
        if (*submits < POOL_BATCH)
            memcpy(submitted[(*submits)++], id, TOKEN_ID_SIZE);
    } else if (strcmp(verb, PROTOCOL_VERB_CANCEL) == 0) {
        pool_on_cancel(pool, id);
    } else if (strcmp(verb, PROTOCOL_VERB_RETRY) == 0) {
        pool_on_retry(pool, id);
    } else {
        /* Not echoed: bytes off the wire could forge log lines. */
        log_warn("event=bad_nudge reason=\"unknown verb\" length=%zu", strlen(verb));
    }
}

/* After a batch of nudges: one dispatch for the submits (its claims announce what they take),
 * then the announcement of the rest. */
static void
pool_nudged(struct pool *pool, const char (*submitted)[TOKEN_ID_SIZE], size_t submits)
{
    if (submits == 0)
        return;
    pool_dispatch(pool);
    pool_announce(pool, submitted, submits);
}

static void
pool_history_publish(void *data, const char *topic, size_t topic_len, const char *payload,
                     size_t payload_len)
{
    pool_publish(data, topic, topic_len, payload, payload_len);
}

/* Store the channel messages taken this turn, then publish them with their offsets. */
static void
pool_history_flush(struct pool *pool)
{
    history_flush(pool->history, pool->store, pool_history_publish, pool);
    pool_store_watch(pool, "history");
}

/* [publish][topic][payload] from a handler (POST /api/publish): onto the events wire as it is,
 * or, for a channel whose namespace keeps history, into the turn's batch (history.h).  The
 * handler checked both; a topic no relay could route (empty, or longer than a channel name)
 * is dropped here too. */
static void
pool_on_publish(struct pool *pool, zmq_msg_t *topic, zmq_msg_t *payload)
{
    size_t len = zmq_msg_size(topic);
    if (len == 0 || len > CONFIG_CHANNEL_NAME_LIMIT) {
        log_warn("event=bad_nudge reason=\"publish topic\" length=%zu", len);
        return;
    }
    if (history_full(pool->history))
        pool_history_flush(pool);
    if (history_take(pool->history, zmq_msg_data(topic), len, zmq_msg_data(payload),
                     zmq_msg_size(payload)) == 0)
        pool_publish(pool, zmq_msg_data(topic), len, zmq_msg_data(payload), zmq_msg_size(payload));
}

/* 1 when frame is the verb (NUL-terminated). */
static int
pool_frame_is(zmq_msg_t *frame, const char *verb)
{
    size_t len = strlen(verb);
    return zmq_msg_size(frame) == len && memcmp(zmq_msg_data(frame), verb, len) == 0;
}

/* Handle every nudge waiting on the tasks socket (up to a batch). */
static void
pool_intake(struct pool *pool)
{
    char submitted[POOL_BATCH][TOKEN_ID_SIZE];
    size_t submits = 0;
    for (int n = 0; n < POOL_BATCH; n++) {
        zmq_msg_t frames[4]; /* one more than any nudge has: a longer one is refused */
        int count = pool_receive(pool->tasks, frames, 4);
        if (count <= 0)
            break;
        char verb[PROTOCOL_VERB_MAX], id[POOL_FRAME_MAX];
        if (count == 3 && pool_frame_is(&frames[0], PROTOCOL_VERB_PUBLISH))
            pool_on_publish(pool, &frames[1], &frames[2]);
        else if (count == 3 && pool_frame_is(&frames[0], PROTOCOL_VERB_SIGNAL))
            presence_on_signal(pool->presence, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]),
                               zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2]));
        else if (count == 3 && pool_frame_is(&frames[0], PROTOCOL_VERB_PRESENCE))
            presence_on_update(pool->presence, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]),
                               zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2]));
        else if (count != 2 || pool_frame_text(&frames[0], verb, sizeof verb) != 0 ||
                 pool_frame_text(&frames[1], id, sizeof id) != 0 || strlen(id) != TOKEN_ID_SIZE - 1)
            log_warn("event=bad_nudge frames=%d", count);
        else
            pool_nudge(pool, verb, id, submitted, &submits);
        pool_close_frames(frames, count);
    }
    pool_history_flush(pool); /* one transaction for the turn's channel messages */
    pool_nudged(pool, (const char(*)[TOKEN_ID_SIZE])submitted, submits);
}

/* Handle what the LISTEN connection heard (up to a batch; wake_more says when more waits).
 * After a (re)connection, notifications may have been missed: the store is scanned at once. */
static void
pool_listen(struct pool *pool)
{
    struct wake_note notes[POOL_BATCH];
    char submitted[POOL_BATCH][TOKEN_ID_SIZE];
    size_t submits = 0;
    int resync = 0;
    size_t count = wake_read(pool->wake, notes, POOL_BATCH, &resync);
    pool->wake_more = count == POOL_BATCH;
    for (size_t i = 0; i < count; i++)
        pool_nudge(pool, notes[i].verb, notes[i].id, submitted, &submits);
    pool_nudged(pool, (const char(*)[TOKEN_ID_SIZE])submitted, submits);
    if (resync && submits == 0)
        pool_dispatch(pool);
}

/* The outcome of a slot whose job had none to give though its attempt is ours (it ran out of
 * memory): the task goes back to the queue rather than stay running under a renewed lease. */
static struct job_outcome *
pool_hand_back(const struct slot *slot)
{
    struct job_outcome *outcome = calloc(1, sizeof *outcome);
    if (!outcome)
        return NULL;
    outcome->kind = JOB_OUTCOME_REQUEUE;
    snprintf(outcome->id, sizeof outcome->id, "%s", slot_task_id(slot));
    outcome->attempt = slot_attempt(slot);
    outcome->message = "requeued: the worker ran out of memory";
    return outcome;
}

/* The slot index a slot wrote as the last frame of its message, or -1. */
static int
pool_slot_index(const struct pool *pool, zmq_msg_t *frame)
{
    char text[16];
    if (pool_frame_text(frame, text, sizeof text) != 0)
        return -1;
    char *end;
    errno = 0;
    long index = strtol(text, &end, 10);
    return errno || end == text || *end || index < 0 || index >= pool->concurrency ? -1
                                                                                   : (int)index;
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
        zmq_msg_t frames[4];
        int count = pool_receive(pool->slot_events, frames, 4);
        if (count <= 0)
            return done;
        const char *kind = zmq_msg_data(&frames[0]);
        size_t kind_len = zmq_msg_size(&frames[0]);
        int slot = pool_slot_index(pool, &frames[count - 1]);
        if (count == 4 && slot >= 0 && kind_len == strlen(SLOT_FRAME_EVENT) &&
            memcmp(kind, SLOT_FRAME_EVENT, kind_len) == 0) {
            /* A lost attempt's events, or any while our leases may have run out, stay here. */
            if (!slot_lost(pool->slots[slot]) && pool_lease_valid(pool))
                pool_publish(pool, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]),
                             zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2]));
            else
                log_info("event=stale_event_dropped slot=%d", slot);
        } else if (count == 3 && slot >= 0 && zmq_msg_size(&frames[1]) == sizeof(void *)) {
            struct job_outcome *outcome;
            memcpy(&outcome, zmq_msg_data(&frames[1]), sizeof outcome);
            /* A lost attempt's outcome is not ours to store. */
            if (outcome && slot_lost(pool->slots[slot]))
                job_outcome_destroy(&outcome);
            else if (!outcome && !slot_lost(pool->slots[slot]))
                outcome = pool_hand_back(pool->slots[slot]);
            if (outcome && pool->outcome_count < (size_t)pool->concurrency)
                pool->outcomes[pool->outcome_count++] = outcome;
            else
                job_outcome_destroy(&outcome);
            slot_release(pool->slots[slot]);
            done++;
        }
        pool_close_frames(frames, count);
    }
    return done;
}

/* Renew our leases; a slot whose attempt is no longer ours is stopped at once.  0, or the
 * failure of the renewal. */
static int
pool_renew(struct pool *pool)
{
    int64_t started = clock_mono_ms();
    json_t *held = NULL;
    int rc = store_leases_renew(pool->store, pool->worker_id, pool->cfg->lease_ms, &held);
    pool_store_watch(pool, "renew");
    if (rc != 0) {
        if (!pool->store_problem)
            log_warn("event=lease_renew_failed error=%s", tw_error_name(rc));
        return rc;
    }
    pool->lease_valid_until_ms = started + pool->cfg->lease_ms;
    for (int i = 0; i < pool->concurrency; i++) {
        const char *id = slot_task_id(pool->slots[i]);
        if (!id || slot_lost(pool->slots[i]))
            continue;
        int mine = 0;
        size_t j;
        json_t *entry;
        json_array_foreach(held, j, entry)
        {
            if (strcmp(json_string_value(json_object_get(entry, "id")), id) == 0 &&
                json_integer_value(json_object_get(entry, "attempts")) ==
                    slot_attempt(pool->slots[i]))
                mine = 1;
        }
        /* A slot that just finished is gone from held too: stopping it is then harmless. */
        if (!mine) {
            log_warn("event=lease_lost task=%s attempt=%d", id, slot_attempt(pool->slots[i]));
            slot_lose(pool->slots[i]);
        }
    }
    json_decref(held);
    return 0;
}

/* Take back the tasks of workers whose lease ran out: retried at once, failed or cancelled as
 * their type and state say, each with a record of the attempt and the worker that was lost. */
static void
pool_sweep(struct pool *pool)
{
    json_t *expired = NULL;
    if (store_leases_expired(pool->store, &expired) != 0)
        return;
    size_t i;
    json_t *task;
    json_array_foreach(expired, i, task)
    {
        const char *id = json_string_value(json_object_get(task, "id"));
        const char *type_name = json_string_value(json_object_get(task, "type"));
        const char *worker = json_string_value(json_object_get(task, "worker"));
        const char *host = json_string_value(json_object_get(task, "host"));
        int attempt = (int)json_integer_value(json_object_get(task, "attempts"));
        const struct config_type *type =
            type_name ? config_type_find(pool->cfg, type_name, strlen(type_name)) : NULL;
        enum store_next next = json_is_true(json_object_get(task, "cancel_requested"))
                                   ? STORE_NEXT_CANCEL
                               : retry_allowed(type, CONFIG_RETRY_LOST, task) ? STORE_NEXT_RETRY
                                                                              : STORE_NEXT_FAIL;
        char *entry = retry_error_entry(attempt, "worker lost", worker, host);
        json_t *after = NULL;
        int rc = entry ? store_task_take_back(pool->store, id, attempt, next, clock_now_ms(), entry,
                                              &after)
                       : TW_E_NOMEM;
        free(entry);
        pool_store_watch(pool, "take_back");
        if (rc != 0) {
            if (rc != TW_E_FENCED && !pool->store_problem)
                log_warn("event=take_back_failed task=%s error=%s", id, tw_error_name(rc));
            continue;
        }
        static const char *const events[] = {[STORE_NEXT_RETRY] = PROTOCOL_EVENT_RETRYING,
                                             [STORE_NEXT_FAIL] = PROTOCOL_EVENT_FAILED,
                                             [STORE_NEXT_CANCEL] = PROTOCOL_EVENT_CANCELLED};
        log_warn("event=task_taken_back task=%s attempt=%d worker=%s host=%s next=%s", id, attempt,
                 worker ? worker : "?", host ? host : "?", events[next]);
        scrape_task_ended(pool->scrape, type, events[next], -1);
        pool_publish_task(pool, events[next], after);
        json_decref(after);
    }
    json_decref(expired);
}

/* Heartbeat: say we live, renew our leases, take back those of workers that are gone (not
 * after a failed renewal: our own leases may then have run out, and we are not gone). */
static void
pool_heartbeat(struct pool *pool)
{
    int rc = store_worker_heartbeat(pool->store, pool->worker_id, pool->concurrency);
    pool_store_watch(pool, "heartbeat");
    if (rc == 0 && pool_renew(pool) == 0)
        pool_sweep(pool);
    /* Presence rows of relays gone silent: not tied to this pool's leases. */
    if (rc == 0) {
        presence_sweep(pool->presence, pool->presence_forget);
        pool->presence_forget = 0;
    }
}

/* Delete finished tasks past [store] keep_finished, and channel messages past their
 * history_ttl, a batch per short transaction. */
static void
pool_prune(struct pool *pool)
{
    int64_t keep_ms = pool->cfg->keep_finished * 1000;
    int total = 0, deleted = STORE_PRUNE_BATCH;
    for (int n = 0; n < POOL_PRUNE_BATCHES && deleted == STORE_PRUNE_BATCH; n++) {
        deleted = store_tasks_prune(pool->store, keep_ms);
        if (deleted > 0)
            total += deleted;
    }
    int messages = history_prune(pool->store, POOL_PRUNE_BATCHES);
    pool_store_watch(pool, "prune");
    if (total > 0)
        log_info("event=pruned tasks=%d", total);
    if (messages > 0)
        log_info("event=pruned channel_messages=%d", messages);
    pool->presence_forget = 1; /* the next heartbeat's presence sweep */
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
    pool->lease_valid_until_ms = now + pool->cfg->lease_ms; /* nothing held yet */
    pool_heartbeat(pool);
    pool->next_heartbeat_ms = now + pool->cfg->heartbeat_ms;
    pool->next_scan_ms = now; /* tasks queued while no worker ran go first */
    pool->next_prune_ms = now;
    while (!*quit) {
        now = clock_mono_ms();
        if (now >= pool->next_heartbeat_ms) {
            pool_heartbeat(pool);
            pool->next_heartbeat_ms = now + pool->cfg->heartbeat_ms;
        }
        if (now >= pool->next_prune_ms) {
            pool_prune(pool);
            pool->next_prune_ms = now + POOL_PRUNE_INTERVAL_MS;
        }
        if (now >= pool->next_scan_ms) {
            pool->next_scan_ms = now + pool->cfg->scan_interval_ms; /* dispatch may bring it in */
            pool_dispatch(pool);
        }
        /* The watchdog is told from here, the loop itself: a hung loop stops telling it. */
        notify_watchdog(&pool->notify, clock_mono_us());
        scrape_slots(pool->scrape, pool_busy_count(pool), pool->concurrency);
        int64_t next = pool->next_heartbeat_ms < pool->next_scan_ms ? pool->next_heartbeat_ms
                                                                    : pool->next_scan_ms;
        if (pool->wake && wake_deadline_ms(pool->wake) < next)
            next = wake_deadline_ms(pool->wake);
        long timeout = pool->wake_more ? 0 : (long)(next - clock_mono_ms());
        int64_t watchdog_us = notify_watchdog_interval(&pool->notify);
        if (watchdog_us >= 0 && timeout > watchdog_us / 1000)
            timeout = (long)(watchdog_us / 1000);
        int listen_fd = pool->wake ? wake_fd(pool->wake) : -1;
        zmq_pollitem_t items[3] = {
            {.socket = pool->tasks, .events = ZMQ_POLLIN},
            {.socket = pool->slot_events, .events = ZMQ_POLLIN},
            {.fd = listen_fd, .events = pool->wake ? wake_events(pool->wake) : 0}};
        if (zmq_poll(items, listen_fd >= 0 ? 3 : 2, timeout < 0 ? 0 : timeout) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            log_error("event=poll_failed error=\"%s\"", zmq_strerror(zmq_errno()));
            break;
        }
        if (items[1].revents & ZMQ_POLLIN && pool_collect(pool, 0) > 0)
            pool_dispatch(pool);
        if (items[0].revents & ZMQ_POLLIN)
            pool_intake(pool);
        /* Also at its deadline (an attempt to connect is due) and while a batch was left. */
        if (pool->wake && (items[2].revents || pool->wake_more ||
                           clock_mono_ms() >= wake_deadline_ms(pool->wake)))
            pool_listen(pool);
    }

    /* Stop: running tasks go back to the queue, and their events still go out. */
    int busy = pool_busy_count(pool);
    log_info("event=stopping running=%d", busy);
    pool->stopping = 1;
    for (int i = 0; i < pool->concurrency; i++)
        if (slot_busy(pool->slots[i]))
            slot_stop(pool->slots[i], JOB_STOP_SHUTDOWN);
    int64_t deadline = clock_mono_ms() + POOL_SHUTDOWN_MS;
    while (pool_busy_count(pool) > 0 && clock_mono_ms() < deadline)
        pool_collect(pool, 100);
    pool_collect(pool, 0);
    pool_dispatch(pool);
}
