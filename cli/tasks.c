/* tasks.c: `taskwire tasks list|show|cancel|retry|delete`, through the admin REST API.
 *
 * The API, not the store: it answers from any host, needs no write access to the store file
 * (the service user's), makes every change through the same checks, logs and events as the
 * page's (a cancel reaches the worker holding the task), and works whatever the store is.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "table.h"
#include "taskwire.h"

#define TASKS_STATUSES "queued running succeeded failed cancelled"
#define TASKS_QUERY_MAX 2048 /* bytes of a list's query string */

static const char tasks_help[] =
    "usage: taskwire tasks list [--status S] [--type T] [--client ID] [--query TEXT]\n"
    "                           [--limit N] [--before SEQ] [--json]\n"
    "       taskwire tasks show|cancel|retry ID [--json]\n"
    "       taskwire tasks delete ID\n"
    "\n"
    "Every client's tasks through the admin REST API ([admin] api_url, key in [admin] "
    "key_file).\n"
    "  list     newest first: --status (" TASKS_STATUSES "), --type,\n"
    "           --client (a client id), --query (a task or client id, or its prefix),\n"
    "           --limit (1..500, default 50), --before SEQ (the page after a 'next' SEQ)\n"
    "  show     one task, every field\n"
    "  cancel   cancel a queued or running task\n"
    "  retry    give a failed or cancelled task a new attempt\n"
    "  delete   remove a finished task\n"
    "\n"
    "  --url URL         the API's base URL (default [admin] api_url)\n"
    "  --key-file FILE   the admin key's file (default [admin] key_file)\n"
    "  --json            print the API's JSON answer instead of text\n"
    "  -c, --config FILE configuration (default $TASKWIRE_CONFIG or /etc/taskwire/taskwire.conf)\n"
    "  -h, --help        this help\n";

enum tasks_option {
    OPT_URL = 256,
    OPT_KEY_FILE,
    OPT_JSON,
    OPT_STATUS,
    OPT_TYPE,
    OPT_CLIENT,
    OPT_QUERY,
    OPT_LIMIT,
    OPT_BEFORE,
};

struct tasks_args {
    const char *url, *key_file;
    int json;
    const char *status, *type, *client, *query;
    long long limit, before; /* 0: the API's default, none */
    const char *id;          /* show, cancel, retry, delete */
};

/* Each of list's filters, its option and its query parameter. */
static const struct {
    int option;
    const char *name, *parameter;
} tasks_filters[] = {
    {OPT_STATUS, "--status", "status"},
    {OPT_TYPE, "--type", "type"},
    {OPT_CLIENT, "--client", "client_id"},
    {OPT_QUERY, "--query", "q"},
};

static int
tasks_is_status(const char *text)
{
    static const char *const statuses[] = {"queued", "running", "succeeded", "failed", "cancelled"};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        if (strcmp(text, statuses[i]) == 0)
            return 1;
    return 0;
}

/* Options and arguments of one of the subcommands (argv[0] its name).  list takes the
 * filters and no argument; the others one task id.  Returns 0 with *done clear to go on. */
static int
tasks_parse(struct context *ctx, int argc, char **argv, struct tasks_args *args, int *done)
{
    static const struct option options[] = {
        {"url", required_argument, NULL, OPT_URL},
        {"key-file", required_argument, NULL, OPT_KEY_FILE},
        {"json", no_argument, NULL, OPT_JSON},
        {"status", required_argument, NULL, OPT_STATUS},
        {"type", required_argument, NULL, OPT_TYPE},
        {"client", required_argument, NULL, OPT_CLIENT},
        {"query", required_argument, NULL, OPT_QUERY},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"before", required_argument, NULL, OPT_BEFORE},
        CONTEXT_LONG_OPTIONS,
    };
    int list = strcmp(argv[0], "list") == 0;
    int option, status;
    *done = 1;
    optind = 0;
    while ((option = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        if (option >= OPT_STATUS && !list)
            return context_usage(ctx, "%s takes no option %s", argv[0], argv[optind - 1]);
        switch (option) {
        case OPT_URL:
            args->url = optarg;
            break;
        case OPT_KEY_FILE:
            args->key_file = optarg;
            break;
        case OPT_JSON:
            args->json = 1;
            break;
        case OPT_STATUS:
            if (!tasks_is_status(optarg))
                return context_usage(ctx, "--status must be one of " TASKS_STATUSES);
            args->status = optarg;
            break;
        case OPT_TYPE:
            args->type = optarg;
            break;
        case OPT_CLIENT:
            if (!context_is_id(optarg))
                return context_usage(ctx, "--client must be a client id (32 hex digits)");
            args->client = optarg;
            break;
        case OPT_QUERY:
            args->query = optarg;
            break;
        case OPT_LIMIT:
            if (context_integer(optarg, 1, 500, &args->limit) != 0)
                return context_usage(ctx, "--limit must be an integer 1..500");
            break;
        case OPT_BEFORE:
            if (context_integer(optarg, 1, INT64_MAX, &args->before) != 0)
                return context_usage(ctx, "--before must be a positive integer (a 'next' seq)");
            break;
        default:
            status = context_common_option(ctx, option, argv, tasks_help, done);
            if (*done)
                return status;
        }
    }
    *done = 0;
    if (list) {
        if (optind < argc)
            return *done = 1, context_usage(ctx, "unexpected argument '%s'", argv[optind]);
        return CLI_EXIT_OK;
    }
    if (optind >= argc)
        return *done = 1, context_usage(ctx, "which task? give its id");
    if (optind + 1 < argc)
        return *done = 1, context_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
    if (!context_is_id(argv[optind]))
        return *done = 1, context_usage(ctx, "'%s' is not a task id (32 hex digits)", argv[optind]);
    args->id = argv[optind];
    return CLI_EXIT_OK;
}

/* body as one line of compact JSON on stdout. */
static void
tasks_print_json(const json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    if (text)
        puts(text);
    free(text);
}

/* A member of a task as text: strings as they are, numbers written, null and absent as NULL;
 * objects and arrays as compact JSON.  The text lives in buf (size bytes) or in task. */
static const char *
tasks_field(const json_t *task, const char *key, char *buf, size_t size)
{
    const json_t *value = json_object_get(task, key);
    if (!value || json_is_null(value))
        return NULL;
    if (json_is_string(value))
        return json_string_value(value);
    if (json_is_integer(value)) {
        snprintf(buf, size, "%lld", (long long)json_integer_value(value));
        return buf;
    }
    if (json_is_true(value) || json_is_false(value))
        return json_is_true(value) ? "true" : "false";
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(buf, size, "%s", text ? text : "?");
    free(text);
    return buf;
}

static int
tasks_list(struct context *ctx, struct api *api, const struct tasks_args *args)
{
    char path[TASKS_QUERY_MAX] = "/api/admin/tasks?limit=";
    size_t used = strlen(path);
    used +=
        (size_t)snprintf(path + used, sizeof path - used, "%lld", args->limit ? args->limit : 50);
    if (args->before)
        used += (size_t)snprintf(path + used, sizeof path - used, "&before=%lld", args->before);
    const char *values[] = {args->status, args->type, args->client, args->query};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        if (!values[i])
            continue;
        char *escaped = api_escape(api, values[i]);
        if (escaped && used < sizeof path)
            used += (size_t)snprintf(path + used, sizeof path - used, "&%s=%s",
                                     tasks_filters[i].parameter, escaped);
        free(escaped);
        if (!escaped || used >= sizeof path)
            return context_usage(ctx, "%s is too long", tasks_filters[i].name);
    }
    json_t *body;
    int status = api_call(api, "GET", path, &body);
    if (status != CLI_EXIT_OK)
        return status;
    const json_t *tasks = json_object_get(body, "tasks");
    if (args->json) {
        tasks_print_json(body);
    } else if (!json_is_array(tasks)) {
        context_error(ctx, "the answer has no list of tasks");
        status = CLI_EXIT_UNREACHABLE;
    } else {
        struct table *table = table_new(8);
        static const char *const header[] = {"ID",       "CLIENT",  "TYPE",    "STATUS",
                                             "PROGRESS", "ATTEMPT", "CREATED", "MESSAGE"};
        if (!table || table_add(table, header) != 0)
            status = CLI_EXIT_CONFIG;
        size_t i;
        const json_t *task;
        json_array_foreach(tasks, i, task)
        {
            char progress[32], attempts[64], scratch[4][64];
            const char *progress_text = tasks_field(task, "progress", scratch[0], 64);
            snprintf(progress, sizeof progress, "%s%%", progress_text ? progress_text : "0");
            const char *tried = tasks_field(task, "attempts", scratch[1], 64);
            const char *most = tasks_field(task, "max_attempts", scratch[2], 64);
            snprintf(attempts, sizeof attempts, "%s/%s", tried ? tried : "0", most ? most : "-");
            const char *message = tasks_field(task, "error", scratch[3], 64);
            if (!message)
                message = json_string_value(json_object_get(task, "message"));
            const char *row[] = {json_string_value(json_object_get(task, "id")),
                                 json_string_value(json_object_get(task, "client_id")),
                                 json_string_value(json_object_get(task, "type")),
                                 json_string_value(json_object_get(task, "status")),
                                 progress,
                                 attempts,
                                 json_string_value(json_object_get(task, "created_at")),
                                 message};
            if (table && table_add(table, row) != 0)
                status = CLI_EXIT_CONFIG;
        }
        if (table)
            table_print(table, stdout);
        table_destroy(&table);
        const json_t *next = json_object_get(body, "next");
        if (json_is_integer(next))
            fprintf(stderr, "more: taskwire tasks list --before %lld ...\n",
                    (long long)json_integer_value(next));
        if (status == CLI_EXIT_CONFIG)
            context_error(ctx, "out of memory");
    }
    if (status == CLI_EXIT_OK && json_array_size(tasks) == 0)
        status = CLI_EXIT_REFUSED; /* found nothing */
    json_decref(body);
    return status;
}

/* "name  value" and a newline, the value's further lines indented under its first and other
 * control characters as spaces. */
static void
tasks_print_field(const char *name, const char *value)
{
    printf("%-13s ", name);
    if (!value || !*value)
        value = "-";
    for (; *value; value++) {
        if (*value == '\n')
            printf("\n%-13s ", "");
        else
            putchar((unsigned char)*value < 0x20 || *value == 0x7F ? ' ' : *value);
    }
    putchar('\n');
}

/* A task's fields, one "name: value" line each, its errors one line per attempt. */
static void
tasks_print_task(const json_t *task)
{
    static const char *const keys[] = {
        "id",     "client_id",  "type",     "name",         "status",     "progress",  "message",
        "result", "error",      "attempts", "max_attempts", "priority",   "worker_id", "seq",
        "params", "created_at", "run_at",   "started_at",   "finished_at"};
    char buf[TABLE_CELL_MAX * 4];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (!json_object_get(task, keys[i]))
            continue;
        tasks_print_field(keys[i], tasks_field(task, keys[i], buf, sizeof buf));
    }
    size_t i;
    const json_t *entry;
    json_array_foreach(json_object_get(task, "errors"), i, entry)
    {
        char scratch[32];
        const char *attempt = tasks_field(entry, "attempt", scratch, sizeof scratch);
        const char *at = json_string_value(json_object_get(entry, "at"));
        const char *error = json_string_value(json_object_get(entry, "error"));
        const char *worker = json_string_value(json_object_get(entry, "worker"));
        const char *host = json_string_value(json_object_get(entry, "host"));
        char line[TABLE_CELL_MAX * 4];
        snprintf(line, sizeof line, "attempt %s at %s on %s (%s): %s", attempt ? attempt : "?",
                 at ? at : "?", host ? host : "?", worker ? worker : "?", error ? error : "");
        tasks_print_field(i == 0 ? "errors" : "", line);
    }
}

static int
tasks_one(struct context *ctx, struct api *api, const char *verb, const struct tasks_args *args)
{
    char path[128];
    const char *method = "POST";
    if (strcmp(verb, "show") == 0) {
        method = "GET";
        snprintf(path, sizeof path, "/api/admin/tasks/%s", args->id);
    } else if (strcmp(verb, "delete") == 0) {
        method = "DELETE";
        snprintf(path, sizeof path, "/api/admin/tasks/%s", args->id);
    } else {
        snprintf(path, sizeof path, "/api/admin/tasks/%s/%s", args->id, verb);
    }
    json_t *task;
    int status = api_call(api, method, path, &task);
    if (status != CLI_EXIT_OK)
        return status;
    if (strcmp(verb, "delete") == 0) {
        printf("%s deleted\n", args->id);
    } else if (!json_is_object(task)) {
        context_error(ctx, "the answer is not a task");
        status = CLI_EXIT_UNREACHABLE;
    } else if (args->json) {
        tasks_print_json(task);
    } else if (strcmp(verb, "show") == 0) {
        tasks_print_task(task);
    } else {
        const char *now = json_string_value(json_object_get(task, "status"));
        printf("%s %s\n", args->id, now ? now : "?");
    }
    json_decref(task);
    return status;
}

int
tasks_main(struct context *ctx, int argc, char **argv)
{
    static const char *const verbs[] = {"list", "show", "cancel", "retry", "delete"};
    if (argc < 2)
        return context_usage(ctx, "list, show, cancel, retry or delete?");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(tasks_help, stdout);
        return CLI_EXIT_OK;
    }
    const char *verb = NULL;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(argv[1], verbs[i]) == 0)
            verb = verbs[i];
    if (!verb)
        return context_usage(ctx, "unknown subcommand '%s'", argv[1]);
    static char command[32];
    snprintf(command, sizeof command, "tasks %s", verb);
    ctx->command = command;

    struct tasks_args args = {0};
    int done, status = tasks_parse(ctx, argc - 1, argv + 1, &args, &done);
    if (done)
        return status;
    struct api *api;
    status = api_new(ctx, args.url, args.key_file, &api);
    if (status != CLI_EXIT_OK)
        return status;
    if (strcmp(verb, "list") == 0)
        status = tasks_list(ctx, api, &args);
    else
        status = tasks_one(ctx, api, verb, &args);
    api_destroy(&api);
    return status;
}
