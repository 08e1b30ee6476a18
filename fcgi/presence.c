/* presence.c: GET /api/channels/{name}/presence (see presence.h). */
#include "presence.h"

#include <stdio.h>
#include <string.h>

#include "adminkey.h"
#include "channel.h"
#include "errors.h"
#include "log.h"
#include "reply.h"
#include "router.h"
#include "store.h"
#include "tasks.h"
#include "token.h"

/* Decode the %-escapes of (in) into out (size bytes); its length, or -1 for a bad escape or
 * a name that does not fit. */
static int
presence_unescape(const char *in, char *out, size_t size)
{
    size_t n = 0;
    for (const char *c = in; *c; c++) {
        int byte = (unsigned char)*c;
        if (*c == '%') {
            unsigned value;
            if (!c[1] || !c[2] || !strchr("0123456789abcdefABCDEF", c[1]) ||
                !strchr("0123456789abcdefABCDEF", c[2]) || sscanf(c + 1, "%2x", &value) != 1)
                return -1;
            byte = (int)value;
            c += 2;
        }
        if (n + 1 >= size)
            return -1;
        out[n++] = (char)byte;
    }
    out[n] = '\0';
    return (int)n;
}

/* Whether the bearer may read channel's presence: 0, or the error with its reply written.  A
 * JWT is a session token, checked by the namespace's rule; anything else must be the publish
 * key. */
static int
presence_authorize(struct app *app, const struct request *req, const char *name, size_t len,
                   struct channel *channel)
{
    const char *given;
    size_t given_len;
    if (request_bearer(req, &given, &given_len) != 0) {
        reply_error(req, TW_E_UNAUTHORIZED, "missing bearer token");
        return TW_E_UNAUTHORIZED;
    }
    int session = memchr(given, '.', given_len) != NULL;
    char client_id[TOKEN_ID_SIZE];
    struct token_grants grants;
    if (session && tasks_authorize_grants(app, req, client_id, &grants) != 0)
        return TW_E_UNAUTHORIZED;
    if (!session) {
        const char *why = "";
        int matched = app->cfg->publish_key_file[0]
                          ? adminkey_matches(app->cfg->publish_key_file, given, given_len, &why)
                          : 1;
        if (matched < 0 && matched != -2)
            log_error("event=publish_key_unusable path=%s error=\"%s\"", app->cfg->publish_key_file,
                      why);
        if (matched != 0) {
            reply_error(req, TW_E_UNAUTHORIZED, "neither a session token nor the publish key");
            return TW_E_UNAUTHORIZED;
        }
    }
    int rc = channel_parse(app->cfg, name, len, channel);
    if (rc != 0) {
        char message[192];
        snprintf(message, sizeof message, "%s (%s)", channel_refusal_message(rc),
                 channel_refusal_name(rc));
        reply_error(req, TW_E_BAD_CHANNEL, message);
        return TW_E_BAD_CHANNEL;
    }
    if (session && channel_may_subscribe(channel, client_id, &grants) != 0) {
        reply_error(req, TW_E_FORBIDDEN, "this token may not subscribe to this channel");
        return TW_E_FORBIDDEN;
    }
    return 0;
}

void
presence_get(struct app *app, const struct request *req, const char *id)
{
    char name[ROUTER_ID_MAX]; /* decoded, never longer than the segment */
    int len = presence_unescape(id, name, sizeof name);
    struct channel channel;
    if (len < 0) {
        /* A bad escape is no channel: the 401 first, as for any name, else the 422. */
        presence_authorize(app, req, "", 0, &channel);
        return;
    }
    if (presence_authorize(app, req, name, (size_t)len, &channel) != 0)
        return;
    if (!channel.ns->presence) {
        reply_error(req, TW_E_PRESENCE_OFF, NULL);
        return;
    }
    json_t *clients = NULL;
    int64_t version = 0;
    int rc = store_presence_list(app->store, name, &clients, &version);
    if (rc != 0) {
        reply_error(req, rc, NULL);
        return;
    }
    json_t *answer = json_pack("{s:s, s:I, s:o}", "channel", name, "version", (json_int_t)version,
                               "clients", clients);
    reply_json(req, 200, &answer, NULL);
}
