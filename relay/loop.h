/* loop.h: the descriptors the relay serves itself, in one epoll set: the listening socket, the
 * ZeroMQ SUB, and every connection (lws's until its handshake is done, then the relay's own
 * reader, receive.h).
 *
 * Why: lws 4.1's service is one poll() over every descriptor it holds, so an event that needs
 * lws's turn costs time in proportion to the connections (a connect storm: a turn, and a scan
 * of all, for each few connections).  Here a ready descriptor costs its own work only.  lws
 * keeps its poll set and still gets a full turn (lws_service) for what only it does: its
 * timers, the output it buffered, the closes it runs; that turn's poll() leaves out the
 * connections lws asks nothing of (lwspoll.h).  While events flow the loop waits here
 * and gives lws a full turn RELAY_FULL_TURN_US after the last when lws has work, else
 * RELAY_TIMER_TURN_US after it (relay.c); once a whole turn passes without an event, it sleeps
 * in lws_service, where this set's descriptor is one of lws's (the "taskwire-loop" protocol)
 * and wakes it.
 *
 * What is watched, and how:
 * - the listening socket, level-triggered: accept (listener.c);
 * - the SUB's ZMQ_FD, level-triggered: the SUB may hold messages (ingress.c drains);
 * - a connection until its handshake is done, edge-triggered: lws reads it (lws_service_fd with
 *   POLLIN).  Edge-triggered because lws may leave bytes it does not want yet; its own poll
 *   finds them at the next full turn, so nothing spins and nothing is lost;
 * - an established connection, level-triggered: the relay reads it (session.c);
 * - a descriptor only lws serves (the ZeroMQ monitor), edge-triggered: when it is ready, lws
 *   gets its full turn within RELAY_FULL_TURN_US.
 * A closed descriptor leaves the set by itself (each is in it once and never dup'ed), so a
 * number lws closes and accept() hands out again is watched afresh.
 * Bounds: LOOP_BATCH events per wait; more wait for the next (loop_ready stays set).
 */
#ifndef TW_RELAY_LOOP_H
#define TW_RELAY_LOOP_H

#include <stddef.h>
#include <stdint.h>

#define LOOP_BATCH 256 /* events taken from the set per wait */

struct relay;
struct session;

/* What a watched descriptor is. */
enum loop_kind {
    LOOP_LISTENER = 1,  /* the listening socket */
    LOOP_INGRESS = 2,   /* the SUB's ZMQ_FD */
    LOOP_HANDSHAKE = 3, /* a connection lws has not handed over yet */
    LOOP_LWS = 4,       /* a descriptor lws serves in its full turn (the ZeroMQ monitor) */
};

/* Create the set.  0, or -1 with err set. */
int loop_init(struct relay *relay, char *err, size_t errlen);

/* Hand the set's descriptor to lws's poll set (after the vhost exists).  0, or -1. */
int loop_start(struct relay *relay, char *err, size_t errlen);

/* Close the set if lws does not own it. */
void loop_fini(struct relay *relay);

/* Watch fd as kind.  0, or -1 (errno set). */
int loop_watch(struct relay *relay, int fd, enum loop_kind kind);

/* The connection fd is established: watch its input for session (level-triggered).  0, or -1
 * (errno set). */
int loop_watch_session(struct relay *relay, int fd, struct session *session);

/* Stop watching fd.  Harmless when it is not watched. */
void loop_unwatch(struct relay *relay, int fd);

/* A connection before its handshake is done, with input (events as epoll reports them): lws
 * reads it, as its own poll would have. */
void loop_handshake(struct relay *relay, int fd, uint32_t events);

/* Wait at most timeout_us (0: not at all) for ready descriptors and serve each.  The number
 * served; leaves relay->loop_ready set when more may be ready. */
int loop_serve(struct relay *relay, int64_t timeout_us);

#endif
