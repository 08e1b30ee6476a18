/* context.c: the configuration loaded on demand, messages on stderr, and the options and
 * values every subcommand parses alike. */
#include "taskwire.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
context_verror(const struct context *ctx, const char *format, va_list args)
{
    char message[CLI_MESSAGE_MAX];
    vsnprintf(message, sizeof message, format, args);
    if (ctx->command)
        fprintf(stderr, "taskwire: %s: %s\n", ctx->command, message);
    else
        fprintf(stderr, "taskwire: %s\n", message);
}

void
context_error(const struct context *ctx, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    context_verror(ctx, format, args);
    va_end(args);
}

int
context_usage(const struct context *ctx, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    context_verror(ctx, format, args);
    va_end(args);
    fprintf(stderr, "Try 'taskwire %s%s--help'.\n", ctx->command ? ctx->command : "",
            ctx->command ? " " : "");
    return CLI_EXIT_USAGE;
}

int
context_config(struct context *ctx, const struct config **cfg)
{
    if (!ctx->cfg) {
        char err[512];
        struct config *loaded = malloc(sizeof *loaded);
        if (!loaded) {
            context_error(ctx, "out of memory");
            return CLI_EXIT_CONFIG;
        }
        if (config_load(loaded, ctx->config_path, err, sizeof err) != 0) {
            context_error(ctx, "%s", err);
            free(loaded);
            return CLI_EXIT_CONFIG;
        }
        ctx->cfg = loaded;
    }
    *cfg = ctx->cfg;
    return CLI_EXIT_OK;
}

int
context_publish_key_file(struct context *ctx, const char *key_file, const char **path)
{
    if (key_file) {
        *path = key_file;
        return CLI_EXIT_OK;
    }
    const struct config *cfg;
    int status = context_config(ctx, &cfg);
    if (status != CLI_EXIT_OK)
        return status;
    if (!cfg->publish_key_file[0]) {
        context_error(ctx,
                      "%s: [channels] publish_key_file is not set (the publish API is off); "
                      "give --key-file",
                      cfg->path);
        return CLI_EXIT_CONFIG;
    }
    *path = cfg->publish_key_file;
    return CLI_EXIT_OK;
}

void
context_fini(struct context *ctx)
{
    free(ctx->cfg);
    ctx->cfg = NULL;
}

int
context_integer(const char *text, long long min, long long max, long long *value)
{
    char *end;
    errno = 0;
    long long parsed = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < min || parsed > max)
        return -1;
    *value = parsed;
    return 0;
}

int
context_is_id(const char *text)
{
    return strlen(text) == 32 && strspn(text, "0123456789abcdef") == 32;
}

int
context_common_option(struct context *ctx, int option, char **argv, const char *help, int *done)
{
    *done = 1;
    switch (option) {
    case 'c':
        ctx->config_path = optarg;
        *done = 0;
        return CLI_EXIT_OK;
    case 'h':
        fputs(help, stdout);
        return CLI_EXIT_OK;
    case ':':
        return context_usage(ctx, "option '%s' needs a value", argv[optind - 1]);
    default:
        return context_usage(ctx, "unknown option '%s'", argv[optind - 1]);
    }
}
