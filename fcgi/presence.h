/* presence.h: GET /api/channels/{name}/presence, who is in a channel now (docs/PROTOCOL.md).
 *
 * The subscribe-time snapshot of a channel whose namespace has presence: the bearer is a
 * session token its namespace's subscribe rule admits (common/channel.h, as the relay
 * decides), or the publish key ([channels] publish_key_file, for the application's
 * servers).  {name} is the channel's name, %-escapes allowed (a page's encodeURIComponent
 * writes ':' as %3A).  200 {"channel":C,"version":V,"clients":[{"client_id":X,
 * "connections":N},...]}, sorted by client id, at most STORE_PRESENCE_LIST_MAX; V is the
 * channel's presence version (store.h), the one its presence events carry: a page applies an
 * event only when its version is above V and above that of the last event it applied for the
 * same client id, so the snapshot and the events agree whatever order they arrive in.
 * Errors: 401 (no or a bad bearer), 422 bad_channel, 403 forbidden (the rule does not admit
 * the token), 409 presence_off (the namespace has no presence), 503 (the store).
 */
#ifndef TW_FCGI_PRESENCE_H
#define TW_FCGI_PRESENCE_H

#include "app.h"
#include "request.h"

void presence_get(struct app *app, const struct request *req, const char *id);

#endif
