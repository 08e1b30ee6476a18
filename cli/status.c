/* status.c: `taskwire status`, GET /api/admin/status as aligned tables: the workers with
 * their heartbeat's age, the tasks they run, the queues by type, the relays and their
 * connections. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "table.h"
#include "taskwire.h"

static const char status_help[] =
    "usage: taskwire status [--json] [--url URL] [--key-file FILE]\n"
    "\n"
    "The workers (heartbeat age, tasks running), queue depth by task type and the relays\n"
    "(connections, messages) from the admin REST API's GET /api/admin/status.\n"
    "\n"
    "  --url URL         the API's base URL (default [admin] api_url)\n"
    "  --key-file FILE   the admin key's file (default [admin] key_file)\n"
    "  --json            print the API's JSON answer instead of tables\n"
    "  -c, --config FILE configuration (default $TASKWIRE_CONFIG or /etc/taskwire/taskwire.conf)\n"
    "  -h, --help        this help\n";

/* A member as text in buf: strings as they are, integers written, anything else "-". */
static const char *
status_text(const json_t *object, const char *key, char *buf, size_t size)
{
    const json_t *value = json_object_get(object, key);
    if (json_is_string(value))
        return json_string_value(value);
    if (json_is_integer(value)) {
        snprintf(buf, size, "%lld", (long long)json_integer_value(value));
        return buf;
    }
    return "-";
}

#define CELL 64 /* bytes of a number's or a short cell's text */

/* Print a table under its title; "title: none" when it has no rows.  Takes *table. */
static int
status_section(const char *title, size_t rows, struct table **table, int failed)
{
    if (!*table || failed) {
        table_destroy(table);
        return -1;
    }
    if (rows == 0)
        printf("%s: none\n", title);
    else {
        printf("%s:\n", title);
        table_print(*table, stdout);
    }
    table_destroy(table);
    return 0;
}

static int
status_workers(const json_t *workers)
{
    static const char *const header[] = {"WORKER", "HOST", "PID", "BUSY", "HEARTBEAT"};
    static const char *const running_header[] = {"WORKER", "TASK",    "TYPE",
                                                 "CLIENT", "ATTEMPT", "STARTED"};
    struct table *table = table_new(5), *running = table_new(6);
    int failed = !table || !running || table_add(table, header) != 0 ||
                 table_add(running, running_header) != 0;
    size_t i, j, running_rows = 0;
    const json_t *worker, *task;
    json_array_foreach(workers, i, worker)
    {
        char pid[CELL], busy[CELL], age[CELL], scratch[2][CELL];
        const json_t *tasks = json_object_get(worker, "running");
        snprintf(busy, sizeof busy, "%zu/%s", json_array_size(tasks),
                 status_text(worker, "concurrency", scratch[0], CELL));
        const json_t *age_ms = json_object_get(worker, "heartbeat_age_ms");
        if (json_is_integer(age_ms))
            snprintf(age, sizeof age, "%.1f s ago", (double)json_integer_value(age_ms) / 1000.0);
        else
            snprintf(age, sizeof age, "-");
        const char *id = status_text(worker, "id", scratch[1], CELL);
        const char *row[] = {id, status_text(worker, "host", scratch[0], CELL),
                             status_text(worker, "pid", pid, sizeof pid), busy, age};
        failed |= !failed && table_add(table, row) != 0;
        json_array_foreach(tasks, j, task)
        {
            char cells[5][CELL];
            const char *task_row[] = {id,
                                      status_text(task, "id", cells[0], CELL),
                                      status_text(task, "type", cells[1], CELL),
                                      status_text(task, "client_id", cells[2], CELL),
                                      status_text(task, "attempts", cells[3], CELL),
                                      status_text(task, "started_at", cells[4], CELL)};
            failed |= !failed && table_add(running, task_row) != 0;
            running_rows++;
        }
    }
    if (status_section("workers", json_array_size(workers), &table, failed) != 0) {
        table_destroy(&running);
        return -1;
    }
    return status_section("running", running_rows, &running, failed);
}

static int
status_queues(const json_t *queues)
{
    static const char *const header[] = {"TYPE", "QUEUED", "RUNNING"};
    struct table *table = table_new(3);
    int failed = !table || table_add(table, header) != 0;
    size_t i;
    const json_t *queue;
    json_array_foreach(queues, i, queue)
    {
        char queued[CELL], running[CELL], type[CELL];
        const char *row[] = {status_text(queue, "type", type, CELL),
                             status_text(queue, "queued", queued, CELL),
                             status_text(queue, "running", running, CELL)};
        failed |= !failed && table_add(table, row) != 0;
    }
    return status_section("queues", json_array_size(queues), &table, failed);
}

static int
status_relays(const json_t *relays)
{
    static const char *const header[] = {"RELAY",       "STATE",        "CONNECTIONS", "CLIENT_IDS",
                                         "MESSAGES_IN", "MESSAGES_OUT", "DROPPED",     "ERROR"};
    struct table *table = table_new(8);
    int failed = !table || table_add(table, header) != 0;
    size_t i;
    const json_t *relay;
    json_array_foreach(relays, i, relay)
    {
        char cells[6][CELL];
        int ok = json_is_true(json_object_get(relay, "ok"));
        const char *error = json_string_value(json_object_get(relay, "error"));
        const char *row[] = {status_text(relay, "url", cells[0], CELL),
                             ok ? "ok" : "down",
                             status_text(relay, "connections", cells[1], CELL),
                             status_text(relay, "client_ids", cells[2], CELL),
                             status_text(relay, "messages_in", cells[3], CELL),
                             status_text(relay, "messages_out", cells[4], CELL),
                             status_text(relay, "dropped", cells[5], CELL),
                             error};
        failed |= !failed && table_add(table, row) != 0;
    }
    return status_section("relays", json_array_size(relays), &table, failed);
}

int
status_main(struct context *ctx, int argc, char **argv)
{
    struct api_options options;
    int done, status = api_options_parse(ctx, argc, argv, status_help, &options, &done);
    if (done)
        return status;
    if (optind < argc)
        return context_usage(ctx, "unexpected argument '%s'", argv[optind]);
    struct api *api;
    status = api_new(ctx, options.url, options.key_file, &api);
    if (status != CLI_EXIT_OK)
        return status;
    json_t *body;
    status = api_call(api, "GET", "/api/admin/status", &body);
    api_destroy(&api);
    if (status != CLI_EXIT_OK)
        return status;
    if (options.json) {
        char *text = json_dumps(body, JSON_COMPACT);
        if (text)
            puts(text);
        free(text);
    } else if (status_workers(json_object_get(body, "workers")) != 0 || putchar('\n') == EOF ||
               status_queues(json_object_get(body, "queues")) != 0 || putchar('\n') == EOF ||
               status_relays(json_object_get(body, "relays")) != 0) {
        context_error(ctx, "out of memory");
        status = CLI_EXIT_CONFIG;
    }
    json_decref(body);
    return status;
}
