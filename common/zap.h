/* zap.h: the guard of a binding program's CURVE sockets ([zmq] curve = true: the worker pool's,
 * and a relay's ingress with [relay] events_listen): a ZAP handler (ZeroMQ RFC 27, a REP socket
 * on ZAP_ENDPOINT in the program's context) that lets in exactly the public keys of
 * curve_clients_file and refuses every other with status 400, and a monitor of the program's
 * bound sockets that logs each handshake failing for another reason (a plaintext peer, a
 * peer with a wrong server key).  One thread serves both.
 *
 * Bounds: a ZAP request's frames are read whole, at most ZAP_FRAMES_MAX kept (the rest dropped,
 * the request answered 500 as malformed); nothing of a request outlives its reply.  The log:
 * at most ZAP_LOG_BURST lines of refusals and failures per ZAP_LOG_WINDOW_MS, then one line
 * with the count of those left out, so a flood of bad peers writes at most about ZAP_LOG_BURST
 * + 1 lines (under 10 KiB) a minute.
 */
#ifndef TW_COMMON_ZAP_H
#define TW_COMMON_ZAP_H

#include <stddef.h>
#include <stdint.h>

#include "curve.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01" /* where libzmq asks (RFC 27) */
#define ZAP_MONITORS_MAX 4                    /* bound sockets watched at most */
#define ZAP_FRAMES_MAX 8                      /* frames of a request kept (a CURVE request has 7) */
#define ZAP_PEER_MAX 64                       /* bytes of a peer address logged, NUL included */
#define ZAP_LOG_WINDOW_MS 60000               /* the log's window */
#define ZAP_LOG_BURST 20                      /* refusal and failure lines per window */

struct zap;

/* A frame of a ZAP request, borrowed. */
struct zap_frame {
    const uint8_t *data;
    size_t size;
};

/* What to answer a request, and what to log. */
struct zap_verdict {
    const char *status;          /* "200", "400" or "500" */
    const char *text;            /* status text */
    struct zap_frame request_id; /* echoed (empty when the request had none) */
    char peer[ZAP_PEER_MAX];     /* the peer's address, printable, or "-" */
    char key[CURVE_KEY_Z85 + 1]; /* the offered public key in Z85, or "-" */
};

/* Decide a request of count frames (after the REP envelope): 200 for a CURVE request naming an
 * allowed key, 400 for any other key or mechanism, 500 for a malformed request.  Never reads
 * beyond the frames given. */
void zap_decide(const struct curve *curve, const struct zap_frame *frames, size_t count,
                struct zap_verdict *verdict);

/* Why a handshake failed, in words, from a monitor's event (ZMQ_EVENT_HANDSHAKE_FAILED_*) and
 * value.  A string literal. */
const char *zap_handshake_reason(uint16_t event, uint32_t value);

/* Bind the ZAP handler in context zmq (before any CURVE socket of it binds).  curve is
 * borrowed until zap_destroy.  Caller owns; zap_destroy().  NULL with err. */
struct zap *zap_new(void *zmq, const struct curve *curve, char *err, size_t errlen);

/* Watch socket's handshake failures (call from the socket's thread, before zap_start); name
 * says which in the log (a string literal).  0, or -1 with err. */
int zap_monitor(struct zap *zap, void *socket, const char *name, char *err, size_t errlen);

/* Serve in a thread of its own.  0, or -1 with err. */
int zap_start(struct zap *zap, char *err, size_t errlen);

/* Free.  Once started, the thread ends when the context is shut down (zmq_ctx_shutdown),
 * which must come first; this joins it.  NULL-safe; nulls *zap. */
void zap_destroy(struct zap **zap);

#endif
