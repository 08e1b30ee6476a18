/* history.c: `taskwire history`, a channel's kept messages after a position through GET
 * /api/channels/{name}/history with the publish key ([channels] publish_key_file), every page
 * of them, for operators and scripts. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "api.h"
#include "taskwire.h"

#define HISTORY_PAGES_MAX 1000 /* pages followed at most (each up to history_size messages) */

static const char history_help[] =
    "usage: taskwire history CHANNEL [--since N --epoch E] [--limit N] [--url URL]\n"
    "                        [--key-file FILE] [--json]\n"
    "\n"
    "Print the messages CHANNEL (NAMESPACE:NAME of a namespace with history_size) keeps after\n"
    "offset N of epoch E (without --since: every message kept), one line each, OFFSET DATA,\n"
    "after a line with the channel's position (epoch and last offset).  When messages after\n"
    "N are gone (more than history_size since, past history_ttl, or another epoch), it says so\n"
    "and exits 1.\n"
    "\n"
    "  --since N         the offset to start after (0: everything kept)\n"
    "  --epoch E         the epoch of N (16 hex digits; needed when N is above 0)\n"
    "  --limit N         messages per request (default the namespace's history_size)\n"
    "  --url URL         the API's base URL (default [admin] api_url)\n"
    "  --key-file FILE   the publish key's file (default [channels] publish_key_file)\n"
    "  --json            print each answer of the API as one line of JSON\n"
    "  -c, --config FILE configuration (default $TASKWIRE_CONFIG or /etc/taskwire/taskwire.conf)\n"
    "  -h, --help        this help\n";

enum history_option {
    HISTORY_OPT_SINCE = 256,
    HISTORY_OPT_EPOCH,
    HISTORY_OPT_LIMIT,
    HISTORY_OPT_URL,
    HISTORY_OPT_KEY_FILE,
    HISTORY_OPT_JSON
};

struct history_args {
    const char *url, *key_file, *epoch;
    long long since, limit; /* limit 0: the API's default */
    int json;
};

/* The options of argv into *args: CLI_EXIT_OK with *done clear to go on, or an exit status
 * with *done set. */
static int
history_options(struct context *ctx, int argc, char **argv, struct history_args *args, int *done)
{
    static const struct option long_options[] = {
        {"since", required_argument, NULL, HISTORY_OPT_SINCE},
        {"epoch", required_argument, NULL, HISTORY_OPT_EPOCH},
        {"limit", required_argument, NULL, HISTORY_OPT_LIMIT},
        {"url", required_argument, NULL, HISTORY_OPT_URL},
        {"key-file", required_argument, NULL, HISTORY_OPT_KEY_FILE},
        {"json", no_argument, NULL, HISTORY_OPT_JSON},
        CONTEXT_LONG_OPTIONS,
    };
    int option, status;
    *done = 0;
    while ((option = getopt_long(argc, argv, ":c:h", long_options, NULL)) != -1) {
        *done = 1;
        switch (option) {
        case HISTORY_OPT_SINCE:
            if (context_integer(optarg, 0, INT64_MAX - 1, &args->since) != 0)
                return context_usage(ctx, "--since must be an offset, 0 or more");
            break;
        case HISTORY_OPT_EPOCH:
            if (strlen(optarg) != 16 || strspn(optarg, "0123456789abcdef") != 16)
                return context_usage(ctx, "--epoch must be 16 hex digits");
            args->epoch = optarg;
            break;
        case HISTORY_OPT_LIMIT:
            if (context_integer(optarg, 1, 10000, &args->limit) != 0)
                return context_usage(ctx, "--limit must be an integer 1..10000");
            break;
        case HISTORY_OPT_URL:
            args->url = optarg;
            break;
        case HISTORY_OPT_KEY_FILE:
            args->key_file = optarg;
            break;
        case HISTORY_OPT_JSON:
            args->json = 1;
            break;
        default:
            status = context_common_option(ctx, option, argv, history_help, done);
            if (*done)
                return status;
        }
        *done = 0;
    }
    if (args->since > 0 && !args->epoch) {
        *done = 1;
        return context_usage(ctx, "--since above 0 needs --epoch");
    }
    return CLI_EXIT_OK;
}

/* Print one answer's messages (or the answer itself with --json). */
static void
history_print(const struct history_args *args, json_t *answer, int first)
{
    if (args->json) {
        char *text = json_dumps(answer, JSON_COMPACT);
        printf("%s\n", text ? text : "{}");
        free(text);
        return;
    }
    const char *channel = json_string_value(json_object_get(answer, "channel"));
    const char *epoch = json_string_value(json_object_get(answer, "epoch"));
    if (first)
        printf("%s epoch %s offset %lld\n", channel ? channel : "?", epoch ? epoch : "?",
               (long long)json_integer_value(json_object_get(answer, "offset")));
    size_t i;
    json_t *message;
    json_array_foreach(json_object_get(answer, "messages"), i, message)
    {
        char *data = json_dumps(json_object_get(message, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%lld %s\n", (long long)json_integer_value(json_object_get(message, "offset")),
               data ? data : "null");
        free(data);
    }
}

int
history_main(struct context *ctx, int argc, char **argv)
{
    struct history_args args = {0};
    int done, status;
    ctx->command = "history";
    status = history_options(ctx, argc, argv, &args, &done);
    if (done)
        return status;
    if (optind >= argc)
        return context_usage(ctx, "CHANNEL is required");
    if (optind + 1 < argc)
        return context_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
    const char *key_file = args.key_file;
    if ((status = context_publish_key_file(ctx, key_file, &key_file)) != CLI_EXIT_OK)
        return status;
    struct api *api = NULL;
    status = api_new(ctx, args.url, key_file, &api);
    char *channel = status == CLI_EXIT_OK ? api_escape(api, argv[optind]) : NULL;
    if (status == CLI_EXIT_OK && !channel) {
        context_error(ctx, "out of memory");
        status = CLI_EXIT_CONFIG;
    }
    char epoch[17];
    snprintf(epoch, sizeof epoch, "%s", args.epoch ? args.epoch : "");
    long long since = args.since;
    for (int page = 0; status == CLI_EXIT_OK && page < HISTORY_PAGES_MAX; page++) {
        char path[API_URL_MAX], limit[32] = "";
        json_t *answer = NULL;
        if (args.limit > 0)
            snprintf(limit, sizeof limit, "&limit=%lld", args.limit);
        snprintf(path, sizeof path, "/api/channels/%s/history?since=%lld%s%s%s", channel, since,
                 epoch[0] ? "&epoch=" : "", epoch, limit);
        status = api_call(api, "GET", path, &answer);
        if (status != CLI_EXIT_OK)
            break;
        history_print(&args, answer, page == 0);
        json_t *messages = json_object_get(answer, "messages");
        const char *now_epoch = json_string_value(json_object_get(answer, "epoch"));
        size_t count = json_array_size(messages);
        int recovered = json_is_true(json_object_get(answer, "recovered"));
        int more = json_is_true(json_object_get(answer, "more")) && count > 0;
        if (!recovered && !args.json)
            printf("not recovered: messages after %lld are gone; the channel is at epoch %s "
                   "offset %lld\n",
                   since, now_epoch ? now_epoch : "?",
                   (long long)json_integer_value(json_object_get(answer, "offset")));
        if (!recovered)
            status = CLI_EXIT_REFUSED;
        if (more) {
            since =
                json_integer_value(json_object_get(json_array_get(messages, count - 1), "offset"));
            snprintf(epoch, sizeof epoch, "%s", now_epoch ? now_epoch : "");
        }
        json_decref(answer);
        if (!more)
            break;
    }
    curl_free(channel);
    api_destroy(&api);
    return status;
}
