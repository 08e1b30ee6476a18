/* admin.c: the admin REST API's handlers (see admin.h). */
#include "admin.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adminkey.h"
#include "errors.h"
#include "log.h"
#include "protocol.h"
#include "reply.h"
#include "store.h"
#include "tasks.h"
#include "token.h"

#define ADMIN_CHALLENGE "WWW-Authenticate: Bearer realm=\"taskwire-admin\"\r\n"
#define ADMIN_URL_MAX (CONFIG_TEXT_MAX + 16) /* a relay's base URL and "/status" */

int
admin_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : TW_E_INTERNAL;
}

/* 1 when the admin API is on; otherwise the 404 is written. */
static int
admin_enabled(struct app *app, const struct request *req)
{
    if (app->cfg->admin_key_file[0])
        return 1;
    reply_error(req, TW_E_NOT_FOUND, "no such route");
    return 0;
}

/* 0 when req carries the admin key; otherwise the 404 (off), 401 or 500 is written. */
static int
admin_authorize(struct app *app, const struct request *req)
{
    if (!admin_enabled(app, req))
        return TW_E_NOT_FOUND;
    const char *why = "", *given = "";
    size_t given_len = 0;
    if (request_bearer(req, &given, &given_len) != 0)
        given_len = 0;
    int rc = adminkey_matches(app->cfg->admin_key_file, given, given_len, &why);
    if (rc == -2) { /* the operator has not made the key yet (a package's config names it) */
        log_warn("event=admin_off path=%s error=\"no key file: the admin API is off\"",
                 app->cfg->admin_key_file);
        reply_error(req, TW_E_NOT_FOUND, "no such route");
        return TW_E_NOT_FOUND;
    }
    if (rc < 0) {
        log_error("event=admin_key_unusable path=%s error=\"%s\"", app->cfg->admin_key_file, why);
        reply_error(req, TW_E_INTERNAL, "the admin key file cannot be read or holds no valid key");
        return TW_E_INTERNAL;
    }
    if (rc != 0) {
        reply_error_with(req, TW_E_UNAUTHORIZED,
                         req->authorization[0] ? "wrong admin key" : "missing admin key",
                         ADMIN_CHALLENGE);
        return TW_E_UNAUTHORIZED;
    }
    return 0;
}

/* 1 when id looks like a task id (32 hex digits); anything else cannot exist. */
static int
admin_id_valid(const char *id)
{
    return strlen(id) == TOKEN_ID_SIZE - 1 && strspn(id, "0123456789abcdef") == TOKEN_ID_SIZE - 1;
}

/* An integer query parameter in min..max (default when absent); writes the 400 itself. */
static int
admin_query_int(const struct request *req, const char *name, long long min, long long max,
                long long fallback, long long *out)
{
    char text[REQUEST_QUERY_VALUE_MAX];
    int found = request_query(req, name, text, sizeof text);
    *out = fallback;
    if (found == 1) {
        char *end;
        errno = 0;
        long long value = strtoll(text, &end, 10);
        if (errno || end == text || *end || value < min || value > max)
            found = TW_E_BAD_REQUEST;
        else
            *out = value;
    }
    if (found < 0) {
        char message[128];
        snprintf(message, sizeof message, "%s must be an integer %lld..%lld", name, min, max);
        reply_error(req, TW_E_BAD_REQUEST, message);
        return TW_E_BAD_REQUEST;
    }
    return 0;
}

void
admin_tasks_list(struct app *app, const struct request *req, const char *id)
{
    (void)id;
    if (admin_authorize(app, req) != 0)
        return;
    char status[REQUEST_QUERY_VALUE_MAX], type[REQUEST_QUERY_VALUE_MAX];
    char client[REQUEST_QUERY_VALUE_MAX], q[REQUEST_QUERY_VALUE_MAX];
    long long limit, before;
    struct store_admin_filter filter = {0};
    int found;
    if (admin_query_int(req, "limit", 1, STORE_ADMIN_LIST_MAX, STORE_ADMIN_LIST_DEFAULT, &limit) !=
            0 ||
        admin_query_int(req, "before", 1, INT64_MAX, 0, &before) != 0)
        return;
    filter.limit = (int)limit;
    filter.before_seq = before;
    found = request_query(req, "status", status, sizeof status);
    if (found < 0 || (found == 1 && !store_status_is_valid(status))) {
        reply_error(req, TW_E_BAD_REQUEST,
                    "status must be one of queued, running, succeeded, failed, cancelled");
        return;
    }
    filter.status = found == 1 ? status : NULL;
    found = request_query(req, "type", type, sizeof type);
    if (found < 0 || (found == 1 && !config_type_find(app->cfg, type, strlen(type)))) {
        reply_error(req, TW_E_BAD_REQUEST, "type must be a configured task type");
        return;
    }
    filter.type = found == 1 ? type : NULL;
    found = request_query(req, "client_id", client, sizeof client);
    if (found < 0 || (found == 1 && !admin_id_valid(client))) {
        reply_error(req, TW_E_BAD_REQUEST, "client_id must be a client id (32 hex digits)");
        return;
    }
    filter.client_id = found == 1 ? client : NULL;
    found = request_query(req, "q", q, sizeof q);
    if (found < 0 || (found == 1 && (strlen(q) > TOKEN_ID_SIZE - 1 ||
                                     strspn(q, "0123456789abcdef") != strlen(q)))) {
        reply_error(req, TW_E_BAD_REQUEST,
                    "q must be a task id or client id, or its start (lowercase hex)");
        return;
    }
    filter.q = found == 1 && q[0] ? q : NULL;
    json_t *tasks = NULL;
    int64_t next = 0;
    int rc = store_admin_task_list(app->store, &filter, &tasks, &next);
    if (rc != 0) {
        reply_error(req, rc, NULL);
        return;
    }
    json_t *body =
        json_pack("{s:o, s:o}", "tasks", tasks, "next", next ? json_integer(next) : json_null());
    reply_json(req, 200, &body, NULL);
}

/* Answer with the task as the admin sees it (200), or its error. */
static void
admin_reply_task(struct app *app, const struct request *req, const char *id, int status)
{
    json_t *task = NULL;
    int rc = admin_id_valid(id) ? store_admin_task_get(app->store, id, &task) : TW_E_NOT_FOUND;
    if (rc != 0) {
        reply_error(req, rc, rc == TW_E_NOT_FOUND ? "no such task" : NULL);
        return;
    }
    reply_json(req, status, &task, NULL);
}

void
admin_task_get(struct app *app, const struct request *req, const char *id)
{
    if (admin_authorize(app, req) == 0)
        admin_reply_task(app, req, id, 200);
}

void
admin_task_cancel(struct app *app, const struct request *req, const char *id)
{
    json_t *task = NULL;
    if (admin_authorize(app, req) == 0 && tasks_change_cancel(app, req, id, NULL, &task) == 0) {
        admin_reply_task(app, req, id, 202); /* read before the worker hears of it */
        app_nudge(app, PROTOCOL_VERB_CANCEL, id);
    }
    json_decref(task);
}

void
admin_task_retry(struct app *app, const struct request *req, const char *id)
{
    json_t *task = NULL;
    if (admin_authorize(app, req) == 0 && tasks_change_retry(app, req, id, NULL, &task) == 0) {
        admin_reply_task(app, req, id, 202); /* read before the worker hears of it */
        app_nudge(app, PROTOCOL_VERB_RETRY, id);
    }
    json_decref(task);
}

void
admin_task_delete(struct app *app, const struct request *req, const char *id)
{
    if (admin_authorize(app, req) == 0 && tasks_change_delete(app, req, id, NULL) == 0)
        reply_empty(req, NULL);
}

/* A relay's reply, bounded by ADMIN_RELAY_BODY_MAX. */
struct admin_body {
    char data[ADMIN_RELAY_BODY_MAX];
    size_t length;
    int overflow;
};

static size_t
admin_body_write(char *data, size_t size, size_t count, void *user)
{
    struct admin_body *body = user;
    size_t length = size * count;
    if (length > sizeof body->data - 1 - body->length) {
        body->overflow = 1;
        return 0; /* libcurl stops the transfer */
    }
    memcpy(body->data + body->length, data, length);
    body->length += length;
    body->data[body->length] = '\0';
    return length;
}

/* One relay being asked: its easy handle, reply and what went wrong so far. */
struct admin_probe {
    const char *base;
    CURL *curl;
    struct admin_body body;
    char error[CURL_ERROR_SIZE];
    CURLcode rc;
    int done;
};

/* Set up probe for the relay at base; 0, or -1 (out of memory). */
static int
admin_probe_start(struct admin_probe *probe, const char *base)
{
    char url[ADMIN_URL_MAX];
    size_t base_len = strlen(base);
    while (base_len > 0 && base[base_len - 1] == '/')
        base_len--;
    snprintf(url, sizeof url, "%.*s/status", (int)base_len, base);
    probe->base = base;
    probe->rc = CURLE_FAILED_INIT;
    probe->curl = curl_easy_init();
    if (!probe->curl)
        return -1;
    CURL *curl = probe->curl;
    curl_easy_setopt(curl, CURLOPT_URL, url); /* libcurl copies it */
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)ADMIN_RELAY_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)ADMIN_RELAY_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, probe->error);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, admin_body_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &probe->body);
    curl_easy_setopt(curl, CURLOPT_PRIVATE, probe);
    return 0;
}

/* {"url", "ok", and the relay's /status fields or "error"} of a finished probe. */
static json_t *
admin_probe_result(struct admin_probe *probe)
{
    json_t *out = json_pack("{s:s, s:b}", "url", probe->base, "ok", 0);
    const char *why = NULL;
    long status = 0;
    if (probe->curl)
        curl_easy_getinfo(probe->curl, CURLINFO_RESPONSE_CODE, &status);
    if (!out) {
        return NULL;
    } else if (!probe->curl) {
        why = "out of memory";
    } else if (probe->body.overflow) {
        why = "the relay's /status is too long";
    } else if (!probe->done || probe->rc != CURLE_OK) {
        why = probe->error[0] ? probe->error : curl_easy_strerror(probe->rc);
    } else if (status != 200) {
        snprintf(probe->error, sizeof probe->error, "the relay answered HTTP %ld", status);
        why = probe->error;
    } else {
        json_t *fields = json_loadb(probe->body.data, probe->body.length, 0, NULL);
        if (!json_is_object(fields)) {
            why = "the relay's /status is not a JSON object";
        } else {
            json_object_del(fields, "url");
            json_object_del(fields, "ok");
            json_object_update(out, fields);
            json_object_set_new(out, "ok", json_true());
        }
        json_decref(fields);
    }
    if (why)
        json_object_set_new(out, "error", json_string(why));
    return out;
}

/* Ask every relay of urls for its /status at once (each within ADMIN_RELAY_TIMEOUT_MS): a new
 * array of their results, in the order of urls, or NULL (out of memory). */
static json_t *
admin_relays(const struct config_urls *urls)
{
    json_t *relays = json_array();
    struct admin_probe *probes = urls->count ? calloc(urls->count, sizeof *probes) : NULL;
    CURLM *multi = urls->count ? curl_multi_init() : NULL;
    if (!relays || (urls->count && (!probes || !multi))) {
        json_decref(relays);
        free(probes);
        if (multi)
            curl_multi_cleanup(multi);
        return urls->count ? NULL : relays;
    }
    for (size_t i = 0; i < urls->count; i++)
        if (admin_probe_start(&probes[i], urls->urls[i]) == 0)
            curl_multi_add_handle(multi, probes[i].curl);
    int running = 1;
    while (running) {
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        CURLMsg *message;
        int left;
        while ((message = curl_multi_info_read(multi, &left)) != NULL) {
            struct admin_probe *probe = NULL;
            if (message->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, (char **)&probe);
            if (probe) {
                probe->done = 1;
                probe->rc = message->data.result;
            }
        }
        /* Each handle's own timeout ends it; this only waits for the next event. */
        if (running && curl_multi_poll(multi, NULL, 0, ADMIN_RELAY_TIMEOUT_MS, NULL) != CURLM_OK)
            break;
    }
    for (size_t i = 0; i < urls->count; i++) {
        json_t *result = admin_probe_result(&probes[i]);
        if (result)
            json_array_append_new(relays, result);
        if (probes[i].curl) {
            curl_multi_remove_handle(multi, probes[i].curl);
            curl_easy_cleanup(probes[i].curl);
        }
    }
    curl_multi_cleanup(multi);
    free(probes);
    return relays;
}

void
admin_status(struct app *app, const struct request *req, const char *id)
{
    (void)id;
    if (admin_authorize(app, req) != 0)
        return;
    json_t *workers = NULL, *queues = NULL;
    int rc = store_admin_status(app->store, &workers, &queues);
    if (rc != 0) {
        reply_error(req, rc, NULL);
        return;
    }
    json_t *relays = admin_relays(&app->cfg->admin_relays);
    json_t *body = relays ? json_pack("{s:o, s:o, s:o}", "workers", workers, "queues", queues,
                                      "relays", relays)
                          : NULL;
    if (!relays) {
        json_decref(workers);
        json_decref(queues);
    }
    reply_json(req, 200, &body, NULL);
}

void
admin_stats(struct app *app, const struct request *req, const char *id)
{
    (void)id;
    long long minutes;
    if (admin_authorize(app, req) != 0 ||
        admin_query_int(req, "minutes", 1, STORE_STATS_MINUTES_MAX, STORE_STATS_MINUTES_DEFAULT,
                        &minutes) != 0)
        return;
    json_t *rows = NULL, *durations = NULL;
    int rc = store_admin_stats(app->store, (int)minutes, &rows, &durations);
    if (rc != 0) {
        reply_error(req, rc, NULL);
        return;
    }
    json_t *body = json_pack("{s:o, s:o}", "minutes", rows, "durations", durations);
    reply_json(req, 200, &body, NULL);
}
