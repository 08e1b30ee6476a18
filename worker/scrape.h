/* scrape.h: the worker pool's metrics ([worker] metrics_listen, or -m): GET /metrics in
 * Prometheus text 0.0.4, served by a thread of its own through libwebsockets.
 *
 * What it counts and where from:
 * - the pool's loop reports each attempt it ends (scrape_task_ended: tasks_total by type and
 *   the state the attempt left the task in, and the attempt's duration), each task it takes
 *   back from a lost worker (scrape_task_ended too), each claim (scrape_task_claimed: the
 *   queue wait, from the task's run_at to its start) and, every turn, its slots
 *   (scrape_slots).  These are this process's own: sum them across workers.
 * - queue depth (taskwire_tasks_queued, taskwire_tasks_running) is read from the store at
 *   each scrape, over the metrics thread's own connection: it is the whole store's, the same
 *   from every worker (take max, not sum).
 * The loop's updates take the scrape's lock for a few additions; the slots are atomics.  The
 * lock is never held across I/O.  Types are the config's (at most CONFIG_MAX_TYPES); an
 * attempt of a type the worker does not know is counted under the type "unknown".  One
 * exposition is at most SCRAPE_TEXT_MAX bytes; past that a scrape is answered 500.
 */
#ifndef TW_WORKER_SCRAPE_H
#define TW_WORKER_SCRAPE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define SCRAPE_TEXT_MAX (256 * 1024) /* bytes of one exposition */

struct scrape;

/* Start the metrics thread, listening on cfg's worker_metrics_listen (set: the caller checks);
 * returns once it listens.  Caller owns; scrape_destroy().  NULL with err set.  cfg is
 * borrowed and must outlive it. */
struct scrape *scrape_new(const struct config *cfg, char *err, size_t errlen);

/* Stop the thread and free.  NULL-safe; nulls *scrape. */
void scrape_destroy(struct scrape **scrape);

/* An attempt of type (NULL: not configured here) ended, leaving the task in status (an event
 * name: succeeded, failed, cancelled, retrying, queued); ran_ms is how long it ran, or -1 when
 * unknown (a take-back).  NULL-safe. */
void scrape_task_ended(struct scrape *scrape, const struct config_type *type, const char *status,
                       int64_t ran_ms);

/* A task was claimed waited_ms after its run_at (as store_tasks_claim gives it): observed.
 * NULL-safe. */
void scrape_task_claimed(struct scrape *scrape, int64_t waited_ms);

/* Presence (worker/presence.h): events published since the last call by action, browsers'
 * publishes forwarded, and the store's presence rows (-1: unknown, left as it was).
 * NULL-safe. */
void scrape_presence(struct scrape *scrape, uint64_t joins, uint64_t updates, uint64_t leaves,
                     uint64_t signals, int64_t rows);

/* The pool's slots now: busy of total.  NULL-safe. */
void scrape_slots(struct scrape *scrape, int busy, int total);

#endif
