/* fuzz_relay_ingress: the ZeroMQ messages the relay reads from the worker pool
 * (relay/ingress.c: ingress_drain, then route_publish), in any frame count and length.
 *
 * The input is a series of messages (fuzz_message: 1..4 frames, lengths up to 65535, past
 * [relay] max_message).  They are sent as real multipart messages over an inproc PAIR whose other end is the relay's
 * socket, and the relay's real drain reads them into a real route table where two client ids
 * have a connection each.  What must hold: a message of exactly two frames whose first frame is
 * one of those ids (exactly: not a prefix, not an extension) and whose payload fits reaches that
 * connection byte for byte and in order; anything of another frame count is counted malformed
 * and reaches no one; nothing else is delivered. */
#include "fuzz.h"

#include <zmq.h>

#include "relay/ingress.h"
#include "relay/relay.h"

#define MAX_MESSAGE 1024 /* [relay] max_message here */
#define RING 16
#define CLIENTS 2

static const char *const client_ids[CLIENTS] = {"0123456789abcdef0123456789abcdef",
                                                "fedcba9876543210fedcba9876543210"};

static struct config cfg;
static struct relay relay;
static void *context, *sender;
static struct route_member members[CLIENTS];

/* What each connection must receive: the accepted payloads in order, as (offset, length)
 * into the input. */
struct expected {
    const uint8_t *payload;
    size_t len;
};
static struct expected wanted[CLIENTS][4096];
static size_t wanted_count[CLIENTS], received_count[CLIENTS];

static void
member_wake(void *owner)
{
    (void)owner;
}

static void
member_cull(void *owner)
{
    (void)owner;
    FUZZ_CHECK(!"a connection that keeps up was culled");
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup(&cfg);
    cfg.ring = RING;
    cfg.max_message = MAX_MESSAGE;
    relay.cfg = &cfg;
    static const struct route_callbacks callbacks = {.wake = member_wake, .cull = member_cull};
    relay.route = route_new(MAX_MESSAGE, RING, LWS_PRE, &callbacks);
    int unlimited = 0;
    context = zmq_ctx_new();
    relay.ingress.sub = context ? zmq_socket(context, ZMQ_PAIR) : NULL;
    sender = context ? zmq_socket(context, ZMQ_PAIR) : NULL;
    if (!relay.route || !relay.ingress.sub || !sender ||
        zmq_setsockopt(relay.ingress.sub, ZMQ_RCVHWM, &unlimited, sizeof unlimited) != 0 ||
        zmq_setsockopt(sender, ZMQ_SNDHWM, &unlimited, sizeof unlimited) != 0 ||
        zmq_bind(relay.ingress.sub, "inproc://fuzz-relay-ingress") != 0 ||
        zmq_connect(sender, "inproc://fuzz-relay-ingress") != 0)
        abort();
    for (int i = 0; i < CLIENTS; i++) {
        route_member_init(&members[i], &members[i]);
        if (route_attach(relay.route, &members[i], client_ids[i], strlen(client_ids[i])) != 0)
            abort();
    }
    return 0;
}

/* Take what each connection has waiting, checking it against what it must get. */
static void
consume(void)
{
    for (int i = 0; i < CLIENTS; i++) {
        unsigned char *payload;
        size_t len;
        while (route_peek(relay.route, &members[i], 0, &payload, &len)) {
            FUZZ_CHECK(received_count[i] < wanted_count[i]);
            const struct expected *want = &wanted[i][received_count[i]++];
            FUZZ_CHECK(len == want->len && memcmp(payload, want->payload, len) == 0);
            route_sent(relay.route, &members[i]);
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    uint64_t malformed_before = relay.ingress.malformed, malformed = 0;
    memset(wanted_count, 0, sizeof wanted_count);
    memset(received_count, 0, sizeof received_count);
    const uint8_t *frame[FUZZ_FRAMES_MAX];
    size_t len[FUZZ_FRAMES_MAX];
    int frames;
    while ((frames = fuzz_message(&in, frame, len)) > 0) {
        for (int f = 0; f < frames; f++)
            if (zmq_send(sender, frame[f], len[f], f + 1 < frames ? ZMQ_SNDMORE : 0) != (int)len[f])
                abort();
        if (frames != 2) {
            malformed++;
            continue;
        }
        for (int i = 0; i < CLIENTS; i++)
            if (len[0] == strlen(client_ids[i]) && memcmp(frame[0], client_ids[i], len[0]) == 0 &&
                len[1] <= MAX_MESSAGE && wanted_count[i] < sizeof wanted[i] / sizeof wanted[i][0])
                wanted[i][wanted_count[i]++] = (struct expected){frame[1], len[1]};
    }
    /* Drain as the relay's loop does: a batch, the connections write, again while more waits. */
    relay.ingress.ready = 1;
    for (int turns = 0; relay.ingress.ready; turns++) {
        FUZZ_CHECK(turns < 100000);
        ingress_drain(&relay);
        consume();
    }
    FUZZ_CHECK(relay.ingress.malformed - malformed_before == malformed);
    for (int i = 0; i < CLIENTS; i++)
        FUZZ_CHECK(received_count[i] == wanted_count[i]);
    return 0;
}
