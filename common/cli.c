/* cli.c: argument parsing and config loading shared by the three programs' main(). */
#include "cli.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "curve.h"
#include "metrics.h"

/* -m: the program's own metrics_listen ([relay] or [worker]; the one it does not read is
 * harmless), empty or host:port.  0, or -1. */
static int
cli_metrics_override(struct config *cfg, const char *value)
{
    char host[METRICS_HOST_MAX];
    int port;
    if ((value[0] && metrics_listen_parse(value, host, sizeof host, &port) != 0) ||
        strlen(value) >= sizeof cfg->relay_metrics_listen)
        return -1;
    strcpy(cfg->relay_metrics_listen, value);
    strcpy(cfg->worker_metrics_listen, value);
    return 0;
}

/* -n reads the CURVE key files too, as the program will: the worker binds (its secret and the
 * clients it allows), and so does a relay with events_listen; every other program connects
 * (its secret and the pool's public key), and so does every relay (its PUSH to [zmq] tasks),
 * as does the handler on PostgreSQL too (its PUSH carries the publish API's messages).  0, or
 * -1 with err naming the file. */
static int
cli_check_curve(const struct config *cfg, const char *program, char *err, size_t errlen)
{
    if (!cfg->curve)
        return 0;
    struct curve *curve = NULL;
    int worker = strcmp(program, "taskwire-worker") == 0;
    int binds = worker || (strcmp(program, "taskwire-relay") == 0 && cfg->relay_events_listen[0]);
    int rc = curve_load(cfg, binds ? CURVE_ROLE_SERVER : CURVE_ROLE_CLIENT, NULL, 0, &curve, err,
                        errlen);
    curve_destroy(&curve);
    /* A relay's PUSH: without the pool's key it runs without one (relay/upstream.h). */
    if (rc == 0 && binds && !worker && cfg->curve_server_public_file[0])
        rc = curve_load(cfg, CURVE_ROLE_CLIENT, NULL, 0, &curve, err, errlen);
    curve_destroy(&curve);
    return rc;
}

int
cli_setup(int argc, char **argv, const char *program, struct config *cfg)
{
    const char *path = getenv("TASKWIRE_CONFIG");
    const char *metrics_listen = NULL, *events_listen = NULL;
    int check_only = 0;
    int option;
    if (!path || !*path)
        path = CLI_DEFAULT_CONFIG;
    while ((option = getopt(argc, argv, "c:m:e:nh")) != -1) {
        switch (option) {
        case 'c':
            path = optarg;
            break;
        case 'm':
            metrics_listen = optarg;
            break;
        case 'e':
            events_listen = optarg;
            break;
        case 'n':
            check_only = 1;
            break;
        case 'h':
            printf("usage: %s [-c FILE] [-m HOST:PORT] [-e ENDPOINT] [-n]\n"
                   "  -c FILE       configuration file (default $TASKWIRE_CONFIG or %s)\n"
                   "  -m HOST:PORT  serve metrics here (overrides metrics_listen; '' turns "
                   "them off)\n"
                   "  -e ENDPOINT   the relay's events_listen (overrides the file's; '' connects "
                   "to [zmq] events)\n"
                   "  -n            check the configuration and exit\n",
                   program, CLI_DEFAULT_CONFIG);
            return 0;
        default:
            fprintf(stderr, "usage: %s [-c FILE] [-m HOST:PORT] [-e ENDPOINT] [-n]\n", program);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", program, argv[optind]);
        return 2;
    }
    char err[512];
    if (config_load(cfg, path, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", program, err);
        return 1;
    }
    if (metrics_listen && cli_metrics_override(cfg, metrics_listen) != 0) {
        fprintf(stderr, "%s: -m %s is not host:port\n", program, metrics_listen);
        return 2;
    }
    if (events_listen &&
        ((events_listen[0] && !config_endpoint_valid(events_listen, strlen(events_listen))) ||
         strlen(events_listen) >= sizeof cfg->relay_events_listen)) {
        fprintf(stderr, "%s: -e %s is not a tcp:// or ipc:// endpoint\n", program, events_listen);
        return 2;
    }
    if (events_listen)
        strcpy(cfg->relay_events_listen, events_listen);
    log_setup(program, cfg->log_level);
    if (check_only && cli_check_curve(cfg, program, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", program, err);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration OK\n", path);
        return 0;
    }
    return CLI_RUN;
}

void
cli_on_stop(void (*stop)(int))
{
    struct sigaction action = {.sa_handler = stop};
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void
cli_block_stop(sigset_t *previous)
{
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, previous);
}
