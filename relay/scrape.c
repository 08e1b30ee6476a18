/* scrape.c: the relay's metrics port (see scrape.h). */
#include "scrape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpreply.h"
#include "metrics.h"
#include "relay.h"

json_t *
scrape_status(const struct relay *relay)
{
    struct route_stats stats;
    route_stats(relay->route, &stats);
    const struct upstream *up = &relay->upstream;
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "upstream_sent",
        (json_int_t)up->sent, "upstream_dropped", (json_int_t)up->dropped, "signals",
        (json_int_t)up->signals, "presence_entries", (json_int_t)up->roster.entries, "connections",
        (json_int_t)relay->connections, "client_ids", (json_int_t)stats.clients, "messages_in",
        (json_int_t)stats.messages_in, "messages_out", (json_int_t)stats.messages_out, "dropped",
        (json_int_t)(stats.dropped + relay->ingress.malformed), "culled", (json_int_t)stats.culled,
        "refused", (json_int_t)relay->listener.refused, "throttled",
        (json_int_t)relay->listener.throttled, "forbidden", (json_int_t)relay->forbidden);
}

/* The exposition, into text. */
static void
scrape_write(const struct relay *relay, struct metrics_text *text)
{
    struct route_stats stats;
    route_stats(relay->route, &stats);
    metrics_family(text, "taskwire_relay_connections", "gauge", "WebSocket connections open.");
    metrics_sample(text, "taskwire_relay_connections", NULL, (double)relay->connections);
    metrics_family(text, "taskwire_relay_client_ids", "gauge",
                   "Client ids with at least one connection.");
    metrics_sample(text, "taskwire_relay_client_ids", NULL, (double)stats.clients);

    metrics_family(text, "taskwire_relay_messages_total", "counter",
                   "Task events taken from the worker pools (in) and written to connections "
                   "(out, one per connection).");
    metrics_sample(text, "taskwire_relay_messages_total",
                   (const char *const[]){"direction", "in", NULL}, (double)stats.messages_in);
    metrics_sample(text, "taskwire_relay_messages_total",
                   (const char *const[]){"direction", "out", NULL}, (double)stats.messages_out);

    metrics_family(text, "taskwire_relay_dropped_total", "counter",
                   "Task events not delivered, by reason.");
    const struct {
        const char *reason;
        uint64_t count;
    } dropped[] = {{"unrouted", stats.dropped_unrouted},
                   {"too_big", stats.dropped_too_big},
                   {"no_memory", stats.dropped_no_memory},
                   {"malformed", relay->ingress.malformed}};
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        metrics_sample(text, "taskwire_relay_dropped_total",
                       (const char *const[]){"reason", dropped[i].reason, NULL},
                       (double)dropped[i].count);

    metrics_family(text, "taskwire_relay_closed_total", "counter",
                   "WebSocket connections ended, by the close code sent (none: no close frame).");
    for (size_t code = 0; code < RELAY_CLOSE_CODES; code++) {
        if (relay->closed[code] == 0 && code != 0)
            continue;
        char label[8];
        snprintf(label, sizeof label, "%zu", code);
        metrics_sample(text, "taskwire_relay_closed_total",
                       (const char *const[]){"code", code ? label : "none", NULL},
                       (double)relay->closed[code]);
    }

    metrics_family(text, "taskwire_relay_culled_total", "counter",
                   "Connections closed for lagging a whole ring behind (4008).");
    metrics_sample(text, "taskwire_relay_culled_total", NULL, (double)stats.culled);
    metrics_family(text, "taskwire_relay_refused_total", "counter",
                   "Connections refused before a WebSocket was open, by reason.");
    metrics_sample(text, "taskwire_relay_refused_total",
                   (const char *const[]){"reason", "no_descriptor", NULL},
                   (double)relay->listener.refused);
    metrics_sample(text, "taskwire_relay_refused_total",
                   (const char *const[]){"reason", "throttled", NULL},
                   (double)relay->listener.throttled);
    metrics_sample(text, "taskwire_relay_refused_total",
                   (const char *const[]){"reason", "forbidden_origin", NULL},
                   (double)relay->forbidden);
    metrics_family(text, "taskwire_relay_upstream_connects_total", "counter",
                   "Connections of the relay's subscriber to a worker pool.");
    metrics_sample(text, "taskwire_relay_upstream_connects_total", NULL,
                   (double)relay->ingress.upstream_connects);
    const struct upstream *up = &relay->upstream;
    metrics_family(text, "taskwire_relay_upstream_messages_total", "counter",
                   "Messages to the worker pools (browsers' publishes, presence), by whether a "
                   "pool took them (sent) or none could (dropped).");
    metrics_sample(text, "taskwire_relay_upstream_messages_total",
                   (const char *const[]){"result", "sent", NULL}, (double)up->sent);
    metrics_sample(text, "taskwire_relay_upstream_messages_total",
                   (const char *const[]){"result", "dropped", NULL}, (double)up->dropped);
    metrics_family(text, "taskwire_relay_signals_total", "counter",
                   "Browsers' publishes, by whether they went to a pool or were refused busy.");
    metrics_sample(text, "taskwire_relay_signals_total",
                   (const char *const[]){"result", "sent", NULL}, (double)up->signals);
    metrics_sample(text, "taskwire_relay_signals_total",
                   (const char *const[]){"result", "busy", NULL}, (double)up->signals_busy);
    metrics_family(text, "taskwire_relay_presence_entries", "gauge",
                   "(channel, client id) pairs with a connection here in channels with presence.");
    metrics_sample(text, "taskwire_relay_presence_entries", NULL, (double)up->roster.entries);
    metrics_process(text);
}

/* Answer with *json (taken). */
static int
scrape_reply_json(struct lws *wsi, unsigned int status, json_t **json)
{
    char *text = *json ? json_dumps(*json, JSON_COMPACT) : NULL;
    json_decref(*json);
    *json = NULL;
    size_t len = text ? strlen(text) : 0;
    unsigned char *body = text ? malloc(LWS_PRE + len) : NULL;
    int rc = -1;
    if (body) {
        memcpy(body + LWS_PRE, text, len);
        rc = httpreply_send(wsi, status, "application/json", body + LWS_PRE, len);
    }
    free(body);
    free(text);
    return rc;
}

static int
scrape_metrics(const struct relay *relay, struct lws *wsi)
{
    unsigned char *buf = malloc(LWS_PRE + SCRAPE_TEXT_MAX);
    if (!buf)
        return -1;
    struct metrics_text text;
    metrics_text_init(&text, (char *)buf + LWS_PRE, SCRAPE_TEXT_MAX);
    scrape_write(relay, &text);
    long len = metrics_text_finish(&text);
    int rc;
    if (len < 0) {
        json_t *error = json_pack("{s:{s:s, s:s}}", "error", "code", "internal", "message",
                                  "the exposition does not fit its buffer");
        rc = scrape_reply_json(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR, &error);
    } else {
        rc = httpreply_send(wsi, HTTP_STATUS_OK, METRICS_CONTENT_TYPE, buf + LWS_PRE, (size_t)len);
    }
    free(buf);
    return rc;
}

static int
scrape_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    if (reason != LWS_CALLBACK_HTTP)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    const struct relay *relay = lws_context_user(lws_get_context(wsi));
    const char *path = in ? (const char *)in : "";
    json_t *body;
    if (strcmp(path, "/metrics") == 0)
        return scrape_metrics(relay, wsi);
    if (strcmp(path, "/status") == 0) {
        body = scrape_status(relay);
        return scrape_reply_json(wsi, HTTP_STATUS_OK, &body);
    }
    if (strcmp(path, "/health") == 0) {
        body = json_pack("{s:s}", "status", "ok");
        return scrape_reply_json(wsi, HTTP_STATUS_OK, &body);
    }
    body = json_pack("{s:{s:s, s:s}}", "error", "code", "not_found", "message",
                     "the metrics port serves /metrics, /status and /health");
    return scrape_reply_json(wsi, HTTP_STATUS_NOT_FOUND, &body);
}

const struct lws_protocols scrape_protocols[2] = {
    {"taskwire-metrics", scrape_callback, 0, 0, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};

int
scrape_start(struct relay *relay, char *err, size_t errlen)
{
    const char *listen = relay->cfg->relay_metrics_listen;
    char host[METRICS_HOST_MAX];
    int port;
    if (listen[0] == '\0')
        return 0;
    if (metrics_listen_parse(listen, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "metrics_listen = %s is not host:port", listen);
        return -1;
    }
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.port = port;
    info.iface = host;
    info.vhost_name = "taskwire-metrics";
    info.protocols = scrape_protocols;
    if (!lws_create_vhost(relay->context, &info)) {
        snprintf(err, errlen, "cannot serve metrics on %s", listen);
        return -1;
    }
    return 0;
}
