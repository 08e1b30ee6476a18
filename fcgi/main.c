/* main.c: taskwire.fcgi, the REST API as a FastCGI responder (or a CGI program: fcgi2 falls
 * back to CGI when not started under FastCGI, and then serves exactly one request). */
#include <fcgi_stdio.h>
#include <signal.h>
#include <unistd.h>

#include "app.h"
#include "cli.h"
#include "errors.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "router.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t in_request;

/* fcgi2 retries an accept interrupted by a signal, so an idle handler leaves at once; one in
 * the middle of a request finishes it first. */
static void
on_signal(int signal_number)
{
    (void)signal_number;
    if (!in_request)
        _exit(0);
    stop_requested = 1;
}

int
main(int argc, char **argv)
{
    static struct config cfg;
    int status = cli_setup(argc, argv, "taskwire.fcgi", &cfg);
    if (status != CLI_RUN)
        return status;

    /* No SA_RESTART: a signal interrupts the blocking accept so the loop can end cleanly. */
    cli_on_stop(on_signal);

    char err[512];
    struct app *app = app_new(&cfg, err, sizeof err);
    if (!app) {
        log_error("event=start_failed error=\"%s\"", err);
        return 1;
    }
    while (!stop_requested && FCGI_Accept() >= 0) {
        in_request = 1;
        struct request req;
        if (request_init(&req) == 0)
            router_dispatch(app, &req);
        else
            reply_error(TW_E_NOT_FOUND, "path too long");
        FCGI_Finish();
        in_request = 0;
    }
    app_destroy(&app);
    return 0;
}
