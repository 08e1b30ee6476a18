/* tap.c: `taskwire tap`, a ZeroMQ SUB on [zmq] events printing each event as it passes.
 *
 * The wire is the relay's: [client id][the JSON a page receives] (docs/PROTOCOL.md).  With
 * --client the subscription is that prefix, so the worker pool sends nothing else; the other
 * filters (--task, --type, --event) are applied here and pass task events only.  Each event is
 * one line, flushed: readable text, or with --json the message's own object with "client_id"
 * and "received_at" added.  Bounds: the SUB queues at most TAP_HWM messages (a tap slower than
 * the stream loses the excess, as ZeroMQ's SUB does); a message's text is cut at
 * TAP_MESSAGE_MAX bytes in the readable form.  It ends on SIGINT or SIGTERM, when stdout is
 * closed (EPIPE), after --count events or after --timeout seconds.  With [zmq] curve = true
 * the SUB is a CURVE client with the config's keys (the operator's key must be listed on the
 * worker hosts).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cli.h"
#include "clock.h"
#include "curve.h"
#include "taskwire.h"
#include "wire.h"

#define TAP_HWM 10000              /* messages the SUB queues before dropping */
#define TAP_MESSAGE_MAX 512        /* bytes of a message's text in a readable line */
#define TAP_POLL_MS 250            /* longest wait before the stop flag is looked at again */
#define TAP_TIMEOUT_MAX 31536000LL /* seconds of --timeout: a year */
#define TAP_MONITOR "inproc://taskwire-tap-monitor"

static const char tap_help[] =
    "usage: taskwire tap [--client ID] [--task ID] [--type T] [--event E] [--json]\n"
    "                    [--count N] [--timeout S] [--endpoint URL] [--quiet]\n"
    "\n"
    "Print every task event published on [zmq] events, one line each:\n"
    "  time client task type event attempt progress message\n"
    "\n"
    "  --client ID     only the events of client ids starting with ID (subscribed upstream)\n"
    "  --task ID       only the events of this task\n"
    "  --type T        only tasks of type T (a comma-separated list: sleep,checksum)\n"
    "  --event E       only these events (queued,started,progress,retrying,succeeded,\n"
    "                  failed,cancelled; a comma-separated list)\n"
    "  --json          one JSON object per line: the message, with client_id and received_at\n"
    "  --count N       stop after N events (exit 1 if --timeout comes first)\n"
    "  --timeout S     stop after S seconds (exit 3 if the endpoint was never reached)\n"
    "  --endpoint URL  the ZeroMQ endpoint (default [zmq] events)\n"
    "  -q, --quiet     no 'connected' notes on stderr\n"
    "  -c, --config FILE configuration (default $TASKWIRE_CONFIG or /etc/taskwire/taskwire.conf)\n"
    "  -h, --help      this help\n";

enum tap_option {
    OPT_CLIENT = 256,
    OPT_TASK,
    OPT_TYPE,
    OPT_EVENT,
    OPT_JSON,
    OPT_COUNT,
    OPT_TIMEOUT,
    OPT_ENDPOINT
};

struct tap {
    const char *endpoint, *client, *task, *types, *events;
    int json, quiet, endpoint_given;
    long long count, timeout_s; /* 0: none */
    long long printed;
    const struct curve *curve; /* CURVE keys of [zmq] (curve = true), or NULL */
    int connected;             /* a handshake with the endpoint succeeded (once is enough) */
    int warned_utf8;           /* said once that a message that is not UTF-8 was skipped */
};

static volatile sig_atomic_t tap_stopping;

static void
tap_stop(int signal_number)
{
    (void)signal_number;
    tap_stopping = 1;
}

/* 1 when word is one of the comma-separated items of list, or list is NULL. */
static int
tap_listed(const char *list, const char *word)
{
    if (!list)
        return 1;
    if (!word)
        return 0;
    size_t len = strlen(word);
    for (const char *item = list; *item;) {
        size_t item_len = strcspn(item, ",");
        if (item_len == len && strncmp(item, word, len) == 0)
            return 1;
        item += item_len + (item[item_len] == ',');
    }
    return 0;
}

/* text (len bytes) as one line's part: control characters as spaces, cut at max bytes. */
static void
tap_put_text(const char *text, size_t len, size_t max, FILE *out)
{
    if (len > max)
        len = max;
    for (size_t i = 0; i < len; i++)
        fputc((unsigned char)text[i] < 0x20 || text[i] == 0x7F ? ' ' : text[i], out);
}

static const char *
tap_string(const json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value && *value ? value : "-";
}

/* The readable line of one message (message: its JSON, or NULL when it is not JSON). */
static void
tap_line(const char *received, const char *topic, size_t topic_len, const json_t *message,
         const char *payload, size_t payload_len)
{
    printf("%s ", received);
    tap_put_text(topic, topic_len, 64, stdout);
    const json_t *task = json_object_get(message, "task");
    const char *kind = json_string_value(json_object_get(message, "type"));
    if (kind && strcmp(kind, "task") == 0 && json_is_object(task)) {
        json_int_t attempt = json_integer_value(json_object_get(task, "attempts"));
        json_int_t progress = json_integer_value(json_object_get(task, "progress"));
        const char *text = json_string_value(json_object_get(task, "error"));
        if (!text || !*text)
            text = json_string_value(json_object_get(task, "message"));
        printf(" %s %-10s %-9s %2lld %3lld%% ", tap_string(task, "id"), tap_string(task, "type"),
               tap_string(message, "event"), (long long)attempt, (long long)progress);
        if (text)
            tap_put_text(text, strlen(text), TAP_MESSAGE_MAX, stdout);
    } else {
        /* Not a task event (a resync, a notice an operator sent): the whole message. */
        printf(" - %s ", kind ? kind : "?");
        tap_put_text(payload, payload_len, TAP_MESSAGE_MAX, stdout);
    }
    putchar('\n');
}

/* The JSON line of one message; -1 when it cannot be written as JSON (not UTF-8). */
static int
tap_json_line(const char *received, const char *topic, size_t topic_len, json_t *message,
              const char *payload, size_t payload_len)
{
    json_t *line = json_is_object(message) ? json_incref(message) : json_object();
    json_t *client = json_stringn(topic, topic_len);
    int rc = -1;
    if (!line || !client)
        goto out;
    if (!json_is_object(message)) {
        json_t *raw = json_stringn(payload, payload_len);
        if (!raw || json_object_set_new(line, "payload", raw) != 0)
            goto out;
    }
    if (json_object_set(line, "client_id", client) != 0 ||
        json_object_set_new(line, "received_at", json_string(received)) != 0)
        goto out;
    char *text = json_dumps(line, JSON_COMPACT);
    if (text) {
        puts(text);
        rc = 0;
    }
    free(text);
out:
    json_decref(client);
    json_decref(line);
    return rc;
}

/* One message off the wire: 1 printed, 0 filtered out, -1 stdout is gone or failed. */
static int
tap_message(struct tap *tap, const char *topic, size_t topic_len, const char *payload,
            size_t payload_len)
{
    json_error_t json_err;
    json_t *message = json_loadb(payload, payload_len, 0, &json_err);
    const json_t *task = json_object_get(message, "task");
    const char *kind = json_string_value(json_object_get(message, "type"));
    int is_task = kind && strcmp(kind, "task") == 0 && json_is_object(task);
    int shown = 1;
    if (tap->task || tap->types || tap->events)
        shown = is_task && (!tap->task || strcmp(tap_string(task, "id"), tap->task) == 0) &&
                tap_listed(tap->types, json_string_value(json_object_get(task, "type"))) &&
                tap_listed(tap->events, json_string_value(json_object_get(message, "event")));
    if (shown) {
        char received[CLOCK_ISO8601_SIZE];
        clock_iso8601(clock_now_ms(), received, sizeof received);
        if (!tap->json) {
            tap_line(received, topic, topic_len, message, payload, payload_len);
        } else if (tap_json_line(received, topic, topic_len, message, payload, payload_len) != 0) {
            shown = 0;
            if (!tap->warned_utf8)
                fprintf(stderr, "taskwire: tap: skipped a message that is not UTF-8 text\n");
            tap->warned_utf8 = 1;
        }
    }
    json_decref(message);
    if (shown && (fflush(stdout) != 0 || ferror(stdout)))
        return -1;
    return shown;
}

/* The monitor's events: notes on stderr, tap->connected. */
static void
tap_monitor(struct tap *tap, void *monitor)
{
    zmq_msg_t event, endpoint;
    zmq_msg_init(&event);
    zmq_msg_init(&endpoint);
    while (zmq_msg_recv(&event, monitor, ZMQ_DONTWAIT) >= 0) {
        uint16_t what = 0;
        if (zmq_msg_size(&event) >= sizeof what)
            memcpy(&what, zmq_msg_data(&event), sizeof what);
        while (zmq_msg_more(&event) && zmq_msg_recv(&endpoint, monitor, 0) >= 0 &&
               zmq_msg_more(&endpoint))
            ;
        if (what == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            tap->connected = 1;
        if (!tap->quiet)
            fprintf(stderr, "taskwire: tap: %s %s\n",
                    what == ZMQ_EVENT_HANDSHAKE_SUCCEEDED ? "connected to" : "lost", tap->endpoint);
    }
    zmq_msg_close(&endpoint);
    zmq_msg_close(&event);
}

/* Drain the SUB: 0 to go on, 1 when done (--count reached or stdout gone). */
static int
tap_drain(struct tap *tap, void *sub)
{
    for (;;) {
        zmq_msg_t topic, payload;
        zmq_msg_init(&topic);
        zmq_msg_init(&payload);
        int done = 0, got = wire_recv(sub, &topic, 1) == 0;
        if (got && zmq_msg_more(&topic) && wire_recv(sub, &payload, 0) == 0) {
            if (!zmq_msg_more(&payload)) {
                int shown = tap_message(tap, zmq_msg_data(&topic), zmq_msg_size(&topic),
                                        zmq_msg_data(&payload), zmq_msg_size(&payload));
                tap->printed += shown > 0;
                done = shown < 0 || (tap->count && tap->printed >= tap->count);
            }
            while (zmq_msg_more(&payload) && wire_recv(sub, &payload, 0) == 0)
                ; /* not the wire's two frames: skipped */
        }
        zmq_msg_close(&payload);
        zmq_msg_close(&topic);
        if (!got || done)
            return done;
    }
}

/* Run the tap until it ends; its exit status. */
static int
tap_run(struct context *ctx, struct tap *tap)
{
    char err[512];
    int status = CLI_EXIT_UNREACHABLE;
    void *sub = NULL, *monitor = NULL;
    sigset_t previous;
    /* ZeroMQ's threads start with the stop signals blocked: they always reach this one. */
    cli_block_stop(&previous);
    void *zmq = zmq_ctx_new();
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    struct wire_options options = {.send_hwm = WIRE_DEFAULT,
                                   .recv_hwm = TAP_HWM,
                                   .linger_ms = 0,
                                   .connect_later = tap->endpoint,
                                   .curve = tap->curve};
    sub = zmq ? wire_socket(zmq, ZMQ_SUB, &options, err, sizeof err) : NULL;
    monitor = zmq ? zmq_socket(zmq, ZMQ_PAIR) : NULL;
    const char *prefix = tap->client ? tap->client : "";
    if (!sub || !monitor || zmq_setsockopt(sub, ZMQ_SUBSCRIBE, prefix, strlen(prefix)) != 0 ||
        zmq_socket_monitor(sub, TAP_MONITOR,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) != 0 ||
        zmq_connect(monitor, TAP_MONITOR) != 0) {
        context_error(ctx, "cannot set up ZeroMQ: %s", sub ? zmq_strerror(zmq_errno()) : err);
        goto out;
    }
    if (zmq_connect(sub, tap->endpoint) != 0) {
        context_error(ctx, "%s: %s", tap->endpoint, zmq_strerror(zmq_errno()));
        status = tap->endpoint_given ? CLI_EXIT_USAGE : CLI_EXIT_CONFIG;
        goto out;
    }
    int64_t deadline = tap->timeout_s ? clock_mono_ms() + tap->timeout_s * 1000 : 0;
    status = CLI_EXIT_OK;
    while (!tap_stopping) {
        long wait = TAP_POLL_MS;
        if (deadline) {
            int64_t left = deadline - clock_mono_ms();
            if (left <= 0)
                break;
            wait = left < wait ? (long)left : wait;
        }
        zmq_pollitem_t items[] = {{sub, 0, ZMQ_POLLIN, 0}, {monitor, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, wait) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            context_error(ctx, "ZeroMQ: %s", zmq_strerror(zmq_errno()));
            status = CLI_EXIT_UNREACHABLE;
            goto out;
        }
        if (items[1].revents & ZMQ_POLLIN)
            tap_monitor(tap, monitor);
        if ((items[0].revents & ZMQ_POLLIN) && tap_drain(tap, sub))
            goto out; /* --count reached, or stdout gone */
    }
    if (tap_stopping)
        goto out;
    if (!tap->connected) {
        context_error(ctx, "%s not reached within %lld s", tap->endpoint, tap->timeout_s);
        status = CLI_EXIT_UNREACHABLE;
    } else if (tap->count && tap->printed < tap->count) {
        context_error(ctx, "%lld of %lld events within %lld s", tap->printed, tap->count,
                      tap->timeout_s);
        status = CLI_EXIT_REFUSED;
    }
out:
    if (sub)
        zmq_socket_monitor(sub, NULL, 0);
    if (monitor)
        zmq_close(monitor);
    if (sub)
        zmq_close(sub);
    if (zmq)
        zmq_ctx_term(zmq);
    return status;
}

int
tap_main(struct context *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"client", required_argument, NULL, OPT_CLIENT},
        {"task", required_argument, NULL, OPT_TASK},
        {"type", required_argument, NULL, OPT_TYPE},
        {"event", required_argument, NULL, OPT_EVENT},
        {"json", no_argument, NULL, OPT_JSON},
        {"count", required_argument, NULL, OPT_COUNT},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"endpoint", required_argument, NULL, OPT_ENDPOINT},
        {"quiet", no_argument, NULL, 'q'},
        CONTEXT_LONG_OPTIONS,
    };
    struct tap tap = {0};
    int option, done, status;
    while ((option = getopt_long(argc, argv, ":c:hq", options, NULL)) != -1) {
        switch (option) {
        case OPT_CLIENT:
            if (!*optarg || strlen(optarg) > 32 ||
                strspn(optarg, "0123456789abcdef") != strlen(optarg))
                return context_usage(ctx, "--client must be a client id or its prefix "
                                          "(up to 32 hex digits)");
            tap.client = optarg;
            break;
        case OPT_TASK:
            if (!context_is_id(optarg))
                return context_usage(ctx, "--task must be a task id (32 hex digits)");
            tap.task = optarg;
            break;
        case OPT_TYPE:
            tap.types = optarg;
            break;
        case OPT_EVENT:
            tap.events = optarg;
            break;
        case OPT_JSON:
            tap.json = 1;
            break;
        case OPT_COUNT:
            if (context_integer(optarg, 1, LLONG_MAX, &tap.count) != 0)
                return context_usage(ctx, "--count must be a positive integer");
            break;
        case OPT_TIMEOUT:
            if (context_integer(optarg, 1, TAP_TIMEOUT_MAX, &tap.timeout_s) != 0)
                return context_usage(ctx, "--timeout must be seconds, 1..%lld", TAP_TIMEOUT_MAX);
            break;
        case OPT_ENDPOINT:
            tap.endpoint = optarg;
            tap.endpoint_given = 1;
            break;
        case 'q':
            tap.quiet = 1;
            break;
        default:
            status = context_common_option(ctx, option, argv, tap_help, &done);
            if (done)
                return status;
        }
    }
    if (optind < argc)
        return context_usage(ctx, "unexpected argument '%s'", argv[optind]);
    if ((tap.types && !*tap.types) || (tap.events && !*tap.events))
        return context_usage(ctx, "--type and --event need a name");
    /* The config gives the endpoint, and with [zmq] curve = true the keys, even for one given
     * with --endpoint when the file is there to read. */
    const struct config *cfg = NULL;
    if (!tap.endpoint || access(ctx->config_path, R_OK) == 0) {
        status = context_config(ctx, &cfg);
        if (status != CLI_EXIT_OK)
            return status;
        if (!tap.endpoint)
            tap.endpoint = cfg->events_endpoint;
    }
    struct curve *curve = NULL;
    if (cfg && cfg->curve) {
        char err[512];
        if (curve_load(cfg, CURVE_ROLE_CLIENT, &tap.endpoint, 1, &curve, err, sizeof err) != 0) {
            context_error(ctx, "%s", err);
            return CLI_EXIT_CONFIG;
        }
        tap.curve = curve;
    }
    cli_on_stop(tap_stop); /* SIGPIPE ignored too: a closed stdout is EPIPE, the end */
    status = tap_run(ctx, &tap);
    curve_destroy(&curve);
    return status;
}
