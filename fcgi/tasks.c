/* tasks.c: the REST handlers: sessions, tasks, task types and health. */
#include "tasks.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "clock.h"
#include "errors.h"
#include "log.h"
#include "protocol.h"
#include "reply.h"
#include "store.h"
#include "tasktype.h"
#include "token.h"

#define TASKS_LOCATION_MAX 128   /* bytes of a Location header line */
#define TASKS_RETRY_AFTER_MAX 48 /* bytes of a Retry-After header line */
#define TASKS_PRIORITY_MIN (-10)
#define TASKS_PRIORITY_MAX 10
#define TASKS_DELAY_MAX_MS 31536000000LL /* delay_ms at most (a year); run_at likewise */

int
tasks_authorize_grants(struct app *app, const struct request *req, char client_id[TOKEN_ID_SIZE],
                       struct token_grants *grants)
{
    const char *token;
    size_t token_len;
    char why[128];
    if (request_bearer(req, &token, &token_len) != 0) {
        reply_error(req, TW_E_UNAUTHORIZED, "missing bearer token");
        return TW_E_UNAUTHORIZED;
    }
    if (token_verify_grants(app->secret, app->secret_len, token, token_len, clock_now_ms() / 1000,
                            client_id, grants, why, sizeof why) != 0) {
        char message[192];
        snprintf(message, sizeof message, "token rejected: %s", why);
        reply_error(req, TW_E_UNAUTHORIZED, message);
        return TW_E_UNAUTHORIZED;
    }
    return 0;
}

/* The caller's client id from the bearer token; on failure the 401 is already written. */
static int
tasks_authorize(struct app *app, const struct request *req, char client_id[TOKEN_ID_SIZE])
{
    return tasks_authorize_grants(app, req, client_id, NULL);
}

/* 1 when id looks like a task id (32 hex digits); anything else cannot exist. */
static int
tasks_id_valid(const char *id)
{
    return strlen(id) == TOKEN_ID_SIZE - 1 && strspn(id, "0123456789abcdef") == TOKEN_ID_SIZE - 1;
}

/* ---- [auth] session_channels: the channels claim of every session ---- */

_Static_assert(CONFIG_GRANT_SUBSCRIBE == TOKEN_GRANT_SUBSCRIBE &&
                   CONFIG_GRANT_PUBLISH == TOKEN_GRANT_PUBLISH &&
                   CONFIG_SESSION_CHANNELS_MAX <= TOKEN_CHANNELS_MAX &&
                   CONFIG_SESSION_CHANNEL_MAX <= TOKEN_CHANNEL_MAX,
               "session_channels hold what a token's channels claim may");

/* The channels claim of cfg's session_channels ({"project:demo": ["subscribe", "publish"]}),
 * NULL when it has none (*failed stays 0) or on allocation failure (*failed 1).  Caller owns;
 * json_decref. */
static json_t *
tasks_session_claim(const struct config *cfg, int *failed)
{
    const struct config_session_channels *list = &cfg->session_channels;
    *failed = 0;
    if (list->count == 0)
        return NULL;
    json_t *claim = json_object();
    for (size_t i = 0; claim && i < list->count; i++) {
        const struct config_session_channel *entry = &list->entries[i];
        json_t *granted = json_array();
        if (granted && (entry->permissions & CONFIG_GRANT_SUBSCRIBE))
            json_array_append_new(granted, json_string("subscribe"));
        if (granted && (entry->permissions & CONFIG_GRANT_PUBLISH))
            json_array_append_new(granted, json_string("publish"));
        if (!granted || json_object_set_new(claim, entry->name, granted) != 0) {
            json_decref(claim);
            claim = NULL;
        }
    }
    *failed = claim == NULL;
    return claim;
}

void
tasks_session(struct app *app, const struct request *req, const char *id)
{
    (void)id;
    char client_id[TOKEN_ID_SIZE], token[TOKEN_MAX], expires[CLOCK_ISO8601_SIZE];
    int64_t now = clock_now_ms() / 1000;
    int64_t exp = now + app->cfg->token_ttl;
    const char *user = app->cfg->trust_remote_user ? req->remote_user : NULL;
    if (user && *user) {
        int rc = token_user_id(app->secret, app->secret_len, user, strlen(user), client_id);
        if (rc != 0) {
            reply_error(req, rc,
                        rc == TW_E_BAD_REQUEST
                            ? "the web server's user name is not " TOKEN_USER_RULE
                            : "cannot derive the client id");
            return;
        }
    } else if (app->cfg->trust_remote_user || !app->cfg->anonymous) {
        reply_error(req, TW_E_UNAUTHORIZED,
                    app->cfg->trust_remote_user ? "the web server authenticated no user"
                                                : "anonymous sessions are off");
        return;
    } else if (token_random_id(client_id) != 0) {
        reply_error(req, TW_E_INTERNAL, "cannot issue a token");
        return;
    }
    int claim_failed;
    json_t *claim = tasks_session_claim(app->cfg, &claim_failed);
    if (claim_failed || token_issue_channels(app->secret, app->secret_len, client_id, now, exp,
                                             claim, token, sizeof token) != 0) {
        json_decref(claim);
        reply_error(req, TW_E_INTERNAL, "cannot issue a token");
        return;
    }
    json_t *body = json_pack("{s:s, s:s, s:s}", "client_id", client_id, "token", token,
                             "expires_at", clock_iso8601(exp * 1000, expires, sizeof expires));
    if (body && claim) /* what the token grants, for the page to know without decoding it */
        json_object_set(body, "channels", claim);
    json_decref(claim);
    log_info("event=session client=%s identity=%s", client_id,
             user && *user ? "user" : "anonymous");
    /* The token again as a cookie only the browser holds (HttpOnly) and sends to the relay's
     * path on this site alone (SameSite=Strict): its WebSocket then opens on /ws?auth=cookie
     * authenticated at the handshake, a round trip sooner than with the auth message. */
    char cookie[TOKEN_MAX + CONFIG_COOKIE_NAME_MAX + CONFIG_COOKIE_PATH_MAX + 128] = "";
    if (app->cfg->cookie) {
        json_object_set_new(body, "cookie", json_true());
        snprintf(cookie, sizeof cookie,
                 "Set-Cookie: %s=%s; Path=%s; Max-Age=%lld; HttpOnly; SameSite=Strict%s\r\n",
                 app->cfg->cookie_name, token, app->cfg->cookie_path,
                 (long long)app->cfg->token_ttl, req->https ? "; Secure" : "");
    }
    reply_json(req, 201, &body, cookie[0] ? cookie : NULL);
}

void
tasks_health(struct app *app, const struct request *req, const char *id)
{
    (void)id;
    int store_rc = store_check_writable(app->store);
    int store_ok = store_rc == 0;
    int workers = store_workers_alive(app->store, app->cfg->stale_after_ms);
    int pool_ok = workers > 0;
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:i}", "status", store_ok && pool_ok ? "ok" : "degraded",
                  "store", store_ok ? "ok" : "down", "pool", pool_ok ? "ok" : "down", "workers",
                  workers > 0 ? workers : 0);
    if (body && !store_ok) /* why: "the task store is full", "... is read-only", ... */
        json_object_set_new(body, "store_error", json_string(tw_error_message(store_rc)));
    reply_json(req, store_ok && pool_ok ? 200 : 503, &body,
               store_ok && pool_ok ? NULL : "Retry-After: 1\r\n");
}

void
tasks_types(struct app *app, const struct request *req, const char *id)
{
    (void)id;
    json_t *types = tasktype_describe(app->cfg);
    json_t *body = types ? json_pack("{s:o}", "types", types) : NULL;
    reply_json(req, 200, &body, NULL);
}

/* Read priority, run_at and delay_ms of a submission into sub. */
static int
tasks_schedule(json_t *body, struct store_submission *sub, char *err, size_t errlen)
{
    json_t *priority = json_object_get(body, "priority");
    if (priority && !json_is_null(priority)) {
        if (!json_is_integer(priority) || json_integer_value(priority) < TASKS_PRIORITY_MIN ||
            json_integer_value(priority) > TASKS_PRIORITY_MAX) {
            snprintf(err, errlen, "priority must be an integer %d..%d", TASKS_PRIORITY_MIN,
                     TASKS_PRIORITY_MAX);
            return TW_E_BAD_REQUEST;
        }
        sub->priority = (int)json_integer_value(priority);
    }
    json_t *run_at = json_object_get(body, "run_at");
    json_t *delay = json_object_get(body, "delay_ms");
    int64_t now = clock_now_ms();
    if (run_at && !json_is_null(run_at) && delay && !json_is_null(delay)) {
        snprintf(err, errlen, "give run_at or delay_ms, not both");
        return TW_E_BAD_REQUEST;
    }
    if (run_at && !json_is_null(run_at)) {
        int64_t at;
        if (!json_is_string(run_at) || clock_parse_iso8601(json_string_value(run_at), &at) != 0 ||
            at > now + TASKS_DELAY_MAX_MS) {
            snprintf(err, errlen,
                     "run_at must be an ISO 8601 date-time with a zone, within a year");
            return TW_E_BAD_REQUEST;
        }
        sub->run_at_ms = at > now ? at : now;
    }
    if (delay && !json_is_null(delay)) {
        if (!json_is_integer(delay) || json_integer_value(delay) < 0 ||
            json_integer_value(delay) > TASKS_DELAY_MAX_MS) {
            snprintf(err, errlen, "delay_ms must be an integer 0..%lld", TASKS_DELAY_MAX_MS);
            return TW_E_BAD_REQUEST;
        }
        sub->run_at_ms = now + (int64_t)json_integer_value(delay);
    }
    return 0;
}

/* Check the submission's fields; on success *type and *name point into body. */
static int
tasks_submission(struct app *app, json_t *body, const struct config_type **type, const char **name,
                 char *err, size_t errlen)
{
    static const char *const fields[] = {"type",   "name",     "params",  "priority",
                                         "run_at", "delay_ms", "channels"};
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value)
    {
        size_t i;
        for (i = 0; i < sizeof fields / sizeof fields[0]; i++)
            if (strcmp(key, fields[i]) == 0)
                break;
        if (i == sizeof fields / sizeof fields[0]) {
            snprintf(err, errlen, "unknown field '%.64s'", key);
            return TW_E_BAD_REQUEST;
        }
    }
    json_t *type_value = json_object_get(body, "type");
    if (!json_is_string(type_value)) {
        snprintf(err, errlen, "type is required and must be a string");
        return TW_E_UNKNOWN_TYPE;
    }
    *type =
        config_type_find(app->cfg, json_string_value(type_value), json_string_length(type_value));
    if (!*type) {
        snprintf(err, errlen, "unknown task type '%.64s'", json_string_value(type_value));
        return TW_E_UNKNOWN_TYPE;
    }
    json_t *name_value = json_object_get(body, "name");
    *name = "";
    if (name_value && !json_is_null(name_value)) {
        if (!json_is_string(name_value) || json_string_length(name_value) > STORE_NAME_MAX ||
            strlen(json_string_value(name_value)) != json_string_length(name_value)) {
            snprintf(err, errlen, "name must be a string of at most %d bytes", STORE_NAME_MAX);
            return TW_E_BAD_REQUEST;
        }
        *name = json_string_value(name_value);
    }
    return 0;
}

/* The submission's "channels" (absent or null: none): at most [channels] max_per_task distinct
 * names, each one the client may publish to (common/channel.h).  0 with *text the list as JSON
 * (caller frees; NULL for none), or TW_E_BAD_REQUEST (not a list of strings), TW_E_BAD_CHANNEL
 * (a name that is none) or TW_E_FORBIDDEN (one the client may not publish to), err naming it. */
static int
tasks_channels(struct app *app, json_t *body, const char *client_id,
               const struct token_grants *grants, char **text, char *err, size_t errlen)
{
    json_t *list = json_object_get(body, "channels");
    *text = NULL;
    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list) || json_array_size(list) > (size_t)app->cfg->channels_per_task) {
        snprintf(err, errlen, "channels must be a list of at most %d channel names",
                 app->cfg->channels_per_task);
        return TW_E_BAD_REQUEST;
    }
    size_t i;
    json_t *name;
    json_array_foreach(list, i, name)
    {
        struct channel channel;
        if (!json_is_string(name)) {
            snprintf(err, errlen, "channels must be a list of channel names");
            return TW_E_BAD_REQUEST;
        }
        int rc =
            channel_parse(app->cfg, json_string_value(name), json_string_length(name), &channel);
        if (rc != 0) {
            snprintf(err, errlen, "channel %zu: %s (%s)", i, channel_refusal_message(rc),
                     channel_refusal_name(rc));
            return TW_E_BAD_CHANNEL;
        }
        for (size_t j = 0; j < i; j++)
            if (json_equal(json_array_get(list, j), name)) {
                snprintf(err, errlen, "channel %zu: %s is listed twice", i, channel.name);
                return TW_E_BAD_REQUEST;
            }
        if (channel_may_publish(&channel, client_id, grants) != 0) {
            snprintf(err, errlen, "channel %s: %s", channel.name,
                     channel_refusal_message(CHANNEL_E_PUBLISH_NOT_ALLOWED));
            return TW_E_FORBIDDEN;
        }
    }
    *text = json_array_size(list) > 0 ? json_dumps(list, JSON_COMPACT) : NULL;
    return json_array_size(list) > 0 && !*text ? TW_E_NOMEM : 0;
}

/* The Idempotency-Key of req, checked, and the digest of the body it vouches for. */
static int
tasks_idempotency(const struct request *req, const json_t *body, char hash[STORE_HASH_SIZE],
                  char *err, size_t errlen)
{
    const char *key = req->idempotency_key;
    size_t length = strlen(key);
    int printable = length > 0 && length <= STORE_IDEMPOTENCY_KEY_MAX;
    for (size_t i = 0; printable && i < length; i++)
        printable = key[i] >= 0x21 && key[i] <= 0x7e;
    if (!printable) {
        snprintf(err, errlen, "Idempotency-Key must be 1..%d visible ASCII characters",
                 STORE_IDEMPOTENCY_KEY_MAX);
        return TW_E_BAD_REQUEST;
    }
    char *canonical = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    int ok = canonical &&
             EVP_Digest(canonical, strlen(canonical), digest, &digest_len, EVP_sha256(), NULL) == 1;
    free(canonical);
    if (!ok || digest_len * 2 >= STORE_HASH_SIZE)
        return TW_E_INTERNAL;
    for (unsigned int i = 0; i < digest_len; i++)
        snprintf(hash + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

/* A task submission between its check and its answer (held by the app while its batch is
 * open). */
struct tasks_pending {
    const struct request *req;   /* borrowed: answered once the insert is done */
    struct store_submission sub; /* to insert; points into this struct and body */
    char client_id[TOKEN_ID_SIZE];
    json_t *body, *params; /* owned until tasks_create_end */
    char *channels;        /* owned until tasks_create_end: the task's channels, or NULL */
    const struct config_type *type;
    char request_hash[STORE_HASH_SIZE]; /* the body's digest, with an Idempotency-Key */
};

/* Check a POST /api/tasks: 1 when *pending is ready to insert (pending->sub), to be answered by
 * tasks_create_end once inserted; 0 when the request has been answered (an error). */
static int
tasks_create_begin(struct app *app, const struct request *req, struct tasks_pending *pending)
{
    char err[256];
    const char *name;
    struct token_grants grants;
    *pending = (struct tasks_pending){.req = req};
    if (tasks_authorize_grants(app, req, pending->client_id, &grants) != 0)
        return 0;
    int rc = request_json_body(req, app->cfg->max_body, &pending->body, err, sizeof err);
    if (rc == 0)
        rc = tasks_submission(app, pending->body, &pending->type, &name, err, sizeof err);
    if (rc == 0)
        rc = tasktype_validate(pending->type, json_object_get(pending->body, "params"),
                               &pending->params, err, sizeof err);
    if (rc == 0)
        rc = tasks_schedule(pending->body, &pending->sub, err, sizeof err);
    if (rc == 0)
        rc = tasks_channels(app, pending->body, pending->client_id, &grants, &pending->channels,
                            err, sizeof err);
    if (rc == 0 && req->idempotency_key)
        rc = tasks_idempotency(req, pending->body, pending->request_hash, err, sizeof err);
    if (rc != 0) {
        reply_error(req, rc, err);
        json_decref(pending->params);
        json_decref(pending->body);
        free(pending->channels);
        return 0;
    }
    struct store_submission *sub = &pending->sub;
    sub->client_id = pending->client_id;
    sub->type = pending->type->name;
    sub->name = name;
    sub->params = pending->params;
    sub->max_attempts = pending->type->max_attempts;
    sub->max_queued = app->cfg->max_queued;
    sub->submit_rate = app->cfg->submit_rate;
    sub->submit_burst = app->cfg->submit_burst;
    sub->idempotency_key = req->idempotency_key;
    sub->request_hash = req->idempotency_key ? pending->request_hash : NULL;
    sub->channels = pending->channels;
    return 1;
}

/* Answer the request from pending->sub's result and free pending (an app_answer_fn). */
static void
tasks_create_end(void *data)
{
    struct tasks_pending *pending = data;
    const struct request *req = pending->req;
    json_t *task = pending->sub.task;
    if (pending->sub.rc == TW_E_TOO_MANY_TASKS) {
        reply_error_with(req, pending->sub.rc, NULL, "Retry-After: 1\r\n");
    } else if (pending->sub.rc == TW_E_TOO_MANY_REQUESTS) {
        /* Whole seconds, rounded up: a client that waits that long finds a token. */
        char retry[TASKS_RETRY_AFTER_MAX];
        long long seconds = (pending->sub.retry_after_ms + 999) / 1000;
        snprintf(retry, sizeof retry, "Retry-After: %lld\r\n", seconds > 0 ? seconds : 1);
        log_info("event=submission_throttled client=%s retry_after_s=%lld", pending->client_id,
                 seconds > 0 ? seconds : 1);
        reply_error_with(req, pending->sub.rc, NULL, retry);
    } else if (pending->sub.rc != 0) {
        reply_error(req, pending->sub.rc, NULL);
    } else if (pending->sub.replayed) {
        log_info("event=submission_replayed client=%s task=%s", pending->client_id,
                 json_string_value(json_object_get(task, "id")));
        reply_json(req, 200, &task, NULL);
    } else {
        const char *task_id = json_string_value(json_object_get(task, "id"));
        log_info("event=submitted client=%s task=%s type=%s", pending->client_id, task_id,
                 pending->type->name);
        char location[TASKS_LOCATION_MAX];
        snprintf(location, sizeof location, "Location: /api/tasks/%s\r\n", task_id);
        reply_json(req, 202, &task, location);
    }
    json_decref(task);
    json_decref(pending->params);
    json_decref(pending->body);
    free(pending->channels);
    free(pending);
}

void
tasks_create(struct app *app, const struct request *req, const char *id)
{
    (void)id;
    struct tasks_pending *pending = malloc(sizeof *pending);
    if (!pending) {
        reply_error(req, TW_E_INTERNAL, "out of memory");
        return;
    }
    if (!tasks_create_begin(app, req, pending)) {
        free(pending);
        return;
    }
    app_submit(app, req, &pending->sub, tasks_create_end, pending);
}

/* Parse ?limit=, ?status= and ?before= of a list request; writes the 400 itself. */
static int
tasks_list_query(const struct request *req, int *limit, char *status, char *before)
{
    char text[REQUEST_QUERY_VALUE_MAX];
    int found = request_query(req, "limit", text, sizeof text);
    *limit = STORE_LIST_DEFAULT;
    if (found == 1) {
        char *end;
        errno = 0;
        long value = strtol(text, &end, 10);
        if (errno || end == text || *end || value < 1 || value > STORE_LIST_MAX)
            found = TW_E_BAD_REQUEST;
        else
            *limit = (int)value;
    }
    if (found < 0) {
        reply_error(req, TW_E_BAD_REQUEST, "limit must be an integer 1..200");
        return TW_E_BAD_REQUEST;
    }
    found = request_query(req, "status", status, REQUEST_QUERY_VALUE_MAX);
    if (found < 0 || (found == 1 && !store_status_is_valid(status))) {
        reply_error(req, TW_E_BAD_REQUEST,
                    "status must be one of queued, running, succeeded, failed, cancelled");
        return TW_E_BAD_REQUEST;
    }
    if (found == 0)
        status[0] = '\0';
    found = request_query(req, "before", before, REQUEST_QUERY_VALUE_MAX);
    if (found < 0 || (found == 1 && !tasks_id_valid(before))) {
        reply_error(req, TW_E_BAD_REQUEST, "before must be a task id");
        return TW_E_BAD_REQUEST;
    }
    if (found == 0)
        before[0] = '\0';
    return 0;
}

void
tasks_list(struct app *app, const struct request *req, const char *id)
{
    (void)id;
    char client_id[TOKEN_ID_SIZE];
    char status[REQUEST_QUERY_VALUE_MAX], before[REQUEST_QUERY_VALUE_MAX];
    int limit;
    json_t *tasks = NULL;
    if (tasks_authorize(app, req, client_id) != 0 ||
        tasks_list_query(req, &limit, status, before) != 0)
        return;
    int rc = store_task_list(app->store, client_id, status[0] ? status : NULL,
                             before[0] ? before : NULL, limit, &tasks);
    if (rc != 0) {
        reply_error(req, rc, NULL);
        return;
    }
    size_t count = json_array_size(tasks);
    json_t *last = count == (size_t)limit ? json_array_get(tasks, count - 1) : NULL;
    json_t *body = json_pack("{s:o, s:O}", "tasks", tasks, "next_before",
                             last ? json_object_get(last, "id") : json_null());
    reply_json(req, 200, &body, NULL);
}

void
tasks_get(struct app *app, const struct request *req, const char *id)
{
    char client_id[TOKEN_ID_SIZE];
    json_t *task = NULL;
    if (tasks_authorize(app, req, client_id) != 0)
        return;
    int rc = tasks_id_valid(id) ? store_task_get(app->store, id, client_id, &task) : TW_E_NOT_FOUND;
    if (rc != 0) {
        reply_error(req, rc, rc == TW_E_NOT_FOUND ? "no such task" : NULL);
        return;
    }
    reply_json(req, 200, &task, NULL);
}

/* Who asks for a change, in its log line: the client, or an operator ("by=admin"). */
static void
tasks_log_change(const char *event, const char *client_id, const char *id, int final)
{
    if (final < 0)
        log_info("event=%s %s=%s task=%s", event, client_id ? "client" : "by",
                 client_id ? client_id : "admin", id);
    else
        log_info("event=%s %s=%s task=%s final=%d", event, client_id ? "client" : "by",
                 client_id ? client_id : "admin", id, final);
}

int
tasks_change_cancel(struct app *app, const struct request *req, const char *id,
                    const char *client_id, json_t **task)
{
    int now_final = 0;
    int rc = tasks_id_valid(id) ? store_task_cancel(app->store, id, client_id, &now_final, task)
                                : TW_E_NOT_FOUND;
    if (rc != 0) {
        reply_error(req, rc,
                    rc == TW_E_NOT_FOUND  ? "no such task"
                    : rc == TW_E_CONFLICT ? "the task has already finished"
                                          : NULL);
        return rc;
    }
    tasks_log_change("cancel_requested", client_id, id, now_final);
    return 0;
}

int
tasks_change_retry(struct app *app, const struct request *req, const char *id,
                   const char *client_id, json_t **task)
{
    int rc =
        tasks_id_valid(id) ? store_task_retry(app->store, id, client_id, task) : TW_E_NOT_FOUND;
    if (rc != 0) {
        reply_error(req, rc,
                    rc == TW_E_NOT_FOUND  ? "no such task"
                    : rc == TW_E_CONFLICT ? "only a failed or cancelled task can be retried"
                                          : NULL);
        return rc;
    }
    tasks_log_change("retry_requested", client_id, id, -1);
    return 0;
}

int
tasks_change_delete(struct app *app, const struct request *req, const char *id,
                    const char *client_id)
{
    int rc = tasks_id_valid(id) ? store_task_delete(app->store, id, client_id) : TW_E_NOT_FOUND;
    if (rc != 0) {
        reply_error(req, rc,
                    rc == TW_E_NOT_FOUND  ? "no such task"
                    : rc == TW_E_CONFLICT ? "a queued or running task cannot be deleted: "
                                            "cancel it first"
                                          : NULL);
        return rc;
    }
    tasks_log_change("task_deleted", client_id, id, -1);
    return 0;
}

void
tasks_cancel(struct app *app, const struct request *req, const char *id)
{
    char client_id[TOKEN_ID_SIZE];
    json_t *task = NULL;
    if (tasks_authorize(app, req, client_id) == 0 &&
        tasks_change_cancel(app, req, id, client_id, &task) == 0) {
        app_nudge(app, PROTOCOL_VERB_CANCEL, id);
        reply_json(req, 202, &task, NULL);
    }
    json_decref(task);
}

void
tasks_retry(struct app *app, const struct request *req, const char *id)
{
    char client_id[TOKEN_ID_SIZE];
    json_t *task = NULL;
    if (tasks_authorize(app, req, client_id) == 0 &&
        tasks_change_retry(app, req, id, client_id, &task) == 0) {
        app_nudge(app, PROTOCOL_VERB_RETRY, id);
        reply_json(req, 202, &task, NULL);
    }
    json_decref(task);
}

void
tasks_delete(struct app *app, const struct request *req, const char *id)
{
    char client_id[TOKEN_ID_SIZE];
    if (tasks_authorize(app, req, client_id) == 0 &&
        tasks_change_delete(app, req, id, client_id) == 0)
        reply_empty(req, NULL);
}
