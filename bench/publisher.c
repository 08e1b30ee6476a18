/* publisher.c: ZeroMQ, HTTP and line publishers for the load generator (see publisher.h). */
#include "publisher.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#define HTTP_IN_MAX 8192  /* one response's headers and (small) body */
#define SCRATCH_MAX 70000 /* one request or publish item: headers and at most 64 KiB payload */

enum publisher_kind { KIND_ZMQ, KIND_PUSHPIN, KIND_HTTP, KIND_LINE };

struct stream {
    int fd;
    int in_flight; /* http: a request awaits its response */
    int want_out;  /* EPOLLOUT is registered */
    char *out;     /* bytes accepted but not yet written */
    size_t out_len, out_off, out_cap;
    char in[HTTP_IN_MAX];
    size_t in_len;
};

struct publisher {
    enum publisher_kind kind;
    int epfd;
    void *zmq_context;
    void *zmq_socket;
    struct stream *streams;
    int nstreams;
    int next_stream;
    char host[64];
    int port;
    char path[256]; /* may hold {id} */
    char *scratch;
    uint64_t errors;
};

static int
parse_host_port(const char *s, char *host, size_t hostlen, int *port, const char **rest)
{
    const char *colon = strchr(s, ':');
    if (!colon || (size_t)(colon - s) >= hostlen)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    *rest = end;
    return 0;
}

static int
stream_open(struct stream *st, const char *host, int port, int epfd, uint64_t tag)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    st->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (st->fd < 0)
        return -1;
    if (connect(st->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    int one = 1;
    setsockopt(st->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int fl = fcntl(st->fd, F_GETFL);
    if (fl < 0 || fcntl(st->fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, st->fd, &ev);
}

static void
stream_want_out(struct publisher *pub, int i, int want)
{
    struct stream *st = &pub->streams[i];
    if (st->want_out == want || st->fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0),
                             .data.u64 = PUBLISHER_TAG | (uint64_t)i};
    epoll_ctl(pub->epfd, EPOLL_CTL_MOD, st->fd, &ev);
    st->want_out = want;
}

/* The server closed stream i (an HTTP server may end a keep-alive connection at any time):
 * open it again.  A request in flight on it is lost and counted as an error. */
static void
stream_fail(struct publisher *pub, int i)
{
    struct stream *st = &pub->streams[i];
    if (st->fd >= 0) {
        epoll_ctl(pub->epfd, EPOLL_CTL_DEL, st->fd, NULL);
        close(st->fd);
    }
    if (st->in_flight || st->out_len > st->out_off)
        pub->errors++;
    st->fd = -1;
    st->in_flight = 0;
    st->want_out = 0;
    st->in_len = st->out_len = st->out_off = 0;
    if (stream_open(st, pub->host, pub->port, pub->epfd, PUBLISHER_TAG | (uint64_t)i) != 0) {
        fprintf(stderr, "loadgen: publisher connection %d lost: %s\n", i, strerror(errno));
        if (st->fd >= 0)
            close(st->fd);
        st->fd = -1;
        st->in_flight = 1; /* never chosen again */
    }
}

/* Write what is queued on stream i; returns -1 when the connection failed. */
static int
stream_flush(struct publisher *pub, int i)
{
    struct stream *st = &pub->streams[i];
    while (st->out_off < st->out_len) {
        ssize_t n = send(st->fd, st->out + st->out_off, st->out_len - st->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            stream_fail(pub, i);
            return -1;
        }
        st->out_off += (size_t)n;
    }
    if (st->out_off == st->out_len)
        st->out_off = st->out_len = 0;
    stream_want_out(pub, i, st->out_len > 0);
    return 0;
}

/* Queue len bytes on stream i and write as much as the socket takes. */
static int
stream_queue(struct publisher *pub, int i, const char *data, size_t len)
{
    struct stream *st = &pub->streams[i];
    if (st->out_off > 0 && st->out_off == st->out_len)
        st->out_off = st->out_len = 0;
    if (st->out_len + len > st->out_cap) {
        if (st->out_off > 0) {
            memmove(st->out, st->out + st->out_off, st->out_len - st->out_off);
            st->out_len -= st->out_off;
            st->out_off = 0;
        }
        if (st->out_len + len > st->out_cap) {
            size_t cap = st->out_cap ? st->out_cap : 4096;
            while (cap < st->out_len + len)
                cap *= 2;
            char *p = realloc(st->out, cap);
            if (!p)
                return -1;
            st->out = p;
            st->out_cap = cap;
        }
    }
    memcpy(st->out + st->out_len, data, len);
    st->out_len += len;
    return stream_flush(pub, i);
}

/* BENCH_CURVE_SECRET (and, connected, BENCH_CURVE_SERVER): socket's CURVE options.  0, or -1
 * (a key that is not 40 characters of Z85; zmq_errno says why). */
static int
publisher_curve(void *socket, int server)
{
    const char *secret = getenv("BENCH_CURVE_SECRET");
    if (!secret || !*secret)
        return 0;
    char public[41];
    if (strlen(secret) != 40 || zmq_curve_public(public, secret) != 0) {
        errno = EINVAL;
        return -1;
    }
    if (server)
        return zmq_setsockopt(socket, ZMQ_CURVE_SERVER, &server, sizeof server) != 0 ||
                       zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, secret, 40) != 0
                   ? -1
                   : 0;
    const char *peer = getenv("BENCH_CURVE_SERVER");
    if (!peer || strlen(peer) != 40) {
        errno = EINVAL;
        return -1;
    }
    return zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, peer, 40) != 0 ||
                   zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, public, 40) != 0 ||
                   zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, secret, 40) != 0
               ? -1
               : 0;
}

struct publisher *
publisher_new(const char *spec, int conns, int epfd, char *err, size_t errlen)
{
    struct publisher *pub = calloc(1, sizeof *pub);
    if (!pub || !(pub->scratch = malloc(SCRATCH_MAX))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    pub->epfd = epfd;
    if (!strncmp(spec, "zmq:", 4) || !strncmp(spec, "zmqbind:", 8) ||
        !strncmp(spec, "pushpin:", 8)) {
        int is_push = spec[0] == 'p', bind = !strncmp(spec, "zmqbind:", 8);
        pub->kind = is_push ? KIND_PUSHPIN : KIND_ZMQ;
        const char *endpoint = strchr(spec, ':') + 1;
        int hwm = is_push ? 10000 : 0, linger = 0;
        pub->zmq_context = zmq_ctx_new();
        /* The load generator shares its core with ZeroMQ's I/O thread.  Woken with wakeup
         * preemption, the thread ran for every few messages published, and its context
         * switches made the load generator the limit of the fan-out scenario; as a batch
         * thread it sends what was published since it last ran. */
        if (pub->zmq_context)
            zmq_ctx_set(pub->zmq_context, ZMQ_THREAD_SCHED_POLICY, SCHED_BATCH);
        pub->zmq_socket = pub->zmq_context
                              ? zmq_socket(pub->zmq_context, is_push ? ZMQ_PUSH : ZMQ_PUB)
                              : NULL;
        if (!pub->zmq_socket || publisher_curve(pub->zmq_socket, bind) != 0 ||
            zmq_setsockopt(pub->zmq_socket, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
            zmq_setsockopt(pub->zmq_socket, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
            (bind ? zmq_bind(pub->zmq_socket, endpoint)
                  : zmq_connect(pub->zmq_socket, endpoint)) != 0) {
            snprintf(err, errlen, "%s: %s", endpoint, zmq_strerror(zmq_errno()));
            goto fail;
        }
        return pub;
    }
    const char *rest;
    int port = 0;
    if (!strncmp(spec, "http:", 5)) {
        pub->kind = KIND_HTTP;
        if (parse_host_port(spec + 5, pub->host, sizeof pub->host, &port, &rest) != 0 ||
            *rest != '/' || strlen(rest) >= sizeof pub->path) {
            snprintf(err, errlen, "bad http publisher spec %s", spec);
            goto fail;
        }
        snprintf(pub->path, sizeof pub->path, "%s", rest);
        pub->nstreams = conns < 1 ? 1 : conns > PUBLISHER_HTTP_CONNS ? PUBLISHER_HTTP_CONNS : conns;
    } else if (!strncmp(spec, "line:", 5)) {
        pub->kind = KIND_LINE;
        if (parse_host_port(spec + 5, pub->host, sizeof pub->host, &port, &rest) != 0 || *rest) {
            snprintf(err, errlen, "bad line publisher spec %s", spec);
            goto fail;
        }
        pub->nstreams = 1;
    } else {
        snprintf(err, errlen, "unknown publisher kind in %s", spec);
        goto fail;
    }
    pub->port = port;
    pub->streams = calloc((size_t)pub->nstreams, sizeof *pub->streams);
    if (!pub->streams) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < pub->nstreams; i++)
        pub->streams[i].fd = -1;
    for (int i = 0; i < pub->nstreams; i++) {
        if (stream_open(&pub->streams[i], pub->host, port, epfd, PUBLISHER_TAG | (uint64_t)i) !=
            0) {
            snprintf(err, errlen, "%s:%d: %s", pub->host, port, strerror(errno));
            goto fail;
        }
    }
    return pub;
fail:
    publisher_destroy(&pub);
    return NULL;
}

void
publisher_destroy(struct publisher **pub)
{
    if (!pub || !*pub)
        return;
    struct publisher *p = *pub;
    for (int i = 0; p->streams && i < p->nstreams; i++) {
        if (p->streams[i].fd >= 0)
            close(p->streams[i].fd);
        free(p->streams[i].out);
    }
    free(p->streams);
    if (p->zmq_socket)
        zmq_close(p->zmq_socket);
    if (p->zmq_context)
        zmq_ctx_term(p->zmq_context);
    free(p->scratch);
    free(p);
    *pub = NULL;
}

/* Append a tnetstring string to buf at *at; -1 when it does not fit. */
static int
tnet_string(char *buf, size_t size, size_t *at, const char *s, size_t len)
{
    int n = snprintf(buf + *at, size - *at, "%zu:", len);
    if (n < 0 || (size_t)n + len + 1 > size - *at)
        return -1;
    *at += (size_t)n;
    memcpy(buf + *at, s, len);
    *at += len;
    buf[(*at)++] = ',';
    return 0;
}

/* Wrap buf[from..*at) as a tnetstring dict in place (the prefix is shifted in). */
static int
tnet_close_dict(char *buf, size_t size, size_t from, size_t *at)
{
    char prefix[24];
    size_t body = *at - from;
    int n = snprintf(prefix, sizeof prefix, "%zu:", body);
    if (n < 0 || *at + (size_t)n + 1 > size)
        return -1;
    memmove(buf + from + (size_t)n, buf + from, body);
    memcpy(buf + from, prefix, (size_t)n);
    *at += (size_t)n;
    buf[(*at)++] = '}';
    return 0;
}

/* {"channel": id, "formats": {"ws-message": {"content": payload}}} as a tnetstring. */
static int
pushpin_item(char *buf, size_t size, const char *id, size_t id_len, const char *payload,
             size_t len)
{
    size_t at = 0, outer = 0, formats, wsmsg;
    if (tnet_string(buf, size, &at, "channel", 7) || tnet_string(buf, size, &at, id, id_len) ||
        tnet_string(buf, size, &at, "formats", 7))
        return -1;
    formats = at;
    if (tnet_string(buf, size, &at, "ws-message", 10))
        return -1;
    wsmsg = at;
    if (tnet_string(buf, size, &at, "content", 7) || tnet_string(buf, size, &at, payload, len) ||
        tnet_close_dict(buf, size, wsmsg, &at) || tnet_close_dict(buf, size, formats, &at) ||
        tnet_close_dict(buf, size, outer, &at))
        return -1;
    return (int)at;
}

int
publisher_send(struct publisher *pub, const char *id, size_t id_len, const char *payload,
               size_t len)
{
    switch (pub->kind) {
    case KIND_ZMQ:
        if (zmq_send(pub->zmq_socket, id, id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            return zmq_errno() == EAGAIN ? 1 : -1;
        if (zmq_send(pub->zmq_socket, payload, len, ZMQ_DONTWAIT) < 0)
            return -1; /* a PUB never refuses the second frame once it took the first */
        return 0;
    case KIND_PUSHPIN: {
        int n = pushpin_item(pub->scratch, SCRATCH_MAX, id, id_len, payload, len);
        if (n < 0)
            return -1;
        if (zmq_send(pub->zmq_socket, pub->scratch, (size_t)n, ZMQ_DONTWAIT) < 0)
            return zmq_errno() == EAGAIN ? 1 : -1;
        return 0;
    }
    case KIND_LINE: {
        struct stream *st = &pub->streams[0];
        if (st->fd < 0)
            return -1;
        if (st->out_len - st->out_off > PUBLISHER_LINE_BUFFER)
            return 1;
        if (id_len + len + 2 > SCRATCH_MAX)
            return -1;
        memcpy(pub->scratch, id, id_len);
        pub->scratch[id_len] = ' ';
        memcpy(pub->scratch + id_len + 1, payload, len);
        pub->scratch[id_len + 1 + len] = '\n';
        return stream_queue(pub, 0, pub->scratch, id_len + len + 2) == 0 ? 0 : -1;
    }
    case KIND_HTTP: {
        int i = -1;
        for (int k = 0; k < pub->nstreams; k++) {
            int c = (pub->next_stream + k) % pub->nstreams;
            if (!pub->streams[c].in_flight) {
                i = c;
                break;
            }
        }
        if (i < 0)
            return 1;
        pub->next_stream = (i + 1) % pub->nstreams;
        const char *mark = strstr(pub->path, "{id}");
        int head = mark ? (int)(mark - pub->path) : (int)strlen(pub->path);
        int n = snprintf(pub->scratch, SCRATCH_MAX,
                         "POST %.*s%.*s%s HTTP/1.1\r\nHost: %s\r\n"
                         "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                         head, pub->path, mark ? (int)id_len : 0, id, mark ? mark + 4 : "",
                         pub->host, len);
        if (n < 0 || (size_t)n + len > SCRATCH_MAX)
            return -1;
        memcpy(pub->scratch + n, payload, len);
        pub->streams[i].in_flight = 1;
        return stream_queue(pub, i, pub->scratch, (size_t)n + len) == 0 ? 0 : -1;
    }
    }
    return -1;
}

/* The length of a complete response at the start of buf, 0 if incomplete, -1 if malformed.
 * *status receives the status code. */
static long
http_response_length(const char *buf, size_t len, int *status)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return len >= HTTP_IN_MAX ? -1 : 0;
    size_t head = (size_t)(end - buf) + 4;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
        return -1;
    *status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    long body = 0;
    int chunked = 0;
    for (const char *p = buf; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol)
            break;
        if ((size_t)(eol - p) > 15 && !strncasecmp(p, "Content-Length:", 15))
            body = strtol(p + 15, NULL, 10);
        else if ((size_t)(eol - p) > 18 && !strncasecmp(p, "Transfer-Encoding:", 18) &&
                 memmem(p, (size_t)(eol - p), "chunked", 7))
            chunked = 1;
        p = eol + 2;
    }
    if (chunked) {
        const char *last = memmem(buf + head, len - head, "0\r\n\r\n", 5);
        return last ? (long)(last + 5 - buf) : 0;
    }
    if (body < 0)
        return -1;
    return head + (size_t)body <= len ? (long)(head + (size_t)body) : 0;
}

void
publisher_on_event(struct publisher *pub, uint64_t data, uint32_t events)
{
    int i = (int)(data & ~PUBLISHER_TAG);
    if (i < 0 || i >= pub->nstreams)
        return;
    struct stream *st = &pub->streams[i];
    if (st->fd < 0)
        return;
    if ((events & EPOLLOUT) && stream_flush(pub, i) != 0)
        return;
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    for (;;) {
        ssize_t n = recv(st->fd, st->in + st->in_len, sizeof st->in - st->in_len, 0);
        if (n == 0) {
            stream_fail(pub, i);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                stream_fail(pub, i);
            break;
        }
        st->in_len += (size_t)n;
        if (pub->kind == KIND_LINE) {
            st->in_len = 0; /* the line input answers nothing; ignore anything it says */
            continue;
        }
        for (;;) {
            int status = 0;
            long used = http_response_length(st->in, st->in_len, &status);
            if (used < 0) {
                stream_fail(pub, i);
                return;
            }
            if (used == 0)
                break;
            if (status < 200 || status > 299)
                pub->errors++;
            st->in_flight = 0;
            memmove(st->in, st->in + used, st->in_len - (size_t)used);
            st->in_len -= (size_t)used;
        }
        if ((size_t)n < sizeof st->in)
            break;
    }
}

uint64_t
publisher_errors(const struct publisher *pub)
{
    return pub->errors;
}
