/* taskwire-relay: delivers task events to the browsers subscribed to each client id.
 *
 *   taskwire-relay [-c FILE] [-m HOST:PORT] [-n]
 */
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "notify.h"
#include "relay.h"

static volatile sig_atomic_t relay_quit;

#define RELAY_STOP_DEADLINE_S 5     /* after a stop signal, the process is gone within this */
#define RELAY_TRIM_BYTES (16 << 20) /* free memory a malloc heap keeps before giving it back */

static void
relay_on_signal(int signo)
{
    (void)signo;
    relay_quit = 1;
    /* The stop closes connections for at most a second; should anything hang past the
     * deadline, SIGALRM's default action ends the process. */
    alarm(RELAY_STOP_DEADLINE_S);
}

int
main(int argc, char **argv)
{
    static struct config cfg;
    int rc = cli_setup(argc, argv, "taskwire-relay", &cfg);
    if (rc != CLI_RUN)
        return rc;

    /* ZeroMQ's I/O thread reads into buffers of its own malloc arena, and the loop frees them
     * once their messages are routed.  With glibc's default threshold that arena's heap gave
     * its top back to the kernel and faulted it in again thousands of times a second. */
    mallopt(M_TRIM_THRESHOLD, RELAY_TRIM_BYTES);
    cli_on_stop(relay_on_signal);
    /* ZeroMQ's threads keep the stop signals blocked, so they interrupt the event loop. */
    sigset_t previous;
    cli_block_stop(&previous);
    char err[512];
    struct relay *relay = relay_new(&cfg, err, sizeof err);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (!relay) {
        log_error("event=start_failed error=\"%s\"", err);
        return 1;
    }
    log_info("event=started pid=%d listen=%s port=%d writes=%s metrics=%s relay=%s presence=%s",
             (int)getpid(), cfg.relay_listen, cfg.relay_port,
             relay->send.uring_ready ? "io_uring" : "plain",
             cfg.relay_metrics_listen[0] ? cfg.relay_metrics_listen : "off",
             relay->upstream.relay_id, relay->upstream.presence ? "on" : "off");
    notify_ready("serving WebSockets");
    relay_run(relay, &relay_quit);
    notify_stopping();
    relay_destroy(&relay);
    log_info("event=stopped");
    return 0;
}
