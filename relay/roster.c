/* roster.c: the relay's presence counts and their changes (see roster.h). */
#include "roster.h"

#include <stdlib.h>
#include <string.h>

struct roster_entry {
    struct roster_entry *next;       /* in its chain */
    struct roster_entry *dirty_next; /* in roster->dirty, while dirty */
    uint32_t conns;
    uint8_t dirty;
    uint8_t len;
    char channel[CONFIG_CHANNEL_NAME_LIMIT + 1];
    char client_id[TOKEN_ID_SIZE];
};

void
roster_init(struct roster *roster)
{
    memset(roster, 0, sizeof *roster);
    roster->dirty_tail = &roster->dirty;
}

void
roster_fini(struct roster *roster)
{
    for (size_t b = 0; roster->buckets && b < ROSTER_BUCKETS; b++)
        for (struct roster_entry *e = roster->buckets[b], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(roster->buckets);
    roster_init(roster);
}

/* FNV-1a of the channel and the client id. */
static size_t
roster_hash(const char *channel, size_t len, const char *client_id)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)channel[i]) * 16777619u;
    for (size_t i = 0; i < TOKEN_ID_SIZE - 1; i++)
        h = (h ^ (unsigned char)client_id[i]) * 16777619u;
    return h & (ROSTER_BUCKETS - 1);
}

static struct roster_entry *
roster_find(const struct roster *roster, const char *channel, size_t len, const char *client_id)
{
    if (!roster->buckets)
        return NULL;
    for (struct roster_entry *e = roster->buckets[roster_hash(channel, len, client_id)]; e;
         e = e->next)
        if (e->len == len && memcmp(e->channel, channel, len) == 0 &&
            memcmp(e->client_id, client_id, TOKEN_ID_SIZE - 1) == 0)
            return e;
    return NULL;
}

static void
roster_mark(struct roster *roster, struct roster_entry *e)
{
    if (e->dirty)
        return;
    e->dirty = 1;
    e->dirty_next = NULL;
    *roster->dirty_tail = e;
    roster->dirty_tail = &e->dirty_next;
    roster->dirty_count++;
}

int
roster_join(struct roster *roster, const char *channel, size_t len, const char *client_id)
{
    if (len == 0 || len > CONFIG_CHANNEL_NAME_LIMIT || strlen(client_id) != TOKEN_ID_SIZE - 1)
        return -1;
    if (!roster->buckets && !(roster->buckets = calloc(ROSTER_BUCKETS, sizeof *roster->buckets)))
        return -1;
    struct roster_entry *e = roster_find(roster, channel, len, client_id);
    if (!e) {
        if (!(e = calloc(1, sizeof *e)))
            return -1;
        memcpy(e->channel, channel, len);
        e->len = (uint8_t)len;
        memcpy(e->client_id, client_id, TOKEN_ID_SIZE);
        size_t b = roster_hash(channel, len, client_id);
        e->next = roster->buckets[b];
        roster->buckets[b] = e;
        roster->entries++;
    }
    e->conns++;
    roster_mark(roster, e);
    return 0;
}

int
roster_leave(struct roster *roster, const char *channel, size_t len, const char *client_id)
{
    if (len == 0 || len > CONFIG_CHANNEL_NAME_LIMIT || strlen(client_id) != TOKEN_ID_SIZE - 1)
        return -1;
    struct roster_entry *e = roster_find(roster, channel, len, client_id);
    if (!e || e->conns == 0)
        return -1;
    e->conns--;
    roster_mark(roster, e);
    return 0;
}

int
roster_count(const struct roster *roster, const char *channel, size_t len, const char *client_id)
{
    const struct roster_entry *e = roster_find(roster, channel, len, client_id);
    return e ? (int)e->conns : 0;
}

static void
roster_copy(struct presence_update *update, const struct roster_entry *e)
{
    struct presence_entry *out = &update->entries[update->count++];
    memcpy(out->channel, e->channel, e->len);
    out->channel[e->len] = '\0';
    memcpy(out->client_id, e->client_id, TOKEN_ID_SIZE);
    out->conns = (int)e->conns;
}

size_t
roster_take_changes(const struct roster *roster, struct presence_update *update)
{
    update->count = 0;
    for (const struct roster_entry *e = roster->dirty; e && update->count < PRESENCE_SET_MAX;
         e = e->dirty_next)
        roster_copy(update, e);
    return update->count;
}

/* Unlink e (conns 0, not dirty) from its chain and free it. */
static void
roster_free(struct roster *roster, struct roster_entry *e)
{
    struct roster_entry **link = &roster->buckets[roster_hash(e->channel, e->len, e->client_id)];
    while (*link && *link != e)
        link = &(*link)->next;
    if (*link)
        *link = e->next;
    roster->entries--;
    free(e);
}

void
roster_changes_sent(struct roster *roster, size_t n)
{
    for (; n > 0 && roster->dirty; n--) {
        struct roster_entry *e = roster->dirty;
        roster->dirty = e->dirty_next;
        roster->dirty_count--;
        e->dirty = 0;
        if (e->conns == 0)
            roster_free(roster, e);
    }
    if (!roster->dirty)
        roster->dirty_tail = &roster->dirty;
}

void
roster_resend_start(struct roster *roster)
{
    roster->resend_bucket = 0;
}

int
roster_take_all(struct roster *roster, struct presence_update *update)
{
    update->count = 0;
    if (!roster->buckets) {
        roster->resend_bucket = ROSTER_BUCKETS;
        return 0;
    }
    while (roster->resend_bucket < ROSTER_BUCKETS) {
        size_t chain = 0;
        for (const struct roster_entry *e = roster->buckets[roster->resend_bucket]; e; e = e->next)
            chain += e->conns > 0;
        if (update->count > 0 && update->count + chain > PRESENCE_SET_MAX)
            break;
        for (const struct roster_entry *e = roster->buckets[roster->resend_bucket];
             e && update->count < PRESENCE_SET_MAX; e = e->next)
            if (e->conns > 0)
                roster_copy(update, e);
        roster->resend_bucket++;
    }
    return update->count > 0 || roster->resend_bucket < ROSTER_BUCKETS;
}
