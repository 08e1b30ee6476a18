/* presence_wire.h: what browser publish and presence send over the wire, one builder and one
 * parser per message, for the relay (which builds) and the worker pool (which parses).
 *
 * Relay -> pool, over the PUSH to every pool of [zmq] tasks (common/protocol.h):
 * - [signal][topic][payload]: a browser's publish, payload exactly what the subscribers get,
 *   {"type":"message","channel":C,"from":CLIENT_ID,"data":{...}} (presence_wire_signal);
 * - [presence][relay id][update]: update is {"seq":S,"since":F,"ttl_ms":T,"set":[[C,CLIENT_ID,
 *   N],...]} (presence_wire_update_build, _parse): the relay now holds N connections (0: none)
 *   of the client in channel C.  S rises with every message of that relay id (a row is
 *   replaced only by a higher S, so two pools applying a relay's messages out of order still
 *   end on its latest).  Every message also renews for T ms the relay's rows set at seq F or
 *   later: F is where the relay's latest complete resend of all its entries began, so a row
 *   that resend did not mention (its delta lost, or the relay's count gone to 0 unheard) is
 *   no longer renewed and expires.  "gone":true says the relay is stopping: its rows go at
 *   once.  At most PRESENCE_SET_MAX entries a message.
 * Pool -> relays, on the channel's topic: {"type":"presence","channel":C,"client_id":X,
 * "action":"join"|"update"|"leave","connections":N,"version":V} (presence_wire_event), V the
 * channel's presence version (store.h: the snapshot carries it too).
 *
 * A relay id is 1..PRESENCE_RELAY_ID_MAX-1 bytes of [A-Za-z0-9._-] (host-pid-random).
 */
#ifndef TW_COMMON_PRESENCE_WIRE_H
#define TW_COMMON_PRESENCE_WIRE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "token.h"

#define PRESENCE_RELAY_ID_MAX 96   /* bytes of a relay id, NUL included */
#define PRESENCE_SET_MAX 256       /* entries of one update at most */
#define PRESENCE_CONNS_MAX 100000  /* connections one entry may count (a client id's per relay) */
#define PRESENCE_TTL_MIN_MS 1000   /* an update's ttl_ms at least ... */
#define PRESENCE_TTL_MAX_MS 600000 /* ... and at most */
/* Bytes of an update at most: every entry at its longest, and the rest. */
#define PRESENCE_UPDATE_MAX                                                                        \
    (PRESENCE_SET_MAX * (CONFIG_CHANNEL_NAME_LIMIT + TOKEN_ID_SIZE + 16) + 96)

#define PRESENCE_ACTION_JOIN "join"     /* the client's first connection in the channel */
#define PRESENCE_ACTION_UPDATE "update" /* its count of connections changed, still there */
#define PRESENCE_ACTION_LEAVE "leave"   /* its last connection left */

struct presence_entry {
    char channel[CONFIG_CHANNEL_NAME_LIMIT + 1];
    char client_id[TOKEN_ID_SIZE];
    int conns;
};

/* One update of a relay's (caller storage: about 26 KiB). */
struct presence_update {
    int64_t seq;
    int64_t since; /* rows of the relay set at this seq or later are renewed (0..seq) */
    int ttl_ms;
    int gone; /* the relay is stopping: drop all its rows */
    size_t count;
    struct presence_entry entries[PRESENCE_SET_MAX];
};

/* 1 when (id, len) is a relay id. */
int presence_wire_relay_id_valid(const char *id, size_t len);

/* The update's text (update borrowed).  Caller owns; free().  NULL when out of memory. */
char *presence_wire_update_build(const struct presence_update *update);

/* Parse (text, len) into *update: 0, or TW_E_BAD_REQUEST with why in err (the shape, a
 * member out of range, a channel name longer than CONFIG_CHANNEL_NAME_LIMIT, a client id that
 * is not 32 hex digits, more than PRESENCE_SET_MAX entries).  Channel names are checked
 * against the namespaces by the caller. */
int presence_wire_update_parse(const char *text, size_t len, struct presence_update *update,
                               char *err, size_t errlen);

/* {"type":"message","channel":C,"from":client_id,"data":data} (data borrowed: an object).
 * Caller owns; free().  NULL when out of memory. */
char *presence_wire_signal(const char *channel, size_t channel_len, const char *client_id,
                           const json_t *data);

/* {"type":"presence",...} of a change (see above).  Caller owns; free().  NULL when out of
 * memory. */
char *presence_wire_event(const char *channel, const char *client_id, const char *action,
                          int64_t connections, int64_t version);

#endif
