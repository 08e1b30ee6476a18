/* wire.c: ZeroMQ sockets with the programs' options (see wire.h). */
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

/* Set an int option unless it is WIRE_DEFAULT.  0, or -1. */
static int
wire_option(void *socket, int option, int value)
{
    return value == WIRE_DEFAULT ? 0 : zmq_setsockopt(socket, option, &value, sizeof value);
}

/* 1 when endpoint is a tcp:// one, which CURVE covers. */
static int
wire_is_tcp(const char *endpoint)
{
    return endpoint && strncmp(endpoint, "tcp://", 6) == 0;
}

void *
wire_socket(void *zmq, int type, const struct wire_options *options, char *err, size_t errlen)
{
    void *socket = zmq ? zmq_socket(zmq, type) : NULL;
    if (!socket || wire_option(socket, ZMQ_SNDHWM, options->send_hwm) != 0 ||
        wire_option(socket, ZMQ_RCVHWM, options->recv_hwm) != 0 ||
        wire_option(socket, ZMQ_LINGER, options->linger_ms) != 0 ||
        (options->immediate && wire_option(socket, ZMQ_IMMEDIATE, 1) != 0)) {
        snprintf(err, errlen, "socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int binds_tcp = wire_is_tcp(options->bind[0]) || wire_is_tcp(options->bind[1]);
    int connects_tcp = wire_is_tcp(options->connect) || wire_is_tcp(options->connect_later);
    const struct config_endpoints *binds = options->bind_list, *connects = options->connect_list;
    for (size_t i = 0; binds && i < binds->count; i++)
        binds_tcp |= wire_is_tcp(binds->endpoints[i]);
    for (size_t i = 0; connects && i < connects->count; i++)
        connects_tcp |= wire_is_tcp(connects->endpoints[i]);
    if (options->curve && (binds_tcp || connects_tcp) &&
        curve_socket_setup(options->curve, socket, binds_tcp) != 0) {
        snprintf(err, errlen, "CURVE options: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    for (size_t i = 0; i < sizeof options->bind / sizeof options->bind[0]; i++) {
        if (options->bind[i] && zmq_bind(socket, options->bind[i]) != 0) {
            snprintf(err, errlen, "cannot bind %s: %s", options->bind[i],
                     zmq_strerror(zmq_errno()));
            goto fail;
        }
    }
    for (size_t i = 0; binds && i < binds->count; i++) {
        if (zmq_bind(socket, binds->endpoints[i]) != 0) {
            snprintf(err, errlen, "cannot bind %s: %s", binds->endpoints[i],
                     zmq_strerror(zmq_errno()));
            goto fail;
        }
    }
    if (options->connect && zmq_connect(socket, options->connect) != 0) {
        snprintf(err, errlen, "cannot connect %s: %s", options->connect, zmq_strerror(zmq_errno()));
        goto fail;
    }
    for (size_t i = 0; connects && i < connects->count; i++) {
        if (zmq_connect(socket, connects->endpoints[i]) != 0) {
            snprintf(err, errlen, "cannot connect %s: %s", connects->endpoints[i],
                     zmq_strerror(zmq_errno()));
            goto fail;
        }
    }
    return socket;
fail:
    if (socket)
        zmq_close(socket);
    return NULL;
}

int
wire_recv(void *socket, zmq_msg_t *msg, int first)
{
    int rc;
    do
        rc = zmq_msg_recv(msg, socket, first ? ZMQ_DONTWAIT : 0);
    while (rc < 0 && zmq_errno() == EINTR);
    return rc < 0 ? -1 : 0;
}
