/* zap.c: the ZAP handler and handshake monitor of a binding program's CURVE sockets (zap.h). */
#include "zap.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "log.h"

#define ZAP_MONITOR_PREFIX "inproc://taskwire-zap-monitor-"
#define ZAP_MONITOR_EVENTS                                                                         \
    (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                  \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

struct zap {
    void *zmq; /* borrowed: the program's context */
    const struct curve *curve;
    void *handler; /* REP on ZAP_ENDPOINT */
    size_t monitor_count;
    void *monitors[ZAP_MONITORS_MAX]; /* PAIRs connected to the sockets' monitors */
    const char *names[ZAP_MONITORS_MAX];
    pthread_t thread;
    int started;
    int64_t window_start_ms; /* the log's current window */
    int lines;               /* lines written in it */
    unsigned long long left_out;
};

/* 1 when frame holds exactly text. */
static int
zap_frame_is(const struct zap_frame *frame, const char *text)
{
    size_t length = strlen(text);
    return frame->size == length && memcmp(frame->data, text, length) == 0;
}

void
zap_decide(const struct curve *curve, const struct zap_frame *frames, size_t count,
           struct zap_verdict *verdict)
{
    /* [version][request id][domain][address][routing id][mechanism][credentials...] */
    memset(verdict, 0, sizeof *verdict);
    strcpy(verdict->peer, "-");
    strcpy(verdict->key, "-");
    verdict->status = "500";
    verdict->text = "malformed ZAP request";
    if (count >= 2)
        verdict->request_id = frames[1];
    if (count < 6 || !zap_frame_is(&frames[0], "1.0"))
        return;
    /* The address is libzmq's text of the peer's IP; kept to what an address is made of. */
    size_t length = frames[3].size < ZAP_PEER_MAX - 1 ? frames[3].size : ZAP_PEER_MAX - 1;
    for (size_t i = 0; i < length; i++) {
        char c = (char)frames[3].data[i];
        verdict->peer[i] = strchr("0123456789abcdefABCDEF.:[]%", c) && c ? c : '?';
    }
    verdict->peer[length > 0 ? length : 1] = '\0';
    verdict->status = "400";
    if (!zap_frame_is(&frames[5], "CURVE") || count != 7) {
        verdict->text = "only CURVE is accepted";
        return;
    }
    if (frames[6].size != CURVE_KEY_BYTES) {
        verdict->text = "malformed CURVE credentials";
        return;
    }
    if (!zmq_z85_encode(verdict->key, frames[6].data, CURVE_KEY_BYTES))
        strcpy(verdict->key, "-");
    if (!curve_client_allowed(curve, frames[6].data, frames[6].size)) {
        verdict->text = "public key not allowed";
        return;
    }
    verdict->status = "200";
    verdict->text = "OK";
}

/* 1 when one more refusal or failure line may be written now (see zap.h's bound). */
static int
zap_log_allowed(struct zap *zap)
{
    int64_t now = clock_mono_ms();
    if (now - zap->window_start_ms >= ZAP_LOG_WINDOW_MS) {
        if (zap->left_out > 0)
            log_warn("event=zmq_refusals_not_logged count=%llu window_s=%d", zap->left_out,
                     ZAP_LOG_WINDOW_MS / 1000);
        zap->window_start_ms = now;
        zap->lines = 0;
        zap->left_out = 0;
    }
    if (zap->lines >= ZAP_LOG_BURST) {
        zap->left_out++;
        return 0;
    }
    zap->lines++;
    return 1;
}

/* Send a reply frame; 0, or -1. */
static int
zap_send(void *socket, const void *data, size_t size, int more)
{
    return zmq_send(socket, data, size, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

/* Answer one request waiting on the handler.  0, or -1 when the context is gone. */
static int
zap_serve(struct zap *zap)
{
    zmq_msg_t frames[ZAP_FRAMES_MAX];
    struct zap_frame views[ZAP_FRAMES_MAX];
    size_t count = 0, seen = 0;
    int more = 1, rc = 0;
    while (more) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, zap->handler, 0) < 0) {
            zmq_msg_close(&frame);
            rc = zmq_errno() == ETERM ? -1 : 0;
            goto out; /* a REP without a whole request has nothing to answer */
        }
        more = zmq_msg_more(&frame);
        seen++;
        if (count < ZAP_FRAMES_MAX) {
            frames[count] = frame;
            views[count].data = zmq_msg_data(&frames[count]);
            views[count].size = zmq_msg_size(&frames[count]);
            count++;
        } else {
            zmq_msg_close(&frame);
        }
    }
    struct zap_verdict verdict;
    /* Too many frames: decided on the first two alone, which makes it malformed. */
    zap_decide(zap->curve, views, seen > count ? 2 : count, &verdict);
    if (strcmp(verdict.status, "200") == 0)
        log_debug("event=zmq_allowed peer=%s key=%s", verdict.peer, verdict.key);
    else if (zap_log_allowed(zap))
        log_warn("event=zmq_refused peer=%s key=%s status=%s reason=\"%s\"", verdict.peer,
                 verdict.key, verdict.status, verdict.text);
    if (zap_send(zap->handler, "1.0", 3, 1) != 0 ||
        zap_send(zap->handler, verdict.request_id.data, verdict.request_id.size, 1) != 0 ||
        zap_send(zap->handler, verdict.status, strlen(verdict.status), 1) != 0 ||
        zap_send(zap->handler, verdict.text, strlen(verdict.text), 1) != 0 ||
        zap_send(zap->handler, "", 0, 1) != 0 || zap_send(zap->handler, "", 0, 0) != 0)
        rc = zmq_errno() == ETERM ? -1 : 0;
out:
    for (size_t i = 0; i < count; i++)
        zmq_msg_close(&frames[i]);
    return rc;
}

const char *
zap_handshake_reason(uint16_t event, uint32_t value)
{
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
            return "the peer does not speak CURVE (a plaintext peer?)";
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
            return "the peer's handshake does not decrypt (a wrong server public key?)";
        return "ZMTP protocol error";
    }
    /* The value is an errno: the peer hung up before its greeting said more (a plaintext
     * peer that saw ours ask for CURVE does). */
    return value == EPIPE || value == ECONNRESET
               ? "the peer broke off the handshake (a plaintext peer?)"
               : "the handshake failed without detail";
}

/* Log what one monitor reports.  0, or -1 when the context is gone. */
static int
zap_watch(struct zap *zap, size_t index)
{
    zmq_msg_t event, endpoint;
    zmq_msg_init(&event);
    zmq_msg_init(&endpoint);
    int rc = 0;
    if (zmq_msg_recv(&event, zap->monitors[index], 0) < 0) {
        rc = zmq_errno() == ETERM ? -1 : 0;
        goto out;
    }
    uint16_t what = 0;
    uint32_t value = 0;
    if (zmq_msg_size(&event) == sizeof what + sizeof value) {
        memcpy(&what, zmq_msg_data(&event), sizeof what);
        memcpy(&value, (const char *)zmq_msg_data(&event) + sizeof what, sizeof value);
    }
    int more = zmq_msg_more(&event);
    while (more && zmq_msg_recv(&endpoint, zap->monitors[index], 0) >= 0)
        more = zmq_msg_more(&endpoint);
    /* A refusal of ours (FAILED_AUTH) was logged by the ZAP handler with the key. */
    if ((what == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
         what == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) &&
        zap_log_allowed(zap))
        log_warn("event=zmq_handshake_failed socket=%s code=0x%x reason=\"%s\"", zap->names[index],
                 (unsigned)value, zap_handshake_reason(what, value));
out:
    zmq_msg_close(&endpoint);
    zmq_msg_close(&event);
    return rc;
}

static void *
zap_main(void *arg)
{
    struct zap *zap = arg;
    zmq_pollitem_t items[1 + ZAP_MONITORS_MAX];
    items[0] = (zmq_pollitem_t){.socket = zap->handler, .events = ZMQ_POLLIN};
    for (size_t i = 0; i < zap->monitor_count; i++)
        items[1 + i] = (zmq_pollitem_t){.socket = zap->monitors[i], .events = ZMQ_POLLIN};
    for (;;) {
        if (zmq_poll(items, (int)(1 + zap->monitor_count), -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            /* ETERM: the pool is stopping.  Anything else leaves ZAP unanswered, which lets
             * nobody in: said, since every new connection then waits in its handshake. */
            if (zmq_errno() != ETERM)
                log_error("event=zap_stopped error=\"%s\"", zmq_strerror(zmq_errno()));
            break;
        }
        if ((items[0].revents & ZMQ_POLLIN) && zap_serve(zap) != 0)
            break;
        for (size_t i = 0; i < zap->monitor_count; i++)
            if ((items[1 + i].revents & ZMQ_POLLIN) && zap_watch(zap, i) != 0)
                goto done;
    }
done:
    return NULL;
}

struct zap *
zap_new(void *zmq, const struct curve *curve, char *err, size_t errlen)
{
    struct zap *zap = calloc(1, sizeof *zap);
    if (!zap) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    zap->zmq = zmq;
    zap->curve = curve;
    zap->window_start_ms = clock_mono_ms();
    int linger = 0;
    zap->handler = zmq_socket(zmq, ZMQ_REP);
    if (!zap->handler || zmq_setsockopt(zap->handler, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(zap->handler, ZAP_ENDPOINT) != 0) {
        snprintf(err, errlen, "ZAP handler: %s", zmq_strerror(zmq_errno()));
        zap_destroy(&zap);
    }
    return zap;
}

int
zap_monitor(struct zap *zap, void *socket, const char *name, char *err, size_t errlen)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, ZAP_MONITOR_PREFIX "%zu", zap->monitor_count);
    if (zap->started || zap->monitor_count >= ZAP_MONITORS_MAX) {
        snprintf(err, errlen, "ZAP monitor: too many sockets");
        return -1;
    }
    void *pair = zmq_socket_monitor(socket, endpoint, ZAP_MONITOR_EVENTS) == 0
                     ? zmq_socket(zap->zmq, ZMQ_PAIR)
                     : NULL;
    int linger = 0;
    if (!pair || zmq_setsockopt(pair, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(pair, endpoint) != 0) {
        snprintf(err, errlen, "monitor of %s: %s", name, zmq_strerror(zmq_errno()));
        if (pair)
            zmq_close(pair);
        return -1;
    }
    zap->names[zap->monitor_count] = name;
    zap->monitors[zap->monitor_count++] = pair;
    return 0;
}

int
zap_start(struct zap *zap, char *err, size_t errlen)
{
    if (pthread_create(&zap->thread, NULL, zap_main, zap) != 0) {
        snprintf(err, errlen, "cannot start the ZAP thread");
        return -1;
    }
    zap->started = 1;
    return 0;
}

void
zap_destroy(struct zap **zap)
{
    if (!zap || !*zap)
        return;
    struct zap *z = *zap;
    if (z->started)
        pthread_join(z->thread, NULL);
    for (size_t i = 0; i < z->monitor_count; i++)
        zmq_close(z->monitors[i]);
    if (z->handler)
        zmq_close(z->handler);
    free(z);
    *zap = NULL;
}
