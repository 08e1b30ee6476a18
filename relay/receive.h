/* receive.h: what a WebSocket client sends, read from its socket by the relay and checked frame
 * by frame by wslay's parser.
 *
 * Why the relay reads, not lws: libwebsockets 4.1 (Debian 12's) accepts unmasked client frames
 * (RFC 6455 5.1 says a server must fail them), and the relay wants one parser that checks all
 * of RFC 6455 on input: masking, reserved bits, opcodes, control frames (at most 125 bytes,
 * never fragmented, allowed between fragments), continuation order, UTF-8 of text messages
 * (also split across fragments) and of close reasons, close codes, and the message size.  So
 * lws does the opening handshake, and from LWS_CALLBACK_ESTABLISHED on the relay keeps lws from
 * reading the connection (rx flow control) and reads it here.  Writes stay where they are
 * (session.c and lws).
 *
 * Assumptions, and what breaks each:
 * - No TLS on relay connections: the bytes on the socket are the frames.  TLS (in the relay
 *   itself rather than in the web server in front) would have to read through OpenSSL here.
 * - No extension is negotiated: any reserved bit fails the connection (1002).  Turning on
 *   permessage-deflate would need RSV1 and inflating here.
 * - lws never reads an established connection (session.c turns its rx flow control off at
 *   ESTABLISHED): bytes lws read would be missing from this parser's stream.
 * - The client sends nothing between its upgrade request and the server's 101 (RFC 6455 4.1
 *   forbids it).  Frames sent with the request are read by lws with it and held, never seen
 *   here: the connection goes on without them (the web servers in front forward them only
 *   after the 101, so there they are read here as usual).  Should lws hand them to the
 *   protocol callback, it fails the connection with 1002 (protocol.c).
 *
 * State and bounds: nothing between messages (an idle connection costs no byte here).  While a
 * frame or a fragmented message is incomplete, or a pong is owed, one wslay context (about
 * 4.5 KiB, mostly wslay's read buffer), freed as soon as neither holds.  A message of at most
 * max_message bytes in all its fragments (more fails with 1009).  At most RECEIVE_TURN_BYTES
 * are read per call: a client that floods waits for the next turn of the loop while others are
 * served.  Replies are not queued: the owed pong carries the latest ping's payload only (RFC
 * 6455 5.5.3 allows answering only the most recent ping), and wslay's own reply queue is
 * emptied after every call without being sent.
 */
#ifndef TW_RELAY_RECEIVE_H
#define TW_RELAY_RECEIVE_H

#include <stddef.h>
#include <stdint.h>

#define RECEIVE_TURN_BYTES 16384 /* bytes read from one connection per call at most */
#define RECEIVE_PONG_MAX 125     /* bytes of a ping's payload (a control frame's at most) */

/* RFC 6455 7.4.1 close codes this module fails a connection with. */
#define RECEIVE_CLOSE_PROTOCOL 1002    /* a frame RFC 6455 forbids */
#define RECEIVE_CLOSE_UNSUPPORTED 1003 /* a binary message: the relay speaks JSON text */
#define RECEIVE_CLOSE_BAD_DATA 1007    /* text (or a close reason) that is not UTF-8 */
#define RECEIVE_CLOSE_TOO_BIG 1009     /* a message of more than max_message bytes */
#define RECEIVE_CLOSE_INTERNAL 1011    /* out of memory */

struct receive;

/* What the client did.  Each is called with the owner given to receive_read. */
struct receive_handler {
    /* A whole text message, valid UTF-8, borrowed for the call. */
    void (*text)(void *owner, const unsigned char *text, size_t len);
    /* A ping: a pong is owed, its payload in receive_take_pong(). */
    void (*ping)(void *owner);
    void (*pong)(void *owner);
    /* The client started the closing handshake with code (0: it sent none). */
    void (*close)(void *owner, uint16_t code);
    /* The client broke RFC 6455: fail the connection with code (RECEIVE_CLOSE_*). */
    void (*fail_connection)(void *owner, uint16_t code);
    /* The client's side of the TCP connection ended, or the socket failed. */
    void (*end)(void *owner);
};

/* Read what fd holds (at most RECEIVE_TURN_BYTES) and report each event to handler, a message
 * of more than max_message bytes failing the connection with 1009.  max_message may change
 * between calls (the relay allows its first message, the auth message, more): the limit of the
 * call that completes a message is the one it is held to.  *state is
 * NULL between messages; this keeps it while a frame or message is incomplete or a pong is owed
 * (free with receive_destroy).  Returns 0 while the connection may send more, 1 once reading is
 * over (after close, fail or end: call no more). */
int receive_read(struct receive **state, int fd, size_t max_message,
                 const struct receive_handler *handler, void *owner);

/* The owed pong's payload, copied to out (RECEIVE_PONG_MAX bytes of room): its length, or -1
 * when no pong is owed.  Clears it, and frees *state when nothing else holds it. */
int receive_take_pong(struct receive **state, unsigned char *out);

/* Free the state.  NULL-safe; nulls *state. */
void receive_destroy(struct receive **state);

#endif
