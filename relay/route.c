/* route.c: the client-id table, per-client rings and the message buffer pool. */
#include "route.h"

#include <stdlib.h>
#include <string.h>

#define ROUTE_CLASS_MIN 256u /* smallest buffer (headroom included) */
#define ROUTE_CLASSES 24     /* buffer sizes 256 << k */

struct route_message {
    uint32_t refs; /* members that have not sent it yet */
    uint32_t size_class;
    size_t len;
    struct route_message *next_free;
    unsigned char bytes[]; /* headroom, then the payload */
};

struct route_client {
    struct route_client *hash_next;
    lws_dll2_owner_t members;    /* the client id's members (.count of them) */
    uint32_t ring_cap;           /* slots allocated, at most route->ring */
    uint64_t head;               /* sequence number of the next message */
    struct route_message **ring; /* message s at ring[s % ring_cap] while referenced */
    size_t id_len;
    char id[ROUTE_ID_MAX];
};

struct route {
    size_t max_message, headroom;
    uint32_t ring;
    struct route_callbacks callbacks;
    struct route_client **buckets;
    size_t bucket_count; /* a power of two */
    struct route_message *free_lists[ROUTE_CLASSES];
    size_t pooled_bytes;
    uint64_t allocations;
    struct route_stats stats;
};

static uint64_t
route_hash(const char *id, size_t len)
{
    uint64_t hash = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        hash ^= (unsigned char)id[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

struct route *
route_new(size_t max_message, uint32_t ring, size_t headroom,
          const struct route_callbacks *callbacks)
{
    struct route *route = calloc(1, sizeof *route);
    if (!route)
        return NULL;
    route->max_message = max_message;
    route->ring = ring < 2 ? 2 : ring;
    route->headroom = headroom;
    route->callbacks = *callbacks;
    route->bucket_count = ROUTE_BUCKETS_INITIAL;
    route->buckets = calloc(route->bucket_count, sizeof *route->buckets);
    if (!route->buckets || (ROUTE_CLASS_MIN << (ROUTE_CLASSES - 1)) < headroom + max_message) {
        route_destroy(&route);
        return NULL;
    }
    return route;
}

static void
route_client_free(struct route_client *client)
{
    free(client->ring);
    free(client);
}

void
route_destroy(struct route **route)
{
    if (!route || !*route)
        return;
    struct route *r = *route;
    for (size_t i = 0; r->buckets && i < r->bucket_count; i++)
        for (struct route_client *c = r->buckets[i], *next; c; c = next) {
            next = c->hash_next;
            route_client_free(c);
        }
    free(r->buckets);
    for (int k = 0; k < ROUTE_CLASSES; k++)
        for (struct route_message *m = r->free_lists[k], *next; m; m = next) {
            next = m->next_free;
            free(m);
        }
    free(r);
    *route = NULL;
}

void
route_member_init(struct route_member *member, void *owner)
{
    memset(member, 0, sizeof *member);
    member->owner = owner;
}

/* Per-message path: the client with this id, or NULL. */
static struct route_client *
route_client_find(const struct route *route, const char *id, size_t len)
{
    struct route_client *c = route->buckets[route_hash(id, len) & (route->bucket_count - 1)];
    for (; c; c = c->hash_next)
        if (c->id_len == len && memcmp(c->id, id, len) == 0)
            return c;
    return NULL;
}

/* Double the bucket array when the table is as full as it is wide. */
static void
route_table_grow(struct route *route)
{
    size_t count = route->bucket_count * 2;
    struct route_client **buckets = calloc(count, sizeof *buckets);
    if (!buckets)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < route->bucket_count; i++)
        for (struct route_client *c = route->buckets[i], *next; c; c = next) {
            next = c->hash_next;
            size_t b = route_hash(c->id, c->id_len) & (count - 1);
            c->hash_next = buckets[b];
            buckets[b] = c;
        }
    free(route->buckets);
    route->buckets = buckets;
    route->bucket_count = count;
}

static void
route_client_unlink(struct route *route, struct route_client *client)
{
    struct route_client **link =
        &route->buckets[route_hash(client->id, client->id_len) & (route->bucket_count - 1)];
    while (*link && *link != client)
        link = &(*link)->hash_next;
    if (*link)
        *link = client->hash_next;
}

/* Per-message path: a buffer for len payload bytes, from the pool when one is free. */
static struct route_message *
route_message_get(struct route *route, size_t len)
{
    uint32_t k = 0;
    while ((size_t)(ROUTE_CLASS_MIN << k) < route->headroom + len)
        k++;
    struct route_message *m = route->free_lists[k];
    if (m) {
        route->free_lists[k] = m->next_free;
        route->pooled_bytes -= ROUTE_CLASS_MIN << k;
    } else {
        m = malloc(sizeof *m + (ROUTE_CLASS_MIN << k));
        if (!m)
            return NULL;
        route->allocations++;
    }
    m->size_class = k;
    m->len = len;
    m->next_free = NULL;
    return m;
}

/* Per-message path: back to the pool, or freed when the pool is full. */
static void
route_message_put(struct route *route, struct route_message *m)
{
    size_t size = ROUTE_CLASS_MIN << m->size_class;
    if (route->pooled_bytes + size > ROUTE_POOL_BYTES) {
        free(m);
        return;
    }
    m->next_free = route->free_lists[m->size_class];
    route->free_lists[m->size_class] = m;
    route->pooled_bytes += size;
}

/* Per-message path: drop one reference to message seq of client. */
static void
route_release(struct route *route, struct route_client *client, uint64_t seq)
{
    struct route_message **slot = &client->ring[seq % client->ring_cap];
    struct route_message *m = *slot;
    if (m && --m->refs == 0) {
        *slot = NULL;
        route_message_put(route, m);
    }
}

int
route_attach(struct route *route, struct route_member *member, const char *id, size_t len)
{
    if (len == 0 || len > ROUTE_ID_MAX)
        return -1;
    route_detach(route, member);
    struct route_client *client = route_client_find(route, id, len);
    if (!client) {
        client = calloc(1, sizeof *client);
        if (!client)
            return -1;
        memcpy(client->id, id, len);
        client->id_len = len;
        if (route->stats.clients >= route->bucket_count)
            route_table_grow(route);
        size_t b = route_hash(id, len) & (route->bucket_count - 1);
        client->hash_next = route->buckets[b];
        route->buckets[b] = client;
        route->stats.clients++;
        if (route->callbacks.subscribe)
            route->callbacks.subscribe(route->callbacks.data, client->id, client->id_len);
    }
    member->client = client;
    member->cursor = client->head;
    lws_dll2_add_head(&member->link, &client->members);
    route->stats.members++;
    return 0;
}

size_t
route_client_members(const struct route *route, const char *id, size_t len)
{
    const struct route_client *client =
        len > 0 && len <= ROUTE_ID_MAX ? route_client_find(route, id, len) : NULL;
    return client ? client->members.count : 0;
}

void
route_detach(struct route *route, struct route_member *member)
{
    struct route_client *client = member->client;
    if (!client)
        return;
    for (uint64_t s = member->cursor; s < client->head; s++)
        route_release(route, client, s);
    lws_dll2_remove(&member->link);
    member->client = NULL;
    route->stats.members--;
    if (client->members.count == 0) {
        if (route->callbacks.unsubscribe)
            route->callbacks.unsubscribe(route->callbacks.data, client->id, client->id_len);
        route_client_unlink(route, client);
        route_client_free(client);
        route->stats.clients--;
    }
}

/* Per-message path: the smallest cursor of client's members. */
static uint64_t
route_min_cursor(const struct route_client *client)
{
    uint64_t min = client->head;
    for (const struct lws_dll2 *d = client->members.head; d; d = d->next) {
        const struct route_member *m = lws_container_of(d, struct route_member, link);
        if (m->cursor < min)
            min = m->cursor;
    }
    return min;
}

/* The ring is full: detach (and have closed) every member `ring` messages behind.  Returns 0
 * when the client is gone with them. */
static int
route_cull(struct route *route, struct route_client *client)
{
    uint64_t limit = client->head - route->ring;
    struct lws_dll2 *d = client->members.head;
    uint32_t left = client->members.count;
    while (d) {
        struct lws_dll2 *next = d->next;
        struct route_member *m = lws_container_of(d, struct route_member, link);
        if (m->cursor <= limit) {
            void *owner = m->owner;
            route->stats.culled++;
            left--;
            route_detach(route, m); /* frees client when it was the last member */
            if (route->callbacks.cull)
                route->callbacks.cull(owner);
            if (left == 0)
                return 0;
        }
        d = next;
    }
    return 1;
}

/* Make room for one more pending message; 0, or -1 when out of memory. */
static int
route_ring_grow(struct route_client *client, uint64_t min, uint32_t limit)
{
    uint32_t cap = client->ring_cap ? client->ring_cap * 2 : ROUTE_RING_INITIAL;
    if (cap > limit)
        cap = limit;
    if (cap == 0) /* route_new keeps limit >= 2; this keeps the analyzer sure of it */
        return -1;
    struct route_message **ring = calloc(cap, sizeof *ring);
    if (!ring)
        return -1;
    for (uint64_t s = min; client->ring_cap && s < client->head; s++)
        ring[s % cap] = client->ring[s % client->ring_cap];
    free(client->ring);
    client->ring = ring;
    client->ring_cap = cap;
    return 0;
}

int
route_publish(struct route *route, const char *topic, size_t topic_len, const void *payload,
              size_t payload_len, size_t *backlog)
{
    /* Per-message path: exact match on the topic, one copy, one wake per member. */
    struct route_client *client = topic_len > 0 && topic_len <= ROUTE_ID_MAX
                                      ? route_client_find(route, topic, topic_len)
                                      : NULL;
    if (!client) {
        route->stats.dropped_unrouted++;
        return 0;
    }
    if (payload_len > route->max_message) {
        route->stats.dropped_too_big++;
        return -1;
    }
    uint64_t min = route_min_cursor(client);
    if (client->head - min >= route->ring) {
        if (!route_cull(route, client))
            return 0; /* every member was culled; the client is gone */
        min = route_min_cursor(client);
    }
    if (client->head - min + 1 > client->ring_cap &&
        route_ring_grow(client, min, route->ring) != 0) {
        route->stats.dropped_no_memory++;
        return -1;
    }
    struct route_message *m = route_message_get(route, payload_len);
    if (!m) {
        route->stats.dropped_no_memory++;
        return -1;
    }
    memcpy(m->bytes + route->headroom, payload, payload_len);
    m->refs = client->members.count;
    client->ring[client->head % client->ring_cap] = m;
    client->head++;
    route->stats.messages_in++;
    if (backlog)
        *backlog = (size_t)(client->head - min);
    int woken = 0;
    for (struct lws_dll2 *d = client->members.head; d; d = d->next, woken++)
        route->callbacks.wake(lws_container_of(d, struct route_member, link)->owner);
    return woken;
}

int
route_peek(struct route *route, const struct route_member *member, size_t k,
           unsigned char **payload, size_t *len)
{
    /* Per-message path: a pointer into the shared buffer, nothing copied. */
    const struct route_client *client = member->client;
    if (!client || k >= client->head - member->cursor)
        return 0;
    struct route_message *m = client->ring[(member->cursor + k) % client->ring_cap];
    *payload = m->bytes + route->headroom;
    *len = m->len;
    return 1;
}

void
route_sent(struct route *route, struct route_member *member)
{
    /* Per-message path: move the cursor, drop the reference. */
    struct route_client *client = member->client;
    if (!client || member->cursor >= client->head)
        return;
    route_release(route, client, member->cursor);
    member->cursor++;
    route->stats.messages_out++;
}

int
route_member_topic(const struct route_member *member, const char **id, size_t *len)
{
    if (!member->client)
        return 0;
    *id = member->client->id;
    *len = member->client->id_len;
    return 1;
}

size_t
route_pending(const struct route_member *member)
{
    return member->client ? (size_t)(member->client->head - member->cursor) : 0;
}

void
route_stats(const struct route *route, struct route_stats *stats)
{
    *stats = route->stats;
    stats->dropped = stats->dropped_unrouted + stats->dropped_too_big + stats->dropped_no_memory;
}

uint64_t
route_allocations(const struct route *route)
{
    return route->allocations;
}
