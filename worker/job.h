/* job.h: one task running in a slot thread, and the task kinds that can run it.
 *
 * A job owns nothing shared: it borrows its slot's store connection, its event socket and its
 * cancel flag.  Kinds (sleep, exec) report progress through job_progress(), which stores and
 * publishes at most one progress event per [worker] progress_interval_ms (the latest wins; a
 * pending one is flushed by job_flush() or before the final state), and ask job_cancelled()
 * whether to stop: set by a cancel nudge at once, or found in the store (a cancel sent to
 * another worker) within JOB_CANCEL_POLL_MS.
 */
#ifndef TW_WORKER_JOB_H
#define TW_WORKER_JOB_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

#define JOB_CANCEL_POLL_MS 250   /* how often a job looks in the store for a cancel request */
#define JOB_ERROR_MAX 4096       /* bytes of a failed task's error text (the stderr tail) */

/* Why a slot asks its job to stop. */
enum job_stop { JOB_STOP_NONE, JOB_STOP_CANCEL, JOB_STOP_SHUTDOWN };

/* How a kind says a job ended. */
enum job_end { JOB_END_SUCCEEDED, JOB_END_FAILED, JOB_END_CANCELLED, JOB_END_INTERRUPTED };

struct job {
    const struct config *cfg;
    const struct config_type *type;
    struct store *store;          /* borrowed: the slot's connection */
    void *events;                 /* borrowed: the slot's PUSH socket to the pool */
    atomic_int *stop;             /* borrowed: an enum job_stop set by the pool */
    pthread_mutex_t *lock;        /* borrowed: guards waits on wake */
    pthread_cond_t *wake;         /* borrowed: signalled when stop changes */
    json_t *task;                 /* owned: the latest task object */
    char id[64];
    char client_id[64];
    const json_t *params;         /* borrowed from task */
    int64_t last_progress_ms;     /* monotonic time of the last progress stored */
    int64_t last_cancel_poll_ms;
    int pending;                  /* a progress step is waiting for its interval */
    int pending_percent;
    char pending_message[STORE_MESSAGE_MAX + 1];
    int lost;                     /* the store no longer lets us update the task */
    /* the outcome a kind fills in */
    json_t *result;               /* owned */
    char error[JOB_ERROR_MAX + 1];
};

/* Run task (a running task object from a claim; the job takes the reference) to its final
 * state: stores it, publishes every event, and returns once the task is final or requeued. */
void job_run(const struct config *cfg, struct store *store, void *events, atomic_int *stop,
             pthread_mutex_t *lock, pthread_cond_t *wake, json_t **task);

/* Report progress (0..100) with a step message; stored and published now or when the
 * coalescing interval allows. */
void job_progress(struct job *job, int percent, const char *message);

/* Publish a pending progress step if its interval has passed. */
void job_flush(struct job *job);

/* Why the job should stop now (enum job_stop); JOB_STOP_NONE to go on. */
int job_cancelled(struct job *job);

/* Wait until the monotonic deadline or a stop request; returns job_cancelled(). */
int job_wait_until(struct job *job, int64_t deadline_ms);

/* The kinds. */
enum job_end job_sleep_run(struct job *job);
enum job_end job_exec_run(struct job *job);

#endif
