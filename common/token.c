/* token.c: random identities, the HMAC secret file, and HS256 JWTs through OpenSSL and jansson.
 *
 * base64url is OpenSSL's base64 (EVP_EncodeBlock / EVP_DecodeBlock) with the two alphabet
 * characters swapped and the padding removed, as RFC 7515 asks.
 */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"

#define TOKEN_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define TOKEN_HEADER_B64 "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" /* base64url of TOKEN_HEADER */
#define TOKEN_PART_MAX 512 /* bytes of a decoded header or payload */

/* len bytes as 2 * len lowercase hex digits into out. */
static void
token_hex(const unsigned char *bytes, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[bytes[i] >> 4];
        out[2 * i + 1] = hex[bytes[i] & 15];
    }
}

/* Random bytes for ids, drawn from OpenSSL's generator TOKEN_POOL_BYTES at a time: each
 * RAND_bytes call takes a lock and a getpid() (OpenSSL's fork check), a few microseconds per
 * submission when called for every id.  Each thread has its own pool, every byte is handed
 * out once, and a forked child starts with an empty pool so it never repeats its parent's
 * ids.  Secrets do not come from here. */
#define TOKEN_POOL_BYTES 320

static _Thread_local struct {
    unsigned char bytes[TOKEN_POOL_BYTES];
    size_t left; /* bytes not handed out yet, at the end of bytes; 0 before the first fill */
} token_pool;

static pthread_once_t token_pool_once = PTHREAD_ONCE_INIT;

static void
token_pool_forget(void)
{
    OPENSSL_cleanse(&token_pool, sizeof token_pool);
}

static void
token_pool_setup(void)
{
    pthread_atfork(NULL, NULL, token_pool_forget);
}

/* len <= TOKEN_POOL_BYTES random bytes into out; 0, or -1 when OpenSSL has none. */
static int
token_pool_take(unsigned char *out, size_t len)
{
    pthread_once(&token_pool_once, token_pool_setup);
    if (token_pool.left < len) {
        if (RAND_bytes(token_pool.bytes, TOKEN_POOL_BYTES) != 1)
            return -1;
        token_pool.left = TOKEN_POOL_BYTES;
    }
    unsigned char *next = token_pool.bytes + TOKEN_POOL_BYTES - token_pool.left;
    memcpy(out, next, len);
    OPENSSL_cleanse(next, len);
    token_pool.left -= len;
    return 0;
}

int
token_random_id(char out[TOKEN_ID_SIZE])
{
    unsigned char bytes[16];
    if (token_pool_take(bytes, sizeof bytes) != 0)
        return TW_E_INTERNAL;
    token_hex(bytes, sizeof bytes, out);
    out[32] = '\0';
    return 0;
}

int
token_ordered_id(int64_t now_ms, char out[TOKEN_ID_SIZE])
{
    unsigned char bytes[16];
    uint64_t ms = now_ms > 0 ? (uint64_t)now_ms : 0;
    for (int i = 0; i < 6; i++)
        bytes[i] = (unsigned char)(ms >> (8 * (5 - i)));
    if (token_pool_take(bytes + 6, sizeof bytes - 6) != 0)
        return TW_E_INTERNAL;
    token_hex(bytes, sizeof bytes, out);
    out[32] = '\0';
    return 0;
}

static int token_sign(const unsigned char *secret, size_t secret_len, const char *data,
                      size_t data_len, unsigned char mac[EVP_MAX_MD_SIZE], unsigned int *mac_len);

int
token_user_id(const unsigned char *secret, size_t secret_len, const char *user, size_t len,
              char out[TOKEN_ID_SIZE])
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789._@+-";
    char data[sizeof "user:" + TOKEN_USER_MAX];
    if (len == 0 || len > TOKEN_USER_MAX)
        return TW_E_BAD_REQUEST;
    for (size_t i = 0; i < len; i++)
        if (user[i] == '\0' || !strchr(allowed, user[i]))
            return TW_E_BAD_REQUEST;
    memcpy(data, "user:", 5);
    memcpy(data + 5, user, len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len;
    if (token_sign(secret, secret_len, data, 5 + len, mac, &mac_len) != 0)
        return TW_E_INTERNAL;
    token_hex(mac, 16, out);
    out[32] = '\0';
    return 0;
}

/* base64url of len bytes into out (NUL-terminated); the length written, or -1 if no room. */
static int
base64url_encode(const unsigned char *in, size_t len, char *out, size_t size)
{
    if (size < 4 * ((len + 2) / 3) + 1)
        return -1;
    int written = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    while (written > 0 && out[written - 1] == '=')
        written--;
    out[written] = '\0';
    for (int i = 0; i < written; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return written;
}

/* Decode base64url (in, len) into out; the decoded length, or -1 on bad input or no room. */
static int
base64url_decode(const char *in, size_t len, unsigned char *out, size_t size)
{
    char padded[TOKEN_MAX + 4];
    if (len % 4 == 1 || len + 4 > sizeof padded || size < 3 * ((len + 3) / 4))
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (c == '+' || c == '/' || c == '=')
            return -1;
        padded[i] = c;
    }
    size_t padding = (4 - len % 4) % 4;
    memset(padded + len, '=', padding);
    int decoded = EVP_DecodeBlock(out, (const unsigned char *)padded, (int)(len + padding));
    if (decoded < 0)
        return -1;
    return decoded - (int)padding;
}

int
token_secret_load(const char *path, int create, unsigned char *secret, size_t *secret_len,
                  char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        unsigned char fresh[TOKEN_SECRET_BYTES];
        if (RAND_bytes(fresh, sizeof fresh) != 1) {
            snprintf(err, errlen, "cannot generate a secret");
            return TW_E_INTERNAL;
        }
        /* O_EXCL: when two processes race to create it, one wins and both read its bytes. */
        int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out >= 0) {
            ssize_t written = write(out, fresh, sizeof fresh);
            int failed = written != (ssize_t)sizeof fresh || fsync(out) != 0;
            close(out);
            if (failed) {
                unlink(path);
                snprintf(err, errlen, "%s: cannot write the secret", path);
                return TW_E_IO;
            }
        } else if (errno != EEXIST) {
            snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
            return TW_E_IO;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open the secret: %s", path, strerror(errno));
        return TW_E_CONFIG;
    }
    ssize_t got = read(fd, secret, TOKEN_SECRET_MAX);
    close(fd);
    if (got < 16) {
        snprintf(err, errlen, "%s: the secret must be 16..%d bytes", path, TOKEN_SECRET_MAX);
        return TW_E_CONFIG;
    }
    *secret_len = (size_t)got;
    return 0;
}

/* HMAC-SHA256 through one keyed context per thread.  OpenSSL 3's one-shot HMAC() fetches
 * the MAC and the digest and hashes the key's pads again on every call, about 5 us, which a
 * relay pays at every connection's token: a context keyed once and re-initialised without a
 * key starts again from the pads it kept (OpenSSL's HMAC provider: EVP_MAC_init with a NULL
 * key "just reinits").  The context is re-keyed when a caller's secret differs from the one
 * it holds (a thread serving two secrets pays the key each time it switches, as before), and
 * freed with its thread (token_mac_once's key destructor).  The key copy is cleansed then. */
struct token_mac {
    EVP_MAC_CTX *ctx;
    size_t key_len;
    unsigned char key[TOKEN_SECRET_MAX];
};

static _Thread_local struct token_mac *token_mac_mine;
static pthread_key_t token_mac_key;
static pthread_once_t token_mac_once = PTHREAD_ONCE_INIT;
static int token_mac_key_ok;

static void
token_mac_free(void *p)
{
    struct token_mac *mac = p;
    if (!mac)
        return;
    EVP_MAC_CTX_free(mac->ctx);
    OPENSSL_cleanse(mac, sizeof *mac);
    free(mac);
    token_mac_mine = NULL;
}

static void
token_mac_setup(void)
{
    token_mac_key_ok = pthread_key_create(&token_mac_key, token_mac_free) == 0;
}

/* This thread's context keyed with secret, or NULL when OpenSSL cannot make one. */
static EVP_MAC_CTX *
token_mac_keyed(const unsigned char *secret, size_t secret_len)
{
    pthread_once(&token_mac_once, token_mac_setup);
    struct token_mac *mac = token_mac_mine;
    if (!mac) {
        EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (!token_mac_key_ok || !hmac || !(mac = calloc(1, sizeof *mac)) ||
            !(mac->ctx = EVP_MAC_CTX_new(hmac))) {
            EVP_MAC_free(hmac);
            free(mac);
            return NULL;
        }
        EVP_MAC_free(hmac); /* the context holds its own reference */
        token_mac_mine = mac;
        (void)pthread_setspecific(token_mac_key, mac);
    }
    if (secret_len > sizeof mac->key)
        return NULL;
    if (mac->key_len == secret_len && CRYPTO_memcmp(mac->key, secret, secret_len) == 0)
        return EVP_MAC_init(mac->ctx, NULL, 0, NULL) == 1 ? mac->ctx : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    mac->key_len = 0;
    if (EVP_MAC_init(mac->ctx, secret, secret_len, params) != 1)
        return NULL;
    memcpy(mac->key, secret, secret_len);
    mac->key_len = secret_len;
    return mac->ctx;
}

static int
token_sign(const unsigned char *secret, size_t secret_len, const char *data, size_t data_len,
           unsigned char mac[EVP_MAX_MD_SIZE], unsigned int *mac_len)
{
    EVP_MAC_CTX *ctx = token_mac_keyed(secret, secret_len);
    size_t len = 0;
    if (!ctx || EVP_MAC_update(ctx, (const unsigned char *)data, data_len) != 1 ||
        EVP_MAC_final(ctx, mac, &len, EVP_MAX_MD_SIZE) != 1)
        return TW_E_INTERNAL;
    *mac_len = (unsigned int)len;
    return 0;
}

int
token_issue(const unsigned char *secret, size_t secret_len, const char *sub, int64_t iat,
            int64_t exp, char *out, size_t out_size)
{
    return token_issue_channels(secret, secret_len, sub, iat, exp, NULL, out, out_size);
}

static int token_channels_valid(const json_t *channels, struct token_grants *grants);

int
token_issue_channels(const unsigned char *secret, size_t secret_len, const char *sub, int64_t iat,
                     int64_t exp, const json_t *channels, char *out, size_t out_size)
{
    int rc = TW_E_INTERNAL;
    char *payload = NULL;
    json_t *claims =
        json_pack("{s:s, s:I, s:I}", "sub", sub, "iat", (json_int_t)iat, "exp", (json_int_t)exp);
    if (!claims)
        goto out;
    if (channels && !(json_is_object(channels) && json_object_size(channels) == 0)) {
        if (!token_channels_valid(channels, NULL)) {
            rc = TW_E_BAD_REQUEST;
            goto out;
        }
        if (json_object_set(claims, "channels", (json_t *)channels) != 0)
            goto out;
    }
    payload = json_dumps(claims, JSON_COMPACT);
    if (!payload)
        goto out;
    if (strlen(payload) >= TOKEN_PART_MAX) { /* a verifier would refuse it */
        rc = TW_E_BAD_REQUEST;
        goto out;
    }
    int used =
        base64url_encode((const unsigned char *)TOKEN_HEADER, strlen(TOKEN_HEADER), out, out_size);
    if (used < 0 || (size_t)used + 1 >= out_size)
        goto out;
    out[used++] = '.';
    int more = base64url_encode((const unsigned char *)payload, strlen(payload), out + used,
                                out_size - (size_t)used);
    if (more < 0)
        goto out;
    used += more;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len;
    if (token_sign(secret, secret_len, out, (size_t)used, mac, &mac_len) != 0 ||
        (size_t)used + 1 >= out_size)
        goto out;
    out[used++] = '.';
    if (base64url_encode(mac, mac_len, out + used, out_size - (size_t)used) < 0)
        goto out;
    rc = 0;
out:
    free(payload);
    json_decref(claims);
    return rc;
}

/* 1 when channels (absent: NULL) is a channels claim as token.h describes it; grants (may be
 * NULL) receives it. */
static int
token_channels_valid(const json_t *channels, struct token_grants *grants)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789:._-*";
    static const char *const permissions[] = {"subscribe", "publish"};
    if (grants)
        grants->count = 0;
    if (!channels)
        return 1;
    if (!json_is_object(channels) || json_object_size(channels) > TOKEN_CHANNELS_MAX)
        return 0;
    const char *name;
    json_t *granted;
    json_object_foreach((json_t *)channels, name, granted)
    {
        size_t len = strlen(name);
        if (len == 0 || len > TOKEN_CHANNEL_MAX || strspn(name, allowed) != len ||
            !json_is_array(granted) || json_array_size(granted) == 0)
            return 0;
        unsigned seen = 0;
        size_t i;
        json_t *permission;
        json_array_foreach(granted, i, permission)
        {
            const char *text = json_string_value(permission);
            size_t which = 0;
            size_t kinds = sizeof permissions / sizeof permissions[0];
            while (which < kinds && (!text || strcmp(text, permissions[which]) != 0))
                which++;
            if (which == kinds || seen & (1u << which))
                return 0;
            seen |= 1u << which;
        }
        if (grants) { /* the claim has at most TOKEN_CHANNELS_MAX entries (above) */
            struct token_grant *grant = &grants->grants[grants->count++];
            grant->len = (uint8_t)len;
            grant->permissions = (uint8_t)seen; /* bit k: permissions[k] */
            memcpy(grant->name, name, len);
        }
    }
    return 1;
}

_Static_assert(TOKEN_GRANT_SUBSCRIBE == 1u << 0 && TOKEN_GRANT_PUBLISH == 1u << 1,
               "a grant's bits are the places of its permissions in token_channels_valid");

unsigned
token_grants_permissions(const struct token_grants *grants, const char *name, size_t len)
{
    unsigned permissions = 0;
    for (size_t i = 0; grants && i < grants->count; i++) {
        const struct token_grant *grant = &grants->grants[i];
        size_t fixed = grant->len;
        int pattern = fixed > 0 && grant->name[fixed - 1] == '*';
        if (pattern)
            fixed--;
        if (pattern ? len >= fixed && memcmp(grant->name, name, fixed) == 0
                    : len == fixed && memcmp(grant->name, name, len) == 0)
            permissions |= grant->permissions;
    }
    return permissions;
}

static int
token_fail(char *err, size_t errlen, const char *why)
{
    snprintf(err, errlen, "%s", why);
    return TW_E_UNAUTHORIZED;
}

int
token_verify(const unsigned char *secret, size_t secret_len, const char *token, size_t token_len,
             int64_t now, char sub[TOKEN_ID_SIZE], char *err, size_t errlen)
{
    return token_verify_grants(secret, secret_len, token, token_len, now, sub, NULL, err, errlen);
}

int
token_verify_grants(const unsigned char *secret, size_t secret_len, const char *token,
                    size_t token_len, int64_t now, char sub[TOKEN_ID_SIZE],
                    struct token_grants *grants, char *err, size_t errlen)
{
    if (grants)
        grants->count = 0;
    if (token_len == 0)
        return token_fail(err, errlen, "missing token");
    if (token_len >= TOKEN_MAX)
        return token_fail(err, errlen, "token too long");
    const char *dot1 = memchr(token, '.', token_len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', token_len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', token_len - (size_t)(dot2 + 1 - token)))
        return token_fail(err, errlen, "not a compact JWT");

    unsigned char mac[EVP_MAX_MD_SIZE], given[EVP_MAX_MD_SIZE + 3];
    unsigned int mac_len;
    if (token_sign(secret, secret_len, token, (size_t)(dot2 - token), mac, &mac_len) != 0)
        return token_fail(err, errlen, "cannot compute the signature");
    int given_len =
        base64url_decode(dot2 + 1, token_len - (size_t)(dot2 + 1 - token), given, sizeof given);
    if (given_len != (int)mac_len || CRYPTO_memcmp(given, mac, mac_len) != 0)
        return token_fail(err, errlen, "bad signature");

    unsigned char part[TOKEN_PART_MAX];
    int part_len;
    json_error_t json_err;
    /* The header token_issue writes needs no parse: its base64url is compared as it stands.
     * Another minter's (other key order, more members) is read as JSON. */
    size_t header_len = (size_t)(dot1 - token);
    if (header_len != sizeof TOKEN_HEADER_B64 - 1 ||
        memcmp(token, TOKEN_HEADER_B64, header_len) != 0) {
        part_len = base64url_decode(token, header_len, part, sizeof part);
        json_t *header =
            part_len > 0 ? json_loadb((const char *)part, (size_t)part_len, 0, &json_err) : NULL;
        const char *alg = NULL;
        int header_ok =
            header && json_unpack(header, "{s:s}", "alg", &alg) == 0 && strcmp(alg, "HS256") == 0;
        json_decref(header);
        if (!header_ok)
            return token_fail(err, errlen, "header is not HS256");
    }

    part_len = base64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), part, sizeof part);
    json_t *claims =
        part_len > 0 ? json_loadb((const char *)part, (size_t)part_len, 0, &json_err) : NULL;
    const char *subject = NULL;
    json_int_t exp = 0;
    int rc = 0;
    if (!claims || json_unpack(claims, "{s:s, s:I}", "sub", &subject, "exp", &exp) != 0)
        rc = token_fail(err, errlen, "claims need sub and exp");
    else if (exp <= now)
        rc = token_fail(err, errlen, "expired");
    else if (!token_channels_valid(json_object_get(claims, "channels"), grants))
        rc = token_fail(err, errlen, "channels claim is malformed");
    else if (strlen(subject) != TOKEN_ID_SIZE - 1 ||
             strspn(subject, "0123456789abcdef") != TOKEN_ID_SIZE - 1)
        rc = token_fail(err, errlen, "subject is not a client id");
    else
        memcpy(sub, subject, TOKEN_ID_SIZE);
    if (rc != 0 && grants)
        grants->count = 0; /* a refused token grants nothing */
    json_decref(claims);
    return rc;
}

int
token_claims(const char *token, size_t token_len, char sub[TOKEN_ID_SIZE], int64_t *iat,
             int64_t *exp)
{
    const char *dot1 = token_len < TOKEN_MAX ? memchr(token, '.', token_len) : NULL;
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', token_len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2)
        return TW_E_UNAUTHORIZED;
    unsigned char part[TOKEN_PART_MAX];
    int part_len = base64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), part, sizeof part);
    json_error_t json_err;
    json_t *claims =
        part_len > 0 ? json_loadb((const char *)part, (size_t)part_len, 0, &json_err) : NULL;
    const char *subject = NULL;
    json_int_t expires = 0;
    int rc = TW_E_UNAUTHORIZED;
    /* sub and exp as token_verify reads them; iat, which it does not check, when an integer. */
    if (claims && json_unpack(claims, "{s:s, s:I}", "sub", &subject, "exp", &expires) == 0) {
        snprintf(sub, TOKEN_ID_SIZE, "%s", subject);
        *iat = json_integer_value(json_object_get(claims, "iat"));
        *exp = expires;
        rc = 0;
    }
    json_decref(claims);
    return rc;
}
