/* slot.c: a worker thread running one task at a time. */
#include "slot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "job.h"
#include "log.h"
#include "store.h"
#include "wire.h"

struct slot {
    const struct config *cfg;
    int index;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    json_t *task;        /* handed over, not yet taken by the thread */
    int announce;        /* with task: its queued event is still to be published */
    int quit;            /* guarded by lock */
    atomic_int stop;     /* enum job_stop for the running task */
    int busy;            /* pool thread only */
    int attempt;         /* pool thread only: the running task's attempt */
    int lost;            /* pool thread only: that attempt was taken back */
    char task_id[64];    /* pool thread only */
    struct store *store; /* slot thread only */
    void *events;        /* slot thread only (created before it starts) */
    struct job_env env;  /* what the slot's jobs borrow */
};

static void *
slot_main(void *arg)
{
    struct slot *slot = arg;
    for (;;) {
        pthread_mutex_lock(&slot->lock);
        while (!slot->task && !slot->quit)
            pthread_cond_wait(&slot->wake, &slot->lock);
        json_t *task = slot->task;
        int announce = slot->announce;
        slot->task = NULL;
        int quit = slot->quit;
        pthread_mutex_unlock(&slot->lock);
        if (task) {
            struct job_outcome *outcome = job_run(&slot->env, &task, announce);
            char index[16];
            int length = snprintf(index, sizeof index, "%d", slot->index);
            /* The outcome travels as a pointer: the pool takes it (inproc, same process). */
            if (zmq_send(slot->events, SLOT_FRAME_DONE, strlen(SLOT_FRAME_DONE), ZMQ_SNDMORE) < 0 ||
                zmq_send(slot->events, &outcome, sizeof outcome, ZMQ_SNDMORE) < 0 ||
                zmq_send(slot->events, index, (size_t)length, 0) < 0)
                job_outcome_destroy(&outcome);
        }
        if (quit)
            break;
    }
    return NULL;
}

struct slot *
slot_new(const struct config *cfg, void *zmq_context, int index, const char *worker_id,
         const char *host, char *err, size_t errlen)
{
    struct slot *slot = calloc(1, sizeof *slot);
    if (!slot) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    slot->cfg = cfg;
    slot->index = index;
    pthread_mutex_init(&slot->lock, NULL);
    /* job_wait_until() times its waits on CLOCK_MONOTONIC: a default (CLOCK_REALTIME)
     * condition variable would take every monotonic deadline as long past and spin. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&slot->wake, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&slot->stop, JOB_STOP_NONE);
    struct store_options options = store_options_of(cfg);
    slot->store = store_new(&options, err, errlen);
    if (!slot->store || store_worker_durability(slot->store) != 0)
        goto fail;
    struct wire_options events = {.send_hwm = WIRE_DEFAULT,
                                  .recv_hwm = WIRE_DEFAULT,
                                  .linger_ms = 1000,
                                  .connect = SLOT_ENDPOINT};
    slot->events = wire_socket(zmq_context, ZMQ_PUSH, &events, err, errlen);
    if (!slot->events)
        goto fail;
    slot->env = (struct job_env){.cfg = cfg,
                                 .store = slot->store,
                                 .events = slot->events,
                                 .slot_index = index,
                                 .stop = &slot->stop,
                                 .lock = &slot->lock,
                                 .wake = &slot->wake,
                                 .worker_id = worker_id,
                                 .host = host};
    if (pthread_create(&slot->thread, NULL, slot_main, slot) != 0) {
        snprintf(err, errlen, "cannot start a slot thread");
        goto fail;
    }
    slot->started = 1;
    return slot;
fail:
    slot_destroy(&slot);
    return NULL;
}

void
slot_destroy(struct slot **slot)
{
    if (!slot || !*slot)
        return;
    struct slot *s = *slot;
    if (s->started) {
        pthread_mutex_lock(&s->lock);
        s->quit = 1;
        atomic_store(&s->stop, JOB_STOP_SHUTDOWN);
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    json_decref(s->task);
    if (s->events)
        zmq_close(s->events);
    store_destroy(&s->store);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
    *slot = NULL;
}

void
slot_assign(struct slot *slot, json_t **task, int announce)
{
    const char *id = json_string_value(json_object_get(*task, "id"));
    snprintf(slot->task_id, sizeof slot->task_id, "%s", id ? id : "");
    slot->attempt = (int)json_integer_value(json_object_get(*task, "attempts"));
    slot->lost = 0;
    slot->busy = 1;
    pthread_mutex_lock(&slot->lock);
    atomic_store(&slot->stop, JOB_STOP_NONE);
    slot->task = *task;
    slot->announce = announce;
    *task = NULL;
    pthread_cond_broadcast(&slot->wake);
    pthread_mutex_unlock(&slot->lock);
}

int
slot_busy(const struct slot *slot)
{
    return slot->busy;
}

void
slot_release(struct slot *slot)
{
    slot->busy = 0;
    slot->lost = 0;
    slot->task_id[0] = '\0';
}

int
slot_attempt(const struct slot *slot)
{
    return slot->busy ? slot->attempt : 0;
}

void
slot_lose(struct slot *slot)
{
    if (!slot->busy)
        return;
    slot->lost = 1;
    slot_stop(slot, JOB_STOP_LOST);
}

int
slot_lost(const struct slot *slot)
{
    return slot->busy && slot->lost;
}

const char *
slot_task_id(const struct slot *slot)
{
    return slot->busy ? slot->task_id : NULL;
}

void
slot_stop(struct slot *slot, int reason)
{
    pthread_mutex_lock(&slot->lock);
    atomic_store(&slot->stop, reason);
    pthread_cond_broadcast(&slot->wake);
    pthread_mutex_unlock(&slot->lock);
}
