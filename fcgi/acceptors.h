/* acceptors.h: the handler's FastCGI threads.
 *
 * [http] threads threads accept on the FastCGI listening socket (fcgi2's FCGX_Accept_r), each
 * with its own app (store connection) and fcgi2 request, and serve one request at a time each.
 * A process so serves that many requests at once; its submissions meet in one intake and share
 * commits, and its nudges leave on one PUSH socket, the intake's app's.  The threads block the stop
 * signals: main waits for them (sigwait) and calls acceptors_stop.
 */
#ifndef TW_FCGI_ACCEPTORS_H
#define TW_FCGI_ACCEPTORS_H

#include <stddef.h>

#include "config.h"

struct acceptors;

/* Make the apps and start the threads on fcgi2's listening socket.  cfg is borrowed and must
 * outlive them.  Caller owns; acceptors_stop() then exit.  NULL with err on failure; threads
 * already started then stay blocked in accept, and the caller exits. */
struct acceptors *acceptors_new(const struct config *cfg, char *err, size_t errlen);

/* Stop taking requests, wait for those under way to be answered and flush the nudges they
 * queued.  The threads stay blocked in accept (the listening socket may be shared with other
 * processes, so it is not shut): the caller exits next. */
void acceptors_stop(struct acceptors *acceptors);

#endif
