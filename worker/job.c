/* job.c: running one task: progress coalescing, cancel checks, the final state. */
#include "job.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "channel.h"
#include "clock.h"
#include "errors.h"
#include "log.h"
#include "protocol.h"
#include "retry.h"
#include "slot.h"

/* The task kinds: one row per way of running a task. */
static const struct job_kind {
    enum config_type_kind kind;
    enum job_end (*run)(struct job *job);
} job_kinds[] = {
    {CONFIG_TYPE_SLEEP, job_sleep_run},
    {CONFIG_TYPE_EXEC, job_exec_run},
};

/* Send one event to the pool: [event][topic][payload][slot index]. */
static void
job_send_event(struct job *job, const char *topic, size_t topic_len, const char *payload)
{
    char index[16];
    int length = snprintf(index, sizeof index, "%d", job->env->slot_index);
    void *events = job->env->events;
    if (zmq_send(events, SLOT_FRAME_EVENT, strlen(SLOT_FRAME_EVENT), ZMQ_SNDMORE) < 0 ||
        zmq_send(events, topic, topic_len, ZMQ_SNDMORE) < 0 ||
        zmq_send(events, payload, strlen(payload), ZMQ_SNDMORE) < 0 ||
        zmq_send(events, index, (size_t)length, 0) < 0)
        log_warn("event=publish_failed task=%s error=\"%s\"", job->id, zmq_strerror(zmq_errno()));
}

/* Send the event for job's current task to the pool, which publishes it in order (unless the
 * slot's attempt was lost meanwhile: the slot index tells the pool whose event it is): to the
 * client id, then to each of the task's channels. */
static void
job_publish(struct job *job, const char *event)
{
    char *payload = protocol_task_event(event, job->task);
    if (!payload) {
        log_error("event=publish_failed task=%s error=\"out of memory\"", job->id);
        return;
    }
    job_send_event(job, job->client_id, strlen(job->client_id), payload);
    const json_t *channels = json_object_get(job->task, "channels");
    const char *topic;
    size_t topic_len;
    for (size_t i = 0; i < json_array_size(channels); i++)
        if (channel_list_topic(channels, i, &topic, &topic_len))
            job_send_event(job, topic, topic_len, payload);
    free(payload);
}

/* Replace the job's task object by a newer one (taking the reference). */
static void
job_task_replace(struct job *job, json_t *task)
{
    json_decref(job->task);
    job->task = task;
    job->params = json_object_get(task, "params");
}

/* The store refused a write of this attempt: a newer attempt owns the task now. */
static void
job_fenced(struct job *job)
{
    if (!job->lost)
        log_warn("event=attempt_fenced task=%s attempt=%d", job->id, job->attempt);
    job->lost = 1;
    atomic_store(job->stop, JOB_STOP_LOST);
}

/* Store and publish a progress step.  A step the store refused for a problem (a full or
 * read-only disk) stays pending and is tried again an interval later (the latest step wins):
 * the task runs on, and its progress shows once the store takes writes again.  The store logs
 * the problem once, not every step. */
static void
job_progress_store(struct job *job, int percent, const char *message)
{
    json_t *task = NULL;
    int rc = store_task_progress(job->store, job->id, job->attempt, percent, message, &task);
    job->last_progress_ms = clock_mono_ms();
    if (rc == TW_E_FENCED) {
        job->pending = 0;
        job_fenced(job);
        return;
    }
    if (rc != 0)
        return;
    job->pending = 0;
    job_task_replace(job, task);
    job_publish(job, PROTOCOL_EVENT_PROGRESS);
}

void
job_progress(struct job *job, int percent, const char *message)
{
    if (job->lost)
        return;
    job->pending = 1;
    job->pending_percent = percent;
    snprintf(job->pending_message, sizeof job->pending_message, "%s", message ? message : "");
    job_flush(job);
}

void
job_flush(struct job *job)
{
    if (!job->pending || job->lost)
        return;
    if (clock_mono_ms() - job->last_progress_ms < job->cfg->progress_interval_ms)
        return;
    job_progress_store(job, job->pending_percent, job->pending_message);
}

int
job_cancelled(struct job *job)
{
    int stop = atomic_load(job->stop);
    if (stop != JOB_STOP_NONE)
        return stop;
    if (job->lost)
        return JOB_STOP_LOST;
    int64_t now = clock_mono_ms();
    if (now - job->last_cancel_poll_ms >= JOB_CANCEL_POLL_MS) {
        job->last_cancel_poll_ms = now;
        int check = store_task_check(job->store, job->id, job->attempt);
        if (check == TW_E_FENCED) {
            job_fenced(job);
            return JOB_STOP_LOST;
        }
        if (check == 1) {
            atomic_store(job->stop, JOB_STOP_CANCEL);
            return JOB_STOP_CANCEL;
        }
    }
    return JOB_STOP_NONE;
}

int
job_wait_until(struct job *job, int64_t deadline_ms)
{
    for (;;) {
        int stop = job_cancelled(job);
        if (stop != JOB_STOP_NONE)
            return stop;
        job_flush(job);
        int64_t now = clock_mono_ms();
        if (now >= deadline_ms)
            return JOB_STOP_NONE;
        /* Wake for the deadline, the next cancel poll or a pending progress step. */
        int64_t until = deadline_ms;
        if (until > now + JOB_CANCEL_POLL_MS)
            until = now + JOB_CANCEL_POLL_MS;
        if (job->pending && until > job->last_progress_ms + job->cfg->progress_interval_ms)
            until = job->last_progress_ms + job->cfg->progress_interval_ms;
        if (until <= now)
            until = now + 1;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + (until - now) * 1000000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_mutex_lock(job->env->lock);
        if (atomic_load(job->stop) == JOB_STOP_NONE)
            pthread_cond_timedwait(job->env->wake, job->env->lock, &ts);
        pthread_mutex_unlock(job->env->lock);
    }
}

void
job_outcome_destroy(struct job_outcome **outcome)
{
    if (!outcome || !*outcome)
        return;
    json_decref((*outcome)->result);
    free((*outcome)->error);
    free((*outcome)->error_entry);
    free((*outcome)->payload);
    json_decref((*outcome)->channels);
    free(*outcome);
    *outcome = NULL;
}

const char *
job_outcome_event(const struct job_outcome *outcome)
{
    return outcome->kind == JOB_OUTCOME_FINISH ? protocol_event_for_status(outcome->status)
                                               : PROTOCOL_EVENT_RETRYING;
}

int
job_outcome_apply(struct store *store, const struct job_outcome *outcome, json_t **task,
                  const char **event)
{
    int rc;
    /* With a predicted event, only the change is made; its row is read only if the
     * prediction missed. */
    json_t **row = outcome->payload ? NULL : task;
    *task = NULL;
    *event = job_outcome_event(outcome);
    switch (outcome->kind) {
    case JOB_OUTCOME_FINISH:
        rc = store_task_finish(store, outcome->id, outcome->attempt, outcome->status,
                               outcome->result, outcome->error, outcome->message,
                               outcome->error_entry, outcome->at_ms, row);
        break;
    case JOB_OUTCOME_RETRY_LATER:
        rc = store_task_retry_later(store, outcome->id, outcome->attempt, outcome->error,
                                    outcome->error_entry, outcome->run_at_ms, row);
        break;
    default:
        rc = store_task_requeue(store, outcome->id, outcome->attempt, outcome->message, row);
        break;
    }
    if (rc == 0 && outcome->payload && store_last_seq(store) != outcome->seq)
        rc = store_task_get(store, outcome->id, NULL, task);
    return rc;
}

/* Whether job_outcomes_apply stores outcome in its batch: a final state whose event is
 * predicted (no row to read back). */
static int
job_outcome_batched(const struct job_outcome *outcome)
{
    return outcome->kind == JOB_OUTCOME_FINISH && outcome->payload;
}

int
job_outcomes_apply(struct store *store, struct job_outcome *const *outcomes, size_t count, int *rcs,
                   json_t **tasks, const char **events)
{
    struct store_finish items[count > 0 ? count : 1]; /* in the order of outcomes */
    size_t batched = 0;
    int rc = 0;
    for (size_t i = 0; i < count; i++) {
        const struct job_outcome *outcome = outcomes[i];
        tasks[i] = NULL;
        events[i] = job_outcome_event(outcome);
        rcs[i] = 0;
        if (job_outcome_batched(outcome)) {
            items[batched] = (struct store_finish){
                .id = outcome->id,
                .attempt = outcome->attempt,
                .status = outcome->status,
                .result = outcome->result,
                .error = outcome->error,
                .message = outcome->message,
                .error_entry = outcome->error_entry,
                .at_ms = outcome->at_ms,
            };
            batched++;
        } else if (rc == 0) {
            rcs[i] = job_outcome_apply(store, outcome, &tasks[i], &events[i]);
            if (rcs[i] != 0 && rcs[i] != TW_E_FENCED)
                rc = rcs[i];
        }
    }
    if (rc == 0 && batched > 0)
        rc = store_tasks_finish(store, items, batched);
    for (size_t i = 0, k = 0; rc == 0 && i < count; i++) {
        if (!job_outcome_batched(outcomes[i]))
            continue;
        const struct store_finish *item = &items[k++];
        rcs[i] = item->rc;
        /* The prediction missed (another change came between): the event from the row. */
        if (rcs[i] == 0 && item->seq != outcomes[i]->seq)
            rcs[i] = store_task_get(store, outcomes[i]->id, NULL, &tasks[i]);
        if (rcs[i] != 0 && rcs[i] != TW_E_FENCED)
            rc = rcs[i];
    }
    return rc;
}

/* Build the event of outcome from the state the store will hold after it (see ST_FINISH,
 * ST_END_RETRY and ST_REQUEUE): a copy of the task as this attempt last stored it, changed as
 * those statements change it.  Leaves outcome->payload NULL when it cannot (the pool then
 * builds the event from the row). */
static void
job_predict(struct job *job, struct job_outcome *outcome)
{
    json_t *after = json_copy(job->task);
    if (!after)
        return;
    char stamp[CLOCK_ISO8601_SIZE];
    json_int_t seq = json_integer_value(json_object_get(job->task, "seq")) + 1;
    int ok = json_object_set_new(after, "seq", json_integer(seq)) == 0 &&
             json_object_set_new(after, "message", json_string(outcome->message)) == 0;
    if (outcome->error_entry) {
        json_t *entry = json_loads(outcome->error_entry, 0, NULL);
        json_t *errors = json_copy(json_object_get(job->task, "errors"));
        ok = ok && entry && errors && json_array_append_new(errors, entry) == 0 &&
             json_object_set_new(after, "errors", errors) == 0;
        if (!ok) {
            json_decref(errors);
            json_decref(entry);
        }
    }
    if (outcome->kind == JOB_OUTCOME_FINISH) {
        int succeeded = strcmp(outcome->status, STORE_STATUS_SUCCEEDED) == 0;
        ok = ok && json_object_set_new(after, "status", json_string(outcome->status)) == 0 &&
             json_object_set(after, "result", outcome->result ? outcome->result : json_null()) ==
                 0 &&
             json_object_set_new(after, "error",
                                 outcome->error ? json_string(outcome->error) : json_null()) == 0 &&
             json_object_set_new(after, "finished_at",
                                 json_string(clock_iso8601(outcome->at_ms, stamp, sizeof stamp))) ==
                 0 &&
             (!succeeded || json_object_set_new(after, "progress", json_integer(100)) == 0);
    } else {
        ok = ok && json_object_set_new(after, "status", json_string(STORE_STATUS_QUEUED)) == 0 &&
             json_object_set_new(after, "progress", json_integer(0)) == 0 &&
             json_object_set_new(after, "started_at", json_null()) == 0;
        if (outcome->kind == JOB_OUTCOME_RETRY_LATER)
            ok = ok && json_object_set_new(after, "error", json_string(outcome->error)) == 0 &&
                 json_object_set_new(
                     after, "run_at",
                     json_string(clock_iso8601(outcome->run_at_ms, stamp, sizeof stamp))) == 0;
    }
    /* A result or an error the store keeps differently (one that is not valid UTF-8, or an
     * error cut to its tail) is left to the row. */
    ok = ok && (!outcome->error || strlen(outcome->error) <= STORE_ERROR_MAX);
    if (ok) {
        outcome->payload = protocol_task_event(job_outcome_event(outcome), after);
        /* A copy: the pool's thread reads and frees it, this one frees the task. */
        outcome->channels = json_deep_copy(json_object_get(job->task, "channels"));
        outcome->seq = seq;
        snprintf(outcome->client_id, sizeof outcome->client_id, "%s", job->client_id);
    }
    json_decref(after);
}

/* An attempt that failed or timed out: retried later when its type's policy allows, else
 * final; either way with an errors entry. */
static int
job_end_failure(struct job *job, unsigned reason, struct job_outcome *outcome)
{
    const char *error = job->error[0] ? job->error : "failed";
    outcome->error = strdup(error);
    outcome->error_entry =
        retry_error_entry(job->attempt, error, job->env->worker_id, job->env->host);
    if (!outcome->error || !outcome->error_entry)
        return TW_E_NOMEM;
    if (retry_allowed(job->type, reason, job->task)) {
        int n = (int)json_array_size(json_object_get(job->task, "errors")) + 1;
        outcome->kind = JOB_OUTCOME_RETRY_LATER;
        outcome->run_at_ms = clock_now_ms() + retry_backoff_ms(job->type, n, retry_random());
        outcome->message = "retrying";
    } else {
        outcome->status = STORE_STATUS_FAILED;
        outcome->message = "failed";
    }
    return 0;
}

/* The outcome of the end the kind reached, or NULL when there is none to store. */
static struct job_outcome *
job_finish(struct job *job, enum job_end end)
{
    if (job->lost || end == JOB_END_LOST) {
        log_warn("event=task_lost task=%s attempt=%d", job->id, job->attempt);
        return NULL;
    }
    struct job_outcome *outcome = calloc(1, sizeof *outcome);
    if (!outcome)
        return NULL;
    snprintf(outcome->id, sizeof outcome->id, "%s", job->id);
    outcome->attempt = job->attempt;
    outcome->kind = JOB_OUTCOME_FINISH;
    outcome->at_ms = clock_now_ms();
    int rc = 0;
    /* A final state always carries the latest progress, so a pending step is not needed. */
    switch (end) {
    case JOB_END_SUCCEEDED:
        outcome->status = STORE_STATUS_SUCCEEDED;
        outcome->message = "done";
        outcome->result = job->result;
        job->result = NULL;
        break;
    case JOB_END_FAILED:
        rc = job_end_failure(job, CONFIG_RETRY_FAILED, outcome);
        break;
    case JOB_END_TIMEOUT:
        rc = job_end_failure(job, CONFIG_RETRY_TIMEOUT, outcome);
        break;
    case JOB_END_CANCELLED:
        outcome->status = STORE_STATUS_CANCELLED;
        outcome->message = "cancelled";
        break;
    default:
        outcome->kind = JOB_OUTCOME_REQUEUE;
        outcome->message = "requeued: worker stopping";
        break;
    }
    if (rc != 0)
        job_outcome_destroy(&outcome);
    else
        job_predict(job, outcome);
    return outcome;
}

/* The queued event a claim found unannounced: the task as it was just before the claim.  A
 * task that ran before was given a new attempt over REST, and the claim came before any worker
 * announced that (PostgreSQL: every worker hears the retry's nudge): its event is the retry's. */
static void
job_publish_queued_before(struct job *job)
{
    json_t *task = job->task;
    int retried = job->attempt > 1;
    json_int_t seq = json_integer_value(json_object_get(task, "seq"));
    /* The claimed task with these members as they were before the claim, in place (a copy of
     * the object cost more than the event), then as they are again. */
    const char *const keys[] = {"status", "message", "seq", "attempts", "started_at"};
    json_t *before[] = {json_string(STORE_STATUS_QUEUED),
                        json_string(retried ? "queued for retry" : "queued"), json_integer(seq - 1),
                        json_integer(job->attempt - 1), json_null()};
    enum { MEMBERS = sizeof keys / sizeof keys[0] };
    json_t *now[MEMBERS];
    int complete = 1;
    for (size_t i = 0; i < MEMBERS; i++) {
        now[i] = json_incref(json_object_get(task, keys[i]));
        complete = complete && now[i] && before[i];
    }
    for (size_t i = 0; complete && i < MEMBERS; i++)
        json_object_set(task, keys[i], before[i]);
    if (complete)
        job_publish(job, retried ? PROTOCOL_EVENT_RETRYING : PROTOCOL_EVENT_QUEUED);
    for (size_t i = 0; i < MEMBERS; i++) {
        if (complete)
            json_object_set(task, keys[i], now[i]);
        json_decref(now[i]);
        json_decref(before[i]);
    }
}

/* Announce the claimed task's start (its queued event first when announce): the claim gave
 * the whole task as it left it, so nothing is read again.  Should the attempt lose its lease
 * in the meantime, its first write is fenced (job_fenced) and nothing more goes out. */
static void
job_begin(struct job *job, int announce)
{
    if (announce)
        job_publish_queued_before(job);
    job_publish(job, PROTOCOL_EVENT_STARTED);
}

struct job_outcome *
job_run(const struct job_env *env, json_t **task, int announce)
{
    struct job *job = calloc(1, sizeof *job);
    if (!job) {
        json_decref(*task);
        *task = NULL;
        return NULL;
    }
    const struct config *cfg = env->cfg;
    job->cfg = cfg;
    job->env = env;
    job->store = env->store;
    job->stop = env->stop;
    job_task_replace(job, *task);
    *task = NULL;
    snprintf(job->id, sizeof job->id, "%s", json_string_value(json_object_get(job->task, "id")));
    snprintf(job->client_id, sizeof job->client_id, "%s",
             json_string_value(json_object_get(job->task, "client_id")));
    job->attempt = (int)json_integer_value(json_object_get(job->task, "attempts"));
    job_begin(job, announce);
    const char *type_name = json_string_value(json_object_get(job->task, "type"));
    job->type = type_name ? config_type_find(cfg, type_name, strlen(type_name)) : NULL;
    int64_t began_ms = clock_mono_ms();
    job->last_progress_ms = began_ms - cfg->progress_interval_ms;
    job->last_cancel_poll_ms = began_ms;

    enum job_end end = JOB_END_FAILED;
    if (!job->type) {
        snprintf(job->error, sizeof job->error, "task type %s is not configured on this worker",
                 type_name ? type_name : "?");
    } else {
        for (size_t i = 0; i < sizeof job_kinds / sizeof job_kinds[0]; i++)
            if (job_kinds[i].kind == job->type->kind)
                end = job_kinds[i].run(job);
    }
    if (atomic_load(job->stop) == JOB_STOP_LOST)
        end = JOB_END_LOST;
    struct job_outcome *outcome = job_finish(job, end);
    if (outcome) {
        outcome->type = job->type;
        outcome->ran_ms = clock_mono_ms() - began_ms;
    }
    json_decref(job->result);
    json_decref(job->task);
    free(job);
    return outcome;
}
