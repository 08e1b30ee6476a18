/* publisher.h: the load generator's way into each server under test.
 *
 * One publisher per run, chosen by a spec string:
 *   zmq:ENDPOINT       ZeroMQ PUB, two frames [client id][payload]   (taskwire's publish endpoint)
 *   zmqbind:ENDPOINT   the same PUB, bound: relays connect to it as to a worker pool's events
 *   pushpin:ENDPOINT   ZeroMQ PUSH, one tnetstring publish item per message (Pushpin's PULL input)
 *   http:HOST:PORT/PATH   HTTP/1.1 POST of the payload, "{id}" in PATH replaced by the client id,
 *                      over up to PUBLISHER_HTTP_CONNS keep-alive connections, one request in
 *                      flight on each (nchan's publisher location)
 *   line:HOST:PORT     one TCP stream of "ID PAYLOAD\n" lines (the Socket.IO relay's input)
 * With BENCH_CURVE_SECRET set (a secret key, Z85) the ZeroMQ kinds speak CURVE: bound, as the
 * CURVE server with that key (as a worker pool is); connected, as a client of the server whose
 * public key BENCH_CURVE_SERVER holds.
 * Sockets of the http and line kinds live in the caller's epoll set; their events come back
 * through publisher_on_event().  The ZeroMQ kinds need no events.
 */
#ifndef TW_BENCH_PUBLISHER_H
#define TW_BENCH_PUBLISHER_H

#include <stddef.h>
#include <stdint.h>

#define PUBLISHER_HTTP_CONNS 64     /* most keep-alive HTTP connections */
#define PUBLISHER_LINE_BUFFER 262144 /* bytes queued on the line stream before it reports busy */
#define PUBLISHER_TAG (1ull << 62)   /* epoll data of publisher sockets: TAG | socket index */

struct publisher;

/* Start a publisher for spec, with `conns` connections for the http kind (1 otherwise),
 * registering its sockets in epfd.  Caller owns; free with publisher_destroy().
 * NULL with the reason in err. */
struct publisher *publisher_new(const char *spec, int conns, int epfd, char *err, size_t errlen);
void publisher_destroy(struct publisher **pub);

/* Publish payload to client id.  0 sent (or queued), 1 busy: try again later, -1 failed. */
int publisher_send(struct publisher *pub, const char *id, size_t id_len, const char *payload,
                   size_t len);

/* Handle an epoll event whose data was PUBLISHER_TAG | index. */
void publisher_on_event(struct publisher *pub, uint64_t data, uint32_t events);

/* Requests answered with a status other than 2xx, and connections lost (http kind). */
uint64_t publisher_errors(const struct publisher *pub);

#endif
