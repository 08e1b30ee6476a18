/* history.h: GET /api/channels/{name}/history, a channel's kept messages since an offset
 * (docs/PROTOCOL.md, "History and recovery").
 *
 * The bearer is a session token whose client may subscribe to the channel by its namespace's
 * rule (common/channel.c, as the relay checks a subscribe), or the publish key.  Query:
 * since (an offset, 0..), epoch (the 16 hex digits of that offset's stream; needed with since
 * above 0), limit (1..history_size, default history_size).  Answered 200
 * {"channel","epoch","offset","recovered","more","messages"}: every kept message after since,
 * oldest first, each the object a subscriber got (offset and epoch in it), at most limit and
 * about STORE_HISTORY_READ_BYTES of them (more: true when cut); or, when since is not of the
 * current epoch or older than what is kept, recovered false, no messages and the position to
 * start from.  Without since, only the position.  401, 403 forbidden, 422 bad_channel, 409
 * no_history (a namespace without history), 400 bad_request (since, epoch, limit).
 */
#ifndef TW_FCGI_HISTORY_H
#define TW_FCGI_HISTORY_H

#include "app.h"
#include "request.h"

/* name is the {id} path segment: the channel's name, percent-encoded or not. */
void history_get(struct app *app, const struct request *req, const char *name);

#endif
