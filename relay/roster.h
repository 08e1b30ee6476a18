/* roster.h: who is in which channel on this relay, for presence (common/presence_wire.h):
 * per (channel, client id), how many of the relay's connections are subscribed, for the
 * channels of namespaces with presence only, and which of those counts changed since they
 * were last sent upstream.
 *
 * Bounds: one entry (about 130 bytes) per (channel, client id) with a connection here, so at
 * most [relay] max_connections x ([channels] max_per_connection) entries, made when a
 * connection subscribes, never on the per-message path; ROSTER_BUCKETS chains, allocated at
 * the first join.  A count gone to 0 stays (dirty) until it has been sent, then is freed.
 * Nothing here sends: the caller takes a batch (roster_take_changes, roster_take_all), sends it
 * and says whether it went (roster_changes_sent); what did not go stays dirty and goes again.
 */
#ifndef TW_RELAY_ROSTER_H
#define TW_RELAY_ROSTER_H

#include <stddef.h>
#include <stdint.h>

#include "presence_wire.h"

#define ROSTER_BUCKETS 4096 /* hash chains (a power of two) */

struct roster_entry;

/* Embedded in the relay; roster_init / roster_fini bracket it. */
struct roster {
    struct roster_entry **buckets; /* ROSTER_BUCKETS chains, NULL until the first join */
    struct roster_entry *dirty;    /* entries whose count changed since it was sent, oldest first */
    struct roster_entry **dirty_tail;
    size_t entries, dirty_count;
    size_t resend_bucket; /* roster_take_all's place: the next chain to take */
};

void roster_init(struct roster *roster);

/* Free every entry.  Safe after init, and twice. */
void roster_fini(struct roster *roster);

/* One more (join) or one fewer (leave) connection of client_id (TOKEN_ID_SIZE - 1 hex digits)
 * in channel (name, len, at most CONFIG_CHANNEL_NAME_LIMIT bytes).  0, or -1 when out of
 * memory (join) or for a leave without its join. */
int roster_join(struct roster *roster, const char *channel, size_t len, const char *client_id);
int roster_leave(struct roster *roster, const char *channel, size_t len, const char *client_id);

/* This relay's count for (channel, client): 0 when none. */
int roster_count(const struct roster *roster, const char *channel, size_t len,
                 const char *client_id);

/* Copy the oldest changes (at most PRESENCE_SET_MAX) into update's entries (update->count);
 * they stay dirty until roster_changes_sent.  Returns the count. */
size_t roster_take_changes(const struct roster *roster, struct presence_update *update);

/* The first n changes (as roster_take_changes listed them) went upstream: clean, and those at
 * 0 freed. */
void roster_changes_sent(struct roster *roster, size_t n);

/* A full resend, a chunk a call: the first call after roster_resend_start copies the entries
 * with connections of the first chains (at most PRESENCE_SET_MAX) into update, the next ones
 * the following; returns 1 while chunks remain (this one included), 0 once every chain was
 * taken (update->count 0).  A chain longer than PRESENCE_SET_MAX is cut there (its tail is
 * not resent: those rows expire and come back with the next resend). */
int roster_take_all(struct roster *roster, struct presence_update *update);
void roster_resend_start(struct roster *roster);

#endif
