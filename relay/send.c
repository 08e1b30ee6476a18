/* send.c: frames written straight to connections' sockets, batched through io_uring (see
 * send.h for what it assumes). */
#include "send.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void
send_init(struct send_batch *batch, const struct send_ops *ops, int use_uring)
{
    batch->ops = ops;
    batch->n = 0;
    batch->uring_ready = 0;
    if (!use_uring)
        return;
    int rc = io_uring_queue_init(SEND_DEPTH, &batch->uring,
                                 IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN);
    if (rc == -EINVAL) /* a kernel older than 6.0 */
        rc = io_uring_queue_init(SEND_DEPTH, &batch->uring, 0);
    if (rc < 0) {
        log_warn("event=io_uring_unavailable error=\"%s\" writes=plain", strerror(-rc));
        return;
    }
    batch->uring_ready = 1;
}

void
send_fini(struct send_batch *batch)
{
    if (batch->uring_ready)
        io_uring_queue_exit(&batch->uring);
    batch->uring_ready = 0;
}

size_t
send_frame_header_size(size_t len)
{
    return len < 126 ? 2 : len <= 0xffff ? 4 : 10;
}

size_t
send_frame_header(unsigned char *out, unsigned char opcode, size_t len)
{
    size_t size = send_frame_header_size(len);
    out[0] = (unsigned char)(0x80 | opcode); /* FIN */
    if (size == 2) {
        out[1] = (unsigned char)len;
    } else {
        out[1] = size == 4 ? 126 : 127; /* a 16- or 64-bit length follows, network order */
        for (size_t i = 2; i < size; i++)
            out[i] = (unsigned char)(len >> (8 * (size - 1 - i)));
    }
    return size;
}

/* Per-message path: one write of conn's waiting messages, as whole frames where they lie: each
 * frame's header goes in the headroom before its payload, and the write points at those
 * buffers.  At most SEND_FRAMES messages, and past the first at most SEND_BYTES.  The number
 * of messages returned, 0 when none waits. */
static size_t
send_prepare(const struct send_ops *ops, void *conn, struct send_write *write)
{
    unsigned char *payload;
    size_t len, n = 0;
    write->conn = conn;
    write->len = 0;
    while (n < SEND_FRAMES && ops->peek(conn, n, &payload, &len)) {
        size_t header = send_frame_header_size(len);
        if (n > 0 && write->len + header + len > SEND_BYTES)
            break;
        send_frame_header(payload - header, SEND_OPCODE_TEXT, len);
        write->iov[n].iov_base = payload - header;
        write->iov[n].iov_len = header + len;
        write->len += header + len;
        n++;
    }
    memset(&write->msg, 0, sizeof write->msg);
    write->msg.msg_iov = write->iov;
    write->msg.msg_iovlen = n;
    return n;
}

/* A prepared write is done: res bytes went, or -errno.  What the socket did not take goes to
 * ops->rest; then the messages are released (ops->sent).  -1 when the connection failed. */
static int
send_settle(const struct send_ops *ops, const struct send_write *write, ssize_t res)
{
    int rc = 0;
    if (res < 0 && res != -EAGAIN) {
        log_debug("event=ws_write_failed error=\"%s\"", strerror((int)-res));
        rc = -1;
    } else {
        size_t skip = res > 0 ? (size_t)res : 0;
        for (size_t i = 0; i < write->msg.msg_iovlen && rc == 0; i++) {
            size_t part = write->iov[i].iov_len;
            if (skip >= part) {
                skip -= part;
                continue;
            }
            rc =
                ops->rest(write->conn, (unsigned char *)write->iov[i].iov_base + skip, part - skip);
            skip = 0;
        }
    }
    ops->sent(write->conn, write->msg.msg_iovlen);
    return rc;
}

int
send_now(struct send_batch *batch, void *conn, int fd)
{
    /* Per-message path: a send costs a system call and a pass through the TCP stack; several
     * frames in one cost little more than one. */
    struct send_write *write = &batch->writes[SEND_DEPTH];
    if (!send_prepare(batch->ops, conn, write))
        return 0;
    ssize_t res = sendmsg(fd, &write->msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    return send_settle(batch->ops, write, res < 0 ? -errno : res);
}

void
send_submit(struct send_batch *batch)
{
    /* Per-message path: each queued write is a non-blocking send, done before the call
     * returns. */
    unsigned left = batch->n;
    while (left > 0) {
        int rc = io_uring_submit_and_wait(&batch->uring, left);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            log_error("event=io_uring_failed error=\"%s\"", strerror(-rc));
            abort(); /* the kernel may still hold the buffers: no safe way on */
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&batch->uring, head, cqe)
        {
            const struct send_write *write = io_uring_cqe_get_data(cqe);
            int failed = send_settle(batch->ops, write, cqe->res) != 0;
            batch->ops->done(write->conn, failed);
            seen++;
        }
        io_uring_cq_advance(&batch->uring, seen);
        left -= seen;
    }
    batch->n = 0;
}

void
send_queue(struct send_batch *batch, void *conn, int fd)
{
    struct send_write *write = &batch->writes[batch->n];
    if (!send_prepare(batch->ops, conn, write))
        return;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&batch->uring); /* SEND_DEPTH entries */
    io_uring_prep_sendmsg(sqe, fd, &write->msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, write);
    if (++batch->n == SEND_DEPTH)
        send_submit(batch);
}
