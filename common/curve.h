/* curve.h: the ZeroMQ CURVE keys of [zmq] (curve = true), read from the files the config
 * names, and the socket options that put them to use.
 *
 * File formats (text, as `taskwire curve keygen` writes them):
 * - a key is CURVE_KEY_Z85 characters of Z85 (ZeroMQ's RFC 32 alphabet) encoding 32 bytes;
 * - in every key file a line whose first non-blank character is '#' is a comment, blank lines
 *   are ignored, and white space around a key is dropped; any other line must be exactly one
 *   key, or the file is refused (naming the file and line);
 * - curve_secret_file holds one key, this program's secret key; its public key is derived
 *   from it (zmq_curve_public), so a key pair cannot disagree with itself.  It must not be
 *   readable, writable or runnable by others (mode o-rwx, like an ssh key), else it is refused;
 * - curve_server_public_file holds one key, the worker pool's public key (programs that
 *   connect);
 * - curve_clients_file holds the public keys allowed to connect to the pool (or, on a relay
 *   host with [relay] events_listen, to the relay's ingress), one a line, at most
 *   CURVE_CLIENTS_MAX (more is refused, not cut);
 * - curve_relay_public_file holds one key, the relays' public key (a worker host with
 *   [zmq] relays: its events socket connects to each relay as a CURVE client).
 * A file is read whole, at most CURVE_FILE_MAX bytes (a larger one is refused).
 *
 * Assumptions: libzmq built with CURVE (zmq_has("curve")); the programs that bind tcp://
 * endpoints are the pool and a relay with events_listen (the CURVE servers), every other socket
 * only connects (docs/PROTOCOL.md); one server key pair for the pool role, shared by every
 * worker host, and one for the relay role, shared by every relay host.  The pool's events
 * socket is both: a server where it binds, a client of the relays where it connects (libzmq
 * takes a socket's options as they are at each bind and connect).  inproc:// and ipc:// endpoints
 * are never given CURVE (inproc has no handshake; ipc stays on the host).  Curve off: nothing is
 * read and sockets are plaintext, with one warning at start-up when an endpoint is not
 * loopback.
 */
#ifndef TW_COMMON_CURVE_H
#define TW_COMMON_CURVE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define CURVE_KEY_Z85 40            /* Z85 characters of a key */
#define CURVE_KEY_BYTES 32          /* bytes of a key */
#define CURVE_CLIENTS_MAX 1024      /* public keys in curve_clients_file */
#define CURVE_FILE_MAX 131072       /* bytes of a key file read at most */
#define CURVE_ZAP_DOMAIN "taskwire" /* ZMQ_ZAP_DOMAIN of the pool's CURVE sockets */

/* Which keys a program needs: the pool binds (its secret key and the clients it allows), every
 * other program connects (its own secret key and the pool's public key). */
enum curve_role { CURVE_ROLE_SERVER, CURVE_ROLE_CLIENT };

struct curve;

/* One program's keys.  Curve off (cfg->curve 0): 0 with *curve NULL, after a warning in the
 * log when one of endpoints[0..count) is tcp:// and not loopback (the wire is plaintext).
 * Curve on: 0 with *curve loaded for role (caller owns; curve_destroy()), or -1 with err
 * naming the file and what is wrong with it; never a plaintext fallback. */
int curve_load(const struct config *cfg, enum curve_role role, const char *const *endpoints,
               size_t count, struct curve **curve, char *err, size_t errlen);

/* Cleanse the secret key and free.  NULL-safe; nulls *curve. */
void curve_destroy(struct curve **curve);

/* Give socket its CURVE options: as a server (server 1: CURVE_SERVER, the secret key and
 * CURVE_ZAP_DOMAIN) or as a client (the pool's public key and this program's pair).  Call
 * before bind or connect.  0, or -1 (zmq_errno says why). */
int curve_socket_setup(const struct curve *curve, void *socket, int server);

/* Give socket the options of a CURVE client of the relays (server role loaded with
 * [zmq] relays): the relays' public key and this program's pair.  Call before each connect to a
 * relay.  0, or -1 (zmq_errno says why). */
int curve_socket_setup_relay(const struct curve *curve, void *socket);

/* 1 when key (CURVE_KEY_BYTES) is one of curve_clients_file's, else 0. */
int curve_client_allowed(const struct curve *curve, const uint8_t *key, size_t length);

/* 1 when endpoint is tcp:// on a loopback address (127.0.0.0/8, [::1], localhost) or not
 * tcp:// at all (inproc://, ipc://), else 0. */
int curve_endpoint_local(const char *endpoint);

/* Read the keys of a key file's text (length bytes) into keys[0..max), Z85 with its NUL:
 * their count, or -1 with err ("line N: ...") when a line is neither blank, a comment nor one
 * key, or there are more than max. */
int curve_keys_parse(const char *text, size_t length, char (*keys)[CURVE_KEY_Z85 + 1], size_t max,
                     char *err, size_t errlen);

/* Read the key file at path (one key: expect_one 1; a list: 0) into keys[0..max): the count,
 * or -1 with err naming path.  secret 1: the file must not be accessible by others. */
int curve_file_read(const char *path, int secret, char (*keys)[CURVE_KEY_Z85 + 1], size_t max,
                    int expect_one, char *err, size_t errlen);

#endif
