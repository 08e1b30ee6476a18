/* main.c: taskwire.fcgi, the REST API as a FastCGI responder (or a CGI program: when not
 * started under FastCGI it serves exactly one request from its environment and stdio). */
#include <fcgiapp.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include "acceptors.h"
#include "admin.h"
#include "app.h"
#include "cli.h"
#include "errors.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "router.h"

#define MAIN_MALLOC_KEEP (4 << 20) /* bytes of freed heap a handler process keeps for reuse */

/* CGI: one request, then the app's PUSH socket flushes its nudge as it closes. */
static int
serve_cgi(const struct config *cfg)
{
    char err[512];
    struct app *app = app_new(cfg, NULL, NULL, NULL, err, sizeof err);
    if (!app) {
        log_error("event=start_failed error=\"%s\"", err);
        return 1;
    }
    struct request req;
    if (request_init(&req, NULL) == 0)
        router_dispatch(app, &req, NULL);
    else
        reply_error(&req, TW_E_NOT_FOUND, "path too long");
    app_destroy(&app);
    return 0;
}

int
main(int argc, char **argv)
{
    static struct config cfg;
    int status = cli_setup(argc, argv, "taskwire.fcgi", &cfg);
    if (status != CLI_RUN)
        return status;
    signal(SIGPIPE, SIG_IGN); /* a client gone while we answer is an error, not our end */
    /* libcurl (the admin API's relay requests) only where the admin API is on. */
    if (cfg.admin_key_file[0] && admin_global_init() != 0) {
        log_error("event=start_failed error=\"cannot initialise libcurl\"");
        return 1;
    }
    if (FCGX_IsCGI())
        return serve_cgi(&cfg);

    /* Each request frees what it allocated (fcgi2's streams, SQLite's and jansson's buffers):
     * glibc's default gave that memory back to the kernel after most requests and faulted it
     * in again on the next.  Keep up to MAIN_MALLOC_KEEP of it for reuse. */
    mallopt(M_TRIM_THRESHOLD, MAIN_MALLOC_KEEP);
    mallopt(M_MMAP_THRESHOLD, MAIN_MALLOC_KEEP / 4);
    /* The serving threads inherit the blocked stop signals; this thread waits for one.  An
     * idle handler then leaves at once; one with requests under way answers them first. */
    sigset_t previous, stop_signals;
    cli_block_stop(&previous);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    char err[512];
    struct acceptors *acceptors = acceptors_new(&cfg, err, sizeof err);
    if (!acceptors) {
        log_error("event=start_failed error=\"%s\"", err);
        _exit(1);
    }
    int signal_number;
    while (sigwait(&stop_signals, &signal_number) != 0)
        ;
    acceptors_stop(acceptors);
    /* The threads stay blocked waiting for a connection on a socket other processes may
     * share, or for their turn at it. */
    _exit(0);
}
