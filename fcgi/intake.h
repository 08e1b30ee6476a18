/* intake.h: the submissions of one handler process's threads, committed together.
 *
 * A thread with submissions (those of the requests it holds) queues them and waits.  If no
 * commit is under way, it leads one: it takes every queued submission, at most
 * INTAKE_BATCH_MAX, inserts them in one transaction on the intake's store connection, syncs
 * once (store_tasks_insert), reports each task committed (the handler nudges the worker pool
 * from there, a burst per commit) and wakes their threads.  Submissions that arrive meanwhile
 * wait for the next commit, which one of them leads.  So a lone request commits at once, and
 * concurrent ones share a transaction and a disk flush instead of queueing for one each.  One
 * connection writes every batch, so its page cache stays warm.  The queue holds at most one
 * entry per thread (each waits for its own), so it is bounded by [http] threads times the
 * requests a thread holds; a longer queue is led in several commits of INTAKE_BATCH_MAX, and a
 * thread's submissions stay together.
 */
#ifndef TW_FCGI_INTAKE_H
#define TW_FCGI_INTAKE_H

#include <pthread.h>

#include "store.h"

#define INTAKE_BATCH_MAX 64 /* submissions in one transaction at most */

struct intake_entry;

/* Called by the thread leading a commit, once per task that commit stored. */
typedef void intake_committed_fn(void *data, const struct store_submission *sub);

struct intake {
    struct store *store;            /* borrowed: the connection every batch is written on */
    intake_committed_fn *committed; /* NULL for none */
    void *data;                     /* handed to committed */
    pthread_mutex_t lock;
    struct intake_entry *head; /* queued, oldest first */
    struct intake_entry **tail;
    int leading;                /* a thread is committing a batch */
    unsigned long long commits; /* transactions led so far (for tests and measurements) */
};

/* store (a connection of its own, group commit on) and data are borrowed until intake_fini;
 * only the leading thread uses them, one at a time.  0, or -1 when the lock cannot be made.
 * The storage is the caller's. */
int intake_init(struct intake *intake, struct store *store, intake_committed_fn *committed,
                void *data);

/* Safe after a failed intake_init; no thread may be inside intake_submit. */
void intake_fini(struct intake *intake);

/* Insert the tasks of subs[0..count) together with other threads' submissions, leading the
 * commit when none is under way (more than INTAKE_BATCH_MAX go in several commits).  Returns
 * once every rc and task is set (see store_tasks_insert): a task is on disk when its rc is 0. */
void intake_submit(struct intake *intake, struct store_submission *const *subs, size_t count);

#endif
