/* wire.h: a ZeroMQ socket as the programs make them: its queue bounds and linger set, then
 * bound or connected, one place for what every program's sockets share.
 *
 * Bounds: each socket's queues hold at most its send_hwm / recv_hwm messages (ZeroMQ's
 * policy beyond that depends on the type: a PUB drops, a PUSH blocks or fails with EAGAIN);
 * linger says how long unsent messages may keep a closing socket.
 * With curve set, a socket with a tcp:// endpoint gets CURVE (curve.h): one that binds one is
 * a CURVE server, one that connects to one a CURVE client; inproc:// and ipc:// are left alone.
 * A socket may bind or connect a list of endpoints (a PUSH to every worker pool of [zmq]
 * tasks); immediate sets ZMQ_IMMEDIATE, so messages queue only on connections that are up and
 * a socket with none refuses a send at once (EAGAIN with ZMQ_DONTWAIT) instead of holding it
 * for a peer that may never come.
 */
#ifndef TW_COMMON_WIRE_H
#define TW_COMMON_WIRE_H

#include <stddef.h>
#include <zmq.h>

#include "curve.h"

#define WIRE_DEFAULT (-1) /* an option left at ZeroMQ's default */

struct wire_options {
    int send_hwm;        /* ZMQ_SNDHWM, messages (0: unbounded) or WIRE_DEFAULT */
    int recv_hwm;        /* ZMQ_RCVHWM, messages (0: unbounded) or WIRE_DEFAULT */
    int linger_ms;       /* ZMQ_LINGER or WIRE_DEFAULT */
    const char *bind[2]; /* endpoints to bind (NULL: none) */
    const char *connect; /* the endpoint to connect (NULL: none) */
    const struct config_endpoints *connect_list; /* more endpoints to connect (NULL: none) */
    const struct config_endpoints *bind_list;    /* more endpoints to bind (NULL: none) */
    int immediate;             /* 1: ZMQ_IMMEDIATE (queue only on completed connections) */
    const char *connect_later; /* one the caller connects itself (after a monitor): not
                                  connected here, but the socket is set up for it (CURVE) */
    const struct curve *curve; /* borrowed keys (curve_load), or NULL for plaintext */
};

/* A socket of type (ZMQ_PUSH, ...) in context zmq with these options.  Caller owns; zmq_close.
 * NULL with err naming the endpoint or option that failed. */
void *wire_socket(void *zmq, int type, const struct wire_options *options, char *err,
                  size_t errlen);

/* Receive socket's next frame into msg (initialised by the caller): the first of a message
 * without waiting (first: ZMQ_DONTWAIT), or the next of a message already begun (its frames
 * arrive together, so this does not wait).  A signal that interrupts the call (EINTR, which
 * libzmq can return even with the frame there) is retried: a frame given up halfway through a
 * message would make its next frame look like the start of a new one.  0, or -1 with
 * zmq_errno() set (EAGAIN for a first frame: nothing is waiting). */
int wire_recv(void *socket, zmq_msg_t *msg, int first);

#endif
