/* scrape.c: the worker pool's metrics thread and counters (see scrape.h). */
#include "scrape.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpreply.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define SCRAPE_UNKNOWN_TYPE CONFIG_MAX_TYPES /* the row of attempts of types not configured */

/* The states an attempt leaves its task in: the label status of taskwire_tasks_total, and the
 * event names the pool reports them by. */
static const struct {
    const char *event, *status;
} scrape_statuses[] = {
    {"succeeded", "succeeded"}, {"failed", "failed"},   {"cancelled", "cancelled"},
    {"retrying", "retrying"},   {"queued", "requeued"},
};
#define SCRAPE_STATUSES (sizeof scrape_statuses / sizeof scrape_statuses[0])

struct scrape {
    const struct config *cfg;
    struct store *store; /* the metrics thread's own connection */
    struct lws_context *context;
    pthread_t thread;
    int thread_started;
    atomic_int quit;
    atomic_int slots_busy, slots_total;
    /* Presence (worker/presence.h): events published by action, signals, rows in the store. */
    atomic_ullong presence_joins, presence_updates, presence_leaves, signals;
    atomic_llong presence_rows;
    pthread_mutex_t lock; /* guards what follows */
    uint64_t tasks[CONFIG_MAX_TYPES + 1][SCRAPE_STATUSES];
    struct metrics_histogram duration[CONFIG_MAX_TYPES + 1];
    struct metrics_histogram queue_wait;
    /* The metrics thread's own: the copies it writes from, and its answer. */
    uint64_t tasks_copy[CONFIG_MAX_TYPES + 1][SCRAPE_STATUSES];
    struct metrics_histogram duration_copy[CONFIG_MAX_TYPES + 1];
    unsigned char out[LWS_PRE + SCRAPE_TEXT_MAX];
};

/* The row of type: its index in the config, or SCRAPE_UNKNOWN_TYPE. */
static size_t
scrape_type_row(const struct scrape *scrape, const struct config_type *type)
{
    const struct config_type *first = scrape->cfg->types;
    if (!type || type < first || type >= first + scrape->cfg->type_count)
        return SCRAPE_UNKNOWN_TYPE;
    return (size_t)(type - first);
}

void
scrape_task_ended(struct scrape *scrape, const struct config_type *type, const char *status,
                  int64_t ran_ms)
{
    if (!scrape || !status)
        return;
    size_t row = scrape_type_row(scrape, type);
    for (size_t i = 0; i < SCRAPE_STATUSES; i++) {
        if (strcmp(scrape_statuses[i].event, status) != 0)
            continue;
        pthread_mutex_lock(&scrape->lock);
        scrape->tasks[row][i]++;
        if (ran_ms >= 0)
            metrics_histogram_observe(&scrape->duration[row], (double)ran_ms / 1000.0);
        pthread_mutex_unlock(&scrape->lock);
        return;
    }
}

void
scrape_task_claimed(struct scrape *scrape, int64_t waited_ms)
{
    if (!scrape)
        return;
    pthread_mutex_lock(&scrape->lock);
    metrics_histogram_observe(&scrape->queue_wait, (double)waited_ms / 1000.0);
    pthread_mutex_unlock(&scrape->lock);
}

void
scrape_slots(struct scrape *scrape, int busy, int total)
{
    if (!scrape)
        return;
    atomic_store(&scrape->slots_busy, busy);
    atomic_store(&scrape->slots_total, total);
}

void
scrape_presence(struct scrape *scrape, uint64_t joins, uint64_t updates, uint64_t leaves,
                uint64_t signals, int64_t rows)
{
    if (!scrape)
        return;
    atomic_fetch_add(&scrape->presence_joins, joins);
    atomic_fetch_add(&scrape->presence_updates, updates);
    atomic_fetch_add(&scrape->presence_leaves, leaves);
    atomic_fetch_add(&scrape->signals, signals);
    if (rows >= 0)
        atomic_store(&scrape->presence_rows, rows);
}

/* The name of row, for the type label. */
static const char *
scrape_type_name(const struct scrape *scrape, size_t row)
{
    return row == SCRAPE_UNKNOWN_TYPE ? "unknown" : scrape->cfg->types[row].name;
}

/* taskwire_tasks_queued and taskwire_tasks_running from the store: every configured type,
 * zero when it has none. */
static void
scrape_write_depths(struct scrape *scrape, struct metrics_text *text)
{
    json_t *depths = NULL;
    if (store_queue_depths(scrape->store, &depths) != 0) {
        log_warn("event=metrics_queue_unread");
        return;
    }
    static const char *const families[][3] = {
        {"taskwire_tasks_queued", STORE_STATUS_QUEUED,
         "Tasks waiting in the store for a worker (runnable or scheduled), by type."},
        {"taskwire_tasks_running", STORE_STATUS_RUNNING,
         "Tasks running on any worker, by type (from the store)."}};
    for (size_t f = 0; f < 2; f++) {
        metrics_family(text, families[f][0], "gauge", families[f][2]);
        for (size_t t = 0; t < scrape->cfg->type_count; t++) {
            json_int_t count = 0;
            size_t i;
            json_t *row;
            json_array_foreach(depths, i, row)
            {
                if (strcmp(json_string_value(json_object_get(row, "type")),
                           scrape->cfg->types[t].name) == 0 &&
                    strcmp(json_string_value(json_object_get(row, "status")), families[f][1]) == 0)
                    count = json_integer_value(json_object_get(row, "count"));
            }
            metrics_sample(text, families[f][0],
                           (const char *const[]){"type", scrape->cfg->types[t].name, NULL},
                           (double)count);
        }
    }
    json_decref(depths);
}

/* The exposition, into text.  Counters are copied under the lock, written after it. */
static void
scrape_write(struct scrape *scrape, struct metrics_text *text)
{
    uint64_t(*tasks)[SCRAPE_STATUSES] = scrape->tasks_copy;
    struct metrics_histogram *duration = scrape->duration_copy;
    struct metrics_histogram queue_wait;
    pthread_mutex_lock(&scrape->lock);
    memcpy(scrape->tasks_copy, scrape->tasks, sizeof scrape->tasks_copy);
    memcpy(scrape->duration_copy, scrape->duration, sizeof scrape->duration_copy);
    queue_wait = scrape->queue_wait;
    pthread_mutex_unlock(&scrape->lock);

    size_t rows = scrape->cfg->type_count;
    metrics_family(text, "taskwire_tasks_total", "counter",
                   "Attempts this worker ended, by type and the state they left the task in.");
    for (size_t r = 0; r <= SCRAPE_UNKNOWN_TYPE; r++) {
        if (r >= rows && r != SCRAPE_UNKNOWN_TYPE)
            continue;
        for (size_t s = 0; s < SCRAPE_STATUSES; s++)
            if (r != SCRAPE_UNKNOWN_TYPE || tasks[r][s] > 0)
                metrics_sample(text, "taskwire_tasks_total",
                               (const char *const[]){"type", scrape_type_name(scrape, r), "status",
                                                     scrape_statuses[s].status, NULL},
                               (double)tasks[r][s]);
    }
    metrics_family(text, "taskwire_task_duration_seconds", "histogram",
                   "How long this worker's attempts ran, by type.");
    for (size_t r = 0; r <= SCRAPE_UNKNOWN_TYPE; r++)
        if (r < rows || (r == SCRAPE_UNKNOWN_TYPE && duration[r].count > 0))
            metrics_histogram_write(
                text, "taskwire_task_duration_seconds",
                (const char *const[]){"type", scrape_type_name(scrape, r), NULL}, &duration[r]);
    metrics_family(text, "taskwire_task_queue_wait_seconds", "histogram",
                   "How long the tasks this worker claimed waited from runnable to started.");
    metrics_histogram_write(text, "taskwire_task_queue_wait_seconds", NULL, &queue_wait);

    int busy = atomic_load(&scrape->slots_busy), total = atomic_load(&scrape->slots_total);
    metrics_family(text, "taskwire_worker_slots", "gauge",
                   "This worker's task slots, by state (its concurrency in all).");
    metrics_sample(text, "taskwire_worker_slots", (const char *const[]){"state", "busy", NULL},
                   busy);
    metrics_sample(text, "taskwire_worker_slots", (const char *const[]){"state", "idle", NULL},
                   total - busy);
    metrics_family(text, "taskwire_presence_events_total", "counter",
                   "Presence events this worker published, by action.");
    const struct {
        const char *action;
        unsigned long long count;
    } actions[] = {{"join", atomic_load(&scrape->presence_joins)},
                   {"update", atomic_load(&scrape->presence_updates)},
                   {"leave", atomic_load(&scrape->presence_leaves)}};
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        metrics_sample(text, "taskwire_presence_events_total",
                       (const char *const[]){"action", actions[i].action, NULL},
                       (double)actions[i].count);
    metrics_family(text, "taskwire_signals_total", "counter",
                   "Browsers' publishes this worker put on the events wire.");
    metrics_sample(text, "taskwire_signals_total", NULL, (double)atomic_load(&scrape->signals));
    metrics_family(text, "taskwire_presence_rows", "gauge",
                   "Presence rows with connections in the store (every relay's; take max, not "
                   "sum), as of this worker's last sweep.");
    metrics_sample(text, "taskwire_presence_rows", NULL,
                   (double)atomic_load(&scrape->presence_rows));
    scrape_write_depths(scrape, text);
    metrics_process(text);
}

static int
scrape_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    if (reason != LWS_CALLBACK_HTTP)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    struct scrape *scrape = lws_context_user(lws_get_context(wsi));
    unsigned char *buf = scrape->out;
    if (!in || strcmp(in, "/metrics") != 0) {
        static const char missing[] = "{\"error\":{\"code\":\"not_found\",\"message\":"
                                      "\"the worker's metrics port serves /metrics\"}}";
        memcpy(buf + LWS_PRE, missing, sizeof missing - 1);
        return httpreply_send(wsi, HTTP_STATUS_NOT_FOUND, "application/json", buf + LWS_PRE,
                              sizeof missing - 1);
    }
    struct metrics_text text;
    metrics_text_init(&text, (char *)buf + LWS_PRE, SCRAPE_TEXT_MAX);
    scrape_write(scrape, &text);
    long n = metrics_text_finish(&text);
    if (n < 0) {
        static const char full[] = "{\"error\":{\"code\":\"internal\",\"message\":"
                                   "\"the exposition does not fit its buffer\"}}";
        memcpy(buf + LWS_PRE, full, sizeof full - 1);
        return httpreply_send(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR, "application/json",
                              buf + LWS_PRE, sizeof full - 1);
    }
    return httpreply_send(wsi, HTTP_STATUS_OK, METRICS_CONTENT_TYPE, buf + LWS_PRE, (size_t)n);
}

static const struct lws_protocols scrape_protocols[] = {
    {"taskwire-worker-metrics", scrape_callback, 0, 0, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};

static void *
scrape_main(void *arg)
{
    struct scrape *scrape = arg;
    while (!atomic_load(&scrape->quit))
        if (lws_service(scrape->context, 0) < 0)
            break;
    return NULL;
}

struct scrape *
scrape_new(const struct config *cfg, char *err, size_t errlen)
{
    struct scrape *scrape = calloc(1, sizeof *scrape);
    if (!scrape) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    scrape->cfg = cfg;
    pthread_mutex_init(&scrape->lock, NULL);
    char host[METRICS_HOST_MAX];
    int port;
    if (metrics_listen_parse(cfg->worker_metrics_listen, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "metrics_listen = %s is not host:port", cfg->worker_metrics_listen);
        goto fail;
    }
    struct store_options options = store_options_of(cfg);
    scrape->store = store_new(&options, err, errlen);
    if (!scrape->store)
        goto fail;
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL); /* lws's notices are not the pool's log */
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.port = port;
    info.iface = host;
    info.protocols = scrape_protocols;
    info.user = scrape;
    scrape->context = lws_create_context(&info);
    if (!scrape->context) {
        snprintf(err, errlen, "cannot serve metrics on %s", cfg->worker_metrics_listen);
        goto fail;
    }
    if (pthread_create(&scrape->thread, NULL, scrape_main, scrape) != 0) {
        snprintf(err, errlen, "cannot start the metrics thread");
        goto fail;
    }
    scrape->thread_started = 1;
    return scrape;
fail:
    scrape_destroy(&scrape);
    return NULL;
}

void
scrape_destroy(struct scrape **scrape)
{
    if (!scrape || !*scrape)
        return;
    struct scrape *s = *scrape;
    if (s->thread_started) {
        atomic_store(&s->quit, 1);
        lws_cancel_service(s->context); /* wakes its lws_service */
        pthread_join(s->thread, NULL);
    }
    if (s->context)
        lws_context_destroy(s->context);
    store_destroy(&s->store);
    pthread_mutex_destroy(&s->lock);
    free(s);
    *scrape = NULL;
}
