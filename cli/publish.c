/* publish.c: `taskwire publish`, a message to a channel through POST /api/publish with the
 * publish key ([channels] publish_key_file), for operators and scripts. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "taskwire.h"

#define PUBLISH_DATA_MAX 65536 /* bytes of DATA read from standard input */

static const char publish_help[] =
    "usage: taskwire publish CHANNEL [DATA | -] [--url URL] [--key-file FILE] [--json]\n"
    "\n"
    "Publish DATA, a JSON object (read from standard input when it is '-' or absent), to\n"
    "CHANNEL (NAMESPACE:NAME, e.g. project:42) through the REST API's POST /api/publish:\n"
    "every WebSocket subscribed to CHANNEL gets {\"type\":\"message\",\"channel\":...,\n"
    "\"data\":DATA}.\n"
    "\n"
    "  --url URL         the API's base URL (default [admin] api_url)\n"
    "  --key-file FILE   the publish key's file (default [channels] publish_key_file)\n"
    "  --json            print the API's JSON answer\n"
    "  -c, --config FILE configuration (default $TASKWIRE_CONFIG or /etc/taskwire/taskwire.conf)\n"
    "  -h, --help        this help\n";

/* DATA from standard input into a new string (caller frees), or NULL after saying why. */
static char *
publish_read_stdin(struct context *ctx)
{
    char *data = malloc(PUBLISH_DATA_MAX + 1);
    size_t used = data ? fread(data, 1, PUBLISH_DATA_MAX + 1, stdin) : 0;
    if (!data || used > PUBLISH_DATA_MAX) {
        context_error(ctx, "DATA on standard input is over %d bytes", PUBLISH_DATA_MAX);
        free(data);
        return NULL;
    }
    data[used] = '\0';
    return data;
}

/* The request body for channel and data (JSON text): a new string, or NULL after saying why. */
static char *
publish_request(struct context *ctx, const char *channel, const char *data)
{
    json_error_t err;
    json_t *parsed = json_loads(data, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(parsed)) {
        context_error(ctx, "DATA must be a JSON object%s%s", parsed ? "" : ": ",
                      parsed ? "" : err.text);
        json_decref(parsed);
        return NULL;
    }
    json_t *request = json_pack("{s:s, s:o}", "channel", channel, "data", parsed);
    char *text = request ? json_dumps(request, JSON_COMPACT) : NULL;
    json_decref(request);
    if (!text)
        context_error(ctx, "out of memory");
    return text;
}

int
publish_main(struct context *ctx, int argc, char **argv)
{
    struct api_options options;
    int done, status;
    ctx->command = "publish";
    status = api_options_parse(ctx, argc, argv, publish_help, &options, &done);
    if (done)
        return status;
    const char *key_file = options.key_file;
    if (optind >= argc)
        return context_usage(ctx, "CHANNEL is required");
    if (optind + 2 < argc)
        return context_usage(ctx, "unexpected argument '%s'", argv[optind + 2]);
    const char *channel = argv[optind];
    if ((status = context_publish_key_file(ctx, key_file, &key_file)) != CLI_EXIT_OK)
        return status;
    char *stdin_data = NULL;
    const char *data = optind + 1 < argc ? argv[optind + 1] : "-";
    if (strcmp(data, "-") == 0 && !(data = stdin_data = publish_read_stdin(ctx)))
        return CLI_EXIT_USAGE;
    char *request = publish_request(ctx, channel, data);
    free(stdin_data);
    if (!request)
        return CLI_EXIT_USAGE;
    struct api *api = NULL;
    json_t *answer = NULL;
    status = api_new(ctx, options.url, key_file, &api);
    if (status == CLI_EXIT_OK)
        status = api_post(api, "/api/publish", request, &answer);
    if (status == CLI_EXIT_OK && options.json) {
        char *text = json_dumps(answer, JSON_COMPACT);
        printf("%s\n", text ? text : "{}");
        free(text);
    } else if (status == CLI_EXIT_OK) {
        json_t *first = json_array_get(json_object_get(answer, "published"), 0);
        printf("published to %s (%lld bytes)\n",
               json_string_value(json_object_get(first, "channel")),
               (long long)json_integer_value(json_object_get(first, "bytes")));
    }
    json_decref(answer);
    api_destroy(&api);
    free(request);
    return status;
}
