/* send.h: the relay's write path.  A connection's waiting messages go to its socket as
 * WebSocket frames in one sendmsg(), each frame's header written in the headroom before its
 * payload in the message's shared buffer (nothing copied per recipient); with io_uring, the
 * writes of many connections go to the kernel in one submission.  What a socket does not take
 * is handed back to the caller (lws buffers it and finishes it on POLLOUT).
 *
 * The module knows neither lws nor the route table: a connection is an opaque pointer and a
 * descriptor, and the caller's send_ops say what waits on it and what to do with the rest.
 *
 * Assumptions, and what breaks each:
 * - No TLS on relay connections: frames go to the socket as they are.  TLS in the relay would
 *   have to write through OpenSSL (lws_write), one connection at a time.
 * - No extension negotiated (permessage-deflate stays off): a frame is the same bytes for every
 *   recipient.  A deflated connection would need bytes of its own.
 * - Writes happen only in the loop's own thread and turn, and never while the caller still
 *   holds part of an earlier write for that connection (lws_partial_buffered): those bytes
 *   must go first or the stream interleaves.  The caller checks before each write.
 * - lws never writes these frames; it sees only the rest of a partial write (send_ops.rest,
 *   LWS_WRITE_RAW), which it buffers and finishes before its next writeable callback.  If lws
 *   ever framed or reordered raw writes, the stream would break.
 * - Every payload has SEND_HEADER_MAX bytes of headroom before it (route.c allocates LWS_PRE),
 *   written here with the frame's header: the same bytes for every recipient, so writing them
 *   again for each is harmless.
 * - A message's buffer stays valid from send_ops.peek until send_ops.sent for it (route.c keeps
 *   it until route_sent).
 * Bounds: a write carries at most SEND_FRAMES messages and, past its first, SEND_BYTES bytes;
 * a batch holds SEND_DEPTH writes and is submitted as soon as it is full.  A write the kernel
 * fails ends that connection only (send_ops.done); the others in its batch are unaffected.
 */
#ifndef TW_RELAY_SEND_H
#define TW_RELAY_SEND_H

#include <liburing.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define SEND_FRAMES 32        /* messages in one write to a connection at most */
#define SEND_BYTES 65536      /* bytes of one write, unless its first message is larger */
#define SEND_DEPTH 256        /* connections' writes handed to the kernel in one io_uring_enter */
#define SEND_HEADER_MAX 10    /* bytes of a frame header at most (RFC 6455 5.2, unmasked) */
#define SEND_OPCODE_TEXT 0x1  /* a text frame */
#define SEND_OPCODE_CLOSE 0x8 /* a close frame */

/* What the caller keeps about each connection. */
struct send_ops {
    /* The waiting message after the first n of conn: its payload (with headroom) and length;
     * 0 when no more wait. */
    int (*peek)(void *conn, size_t n, unsigned char **payload, size_t *len);
    /* What the socket did not take of a write, to buffer and finish later: 0, or -1 when the
     * connection failed. */
    int (*rest)(void *conn, const unsigned char *bytes, size_t len);
    /* The first n waiting messages are written (or the connection failed): release them. */
    void (*sent)(void *conn, size_t n);
    /* A batched write is settled: failed says whether to end the connection; otherwise more
     * may wait (peek). */
    void (*done)(void *conn, int failed);
};

/* One write to a connection: its waiting messages' frames, where they lie. */
struct send_write {
    void *conn;
    struct msghdr msg;
    struct iovec iov[SEND_FRAMES];
    size_t len; /* bytes in all */
};

/* The writes of a turn.  Embedded in the relay; send_init / send_fini bracket it. */
struct send_batch {
    const struct send_ops *ops;
    struct io_uring uring;
    int uring_ready; /* io_uring is set up; else every write is its own sendmsg */
    /* Writes queued for the next submission ([0, n)); the last is send_now's own. */
    struct send_write writes[SEND_DEPTH + 1];
    unsigned n;
};

/* Set up the batch, with io_uring when use_uring and the kernel allows it (else plain writes,
 * logged once).  ops is kept until send_fini. */
void send_init(struct send_batch *batch, const struct send_ops *ops, int use_uring);

/* Tear down io_uring.  Safe after send_init whatever it chose. */
void send_fini(struct send_batch *batch);

/* Bytes of the header of a frame of len bytes. */
size_t send_frame_header_size(size_t len);

/* The header of an unmasked, final frame of len bytes with this opcode, written to out (room
 * for SEND_HEADER_MAX bytes); its length returned. */
size_t send_frame_header(unsigned char *out, unsigned char opcode, size_t len);

/* Per-message path: write conn's waiting messages to fd now, in one sendmsg.  0, or -1 when the
 * connection failed.  The caller asks again if more wait. */
int send_now(struct send_batch *batch, void *conn, int fd);

/* Per-message path: queue conn's write for the next submission (nothing when none waits); a
 * full batch goes to the kernel at once.  Only with batch->uring_ready. */
void send_queue(struct send_batch *batch, void *conn, int fd);

/* Per-message path: hand the kernel every queued write in one system call and settle each
 * (send_ops.done).  Nothing when none is queued. */
void send_submit(struct send_batch *batch);

#endif
