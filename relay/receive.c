/* receive.c: a client's frames through wslay's event parser (see receive.h for why and what it
 * assumes). */
#include "receive.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <wslay/wslay.h>

struct receive {
    wslay_event_context_ptr wslay;
    int fd;
    const struct receive_handler *handler;
    void *owner;
    size_t turn;         /* bytes read in this call */
    size_t max_message;  /* this call's limit on a message (wslay's holds from a frame's start) */
    uint64_t fed;        /* bytes handed to wslay in all */
    uint64_t framed;     /* bytes of the frames wslay has finished */
    uint64_t frame;      /* bytes (header and payload) of the frame under way */
    int in_message;      /* a fragmented message waits for its last fragment */
    int ended;           /* the socket said end of stream, or failed */
    int closed;          /* the client's close arrived */
    uint16_t close_code; /* its code, 0 if none */
    uint16_t fail_code;  /* a failure found here rather than by wslay */
    int pong_owed;
    size_t pong_len;
    unsigned char pong[RECEIVE_PONG_MAX];
};

static ssize_t
receive_recv(wslay_event_context_ptr wslay, uint8_t *buf, size_t len, int flags, void *data)
{
    (void)flags;
    struct receive *rx = data;
    if (rx->turn >= RECEIVE_TURN_BYTES) {
        wslay_event_set_error(wslay, WSLAY_ERR_WOULDBLOCK); /* the rest waits for next turn */
        return -1;
    }
    if (len > RECEIVE_TURN_BYTES - rx->turn)
        len = RECEIVE_TURN_BYTES - rx->turn;
    ssize_t n = recv(rx->fd, buf, len, MSG_DONTWAIT);
    if (n > 0) {
        rx->turn += (size_t)n;
        rx->fed += (uint64_t)n;
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        wslay_event_set_error(wslay, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    rx->ended = 1;
    wslay_event_set_error(wslay, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

/* The relay never sends through wslay: what it queues (pongs, close echoes) is dropped here,
 * and the relay writes its own replies (session.c). */
static ssize_t
receive_discard(wslay_event_context_ptr wslay, const uint8_t *data, size_t len, int flags,
                void *user)
{
    (void)wslay, (void)data, (void)flags, (void)user;
    return (ssize_t)len;
}

/* Bytes of a masked frame's header with this payload length (RFC 6455 5.2).  wslay fails an
 * unmasked client frame before it reports the frame's start, so every frame here is masked. */
static uint64_t
receive_header_size(uint64_t payload)
{
    return 2 + (payload < 126 ? 0 : payload <= 0xffff ? 2 : 8) + 4;
}

static void
receive_frame_start(wslay_event_context_ptr wslay,
                    const struct wslay_event_on_frame_recv_start_arg *arg, void *data)
{
    (void)wslay;
    struct receive *rx = data;
    rx->frame = receive_header_size(arg->payload_length) + arg->payload_length;
    if (!(arg->opcode & 0x8)) /* text, binary or continuation: a control frame leaves it be */
        rx->in_message = !arg->fin;
}

static void
receive_frame_end(wslay_event_context_ptr wslay, void *data)
{
    (void)wslay;
    struct receive *rx = data;
    rx->framed += rx->frame;
    rx->frame = 0;
}

static void
receive_message(wslay_event_context_ptr wslay, const struct wslay_event_on_msg_recv_arg *arg,
                void *data)
{
    struct receive *rx = data;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        /* wslay checks the limit as each frame starts, so a message begun under a larger one
         * (the auth message's) is held to this call's here. */
        if (arg->msg_length > rx->max_message) {
            rx->fail_code = RECEIVE_CLOSE_TOO_BIG;
            wslay_event_shutdown_read(wslay);
            break;
        }
        rx->handler->text(rx->owner, arg->msg, arg->msg_length);
        break;
    case WSLAY_BINARY_FRAME:
        rx->fail_code = RECEIVE_CLOSE_UNSUPPORTED;
        wslay_event_shutdown_read(wslay);
        break;
    case WSLAY_PING:
        rx->pong_len = arg->msg_length <= RECEIVE_PONG_MAX ? arg->msg_length : 0;
        if (rx->pong_len)
            memcpy(rx->pong, arg->msg, rx->pong_len);
        rx->pong_owed = 1;
        rx->handler->ping(rx->owner);
        break;
    case WSLAY_PONG:
        rx->handler->pong(rx->owner);
        break;
    case WSLAY_CONNECTION_CLOSE:
        if (arg->msg_length == 1) { /* a code is two bytes (RFC 6455 5.5.1); wslay lets it by */
            rx->fail_code = RECEIVE_CLOSE_PROTOCOL;
            wslay_event_shutdown_read(wslay);
            break;
        }
        rx->closed = 1;
        rx->close_code = arg->status_code;
        wslay_event_shutdown_read(wslay);
        break;
    default:
        break;
    }
}

static const struct wslay_event_callbacks receive_callbacks = {
    .recv_callback = receive_recv,
    .send_callback = receive_discard,
    .on_frame_recv_start_callback = receive_frame_start,
    .on_frame_recv_end_callback = receive_frame_end,
    .on_msg_recv_callback = receive_message,
};

static struct receive *
receive_new(size_t max_message)
{
    struct receive *rx = calloc(1, sizeof *rx);
    if (!rx)
        return NULL;
    if (wslay_event_context_server_init(&rx->wslay, &receive_callbacks, rx) != 0) {
        free(rx);
        return NULL;
    }
    wslay_event_config_set_max_recv_msg_length(rx->wslay, max_message);
    wslay_event_config_set_allowed_rsv_bits(rx->wslay, 0); /* no extensions */
    return rx;
}

void
receive_destroy(struct receive **state)
{
    if (!state || !*state)
        return;
    wslay_event_context_free((*state)->wslay);
    free(*state);
    *state = NULL;
}

/* Nothing held: no partial frame in wslay's buffer, no fragmented message, no pong owed. */
static int
receive_idle(const struct receive *rx)
{
    return rx->fed == rx->framed && !rx->in_message && !rx->pong_owed;
}

int
receive_read(struct receive **state, int fd, size_t max_message,
             const struct receive_handler *handler, void *owner)
{
    struct receive *rx = *state;
    if (!rx && !(rx = *state = receive_new(max_message))) {
        handler->fail_connection(owner, RECEIVE_CLOSE_INTERNAL);
        return 1;
    }
    wslay_event_config_set_max_recv_msg_length(rx->wslay, max_message); /* it may change */
    rx->max_message = max_message;
    rx->fd = fd;
    rx->handler = handler;
    rx->owner = owner;
    rx->turn = 0;
    int rc = wslay_event_recv(rx->wslay);
    if (rx->ended) {
        handler->end(owner);
        return 1;
    }
    if (rx->closed) {
        handler->close(owner, rx->close_code);
        return 1;
    }
    if (rx->fail_code || rc == WSLAY_ERR_NOMEM) {
        handler->fail_connection(owner, rx->fail_code ? rx->fail_code : RECEIVE_CLOSE_INTERNAL);
        return 1;
    }
    /* Empty wslay's queue: the pong for each ping, and for a violation the close it chose,
     * whose code says what was wrong (none for a malformed frame header: 1002). */
    (void)wslay_event_send(rx->wslay);
    if (!wslay_event_get_read_enabled(rx->wslay)) {
        uint16_t code = wslay_event_get_status_code_sent(rx->wslay);
        if (code == 0 || code == WSLAY_CODE_NO_STATUS_RCVD || code == WSLAY_CODE_ABNORMAL_CLOSURE)
            code = RECEIVE_CLOSE_PROTOCOL;
        handler->fail_connection(owner, code);
        return 1;
    }
    if (receive_idle(rx))
        receive_destroy(state);
    return 0;
}

int
receive_take_pong(struct receive **state, unsigned char *out)
{
    struct receive *rx = *state;
    if (!rx || !rx->pong_owed)
        return -1;
    int len = (int)rx->pong_len;
    memcpy(out, rx->pong, rx->pong_len);
    rx->pong_owed = 0;
    if (receive_idle(rx))
        receive_destroy(state);
    return len;
}
