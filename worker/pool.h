/* pool.h: the worker pool: the task intake, the slots, the event publisher and the proxy.
 *
 * The pool binds the three ZeroMQ endpoints of the config: PULL on `tasks` (nudges
 * [verb][task id]), XSUB on `publish` and XPUB on `events`, joined by a zmq_proxy thread so any
 * PUB can publish to every relay.  The store is the queue: the pool claims runnable tasks
 * (highest priority, then oldest; per-type concurrency limits held in the claim) whenever a
 * slot is free, on a nudge and every scan_interval_ms.  Every heartbeat_ms it records its
 * heartbeat, renews the leases of the tasks it runs (a slot whose attempt it no longer holds is
 * stopped at once) and takes back the tasks whose lease ran out on a lost worker (retry.h
 * decides what becomes of them).  Every minute it prunes finished tasks past keep_finished
 * and channel messages past their history_ttl.  A publish ([publish][topic][payload]) to a
 * channel whose namespace keeps history is stored with its offset first, the turn's in one
 * transaction, and published after the commit (history.h); any other goes out at once.
 * Every event of every task leaves through the pool's one PUB socket, in order; none leaves
 * while the pool cannot be sure its leases hold (lease_ms since its last renewal began).
 */
#ifndef TW_WORKER_POOL_H
#define TW_WORKER_POOL_H

#include <signal.h>
#include <stddef.h>

#include "config.h"

#define POOL_PUBLISH_INPROC "inproc://taskwire-publish" /* the pool's own PUB connects here */
#define POOL_HWM 100000        /* messages queued per ZeroMQ peer before PUB drops */
#define POOL_SHUTDOWN_MS 10000 /* longest wait for slots to hand back their tasks on stop */

struct pool;

/* Bind the endpoints, start the proxy and the slots.  Caller owns; pool_destroy().  NULL
 * with the reason in err.  cfg is borrowed and must outlive the pool. */
struct pool *pool_new(const struct config *cfg, char *err, size_t errlen);

/* Serve until *quit becomes non-zero, then stop taking tasks, interrupt the running ones
 * (they go back to the queue) and return. */
void pool_run(struct pool *pool, volatile sig_atomic_t *quit);

/* Stop every thread and free.  NULL-safe; nulls *pool. */
void pool_destroy(struct pool **pool);

#endif
