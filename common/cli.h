/* cli.h: the command line every taskwire program shares.
 *
 *   PROGRAM [-c FILE] [-m HOST:PORT] [-e ENDPOINT] [-n] [-h]
 *
 * -c names the config file (default: $TASKWIRE_CONFIG, else CLI_DEFAULT_CONFIG); -m sets the
 * program's metrics_listen over the file's (so relays sharing one config and one WebSocket port
 * each get a metrics port of their own); -e sets [relay] events_listen likewise (relays sharing a
 * config, each with an ingress endpoint of its own); -n checks it, prints "configuration OK" and
 * exits 0.  Sets up logging from the config's [log] level.
 */
#ifndef TW_COMMON_CLI_H
#define TW_COMMON_CLI_H

#include <signal.h>

#include "config.h"

#define CLI_DEFAULT_CONFIG "/etc/taskwire/taskwire.conf"
#define CLI_RUN (-1) /* cli_setup's answer when the program should go on and run */

/* Parse the arguments and load the config into cfg (caller storage).  Returns CLI_RUN, or the
 * exit status main should return now (0 after -n or -h, 1 for a bad config, 2 for bad usage). */
int cli_setup(int argc, char **argv, const char *program, struct config *cfg);

/* Call stop on SIGINT and SIGTERM (without SA_RESTART, so a blocking call is interrupted)
 * and ignore SIGPIPE. */
void cli_on_stop(void (*stop)(int));

/* Block SIGINT and SIGTERM in this thread, saving the mask in previous, while a program
 * starts the threads (its own, ZeroMQ's) that must never take them: the stop signals then
 * always reach the main loop.  Restore with pthread_sigmask(SIG_SETMASK, previous, NULL). */
void cli_block_stop(sigset_t *previous);

#endif
