/* slot.h: one worker thread that runs one task at a time.
 *
 * The pool owns the slots and is the only one that hands them tasks (slot_assign) and asks
 * them to stop a task (slot_stop).  A slot has its own store connection and its own PUSH
 * socket to the pool's inproc PULL, on which it sends, in order, every event of its task as
 * [SLOT_FRAME_EVENT][client id][payload][slot index] and then
 * [SLOT_FRAME_DONE][struct job_outcome * (the pool takes it; may be NULL)][slot index] when it is
 * free again: the pool stores the outcome (and publishes its event).  Once the pool has marked a
 * slot's attempt lost (slot_lose), it drops that slot's events until the slot is released.  The
 * pool publishes the events, so all of a task's events leave through one socket in the order they
 * happened.  Its wake condition variable runs on CLOCK_MONOTONIC, the clock of every deadline a job
 * waits for.
 */
#ifndef TW_WORKER_SLOT_H
#define TW_WORKER_SLOT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "config.h"

#define SLOT_ENDPOINT "inproc://taskwire-slots" /* the pool binds PULL here */
#define SLOT_FRAME_EVENT "event"
#define SLOT_FRAME_DONE "done"

struct slot;

/* Start a slot thread; returns once its store and socket are ready, or NULL with err set.
 * zmq_context, cfg, worker_id and host are borrowed and must outlive the slot. */
struct slot *slot_new(const struct config *cfg, void *zmq_context, int index, const char *worker_id,
                      const char *host, char *err, size_t errlen);

/* Stop the thread (a running task is interrupted and requeued) and free.  NULL-safe. */
void slot_destroy(struct slot **slot);

/* Give an idle slot a claimed task (see store_tasks_claim; the slot takes the reference): it
 * publishes the task's started event, and its queued event first when announce. */
void slot_assign(struct slot *slot, json_t **task, int announce);

/* 1 while the slot holds a task (from slot_assign until its done message is handled). */
int slot_busy(const struct slot *slot);

/* The mark the pool puts when it reads the slot's done message. */
void slot_release(struct slot *slot);

/* The id of the task the slot runs, or NULL when idle.  Borrowed; valid while busy. */
const char *slot_task_id(const struct slot *slot);

/* Ask the running task to stop (enum job_stop reason); harmless when idle. */
void slot_stop(struct slot *slot, int reason);

/* The attempt of the task the slot runs (its fencing token), 0 when idle. */
int slot_attempt(const struct slot *slot);

/* The slot's attempt was taken back: stop it at once (JOB_STOP_LOST); its events are dropped
 * from now on.  Harmless when idle. */
void slot_lose(struct slot *slot);

/* 1 while the slot's attempt is marked lost. */
int slot_lost(const struct slot *slot);

#endif
