/* publish.h: POST /api/publish, servers' messages to channels (docs/PROTOCOL.md).
 *
 * For an application's backend, never a browser: the bearer is the publish key, the file
 * [channels] publish_key_file names (64 hex digits, read per request like the admin key,
 * compared in constant time); a session token is refused.  Without the key file the route is
 * 404.  The body is {"channel": NAME, "data": {...}} or a list of at most PUBLISH_BATCH_MAX
 * such objects; every one is checked before any is published, so a bad one publishes
 * nothing.  Each goes to the channel's topic as {"type":"message","channel":NAME,"data":...},
 * at most [relay] max_message bytes, through the PUSH socket to the worker pool (app_publish),
 * which puts it on the events wire.  Answered 202 {"published":[{"channel":..,"bytes":..}]}.
 * Delivery is as for task events: to the connections subscribed at that moment.  A channel
 * whose namespace keeps history (history_size) has its messages stored by the worker pool
 * with an offset and epoch before they go out (GET /api/channels/{name}/history reads them
 * back), so their text may be at most max_message less PROTOCOL_POSITION_MAX bytes.
 */
#ifndef TW_FCGI_PUBLISH_H
#define TW_FCGI_PUBLISH_H

#include "app.h"
#include "request.h"

#define PUBLISH_BATCH_MAX 100 /* messages in one request at most */

void publish_post(struct app *app, const struct request *req, const char *id);

#endif
