/* job.h: one task running in a slot thread, and the task kinds that can run it.
 *
 * A job owns nothing shared: it borrows its slot's store connection, its event socket and its
 * cancel flag.  Kinds (sleep, exec) report progress through job_progress(), which stores and
 * publishes at most one progress event per [worker] progress_interval_ms (the latest wins; a
 * pending one is flushed by job_flush() or before the final state), and ask job_cancelled()
 * whether to stop: set by a cancel nudge at once, or found in the store (a cancel sent to
 * another worker, or the attempt fenced by a newer one) within JOB_CANCEL_POLL_MS.
 *
 * Every store write names the job's attempt; a refused one (TW_E_FENCED) makes the job lost.
 * How an attempt that did not succeed goes on is retry.h's policy.
 */
#ifndef TW_WORKER_JOB_H
#define TW_WORKER_JOB_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

#define JOB_CANCEL_POLL_MS 250 /* how often a job looks in the store for a cancel request */
#define JOB_ERROR_MAX 4096     /* bytes of a failed task's error text (the stderr tail) */

/* Why a slot asks its job to stop.  LOST: the attempt is no longer the task's current one (its
 * lease was taken back, or the store refused a write as fenced): stop at once, write and
 * publish nothing more. */
enum job_stop { JOB_STOP_NONE, JOB_STOP_CANCEL, JOB_STOP_SHUTDOWN, JOB_STOP_LOST };

/* How a kind says a job ended. */
enum job_end {
    JOB_END_SUCCEEDED,
    JOB_END_FAILED,
    JOB_END_TIMEOUT,
    JOB_END_CANCELLED,
    JOB_END_INTERRUPTED,
    JOB_END_LOST
};

/* What a job borrows from its slot and pool; all outlive the job. */
struct job_env {
    const struct config *cfg;
    struct store *store;   /* the slot's connection */
    void *events;          /* the slot's PUSH socket to the pool */
    int slot_index;        /* names the slot on every event it sends */
    atomic_int *stop;      /* an enum job_stop set by the pool */
    pthread_mutex_t *lock; /* guards waits on wake */
    pthread_cond_t *wake;  /* signalled when stop changes (CLOCK_MONOTONIC) */
    const char *worker_id; /* the pool's id and host, for the errors of an attempt */
    const char *host;
};

struct job {
    const struct config *cfg;
    const struct config_type *type;
    const struct job_env *env;
    struct store *store; /* borrowed: the slot's connection */
    atomic_int *stop;    /* borrowed: an enum job_stop set by the pool */
    json_t *task;        /* owned: the latest task object */
    char id[64];
    char client_id[64];
    int attempt;              /* the attempt this job runs: its fencing token */
    const json_t *params;     /* borrowed from task */
    int64_t last_progress_ms; /* monotonic time of the last progress stored */
    int64_t last_cancel_poll_ms;
    int pending; /* a progress step is waiting for its interval */
    int pending_percent;
    char pending_message[STORE_MESSAGE_MAX + 1];
    int lost; /* the attempt was fenced: nothing it says counts any more */
    /* the outcome a kind fills in */
    json_t *result; /* owned */
    char error[JOB_ERROR_MAX + 1];
};

/* How an attempt ended, for the pool to store with other slots' outcomes and its claims in one
 * transaction (a write of its own per task would cost each task a commit).  The pool applies it
 * with job_outcome_apply(), fenced on the attempt, and publishes the event it names. */
enum job_outcome_kind {
    JOB_OUTCOME_FINISH,      /* a final status */
    JOB_OUTCOME_RETRY_LATER, /* queued again, runnable at run_at_ms */
    JOB_OUTCOME_REQUEUE      /* handed back by a stopping worker */
};

struct job_outcome {
    enum job_outcome_kind kind;
    char id[64];
    int attempt;
    const char *status;  /* FINISH: a STORE_STATUS_* */
    json_t *result;      /* owned; FINISH succeeded, or NULL */
    char *error;         /* owned, or NULL */
    const char *message; /* static text */
    char *error_entry;   /* owned: the attempt's errors entry, or NULL */
    int64_t run_at_ms;   /* RETRY_LATER */
    int64_t at_ms;       /* FINISH: finished_at */
    /* The event this outcome will publish, built by the slot from the state the store will
     * hold (so the pool spares building it): valid when the store's new seq is seq. */
    char *payload;    /* owned, or NULL */
    json_t *channels; /* owned with payload: the task's channels (a copy), its event's too */
    char client_id[64];
    int64_t seq;
    int kept; /* the pool logged that it keeps the outcome until the store takes writes */
    const struct config_type *type; /* borrowed from the config: the task's, or NULL */
    int64_t ran_ms;                 /* how long the attempt ran (monotonic) */
};

/* The event an outcome publishes (borrowed, static). */
const char *job_outcome_event(const struct job_outcome *outcome);

/* Free an outcome.  NULL-safe; nulls *outcome. */
void job_outcome_destroy(struct job_outcome **outcome);

/* Store outcome on store (inside the caller's transaction, if one is open).  0 with *event the
 * event to publish and *task the new state, or *task NULL when outcome->payload is that event
 * as it is (the prediction held); TW_E_FENCED when the attempt is no longer current (nothing
 * to publish); another code on failure. */
int job_outcome_apply(struct store *store, const struct job_outcome *outcome, json_t **task,
                      const char **event);

/* job_outcome_apply for each of outcomes[0..count), with the final states whose event is
 * predicted stored together (store_tasks_finish): rcs[i], tasks[i] and events[i] as
 * job_outcome_apply gives them.  0 when every rc is 0 or TW_E_FENCED; else the first other
 * code (the caller rolls its transaction back). */
int job_outcomes_apply(struct store *store, struct job_outcome *const *outcomes, size_t count,
                       int *rcs, json_t **tasks, const char **events);

/* Run task (a claim's {"id","client_id","type","attempts"}; the job takes the reference) to the
 * end of its attempt: reads the task whole, publishes its started event (its queued event
 * first when announce), its progress, and returns how the attempt ended (caller owns;
 * job_outcome_destroy).  NULL when there is nothing to store: the attempt was fenced (nothing
 * more may be written or published about it), or memory ran out (the pool then hands the task
 * back itself). */
struct job_outcome *job_run(const struct job_env *env, json_t **task, int announce);

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
