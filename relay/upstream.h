/* upstream.h: the relay's way to the worker pools: one ZeroMQ PUSH connected to every pool
 * of [zmq] tasks (common/wire.h; CURVE client with [zmq] curve, as the handler), carrying a
 * browser's publishes ([signal][topic][payload]) and this relay's presence
 * ([presence][relay id][update], common/presence_wire.h).
 *
 * With [zmq] curve and no curve_server_public_file (a relay set up before it had an upstream)
 * there is no PUSH: a warning at start, every publish refused busy, presence not sent.
 *
 * Bounds and policy: ZMQ_IMMEDIATE (a pool that is down holds nothing), at most
 * UPSTREAM_HWM messages queued per pool, every send ZMQ_DONTWAIT: a message no pool can take
 * now is dropped and counted (dropped): a signal is refused to its browser (busy); presence
 * changes stay dirty in the roster and go with the next turn.
 *
 * Presence: the relay's id (host-pid-random, logged at start) names its rows in the store;
 * the connections' subscriptions keep the roster (subscription.h).
 * upstream_turn, from every turn of the relay's loop, its heartbeat and a timer of its own,
 * sends what changed, at most one batch of changes each UPSTREAM_BATCH_MS (their first
 * waits at most that long; after a send no pool took, UPSTREAM_RETRY_MS, tried again by the
 * relay's heartbeat, once a second); a beat, an update
 * without entries, when nothing went for a third of [channels] presence_ttl_ms, which renews
 * the relay's rows; and a full resend of all its entries in chunks (UPSTREAM_RESEND_CHUNKS a
 * turn) every UPSTREAM_RESEND_TTLS x presence_ttl_ms, and as soon as a send goes through
 * after one that did not; once a resend is complete, the relay's rows it did not mention are
 * no longer renewed (presence_wire.h "since").  So a change the relay saw dropped is right
 * again as soon as a pool takes messages again; one lost unseen (a pool that died with it
 * queued) within (UPSTREAM_RESEND_TTLS + 1) x presence_ttl_ms plus a pool's heartbeat; the
 * relay's rows after a pause long enough for them to expire come back with the resend that
 * follows it.  On a clean stop it says it is gone (its rows removed at once).
 */
#ifndef TW_RELAY_UPSTREAM_H
#define TW_RELAY_UPSTREAM_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#include "presence_wire.h"
#include "roster.h"

#define UPSTREAM_HWM 10000       /* messages queued per pool before sends are refused */
#define UPSTREAM_LINGER_MS 200   /* a stopping relay's last messages get this long */
#define UPSTREAM_BATCH_MS 50     /* presence changes go at most this often */
#define UPSTREAM_RESEND_CHUNKS 4 /* chunks of a full resend sent per turn */
#define UPSTREAM_RESEND_TTLS 4   /* a full resend every this many presence_ttl_ms */
#define UPSTREAM_RETRY_MS 1000   /* after a send no pool took, changes wait this long */

struct relay;
struct curve;

/* Embedded in struct relay; upstream_init / upstream_fini bracket it. */
struct upstream {
    void *push;          /* PUSH to every pool of [zmq] tasks */
    struct curve *curve; /* its CURVE keys, or NULL */
    char relay_id[PRESENCE_RELAY_ID_MAX];
    int presence;                   /* 1: some namespace has presence */
    struct roster roster;           /* who is here (roster.h) */
    struct presence_update *update; /* the batch being built (heap: about 26 KiB) */
    int64_t seq;                    /* the last update's */
    int64_t since;                  /* the latest complete full resend's first seq */
    int64_t resend_from;            /* the running full resend's first seq, 0: none running */
    int64_t last_sent_ms, last_changes_ms, next_full_ms;
    int timer_set;       /* batch_later is scheduled ... */
    int64_t timer_at_ms; /* ... for then */
    int resend_soon;     /* a send failed: resend everything once one goes */
    int64_t retry_at_ms; /* after a failed send, changes wait until then */
    lws_sorted_usec_list_t batch_later;
    uint64_t sent, dropped;         /* messages, by whether a pool took them */
    uint64_t signals, signals_busy; /* browsers' publishes sent, and refused busy */
};

/* Make the relay id and the PUSH (on the ingress's ZeroMQ context, which must exist).
 * 0, or -1 with err. */
int upstream_init(struct relay *relay, char *err, size_t errlen);

/* Say the relay is gone (presence), close the socket, free the roster.  Before ingress_fini. */
void upstream_fini(struct relay *relay);

/* A browser's publish: [signal][topic][payload] to a pool.  0, or -1 when none can take it
 * now (counted). */
int upstream_signal(struct relay *relay, const char *topic, size_t topic_len, const char *payload,
                    size_t len);

/* Send what presence owes now (see above).  Cheap when nothing is due. */
void upstream_turn(struct relay *relay);

#endif
