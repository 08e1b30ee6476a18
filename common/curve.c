/* curve.c: read the CURVE key files of [zmq] and set the CURVE socket options (see curve.h). */
#include "curve.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"

typedef char curve_z85[CURVE_KEY_Z85 + 1];

struct curve {
    curve_z85 secret_key;    /* this program's secret key */
    curve_z85 public_key;    /* derived from secret_key */
    curve_z85 server_public; /* the pool's public key (client role) */
    curve_z85 relay_public;  /* the relays' public key (server role with [zmq] relays) */
    size_t client_count;
    uint8_t clients[CURVE_CLIENTS_MAX][CURVE_KEY_BYTES]; /* allowed clients (server role) */
};

static const char curve_alphabet[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    ".-:+=^!/*?&<>()[]{}@%$#";

/* 1 when text (length bytes) is one Z85 key that decodes. */
static int
curve_is_key(const char *text, size_t length)
{
    if (length != CURVE_KEY_Z85)
        return 0;
    for (size_t i = 0; i < length; i++)
        if (text[i] == '\0' || !strchr(curve_alphabet, text[i]))
            return 0;
    curve_z85 copy;
    uint8_t bytes[CURVE_KEY_BYTES];
    memcpy(copy, text, length);
    copy[length] = '\0';
    return zmq_z85_decode(bytes, copy) != NULL;
}

int
curve_keys_parse(const char *text, size_t length, char (*keys)[CURVE_KEY_Z85 + 1], size_t max,
                 char *err, size_t errlen)
{
    size_t count = 0, line_number = 0;
    const char *end = text + length;
    for (const char *line = text; line < end; line_number++) {
        const char *newline = memchr(line, '\n', (size_t)(end - line));
        const char *stop = newline ? newline : end;
        const char *first = line, *last = stop;
        while (first < last && (*first == ' ' || *first == '\t' || *first == '\r'))
            first++;
        while (last > first && (last[-1] == ' ' || last[-1] == '\t' || last[-1] == '\r'))
            last--;
        size_t size = (size_t)(last - first);
        /* '#' is a Z85 character, but no key begins with it: its first five characters would
         * stand for more than 32 bits. */
        if (size > 0 && *first == '#') {
            /* a comment */
        } else if (curve_is_key(first, size)) {
            if (count >= max) {
                snprintf(err, errlen, "line %zu: more than %zu key%s", line_number + 1, max,
                         max == 1 ? "" : "s");
                return -1;
            }
            memcpy(keys[count], first, size);
            keys[count++][size] = '\0';
        } else if (size > 0) {
            /* Not echoed: it may be a secret key mistyped. */
            snprintf(err, errlen,
                     "line %zu: not a key of %d Z85 characters (taskwire curve keygen)",
                     line_number + 1, CURVE_KEY_Z85);
            return -1;
        }
        line = newline ? newline + 1 : end;
    }
    return (int)count;
}

int
curve_file_read(const char *path, int secret, char (*keys)[CURVE_KEY_Z85 + 1], size_t max,
                int expect_one, char *err, size_t errlen)
{
    char *text = NULL, why[160];
    int rc = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if (secret && (st.st_mode & S_IRWXO)) {
        snprintf(err, errlen, "%s: a secret key others can access (mode %03o): chmod o-rwx", path,
                 (unsigned)(st.st_mode & 0777));
        goto out;
    }
    if (st.st_size > CURVE_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, CURVE_FILE_MAX);
        goto out;
    }
    text = malloc(CURVE_FILE_MAX + 1);
    if (!text) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    size_t used = 0;
    for (;;) {
        ssize_t got = read(fd, text + used, CURVE_FILE_MAX + 1 - used);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        used += (size_t)got;
        if (used > CURVE_FILE_MAX) {
            snprintf(err, errlen, "%s: larger than %d bytes", path, CURVE_FILE_MAX);
            goto out;
        }
    }
    int count = curve_keys_parse(text, used, keys, max, why, sizeof why);
    if (count < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        goto out;
    }
    if (expect_one && count != 1) {
        snprintf(err, errlen, "%s: holds no key (taskwire curve keygen)", path);
        goto out;
    }
    rc = count;
out:
    if (text) {
        OPENSSL_cleanse(text, CURVE_FILE_MAX + 1);
        free(text);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

int
curve_endpoint_local(const char *endpoint)
{
    static const char *const loopback[] = {"tcp://127.", "tcp://[::1]:", "tcp://localhost:"};
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return 1;
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++)
        if (strncmp(endpoint, loopback[i], strlen(loopback[i])) == 0)
            return 1;
    return 0;
}

/* The one secret key of path, and its public key. */
static int
curve_load_secret(struct curve *curve, const char *path, char *err, size_t errlen)
{
    curve_z85 keys[1];
    if (curve_file_read(path, 1, keys, 1, 1, err, errlen) != 1)
        return -1;
    memcpy(curve->secret_key, keys[0], sizeof keys[0]);
    OPENSSL_cleanse(keys, sizeof keys);
    if (zmq_curve_public(curve->public_key, curve->secret_key) != 0) {
        snprintf(err, errlen, "%s: no public key derived: %s", path, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

/* The allowed clients of path, decoded. */
static int
curve_load_clients(struct curve *curve, const char *path, char *err, size_t errlen)
{
    curve_z85 *keys = calloc(CURVE_CLIENTS_MAX, sizeof *keys);
    if (!keys) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int count = curve_file_read(path, 0, keys, CURVE_CLIENTS_MAX, 0, err, errlen);
    for (int i = 0; i < count; i++)
        zmq_z85_decode(curve->clients[i], keys[i]); /* each checked by curve_is_key */
    free(keys);
    if (count < 0)
        return -1;
    curve->client_count = (size_t)count;
    if (count == 0)
        log_warn("event=curve_no_clients file=%s reason=\"every connecting program is refused\"",
                 path);
    return 0;
}

int
curve_load(const struct config *cfg, enum curve_role role, const char *const *endpoints,
           size_t count, struct curve **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->curve) {
        for (size_t i = 0; i < count; i++) {
            if (endpoints[i] && !curve_endpoint_local(endpoints[i])) {
                log_warn("event=zmq_plaintext endpoint=%s reason=\"[zmq] curve = false: the "
                         "ZeroMQ wire to other hosts is neither encrypted nor authenticated\"",
                         endpoints[i]);
                break;
            }
        }
        return 0;
    }
    if (!zmq_has("curve")) {
        snprintf(err, errlen, "[zmq] curve = true, but this libzmq has no CURVE");
        return -1;
    }
    const char *needed =
        role == CURVE_ROLE_SERVER ? cfg->curve_clients_file : cfg->curve_server_public_file;
    if (!cfg->curve_secret_file[0] || !needed[0]) {
        snprintf(err, errlen, "%s: [zmq] curve = true needs curve_secret_file and %s", cfg->path,
                 role == CURVE_ROLE_SERVER ? "curve_clients_file (on a worker host)"
                                           : "curve_server_public_file");
        return -1;
    }
    struct curve *curve = calloc(1, sizeof *curve);
    if (!curve) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (curve_load_secret(curve, cfg->curve_secret_file, err, errlen) != 0)
        goto fail;
    if (role == CURVE_ROLE_SERVER) {
        if (curve_load_clients(curve, cfg->curve_clients_file, err, errlen) != 0)
            goto fail;
        if (cfg->relays.count > 0 && !cfg->curve_relay_public_file[0]) {
            snprintf(err, errlen,
                     "%s: [zmq] relays with curve = true needs curve_relay_public_file", cfg->path);
            goto fail;
        }
        curve_z85 keys[1];
        if (cfg->relays.count > 0 &&
            curve_file_read(cfg->curve_relay_public_file, 0, keys, 1, 1, err, errlen) != 1)
            goto fail;
        if (cfg->relays.count > 0)
            memcpy(curve->relay_public, keys[0], sizeof keys[0]);
    } else {
        curve_z85 keys[1];
        if (curve_file_read(cfg->curve_server_public_file, 0, keys, 1, 1, err, errlen) != 1)
            goto fail;
        memcpy(curve->server_public, keys[0], sizeof keys[0]);
    }
    *out = curve;
    return 0;
fail:
    curve_destroy(&curve);
    return -1;
}

void
curve_destroy(struct curve **curve)
{
    if (!curve || !*curve)
        return;
    OPENSSL_cleanse(*curve, sizeof **curve);
    free(*curve);
    *curve = NULL;
}

int
curve_socket_setup(const struct curve *curve, void *socket, int server)
{
    if (server) {
        int on = 1;
        return zmq_setsockopt(socket, ZMQ_CURVE_SERVER, &on, sizeof on) != 0 ||
                       zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, curve->secret_key,
                                      CURVE_KEY_Z85) != 0 ||
                       zmq_setsockopt(socket, ZMQ_ZAP_DOMAIN, CURVE_ZAP_DOMAIN,
                                      strlen(CURVE_ZAP_DOMAIN)) != 0
                   ? -1
                   : 0;
    }
    return zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, curve->server_public, CURVE_KEY_Z85) != 0 ||
                   zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, curve->public_key, CURVE_KEY_Z85) !=
                       0 ||
                   zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, curve->secret_key, CURVE_KEY_Z85) !=
                       0
               ? -1
               : 0;
}

int
curve_socket_setup_relay(const struct curve *curve, void *socket)
{
    int off = 0;
    return zmq_setsockopt(socket, ZMQ_CURVE_SERVER, &off, sizeof off) != 0 ||
                   zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, curve->relay_public,
                                  CURVE_KEY_Z85) != 0 ||
                   zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, curve->public_key, CURVE_KEY_Z85) !=
                       0 ||
                   zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, curve->secret_key, CURVE_KEY_Z85) !=
                       0
               ? -1
               : 0;
}

int
curve_client_allowed(const struct curve *curve, const uint8_t *key, size_t length)
{
    if (length != CURVE_KEY_BYTES)
        return 0;
    for (size_t i = 0; i < curve->client_count; i++)
        if (memcmp(curve->clients[i], key, CURVE_KEY_BYTES) == 0)
            return 1;
    return 0;
}
