/* taskwire.h: what the subcommands of the `taskwire` operator command share.
 *
 *   taskwire [-c FILE] COMMAND [OPTIONS] [ARGS]
 *
 * Each subcommand is one function of (context, argc, argv) with argv[0] its own name; it parses
 * its options with getopt_long (every one takes -c FILE and -h/--help as well), writes results
 * on stdout and errors on stderr (through context_error), and returns one of the CLI_EXIT_*
 * statuses main returns.  The configuration is read only when a subcommand needs a setting its
 * options did not give (context_config), so `taskwire tasks --url U --key-file K ...` works on a
 * host without taskwire.conf.
 */
#ifndef TW_CLI_TASKWIRE_H
#define TW_CLI_TASKWIRE_H

#include <stddef.h>

#include "config.h"

/* Exit statuses, as the man page states them. */
enum cli_exit {
    CLI_EXIT_OK = 0,          /* done */
    CLI_EXIT_REFUSED = 1,     /* refused or nothing found: 4xx, an invalid token, --count unmet */
    CLI_EXIT_USAGE = 2,       /* bad command line */
    CLI_EXIT_UNREACHABLE = 3, /* the API, the store behind it or the events endpoint not reached */
    CLI_EXIT_CONFIG = 4,      /* configuration, key or secret unreadable, or the key refused */
};

#define CLI_MESSAGE_MAX 1024 /* bytes of one error message on stderr */

struct context {
    const char *config_path; /* -c, else $TASKWIRE_CONFIG, else CLI_DEFAULT_CONFIG */
    const char *command;     /* "tasks list": names the subcommand in messages */
    struct config *cfg;      /* loaded by context_config on first need; NULL before */
};

/* A subcommand: (context, argc, argv) with argv[0] its name; returns an enum cli_exit. */
typedef int (*command_run)(struct context *ctx, int argc, char **argv);

int tap_main(struct context *ctx, int argc, char **argv);
int tasks_main(struct context *ctx, int argc, char **argv);
int token_main(struct context *ctx, int argc, char **argv);
int status_main(struct context *ctx, int argc, char **argv);
int curve_main(struct context *ctx, int argc, char **argv);
int publish_main(struct context *ctx, int argc, char **argv);
int history_main(struct context *ctx, int argc, char **argv);

/* "taskwire: COMMAND: message" and a newline on stderr. */
void context_error(const struct context *ctx, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* A usage error: the message, a pointer to --help, and CLI_EXIT_USAGE. */
int context_usage(const struct context *ctx, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* The configuration, loaded from ctx->config_path on the first call: 0 and *cfg (borrowed
 * until context_fini), or CLI_EXIT_CONFIG after saying why. */
int context_config(struct context *ctx, const struct config **cfg);

/* The file of the publish key: key_file when the command was given one (--key-file), else the
 * configuration's [channels] publish_key_file.  CLI_EXIT_OK and *path (borrowed), or
 * CLI_EXIT_CONFIG after saying why (neither is set: the publish API is off). */
int context_publish_key_file(struct context *ctx, const char *key_file, const char **path);

/* Free what context_config loaded. */
void context_fini(struct context *ctx);

/* Parse text as an integer min..max into *value: 0, or -1 (nothing written). */
int context_integer(const char *text, long long min, long long max, long long *value);

/* 1 when text is a task or client id (32 lowercase hex digits), else 0. */
int context_is_id(const char *text);

/* The options every subcommand takes besides its own: -c FILE, -h/--help.  A subcommand's
 * getopt_long table ends with these (CONTEXT_LONG_OPTIONS) and its short options string
 * starts with CONTEXT_SHORT_OPTIONS; context_common_option handles them and getopt's answers
 * for an unknown option or a missing value ('?', ':'; argv is the command's, for the message).
 * Returns 0 with *done clear to go on, or an enum cli_exit with *done set: the command returns
 * it now (0 after --help, CLI_EXIT_USAGE after a bad option).  help is the command's usage. */
#define CONTEXT_SHORT_OPTIONS "+:c:h"
#define CONTEXT_LONG_OPTIONS                                                                       \
    {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'},                    \
    {                                                                                              \
        NULL, 0, NULL, 0                                                                           \
    }
int context_common_option(struct context *ctx, int option, char **argv, const char *help,
                          int *done);

#endif
