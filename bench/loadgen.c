/* loadgen.c: WebSocket load generator and publisher for the taskwire benchmarks.
 *
 * One thread, one epoll set: opens --conns WebSocket connections (spread over source addresses
 * 127.0.0.x so one address never runs out of ports), speaks plain WebSocket text or Socket.IO
 * (Engine.IO v4 over WebSocket), answers pings, and, with --pub, publishes stamped messages to
 * the server under test through publisher.h, at --rate messages/s or flat out with at most
 * --window deliveries outstanding.  Each message carries the publisher's CLOCK_MONOTONIC time in
 * microseconds ("t_us"), a per-client-id sequence number ("seq") and the phase ("k": p probe,
 * w warm-up, m measured); every connection checks the sequence and records the latency.  At a
 * set rate that is to the kernel's receive time of the read that brought the frame
 * (SO_TIMESTAMPING), the moment it reached the client; it is also taken to the moment this
 * thread parsed it ("parsed_us"), which adds the wait for this one thread to come round to
 * that connection.  Flat out, both are the time it was parsed.
 *
 * With --auth (taskwire's relay) each connection's first frame after the 101 is its client id's
 * {"type":"auth","token":...}, masked once per client id at start: one write per connection.
 * With --channel NAME as well, each connection then subscribes to channel NAME (taskwire's
 * {"type":"subscribe"}) and is ready at its "subscribed"; every message is published to that
 * one topic with one sequence, and each ready connection is expected to get every one (a
 * channel of many users, not a client id's connections).
 *
 * The framer is the minimum a client needs: unmasked frames in (7/16/64-bit lengths,
 * continuations skipped), masked control frames and short text frames out.  It is a load
 * generator, not a WebSocket library.  The result is one JSON object on stdout; without --pub
 * the connections stay open (idle) and a "ready" JSON line is printed once they are up.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "publisher.h"

#define READ_BUFFER (256 * 1024)   /* one read from one connection */
#define FRAME_MAX (128 * 1024)     /* a larger incoming frame fails the connection */
#define HANDSHAKE_MAX 8192         /* bytes of the 101 response */
#define EVENTS_MAX 1024            /* epoll events per wait */
#define PAYLOAD_MAX 65536          /* --size limit */
#define SRC_MAX 250                /* source addresses */
/* With --src, each connection binds a port of its own from this range, below the kernel's
 * ephemeral range (so no server's free-port pick meets one): a connect() that leaves the port
 * to the kernel searches the used ports of its address one by one, which at 16,000 connections
 * per address cost more than the relay's whole handshake. */
#define SRC_PORT_FIRST 1024
#define SRC_PORT_LAST 32767
#define SRC_PORT_TRIES 64 /* ports tried (in use by someone else) before the kernel picks */
#define CONNECT_TRIES 4            /* attempts per connection on connect-level errors */
#define CLOSE_CODES 8              /* distinct close codes counted */
#define STALL_US 1000000           /* flat out: no delivery for this long writes off the window */
#define PROBE_EVERY_US 200000      /* probe round interval while waiting for subscriptions */
#define TOKEN_TTL 86400            /* seconds a generated token is valid */
#define AUTH_FRAME_MAX 1100        /* bytes of one masked auth frame (a token of under 1024) */
#define WATCH_MAX 64               /* server processes whose CPU time is sampled */
#define HANDOFF_US 300             /* at a set rate: the publisher's thread gets the core */

enum proto { PROTO_WS, PROTO_SIO };
enum ready_on { READY_UPGRADE, READY_FIRST_FRAME };
enum state {
    ST_IDLE,
    ST_CONNECTING,
    ST_HANDSHAKE,
    ST_WAIT_FIRST,
    ST_WAIT_SUBSCRIBED,
    ST_SIO_WAIT,
    ST_READY,
    ST_DONE
};

struct conn {
    int fd;
    uint32_t id;       /* client id index */
    uint32_t last_seq; /* last sequence number seen, 0 before the first */
    uint8_t state;
    uint8_t tries;
    uint8_t in_message; /* inside a fragmented message */
    uint8_t want_out;
    uint8_t probed;     /* saw a probe */
    uint8_t src;
    uint32_t carry_len; /* bytes of an incomplete frame or handshake kept for the next read */
    char *carry;
    uint32_t out_len;   /* bytes the socket did not take yet */
    char *out;
    char key[25];       /* Sec-WebSocket-Key */
};

struct options {
    const char *host;
    int port;
    const char *path;
    enum proto proto;
    enum ready_on ready;
    int conns;
    int ids;
    uint64_t id_base;
    uint64_t tag;
    const char *secret_file;
    uint32_t src_first, src_count;
    int src_ports; /* --src given: bind each connection's port (SRC_PORT_FIRST..) */
    int concurrency;
    double connect_timeout;
    const char *pub;
    int pub_conns;
    double rate;
    long window;
    double warmup, duration, drain, hold;
    int size;
    double probe_timeout;
    int watch[WATCH_MAX]; /* server pids: CPU time sampled at the measured window's edges */
    int nwatch;
    int auth;            /* --auth: send each connection's token in its first frame */
    const char *cookie;  /* --cookie NAME: send it in the upgrade's Cookie header instead */
    const char *channel; /* --channel: subscribe to it and publish every message to it */
};

struct loadgen {
    struct options o;
    int epfd;
    struct conn *conns;
    char (*ids)[33];
    uint32_t *ready_per_id;
    uint32_t *probed_per_id;
    uint32_t *seq_per_id;
    unsigned char secret[1024];
    size_t secret_len;
    char *auth_frames; /* --auth: o.ids masked auth frames of auth_len bytes each, in id order */
    size_t auth_len;
    char **cookies;    /* --cookie: o.ids "Cookie: NAME=token" header lines, in id order */
    struct publisher *pub;
    char *rbuf;
    char payload[PAYLOAD_MAX + 256];
    uint16_t next_port[SRC_MAX]; /* per source address, the next port to bind (src_ports) */
    uint64_t now;
    uint64_t rng;
    /* connection counts */
    long started, pending, ready, failed, closed, retries, ready_lost, refused_5xx;
    int close_code[CLOSE_CODES];
    long close_count[CLOSE_CODES];
    long http_status_fail;
    /* message counts */
    uint64_t published[3], expected[3], received[3]; /* by phase: probe, warm-up, measured */
    uint64_t gaps, others, in_window, pings;
    uint64_t window_start, window_end;
    uint64_t written_off;
    double server_cpu_s, client_cpu_s, window_s; /* CPU seconds used in the measured window */
    struct hist lat;    /* publish call to the frame's arrival in the client's socket */
    struct hist parsed; /* publish call to the frame parsed by the load generator */
    uint64_t arrived;   /* the last read's kernel receive time, CLOCK_MONOTONIC us */
    uint64_t stamped;   /* reads that came with a kernel receive time */
    int64_t real_minus_mono; /* CLOCK_REALTIME - CLOCK_MONOTONIC, us, as of the last wait */
};

static volatile sig_atomic_t stop_requested;

static void
on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t
rng_next(struct loadgen *lg)
{
    uint64_t x = lg->rng; /* xorshift64: masks and keys need no cryptographic strength */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return lg->rng = x;
}

static int
phase_index(char k)
{
    return k == 'p' ? 0 : k == 'w' ? 1 : 2;
}

/* ---- tokens ---- */

static size_t
base64url(const unsigned char *in, size_t len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[n] = 0;
    return (size_t)n;
}

/* An HS256 JWT {"sub":id,"iat","exp"} signed with the secret, as the relay expects. */
static void
make_token(struct loadgen *lg, const char *id, char *out, size_t size)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char claims[128];
    long long iat = (long long)time(NULL);
    int clen = snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"iat\":%lld,\"exp\":%lld}", id, iat,
                        iat + TOKEN_TTL);
    char buf[512];
    size_t at = base64url((const unsigned char *)header, sizeof header - 1, buf);
    buf[at++] = '.';
    at += base64url((const unsigned char *)claims, (size_t)clen, buf + at);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    HMAC(EVP_sha256(), lg->secret, (int)lg->secret_len, (unsigned char *)buf, at, mac, &mac_len);
    buf[at++] = '.';
    base64url(mac, mac_len, buf + at);
    snprintf(out, size, "%s", buf);
}

/* One client id's auth frame, {"type":"auth","token":...} as a masked text frame, into out
 * (AUTH_FRAME_MAX bytes): its length. */
static size_t
auth_frame(struct loadgen *lg, const char *id, unsigned char *out)
{
    char token[1024], text[AUTH_FRAME_MAX];
    make_token(lg, id, token, sizeof token);
    size_t len = (size_t)snprintf(text, sizeof text, "{\"type\":\"auth\",\"token\":\"%s\"}", token);
    size_t at = 0;
    out[at++] = 0x81;
    if (len < 126) {
        out[at++] = (unsigned char)(0x80 | len);
    } else {
        out[at++] = 0x80 | 126;
        out[at++] = (unsigned char)(len >> 8);
        out[at++] = (unsigned char)(len & 0xff);
    }
    uint32_t mask = (uint32_t)rng_next(lg);
    memcpy(out + at, &mask, 4);
    for (size_t i = 0; i < len; i++)
        out[at + 4 + i] = (unsigned char)text[i] ^ out[at + (i & 3)];
    return at + 4 + len;
}

/* --auth: every client id's auth frame, built before the first connection, so a connection's
 * costs a write and no HMAC.  Tokens of one run have one length (the ids and times do), so the
 * frames sit in one block.  0, or -1 when out of memory. */
static int
auth_build(struct loadgen *lg)
{
    unsigned char frame[AUTH_FRAME_MAX];
    lg->auth_len = auth_frame(lg, lg->ids[0], frame);
    lg->auth_frames = malloc((size_t)lg->o.ids * lg->auth_len);
    if (!lg->auth_frames)
        return -1;
    for (int i = 0; i < lg->o.ids; i++) {
        if (auth_frame(lg, lg->ids[i], frame) != lg->auth_len)
            return -1; /* a second's tick lengthened iat: no single block */
        memcpy(lg->auth_frames + (size_t)i * lg->auth_len, frame, lg->auth_len);
    }
    return 0;
}

/* --cookie: each client id's Cookie header line, made before the first connect as the auth
 * frames are. */
static int
cookie_build(struct loadgen *lg)
{
    lg->cookies = calloc((size_t)lg->o.ids, sizeof *lg->cookies);
    if (!lg->cookies)
        return -1;
    for (int i = 0; i < lg->o.ids; i++) {
        char token[1024], line[1200];
        make_token(lg, lg->ids[i], token, sizeof token);
        snprintf(line, sizeof line, "Cookie: %s=%s\r\n", lg->o.cookie, token);
        if (!(lg->cookies[i] = strdup(line)))
            return -1;
    }
    return 0;
}

/* ---- connection output ---- */

static void
conn_want_out(struct loadgen *lg, struct conn *c, int want)
{
    if (c->want_out == want)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0),
                             .data.u64 = (uint64_t)(c - lg->conns)};
    epoll_ctl(lg->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = (uint8_t)want;
}

static void conn_close(struct loadgen *lg, struct conn *c, int code);

/* Write data (after anything still queued); queue what the socket does not take. */
static void
conn_write(struct loadgen *lg, struct conn *c, const char *data, size_t len)
{
    if (c->out_len == 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_close(lg, c, -1);
            return;
        }
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
        if (len == 0)
            return;
    }
    char *p = realloc(c->out, c->out_len + len);
    if (!p) {
        conn_close(lg, c, -1);
        return;
    }
    memcpy(p + c->out_len, data, len);
    c->out = p;
    c->out_len += (uint32_t)len;
    conn_want_out(lg, c, 1);
}

static void
conn_flush(struct loadgen *lg, struct conn *c)
{
    ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            conn_close(lg, c, -1);
        return;
    }
    memmove(c->out, c->out + n, c->out_len - (size_t)n);
    c->out_len -= (uint32_t)n;
    if (c->out_len == 0) {
        free(c->out);
        c->out = NULL;
        conn_want_out(lg, c, 0);
    }
}

/* Send one masked frame of at most 125 bytes (client frames must be masked). */
static void
conn_send_frame(struct loadgen *lg, struct conn *c, int opcode, const char *data, size_t len)
{
    unsigned char f[2 + 4 + 125];
    if (len > 125)
        len = 125;
    uint32_t mask = (uint32_t)rng_next(lg);
    f[0] = (unsigned char)(0x80 | opcode);
    f[1] = (unsigned char)(0x80 | len);
    memcpy(f + 2, &mask, 4);
    for (size_t i = 0; i < len; i++)
        f[6 + i] = (unsigned char)data[i] ^ f[2 + (i & 3)];
    conn_write(lg, c, (const char *)f, 6 + len);
}

/* ---- connection lifecycle ---- */

static void
count_close(struct loadgen *lg, int code)
{
    for (int i = 0; i < CLOSE_CODES; i++) {
        if (lg->close_count[i] == 0 || lg->close_code[i] == code) {
            lg->close_code[i] = code;
            lg->close_count[i]++;
            return;
        }
    }
}

static void conn_start(struct loadgen *lg, struct conn *c);

/* Close c; code is the WebSocket close code, -1 for a transport error, -2 for a connect error
 * (retried), or an HTTP status (above 99) for a refused handshake. */
static void
conn_close(struct loadgen *lg, struct conn *c, int code)
{
    if (c->fd < 0)
        return;
    epoll_ctl(lg->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    free(c->carry);
    free(c->out);
    c->carry = c->out = NULL;
    c->carry_len = c->out_len = 0;
    c->want_out = 0;
    int was = c->state;
    c->state = ST_DONE;
    if (was == ST_READY) {
        lg->ready--;
        lg->ready_per_id[c->id]--;
        lg->ready_lost++;
        lg->closed++;
        count_close(lg, code);
        return;
    }
    lg->pending--;
    if (code == -2 && c->tries < CONNECT_TRIES) {
        lg->retries++;
        c->src = (uint8_t)((c->src + 1) % lg->o.src_count);
        conn_start(lg, c);
        return;
    }
    lg->failed++;
    count_close(lg, code);
}

static void
conn_ready(struct loadgen *lg, struct conn *c)
{
    c->state = ST_READY;
    lg->pending--;
    lg->ready++;
    lg->ready_per_id[c->id]++;
}

/* Bind fd to its source address: a port of its own with --src (SRC_PORT_FIRST..), else
 * (or when SRC_PORT_TRIES of them are taken) the kernel's pick at connect(). */
static int
src_bind(struct loadgen *lg, int fd, struct sockaddr_in *src, uint8_t k)
{
    int one = 1; /* a port whose last connection is in TIME_WAIT may be bound again */
    if (lg->o.src_ports)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    for (int i = 0; lg->o.src_ports && i < SRC_PORT_TRIES; i++) {
        uint16_t port = lg->next_port[k];
        lg->next_port[k] = port >= SRC_PORT_LAST ? SRC_PORT_FIRST : (uint16_t)(port + 1);
        src->sin_port = htons(port);
        if (bind(fd, (struct sockaddr *)src, sizeof *src) == 0)
            return 0;
        if (errno != EADDRINUSE)
            return -1;
    }
    src->sin_port = 0;
    return bind(fd, (struct sockaddr *)src, sizeof *src);
}

static void
conn_start(struct loadgen *lg, struct conn *c)
{
    c->tries++;
    c->state = ST_CONNECTING;
    lg->pending++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
        c->tries = CONNECT_TRIES;
        lg->pending--;
        lg->failed++;
        c->state = ST_DONE;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* At a set rate, the kernel's receive time of each read: when the frame reached the
     * client, before the load generator (one thread for all its clients) got round to reading
     * it.  Flat out, where the load generator's own cost sets the rate, it is not asked for. */
    if (lg->o.rate > 0) {
        int stamps = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
        setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPING, &stamps, sizeof stamps);
    }
    struct sockaddr_in src = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(lg->o.src_first + c->src)};
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lg->o.port)};
    inet_pton(AF_INET, lg->o.host, &dst.sin_addr);
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)(c - lg->conns)};
    if (src_bind(lg, c->fd, &src, c->src) != 0 ||
        (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS) ||
        epoll_ctl(lg->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        close(c->fd);
        c->fd = -1;
        lg->pending--;
        c->state = ST_DONE;
        if (c->tries < CONNECT_TRIES) {
            lg->retries++;
            c->src = (uint8_t)((c->src + 1) % lg->o.src_count);
            conn_start(lg, c);
        } else {
            lg->failed++;
            count_close(lg, -2);
        }
        return;
    }
    c->want_out = 1;
}

/* The TCP connection is up: send the upgrade request. */
static void
conn_send_upgrade(struct loadgen *lg, struct conn *c)
{
    unsigned char raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng_next(lg);
        memcpy(raw + i, &r, 8);
    }
    EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
    const char *id = lg->ids[c->id];
    char path[2048], token[1024] = "";
    if (strstr(lg->o.path, "{token}"))
        make_token(lg, id, token, sizeof token);
    size_t at = 0;
    for (const char *p = lg->o.path; *p && at < sizeof path - 1100;) {
        if (!strncmp(p, "{token}", 7)) {
            at += (size_t)snprintf(path + at, sizeof path - at, "%s", token);
            p += 7;
        } else if (!strncmp(p, "{id}", 4)) {
            at += (size_t)snprintf(path + at, sizeof path - at, "%s", id);
            p += 4;
        } else {
            path[at++] = *p++;
        }
    }
    path[at] = 0;
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, lg->o.host, lg->o.port, c->key,
                     lg->cookies ? lg->cookies[c->id] : "");
    c->state = ST_HANDSHAKE;
    conn_want_out(lg, c, 0);
    conn_write(lg, c, req, (size_t)n);
}

/* ---- incoming messages ---- */

/* Find "name" in s (maybe inside an escaped JSON string) and return what follows its colon. */
static const char *
field(const char *s, size_t len, const char *name, size_t name_len)
{
    const char *p = memmem(s, len, name, name_len);
    if (!p)
        return NULL;
    p += name_len;
    const char *end = s + len;
    while (p < end && (*p == '\\' || *p == '"' || *p == ':' || *p == ' '))
        p++;
    return p < end ? p : NULL;
}

static uint64_t
digits(const char *p, const char *end)
{
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    return v;
}

/* A message payload arrived on c: check its sequence and record its latency. */
static void
on_payload(struct loadgen *lg, struct conn *c, const char *s, size_t len)
{
    size_t scan = len < 128 ? len : 128; /* the stamp leads the payload */
    const char *end = s + len;
    const char *t = field(s, scan, "t_us", 4);
    if (!t) {
        lg->others++;
        return;
    }
    uint64_t sent = digits(t, end);
    const char *q = field(s, scan, "seq", 3);
    const char *k = field(s, scan, "\"k", 2);
    uint32_t seq = q ? (uint32_t)digits(q, end) : 0;
    char kind = k ? *k : 'm';
    if (c->last_seq && seq != c->last_seq + 1)
        lg->gaps++;
    c->last_seq = seq;
    int ph = phase_index(kind);
    lg->received[ph]++;
    if (ph == 0) {
        if (!c->probed) {
            c->probed = 1;
            lg->probed_per_id[c->id]++;
        }
        return;
    }
    if (lg->now >= lg->window_start && lg->now < lg->window_end)
        lg->in_window++;
    if (ph == 2) {
        hist_record(&lg->lat, lg->arrived > sent ? lg->arrived - sent : 0);
        hist_record(&lg->parsed, lg->now > sent ? lg->now - sent : 0);
    }
}

/* One complete text (or binary) message, or the first fragment of one. */
static void
on_message(struct loadgen *lg, struct conn *c, const char *s, size_t len)
{
    if (lg->o.proto == PROTO_SIO) {
        if (len == 0)
            return;
        switch (s[0]) {
        case '0': /* Engine.IO open: join the default namespace */
            conn_send_frame(lg, c, 0x1, "40", 2);
            return;
        case '2': /* Engine.IO ping */
            lg->pings++;
            conn_send_frame(lg, c, 0x1, "3", 1);
            return;
        case '4':
            if (len >= 2 && s[1] == '0' && c->state == ST_SIO_WAIT)
                conn_ready(lg, c);
            else if (len >= 2 && s[1] == '2' && c->state == ST_READY)
                on_payload(lg, c, s + 2, len - 2);
            else if (len >= 2 && (s[1] == '1' || s[1] == '4'))
                conn_close(lg, c, 4000 + (s[1] - '0')); /* disconnect or connect error */
            return;
        default:
            lg->others++;
            return;
        }
    }
    if (c->state == ST_WAIT_FIRST && lg->o.channel) {
        char text[160];
        int n = snprintf(text, sizeof text, "{\"type\":\"subscribe\",\"channel\":\"%s\"}",
                         lg->o.channel);
        c->state = ST_WAIT_SUBSCRIBED;
        conn_send_frame(lg, c, 0x1, text, (size_t)n);
        return;
    }
    if (c->state == ST_WAIT_SUBSCRIBED) {
        if (memmem(s, len, "\"subscribed\"", 12))
            conn_ready(lg, c);
        else if (memmem(s, len, "\"refused\"", 9))
            conn_close(lg, c, -1);
        return;
    }
    if (c->state == ST_WAIT_FIRST) {
        conn_ready(lg, c);
        return;
    }
    if (c->state == ST_READY)
        on_payload(lg, c, s, len);
}

/* Parse frames in buf; returns bytes consumed, or -1 if c was closed. */
static long
on_frames(struct loadgen *lg, struct conn *c, const unsigned char *buf, size_t len)
{
    size_t at = 0;
    while (len - at >= 2) {
        const unsigned char *f = buf + at;
        int fin = f[0] & 0x80, op = f[0] & 0x0f;
        uint64_t plen = f[1] & 0x7f;
        size_t head = 2;
        if (f[1] & 0x80) { /* servers never mask */
            conn_close(lg, c, -1);
            return -1;
        }
        if (plen == 126) {
            if (len - at < 4)
                break;
            plen = (uint64_t)f[2] << 8 | f[3];
            head = 4;
        } else if (plen == 127) {
            if (len - at < 10)
                break;
            plen = 0;
            for (int i = 2; i < 10; i++)
                plen = plen << 8 | f[i];
            head = 10;
        }
        if (plen > FRAME_MAX) {
            conn_close(lg, c, -1);
            return -1;
        }
        if (len - at < head + plen)
            break;
        const char *p = (const char *)f + head;
        at += head + (size_t)plen;
        switch (op) {
        case 0x0:
            if (fin)
                c->in_message = 0;
            break;
        case 0x1:
        case 0x2:
            c->in_message = !fin;
            on_message(lg, c, p, (size_t)plen);
            break;
        case 0x8: {
            int code = plen >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) : 1005;
            conn_send_frame(lg, c, 0x8, p, plen >= 2 ? 2 : 0);
            conn_close(lg, c, code);
            return -1;
        }
        case 0x9:
            lg->pings++;
            conn_send_frame(lg, c, 0xA, p, (size_t)plen);
            break;
        default:
            break;
        }
        if (c->fd < 0)
            return -1;
    }
    return (long)at;
}

/* The 101 response; returns bytes consumed, 0 if incomplete, -1 if c was closed. */
static long
on_handshake(struct loadgen *lg, struct conn *c, const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) {
        if (len >= HANDSHAKE_MAX)
            conn_close(lg, c, -1);
        return len >= HANDSHAKE_MAX ? -1 : 0;
    }
    int status = len > 12 ? (int)strtol(buf + 9, NULL, 10) : 0;
    if (strncmp(buf, "HTTP/1.1 101", 12) != 0) {
        if (status >= 500 && c->tries < CONNECT_TRIES) {
            lg->refused_5xx++; /* a server or its gateway was busy: reconnect, as a page would */
            conn_close(lg, c, -2);
        } else {
            conn_close(lg, c, status > 99 ? status : -1);
        }
        return -1;
    }
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    char material[64];
    unsigned char sha[SHA_DIGEST_LENGTH];
    char accept[32];
    int n = snprintf(material, sizeof material, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
    SHA1((unsigned char *)material, (size_t)n, sha);
    EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);
    if (!memmem(buf, (size_t)(end - buf), accept, strlen(accept))) {
        conn_close(lg, c, -1);
        return -1;
    }
    if (lg->auth_frames) {
        conn_write(lg, c, lg->auth_frames + (size_t)c->id * lg->auth_len, lg->auth_len);
        if (c->fd < 0)
            return -1;
    }
    if (lg->o.proto == PROTO_SIO)
        c->state = ST_SIO_WAIT;
    else if (lg->o.ready == READY_FIRST_FRAME)
        c->state = ST_WAIT_FIRST;
    else
        conn_ready(lg, c);
    return (long)(end + 4 - buf);
}

static void
conn_on_event(struct loadgen *lg, struct conn *c, uint32_t events)
{
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t elen = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            conn_close(lg, c, -2);
            return;
        }
        conn_send_upgrade(lg, c);
        return;
    }
    if ((events & EPOLLOUT) && c->out_len) {
        conn_flush(lg, c);
        if (c->fd < 0)
            return;
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    char *buf = lg->rbuf;
    size_t have = c->carry_len;
    if (have)
        memcpy(buf, c->carry, have);
    struct iovec iov = {.iov_base = buf + have, .iov_len = READ_BUFFER - have};
    union {
        char buf[CMSG_SPACE(sizeof(struct scm_timestamping))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    ssize_t n = lg->o.rate > 0 ? recvmsg(c->fd, &msg, 0)
                               : recv(c->fd, iov.iov_base, iov.iov_len, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        conn_close(lg, c, -1);
        return;
    }
    lg->now = now_us();
    lg->arrived = lg->now;
    for (struct cmsghdr *cm = lg->o.rate > 0 ? CMSG_FIRSTHDR(&msg) : NULL; cm;
         cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPING) {
            /* TCP gives the time of the last segment read: later than the first frames' own
             * arrival when one read takes several, never earlier. */
            struct scm_timestamping ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            int64_t real_us = (int64_t)ts.ts[0].tv_sec * 1000000 + ts.ts[0].tv_nsec / 1000;
            int64_t mono_us = real_us - lg->real_minus_mono;
            if (real_us > 0 && mono_us > 0 && (uint64_t)mono_us < lg->now) {
                lg->arrived = (uint64_t)mono_us;
                lg->stamped++;
            }
        }
    }
    have += (size_t)n;
    size_t at = 0;
    if (c->state == ST_HANDSHAKE) {
        long used = on_handshake(lg, c, buf, have);
        if (used < 0)
            return;
        at = (size_t)used;
        if (used == 0)
            goto keep;
    }
    long used = on_frames(lg, c, (const unsigned char *)buf + at, have - at);
    if (used < 0)
        return;
    at += (size_t)used;
keep:
    if (at < have) {
        size_t rest = have - at;
        if (rest > c->carry_len || !c->carry) {
            char *p = realloc(c->carry, rest);
            if (!p) {
                conn_close(lg, c, -1);
                return;
            }
            c->carry = p;
        }
        memmove(c->carry, buf + at, rest);
        c->carry_len = (uint32_t)rest;
    } else if (c->carry) {
        free(c->carry);
        c->carry = NULL;
        c->carry_len = 0;
    }
}

/* ---- publishing ---- */

/* Build the stamped payload for id index i in phase kind; returns its length. */
static size_t
make_payload(struct loadgen *lg, uint32_t i, char kind)
{
    uint32_t seq = ++lg->seq_per_id[i];
    int n = snprintf(lg->payload, sizeof lg->payload,
                     "{\"t_us\":%" PRIu64 ",\"seq\":%u,\"k\":\"%c\",\"type\":\"task\","
                     "\"event\":\"progress\",\"task\":{\"id\":\"%s\",\"progress\":50,"
                     "\"message\":\"",
                     now_us(), seq, kind, lg->ids[i]);
    size_t len = (size_t)n;
    size_t want = (size_t)lg->o.size > len + 3 ? (size_t)lg->o.size - 3 : len;
    memset(lg->payload + len, 'x', want - len);
    len = want;
    memcpy(lg->payload + len, "\"}}", 3);
    return len + 3;
}

/* Publish one message to id i; 0 sent, 1 busy, -1 failed.  The sequence number is only
 * consumed when the message went out. */
static int
publish(struct loadgen *lg, uint32_t i, char kind)
{
    if (lg->o.channel)
        i = 0; /* one topic, one sequence: every ready connection gets every message */
    size_t len = make_payload(lg, i, kind);
    int rc = lg->o.channel ? publisher_send(lg->pub, lg->o.channel, strlen(lg->o.channel),
                                            lg->payload, len)
                           : publisher_send(lg->pub, lg->ids[i], 32, lg->payload, len);
    if (rc != 0) {
        lg->seq_per_id[i]--;
        return rc;
    }
    int ph = phase_index(kind);
    lg->published[ph]++;
    lg->expected[ph] += lg->o.channel ? (uint64_t)lg->ready : lg->ready_per_id[i];
    return 0;
}

static void
poll_events(struct loadgen *lg, int timeout_ms)
{
    struct epoll_event ev[EVENTS_MAX];
    int n = epoll_wait(lg->epfd, ev, EVENTS_MAX, timeout_ms);
    lg->now = now_us();
    if (lg->o.rate > 0) { /* receive timestamps are CLOCK_REALTIME */
        struct timespec real;
        clock_gettime(CLOCK_REALTIME, &real);
        lg->real_minus_mono = (int64_t)real.tv_sec * 1000000 + real.tv_nsec / 1000 -
                              (int64_t)lg->now;
    }
    for (int i = 0; i < n; i++) {
        uint64_t d = ev[i].data.u64;
        if (d & PUBLISHER_TAG)
            publisher_on_event(lg->pub, d, ev[i].events);
        else
            conn_on_event(lg, &lg->conns[d], ev[i].events);
    }
}

/* Open every connection, at most --concurrency handshakes at once. */
static void
connect_all(struct loadgen *lg)
{
    uint64_t deadline = now_us() + (uint64_t)(lg->o.connect_timeout * 1e6);
    int next = 0;
    while (!stop_requested && now_us() < deadline) {
        while (next < lg->o.conns && lg->pending < lg->o.concurrency) {
            struct conn *c = &lg->conns[next];
            c->src = (uint8_t)(next % lg->o.src_count);
            lg->started++;
            next++;
            conn_start(lg, c);
        }
        if (next >= lg->o.conns && lg->pending == 0)
            break;
        poll_events(lg, 10);
    }
}

/* Send probes until every ready connection has seen one: subscriptions are in place. */
static int
probe(struct loadgen *lg)
{
    uint64_t deadline = now_us() + (uint64_t)(lg->o.probe_timeout * 1e6);
    uint64_t next_round = 0;
    while (!stop_requested && now_us() < deadline) {
        int missing = 0;
        for (int i = 0; i < lg->o.ids; i++)
            missing += lg->probed_per_id[i] < lg->ready_per_id[i];
        if (!missing)
            return 0;
        if (now_us() >= next_round) {
            for (int i = 0; i < lg->o.ids; i++) {
                if (lg->probed_per_id[i] < lg->ready_per_id[i]) {
                    while (publish(lg, (uint32_t)i, 'p') == 1)
                        poll_events(lg, 1);
                    if (lg->o.channel)
                        break; /* one probe reaches every connection */
                }
            }
            next_round = now_us() + PROBE_EVERY_US;
        }
        poll_events(lg, 5);
    }
    return -1;
}

/* Publish in phase kind until `until` (microseconds), at the rate or within the window. */
static void
run_phase(struct loadgen *lg, char kind, uint64_t until)
{
    uint64_t last = now_us();
    double credit = 0;
    uint64_t last_progress = last, last_received = 0;
    static uint32_t next_id;
    while (!stop_requested && (lg->now = now_us()) < until) {
        if (lg->o.rate > 0) {
            credit += lg->o.rate * (double)(lg->now - last) / 1e6;
            if (credit > lg->o.rate * 0.1)
                credit = lg->o.rate * 0.1; /* a stall is not made up in a burst */
            last = lg->now;
            int published = 0;
            while (credit >= 1) {
                if (publish(lg, next_id, kind) != 0)
                    break;
                next_id = (next_id + 1) % (uint32_t)lg->o.ids;
                credit -= 1;
                published = 1;
            }
            /* What was published waits in ZeroMQ's I/O thread, a batch thread on this core:
             * while the clients keep this thread busy it would run only when the scheduler's
             * slice ends, 4-8 ms later, and that wait would count as the server's latency. */
            static uint64_t last_handoff;
            if (published && lg->now - last_handoff >= HANDOFF_US) {
                last_handoff = lg->now;
                sched_yield();
            }
            poll_events(lg, 1);
            continue;
        }
        uint64_t got = lg->received[1] + lg->received[2];
        uint64_t sent = lg->expected[1] + lg->expected[2];
        if (got != last_received) {
            last_received = got;
            last_progress = lg->now;
        } else if (sent - lg->written_off > got && lg->now - last_progress > STALL_US) {
            lg->written_off = sent - got; /* lost on the way: stop waiting for them */
            last_progress = lg->now;
        }
        int sent_now = 0;
        while ((long)(lg->expected[1] + lg->expected[2] - lg->written_off - got) < lg->o.window &&
               sent_now < 256) {
            if (publish(lg, next_id, kind) != 0)
                break;
            next_id = (next_id + 1) % (uint32_t)lg->o.ids;
            sent_now++;
        }
        poll_events(lg, sent_now ? 0 : 1);
    }
}

/* ---- results ---- */

/* CPU seconds (user + system) used so far by the watched server processes. */
static double
watched_cpu(const struct loadgen *lg)
{
    double total = 0;
    long tick = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < lg->o.nwatch; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", lg->o.watch[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
        unsigned long long utime = 0, stime = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                        &stime) == 2)
            total += (double)(utime + stime) / (double)tick;
    }
    return total;
}

static double
own_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void
print_result(struct loadgen *lg, const char *event, double seconds)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("{\"event\":\"%s\",\"conns\":%d,\"ready\":%ld,\"failed\":%ld,\"closed\":%ld,"
           "\"retries\":%ld,\"refused_5xx\":%ld,\"close_codes\":{",
           event, lg->o.conns, lg->ready, lg->failed, lg->closed, lg->retries, lg->refused_5xx);
    for (int i = 0; i < CLOSE_CODES && lg->close_count[i]; i++)
        printf("%s\"%d\":%ld", i ? "," : "", lg->close_code[i], lg->close_count[i]);
    uint64_t lost = lg->expected[2] > lg->received[2] ? lg->expected[2] - lg->received[2] : 0;
    printf("},\"published\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"received\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"gaps\":%" PRIu64 ",\"others\":%" PRIu64 ",\"pings\":%" PRIu64
           ",\"publish_errors\":%" PRIu64 ",\"seconds\":%.3f,\"published_per_s\":%.1f"
           ",\"delivered_per_s\":%.1f,\"lat_us\":{\"p50\":%" PRIu64 ",\"p90\":%" PRIu64
           ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64 ",\"mean\":%.1f},\"parsed_us\":{\"p50\":%" PRIu64
           ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64 "},\"stamped_reads\":%" PRIu64 ",\"cpu_s\":%.3f,"
           "\"maxrss_kb\":%ld,\"server_cpu\":%.3f,\"client_cpu\":%.3f}\n",
           lg->published[2], lg->expected[2], lg->received[2], lost, lg->gaps, lg->others,
           lg->pings, lg->pub ? publisher_errors(lg->pub) : 0, seconds,
           seconds > 0 ? (double)lg->published[2] / seconds : 0,
           seconds > 0 ? (double)lg->in_window / seconds : 0, hist_quantile(&lg->lat, 0.5),
           hist_quantile(&lg->lat, 0.9), hist_quantile(&lg->lat, 0.99), lg->lat.max,
           lg->lat.count ? (double)lg->lat.sum / (double)lg->lat.count : 0,
           hist_quantile(&lg->parsed, 0.5), hist_quantile(&lg->parsed, 0.99), lg->parsed.max,
           lg->stamped,
           cpu, ru.ru_maxrss,
           lg->window_s > 0 ? lg->server_cpu_s / lg->window_s : 0,
           lg->window_s > 0 ? lg->client_cpu_s / lg->window_s : 0);
    fflush(stdout);
}

/* ---- options ---- */

static void
usage(void)
{
    fprintf(stderr,
            "usage: loadgen --port N [--host A] [--path P] [--proto ws|sio]\n"
            "  [--ready upgrade|first-frame] [--conns N] [--ids N] [--id-base N] [--tag HEX]\n"
            "  [--secret FILE] [--src A[-B]] [--concurrency N] [--connect-timeout S]\n"
            "  [--pub SPEC [--pub-conns N] (--rate R | --window W) [--warmup S]\n"
            "   [--duration S] [--drain S] [--size B] [--probe-timeout S] [--watch PID,..]]\n"
            "  [--hold S] [--auth [--channel NAME]] [--cookie NAME]\n"
            "PATH may hold {id} and {token}; --auth sends {\"type\":\"auth\",\"token\":...}\n"
            "first (taskwire), --cookie the token as that cookie (with /ws?auth=cookie); without --pub the connections stay idle until SIGTERM or\n"
            "--hold seconds.\n");
    exit(2);
}

static double
num(const char *s, double lo, double hi, const char *name)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "loadgen: --%s: %s is not in %g..%g\n", name, s, lo, hi);
        exit(2);
    }
    return v;
}

static void
parse_src(struct options *o, const char *s)
{
    char first[32], last[32] = "";
    const char *dash = strchr(s, '-');
    snprintf(first, sizeof first, "%.*s", dash ? (int)(dash - s) : (int)strlen(s), s);
    if (dash)
        snprintf(last, sizeof last, "%s", dash + 1);
    struct in_addr a, b;
    if (inet_pton(AF_INET, first, &a) != 1 || (dash && inet_pton(AF_INET, last, &b) != 1)) {
        fprintf(stderr, "loadgen: --src: bad address range %s\n", s);
        exit(2);
    }
    o->src_first = ntohl(a.s_addr);
    uint32_t hi = dash ? ntohl(b.s_addr) : o->src_first;
    if (hi < o->src_first || hi - o->src_first >= SRC_MAX) {
        fprintf(stderr, "loadgen: --src: at most %d addresses\n", SRC_MAX);
        exit(2);
    }
    o->src_count = hi - o->src_first + 1;
    o->src_ports = 1;
}

static void
parse_options(struct options *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", 1, 0, 'h'},          {"port", 1, 0, 'p'},        {"path", 1, 0, 'P'},
        {"proto", 1, 0, 'x'},         {"ready", 1, 0, 'r'},       {"conns", 1, 0, 'c'},
        {"ids", 1, 0, 'i'},           {"id-base", 1, 0, 'b'},     {"tag", 1, 0, 't'},
        {"secret", 1, 0, 'S'},        {"src", 1, 0, 's'},         {"concurrency", 1, 0, 'C'},
        {"connect-timeout", 1, 0, 'T'}, {"pub", 1, 0, 'u'},       {"pub-conns", 1, 0, 'U'},
        {"rate", 1, 0, 'R'},          {"window", 1, 0, 'W'},      {"warmup", 1, 0, 'w'},
        {"duration", 1, 0, 'd'},      {"drain", 1, 0, 'D'},       {"size", 1, 0, 'z'},
        {"hold", 1, 0, 'H'},          {"probe-timeout", 1, 0, 'O'}, {"watch", 1, 0, 'X'},
        {"auth", 0, 0, 'A'},          {"channel", 1, 0, 'N'},     {"cookie", 1, 0, 'K'},
        {0, 0, 0, 0}};
    *o = (struct options){.host = "127.0.0.1", .path = "/ws", .conns = 1,
                          .src_first = 0x7f000001u, .src_count = 1,
                          .concurrency = 256, .connect_timeout = 120, .pub_conns = 16,
                          .window = 1000, .warmup = 2, .duration = 10, .drain = 5, .size = 300,
                          .probe_timeout = 30};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': o->host = optarg; break;
        case 'p': o->port = (int)num(optarg, 1, 65535, "port"); break;
        case 'P': o->path = optarg; break;
        case 'A': o->auth = 1; break;
        case 'K': o->cookie = optarg; break;
        case 'N': o->channel = optarg; break;
        case 'x':
            if (!strcmp(optarg, "ws"))
                o->proto = PROTO_WS;
            else if (!strcmp(optarg, "sio"))
                o->proto = PROTO_SIO;
            else
                usage();
            break;
        case 'r':
            if (!strcmp(optarg, "upgrade"))
                o->ready = READY_UPGRADE;
            else if (!strcmp(optarg, "first-frame"))
                o->ready = READY_FIRST_FRAME;
            else
                usage();
            break;
        case 'c': o->conns = (int)num(optarg, 1, 1e6, "conns"); break;
        case 'i': o->ids = (int)num(optarg, 1, 1e6, "ids"); break;
        case 'b': o->id_base = (uint64_t)num(optarg, 0, 1e15, "id-base"); break;
        case 't': o->tag = strtoull(optarg, NULL, 16); break;
        case 'S': o->secret_file = optarg; break;
        case 's': parse_src(o, optarg); break;
        case 'C': o->concurrency = (int)num(optarg, 1, 1e5, "concurrency"); break;
        case 'T': o->connect_timeout = num(optarg, 0.1, 3600, "connect-timeout"); break;
        case 'u': o->pub = optarg; break;
        case 'U': o->pub_conns = (int)num(optarg, 1, PUBLISHER_HTTP_CONNS, "pub-conns"); break;
        case 'R': o->rate = num(optarg, 0, 1e8, "rate"); break;
        case 'W': o->window = (long)num(optarg, 1, 1e9, "window"); break;
        case 'w': o->warmup = num(optarg, 0, 3600, "warmup"); break;
        case 'd': o->duration = num(optarg, 0.1, 3600, "duration"); break;
        case 'D': o->drain = num(optarg, 0, 3600, "drain"); break;
        case 'z': o->size = (int)num(optarg, 100, PAYLOAD_MAX, "size"); break;
        case 'H': o->hold = num(optarg, 0, 1e6, "hold"); break;
        case 'O': o->probe_timeout = num(optarg, 0.1, 3600, "probe-timeout"); break;
        case 'X':
            for (char *tok = strtok(optarg, ","); tok && o->nwatch < WATCH_MAX;
                 tok = strtok(NULL, ","))
                o->watch[o->nwatch++] = (int)num(tok, 1, 1e9, "watch");
            break;
        default: usage();
        }
    }
    if (!o->port || optind != argc)
        usage();
    if (!o->ids || o->ids > o->conns)
        o->ids = o->conns;
}

static int
load_secret(struct loadgen *lg)
{
    if (!lg->o.secret_file)
        return strstr(lg->o.path, "{token}") || lg->o.auth || lg->o.cookie ? -1 : 0;
    FILE *f = fopen(lg->o.secret_file, "rb");
    if (!f)
        return -1;
    lg->secret_len = fread(lg->secret, 1, sizeof lg->secret, f);
    fclose(f);
    return lg->secret_len ? 0 : -1;
}

int
main(int argc, char **argv)
{
    static struct loadgen lg_storage;
    struct loadgen *lg = &lg_storage;
    parse_options(&lg->o, argc, argv);
    if (load_secret(lg) != 0) {
        fprintf(stderr,
                "loadgen: --auth, --cookie and a {token} path need a readable --secret file\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    RAND_bytes((unsigned char *)&lg->rng, sizeof lg->rng);
    lg->rng |= 1;
    for (int k = 0; k < SRC_MAX; k++) /* a run after another meets fewer of its ports */
        lg->next_port[k] =
            (uint16_t)(SRC_PORT_FIRST + rng_next(lg) % (SRC_PORT_LAST - SRC_PORT_FIRST + 1));
    if (!lg->o.tag) /* fresh client ids each run: no server may hold messages for them */
        lg->o.tag = rng_next(lg);
    lg->epfd = epoll_create1(EPOLL_CLOEXEC);
    lg->rbuf = malloc(READ_BUFFER);
    lg->conns = calloc((size_t)lg->o.conns, sizeof *lg->conns);
    lg->ids = calloc((size_t)lg->o.ids, sizeof *lg->ids);
    lg->ready_per_id = calloc((size_t)lg->o.ids, sizeof *lg->ready_per_id);
    lg->probed_per_id = calloc((size_t)lg->o.ids, sizeof *lg->probed_per_id);
    lg->seq_per_id = calloc((size_t)lg->o.ids, sizeof *lg->seq_per_id);
    if (lg->epfd < 0 || !lg->rbuf || !lg->conns || !lg->ids || !lg->ready_per_id ||
        !lg->probed_per_id || !lg->seq_per_id) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    for (int i = 0; i < lg->o.ids; i++)
        snprintf(lg->ids[i], sizeof lg->ids[i], "%016" PRIx64 "%016" PRIx64, lg->o.tag,
                 lg->o.id_base + (uint64_t)i);
    for (int i = 0; i < lg->o.conns; i++) {
        lg->conns[i].fd = -1;
        lg->conns[i].id = (uint32_t)(i % lg->o.ids);
    }
    if (lg->o.auth && auth_build(lg) != 0) {
        fprintf(stderr, "loadgen: cannot build the auth frames\n");
        return 1;
    }
    if (lg->o.cookie && cookie_build(lg) != 0) {
        fprintf(stderr, "loadgen: cannot build the cookies\n");
        return 1;
    }
    if (lg->o.pub) {
        char err[256];
        lg->pub = publisher_new(lg->o.pub, lg->o.pub_conns, lg->epfd, err, sizeof err);
        if (!lg->pub) {
            fprintf(stderr, "loadgen: publisher: %s\n", err);
            return 1;
        }
    }
    uint64_t t0 = now_us();
    connect_all(lg);
    double connect_s = (double)(now_us() - t0) / 1e6;
    fprintf(stderr, "loadgen: %ld of %d connections ready in %.1f s (%ld failed, %ld retries)\n",
            lg->ready, lg->o.conns, connect_s, lg->failed, lg->retries);
    int rc = 0;
    if (!lg->pub) {
        print_result(lg, "ready", connect_s);
        uint64_t until = lg->o.hold > 0 ? now_us() + (uint64_t)(lg->o.hold * 1e6) : UINT64_MAX;
        while (!stop_requested && now_us() < until)
            poll_events(lg, 100);
        print_result(lg, "idle", connect_s);
        return lg->ready > 0 ? 0 : 1;
    }
    if (lg->ready == 0 || probe(lg) != 0) {
        fprintf(stderr, "loadgen: subscriptions did not all answer a probe within %.0f s\n",
                lg->o.probe_timeout);
        rc = 1;
    }
    uint64_t t1 = now_us() + (uint64_t)(lg->o.warmup * 1e6);
    uint64_t t2 = t1 + (uint64_t)(lg->o.duration * 1e6);
    lg->window_start = t1;
    lg->window_end = t2;
    if (rc == 0) {
        run_phase(lg, 'w', t1);
        uint64_t w0 = now_us();
        double s0 = watched_cpu(lg), c0 = own_cpu();
        run_phase(lg, 'm', t2);
        lg->server_cpu_s = watched_cpu(lg) - s0;
        lg->client_cpu_s = own_cpu() - c0;
        lg->window_s = (double)(now_us() - w0) / 1e6;
        uint64_t drain_until = now_us() + (uint64_t)(lg->o.drain * 1e6);
        while (!stop_requested && lg->received[2] < lg->expected[2] && now_us() < drain_until)
            poll_events(lg, 10);
    }
    print_result(lg, "run", lg->o.duration);
    return rc;
}
