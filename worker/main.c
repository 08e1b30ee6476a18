/* taskwire-worker: runs queued tasks and publishes their progress.
 *
 *   taskwire-worker [-c FILE] [-m HOST:PORT] [-n]
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "notify.h"
#include "pool.h"

static volatile sig_atomic_t worker_quit;

static void
worker_on_signal(int signo)
{
    (void)signo;
    worker_quit = 1;
}

int
main(int argc, char **argv)
{
    static struct config cfg;
    int rc = cli_setup(argc, argv, "taskwire-worker", &cfg);
    if (rc != CLI_RUN)
        return rc;

    cli_on_stop(worker_on_signal);
    /* Threads started by the pool (and ZeroMQ's) keep these blocked, so the signal
     * interrupts the main loop's poll. */
    sigset_t previous;
    cli_block_stop(&previous);
    char err[512];
    struct pool *pool = pool_new(&cfg, err, sizeof err);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (!pool) {
        log_error("event=start_failed error=\"%s\"", err);
        return 1;
    }
    log_info("event=started pid=%d concurrency=%d metrics=%s", (int)getpid(), cfg.concurrency,
             cfg.worker_metrics_listen[0] ? cfg.worker_metrics_listen : "off");
    notify_ready("running tasks");
    pool_run(pool, &worker_quit);
    notify_stopping();
    pool_destroy(&pool);
    log_info("event=stopped");
    return 0;
}
