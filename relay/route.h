/* route.h: who gets which message: the client-id table, each client id's ring of pending
 * messages, and the pool of message buffers.  Knows nothing of libwebsockets or ZeroMQ.
 *
 * A member (one WebSocket connection) is attached to one client id.  route_publish() copies a
 * message once into a pooled buffer with ROUTE_HEADROOM bytes in front (room for a frame
 * header), puts it in the client id's ring with one reference per member, and wakes every
 * member.  Each member is a cursor into the ring: route_peek() gives its waiting messages,
 * route_sent() moves it on and drops its reference; the last reference returns the buffer
 * to the pool.  Bounds: a client id holds at most `ring` unsent messages; publishing one more
 * culls the members furthest behind (they are detached and the cull callback closes them),
 * so no slow connection pins memory or holds back the others.  Freed buffers are kept for
 * reuse up to ROUTE_POOL_BYTES; after warm-up the path allocates nothing.
 */
#ifndef TW_RELAY_ROUTE_H
#define TW_RELAY_ROUTE_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTE_ID_MAX 64              /* bytes of a client id (topic); longer is dropped */
#define ROUTE_POOL_BYTES (16u << 20) /* buffer bytes kept free for reuse; more are freed */
#define ROUTE_RING_INITIAL 4         /* ring slots a client id starts with; doubles to `ring` */
#define ROUTE_BUCKETS_INITIAL 1024   /* client-id hash buckets; doubles with the table */

struct route;
struct route_client;

/* One connection's place in the table.  Embedded in the caller's per-connection storage;
 * initialise with route_member_init(). */
struct route_member {
    struct route_client *client; /* NULL when detached */
    struct lws_dll2 link;        /* in the client id's members */
    uint64_t cursor;             /* sequence number of the next message to send */
    void *owner;                 /* handed back to the callbacks */
};

struct route_callbacks {
    void (*wake)(void *owner); /* a member has a message to send */
    void (*cull)(void *owner); /* a member fell `ring` messages behind: close it */
    void (*subscribe)(void *data, const char *id, size_t len);   /* first member of an id */
    void (*unsubscribe)(void *data, const char *id, size_t len); /* last member gone */
    void *data;
};

struct route_stats {
    uint64_t members, clients, messages_in, messages_out, dropped, culled;
    /* dropped, by why: no connection of the client id, over max_message, out of memory */
    uint64_t dropped_unrouted, dropped_too_big, dropped_no_memory;
};

/* A table for messages of at most max_message bytes, rings of `ring` slots, with headroom
 * bytes before each payload.  Caller owns; route_destroy().  NULL when out of memory. */
struct route *route_new(size_t max_message, uint32_t ring, size_t headroom,
                        const struct route_callbacks *callbacks);

/* Free the table, its clients and pooled buffers.  Members must be detached first.
 * NULL-safe; nulls *route. */
void route_destroy(struct route **route);

void route_member_init(struct route_member *member, void *owner);

/* Attach member to client id (id, len); it receives messages published from now on.
 * 0, or -1 when out of memory or the id is too long. */
int route_attach(struct route *route, struct route_member *member, const char *id, size_t len);

/* Number of members attached to client id (id, len) now; 0 when it has none. */
size_t route_client_members(const struct route *route, const char *id, size_t len);

/* Detach member, dropping its references to unsent messages.  Harmless when detached. */
void route_detach(struct route *route, struct route_member *member);

/* Per-message path: route one message to every member of client id topic.  Returns the
 * number of members woken; 0 when nobody listens (counted as dropped), -1 when the message
 * is too large or no buffer can be had (dropped).  backlog (may be NULL) gets the client id's
 * unsent messages now, counted for its furthest-behind member: a caller that reads messages
 * in batches writes before this reaches `ring`, so no member is culled for the caller's own
 * batching. */
int route_publish(struct route *route, const char *topic, size_t topic_len, const void *payload,
                  size_t payload_len, size_t *backlog);

/* Per-message path: member's k-th waiting message (0 is the next): payload pointer (headroom
 * bytes before it are writable) and length.  1 when there is one, 0 when fewer than k + 1
 * wait.  The message stays the member's until route_sent. */
int route_peek(struct route *route, const struct route_member *member, size_t k,
               unsigned char **payload, size_t *len);

/* Per-message path: the member sent its next message; move on. */
void route_sent(struct route *route, struct route_member *member);

/* The topic member is attached to: 1 with (*id, *len) borrowed until it detaches, or 0 when
 * detached. */
int route_member_topic(const struct route_member *member, const char **id, size_t *len);

/* Number of messages waiting for member (0 when none or detached). */
size_t route_pending(const struct route_member *member);

void route_stats(const struct route *route, struct route_stats *stats);

/* Number of buffer allocations made so far (for tests of the no-allocation claim). */
uint64_t route_allocations(const struct route *route);

#endif
