/* acceptors.h: the handler's FastCGI threads.
 *
 * [http] threads threads take turns at the FastCGI listening socket (fcgi2's FCGX_Accept_r),
 * each with its own app (store connection).  The thread whose turn it is waits for a
 * connection, then takes every other one already waiting, ACCEPTORS_BATCH_MAX requests at
 * most, hands the turn on and serves what it took: it answers the other requests one by one
 * and inserts all their task submissions in one call, so they share a commit and a disk flush
 * (with other threads' too, in the process's intake), then answers those.  Taking what waits
 * instead of one request per wake-up spares a thread hand-off and a context switch per
 * request, which under load cost more than the request's own work.  A request whose body
 * arrives slowly holds up the others of its batch (never other threads'); lighttpd and nginx
 * send the body whole, and Apache's mod_proxy_fcgi as it receives it.
 * The process's nudges leave on one PUSH socket, the intake's app's.  The threads block the
 * stop signals: main waits for them (sigwait) and calls acceptors_stop.
 */
#ifndef TW_FCGI_ACCEPTORS_H
#define TW_FCGI_ACCEPTORS_H

#include <stddef.h>

#include "config.h"

#define ACCEPTORS_BATCH_MAX 16 /* requests one thread takes at once; at most the web server's */

struct acceptors;

/* Make the apps and start the threads on fcgi2's listening socket (made non-blocking: a thread
 * polls it for its first connection).  cfg is borrowed and must outlive them.  Caller owns;
 * acceptors_stop() then exit.  NULL with err on failure; threads already started then stay
 * blocked, and the caller exits. */
struct acceptors *acceptors_new(const struct config *cfg, char *err, size_t errlen);

/* Stop taking requests, wait for those under way to be answered and flush the nudges they
 * queued.  The threads stay blocked waiting for a connection or their turn (the listening
 * socket may be shared with other processes, so it is not shut): the caller exits next. */
void acceptors_stop(struct acceptors *acceptors);

#endif
