/* fuzz_zap: the worker's ZAP handler (common/zap.c), whose requests carry what a connecting
 * peer offers (its public key, its address), in any frame count and length.
 *
 * The input is one request: a byte for its frame count (1..ZAP_FRAMES_MAX + 4), then per
 * frame a length byte (255: two more bytes give a length up to 65535) and its bytes, cut short
 * where the input ends.  A frame of exactly "KEY" stands for the 32 bytes of the one listed
 * client key, so the fuzzer reaches the request let in.  Each request is decided directly
 * (zap_decide) and also sent over a real inproc DEALER to the handler's REP and served
 * (zap_serve).  What must hold: only a 7-frame CURVE request of version 1.0 offering the listed
 * key is let in; what is logged is printable and bounded; every request gets exactly one
 * reply of six frames after the envelope, with the decided status. */
#include "fuzz.h"

#include "common/zap.c"

#include <fcntl.h>

#define FUZZ_ZAP_FRAMES (ZAP_FRAMES_MAX + 4) /* frames of a request at most */

static struct curve *curve;
static struct zap *zap;
static void *client;
static uint8_t listed[CURVE_KEY_BYTES];

static void
fuzz_write(const char *dir, const char *name, const char *text, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        abort();
    close(fd);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static struct config cfg;
    fuzz_setup(&cfg);
    const char *dir = fuzz_scratch("zap");
    char pool_public[CURVE_KEY_Z85 + 1], pool_secret[CURVE_KEY_Z85 + 1];
    char listed_public[CURVE_KEY_Z85 + 1], listed_secret[CURVE_KEY_Z85 + 1], text[128];
    if (zmq_curve_keypair(pool_public, pool_secret) != 0 ||
        zmq_curve_keypair(listed_public, listed_secret) != 0 ||
        !zmq_z85_decode(listed, listed_public))
        abort();
    snprintf(text, sizeof text, "%s\n", pool_secret);
    fuzz_write(dir, "pool.key", text, cfg.curve_secret_file, sizeof cfg.curve_secret_file);
    snprintf(text, sizeof text, "# the one client\n%s\n", listed_public);
    fuzz_write(dir, "clients", text, cfg.curve_clients_file, sizeof cfg.curve_clients_file);
    cfg.curve = 1;
    char err[256];
    void *zmq = zmq_ctx_new();
    if (!zmq || curve_load(&cfg, CURVE_ROLE_SERVER, NULL, 0, &curve, err, sizeof err) != 0)
        abort();
    zap = zap_new(zmq, curve, err, sizeof err);
    client = zmq_socket(zmq, ZMQ_DEALER);
    if (!zap || !client || zmq_connect(client, ZAP_ENDPOINT) != 0)
        abort();
    return 0;
}

/* 1 when frame is the listed key. */
static int
is_listed(const struct zap_frame *frame)
{
    return frame->size == CURVE_KEY_BYTES && memcmp(frame->data, listed, CURVE_KEY_BYTES) == 0;
}

static void
check_verdict(const struct zap_frame *frames, size_t count, const struct zap_verdict *verdict)
{
    int allowed = count == 7 && frames[0].size == 3 && memcmp(frames[0].data, "1.0", 3) == 0 &&
                  frames[5].size == 5 && memcmp(frames[5].data, "CURVE", 5) == 0 &&
                  is_listed(&frames[6]);
    FUZZ_CHECK(allowed == (strcmp(verdict->status, "200") == 0));
    FUZZ_CHECK(strcmp(verdict->status, "200") == 0 || strcmp(verdict->status, "400") == 0 ||
               strcmp(verdict->status, "500") == 0);
    size_t peer = strnlen(verdict->peer, sizeof verdict->peer);
    FUZZ_CHECK(peer > 0 && peer < sizeof verdict->peer);
    for (size_t i = 0; i < peer; i++)
        FUZZ_CHECK(strchr("0123456789abcdefABCDEF.:[]%?-", verdict->peer[i]) != NULL);
    size_t key = strnlen(verdict->key, sizeof verdict->key);
    FUZZ_CHECK(strcmp(verdict->key, "-") == 0 || key == CURVE_KEY_Z85);
    FUZZ_CHECK(verdict->request_id.size == (count >= 2 ? frames[1].size : 0));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    struct zap_frame frames[FUZZ_ZAP_FRAMES];
    size_t count = fuzz_byte(&in) % FUZZ_ZAP_FRAMES + 1;
    for (size_t f = 0; f < count; f++) {
        size_t length = fuzz_byte(&in);
        if (length == 255)
            length = (size_t)fuzz_byte(&in) << 8 | fuzz_byte(&in);
        if (length > in.size)
            length = in.size;
        frames[f] = (struct zap_frame){in.data, length};
        if (length == 3 && memcmp(in.data, "KEY", 3) == 0)
            frames[f] = (struct zap_frame){listed, sizeof listed};
        in.data += length;
        in.size -= length;
    }
    struct zap_verdict verdict;
    zap_decide(curve, frames, count, &verdict);
    check_verdict(frames, count, &verdict);

    /* The same request through the socket: one reply, six frames after the envelope. */
    FUZZ_CHECK(zmq_send(client, "", 0, ZMQ_SNDMORE) == 0);
    for (size_t f = 0; f < count; f++)
        FUZZ_CHECK(zmq_send(client, frames[f].data, frames[f].size,
                            f + 1 < count ? ZMQ_SNDMORE : 0) == (int)frames[f].size);
    FUZZ_CHECK(zap_serve(zap) == 0);
    const char *expected = count > ZAP_FRAMES_MAX ? "500" : verdict.status;
    int replies = 0, more = 1;
    while (more) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        FUZZ_CHECK(zmq_msg_recv(&frame, client, ZMQ_DONTWAIT) >= 0);
        if (replies == 3)
            FUZZ_CHECK(zmq_msg_size(&frame) == 3 && memcmp(zmq_msg_data(&frame), expected, 3) == 0);
        more = zmq_msg_more(&frame);
        zmq_msg_close(&frame);
        replies++;
    }
    FUZZ_CHECK(replies == 7);
    return 0;
}
