/* main.c: taskwire, the operator's command: the global options, then one subcommand of the
 * table below (docs/CLI.md, man taskwire). */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "taskwire.h"

static const struct {
    const char *name;
    command_run run;
    const char *summary;
} commands[] = {
    {"tap", tap_main, "print the task events published on [zmq] events as they happen"},
    {"tasks", tasks_main, "list, show, cancel, retry or delete tasks (admin REST API)"},
    {"status", status_main, "workers, queues and relays (admin REST API)"},
    {"token", token_main, "mint or verify a client's session token ([auth] secret_file)"},
    {"publish", publish_main, "publish a message to a channel (POST /api/publish)"},
    {"history", history_main, "a channel's kept messages after an offset (its history)"},
    {"curve", curve_main, "make a ZeroMQ CURVE key pair, or show a secret key's public key"},
};
#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: taskwire [-c FILE] COMMAND [OPTIONS] [ARGS]\n"
            "       taskwire COMMAND --help\n"
            "\n"
            "  -c, --config FILE  configuration (default $TASKWIRE_CONFIG or %s)\n"
            "  -h, --help         this help\n"
            "\n"
            "commands:\n",
            CLI_DEFAULT_CONFIG);
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nexit status: 0 done, 1 refused or nothing found, 2 usage error,\n"
            "3 the API, store or events endpoint not reached, 4 configuration or key problem\n");
}

int
main(int argc, char **argv)
{
    static const struct option options[] = {CONTEXT_LONG_OPTIONS};
    struct context ctx = {.config_path = getenv("TASKWIRE_CONFIG")};
    if (!ctx.config_path || !*ctx.config_path)
        ctx.config_path = CLI_DEFAULT_CONFIG;
    opterr = 0;
    int option;
    while ((option = getopt_long(argc, argv, CONTEXT_SHORT_OPTIONS, options, NULL)) != -1) {
        if (option == 'h') {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        int done, status = context_common_option(&ctx, option, argv, "", &done);
        if (done)
            return status;
    }
    if (optind >= argc) {
        fprintf(stderr, "taskwire: no command given\n");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(name, commands[i].name) != 0)
            continue;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            fprintf(stderr, "taskwire: cannot initialise libcurl\n");
            return CLI_EXIT_CONFIG;
        }
        ctx.command = name;
        int argc_command = argc - optind;
        char **argv_command = argv + optind;
        optind = 0; /* the subcommand's getopt_long starts afresh */
        int status = commands[i].run(&ctx, argc_command, argv_command);
        context_fini(&ctx);
        curl_global_cleanup();
        return status;
    }
    return context_usage(&ctx, "unknown command '%s'", name);
}
