/* token.h: session identities and their HS256 JSON Web Tokens (OpenSSL HMAC and randomness).
 *
 * A client id is 128 random bits written as 32 lowercase hex digits (URL-safe).  A token is a
 * compact JWT {"alg":"HS256","typ":"JWT"}.{"sub":client id,"iat":..,"exp":..} signed with the
 * secret.  Verification checks the header, the signature (constant time) and expiry, and
 * refuses a malformed optional "channels" claim: an object of at most TOKEN_CHANNELS_MAX
 * channel names or patterns (1..TOKEN_CHANNEL_MAX bytes of letters, digits and : . _ - *), each
 * to a non-empty array of distinct "subscribe" / "publish" (docs/AUTH.md).  A verified
 * claim comes back as struct token_grants; a name ending in '*' is a pattern matching every
 * channel that starts with what comes before it ("project:*", or "*" for all), any other name
 * only itself.  What the namespaces make of a grant is common/channel.h's.
 */
#ifndef TW_COMMON_TOKEN_H
#define TW_COMMON_TOKEN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEN_ID_SIZE 33      /* 32 hex digits and the NUL */
#define TOKEN_MAX 1024        /* longest token accepted or produced, NUL included */
#define TOKEN_SECRET_BYTES 32 /* size of a generated secret */
#define TOKEN_SECRET_MAX 1024 /* longest secret file accepted */
#define TOKEN_USER_MAX 64     /* bytes of a user name token_user_id accepts */
#define TOKEN_USER_RULE "1..64 letters, digits or . _ @ + -" /* for messages: what it accepts */
#define TOKEN_CHANNELS_MAX 16    /* entries of a token's channels claim */
#define TOKEN_CHANNEL_MAX 64     /* bytes of one channel name or pattern */
#define TOKEN_GRANT_SUBSCRIBE 1u /* a grant's permission bits: "subscribe" */
#define TOKEN_GRANT_PUBLISH 2u   /* ... "publish" */

/* One entry of a channels claim: a name or pattern (len bytes, not NUL-terminated) and the
 * TOKEN_GRANT_* bits it grants. */
struct token_grant {
    uint8_t len;
    uint8_t permissions;
    char name[TOKEN_CHANNEL_MAX];
};

/* A token's channels claim: count entries (0 when the token has none).  Fixed size (about
 * 1 KiB), caller storage. */
struct token_grants {
    size_t count;
    struct token_grant grants[TOKEN_CHANNELS_MAX];
};

/* Write 128 random bits as hex into out (TOKEN_ID_SIZE bytes).  0 or TW_E_INTERNAL. */
int token_random_id(char out[TOKEN_ID_SIZE]);

/* Write an id that sorts by creation time into out (TOKEN_ID_SIZE bytes), the layout of a
 * version 7 UUID without its version bits: 48 bits of now_ms (Unix milliseconds), then 80
 * random bits, as 32 hex digits.  Ids made in order land next to each other in an index, so
 * inserting a batch of them touches one or two pages of it rather than one page each.
 * 0 or TW_E_INTERNAL. */
int token_ordered_id(int64_t now_ms, char out[TOKEN_ID_SIZE]);

/* The client id of user name (user, len), the same for every session of that user: the first
 * 128 bits of HMAC-SHA256(secret, "user:" name) as hex into out (TOKEN_ID_SIZE bytes), so the
 * name itself is in no token, log line or store row.  A name is 1..TOKEN_USER_MAX bytes of
 * ASCII letters, digits and . _ @ + - (docs/AUTH.md).  0, TW_E_BAD_REQUEST for a name that is
 * not one, or TW_E_INTERNAL. */
int token_user_id(const unsigned char *secret, size_t secret_len, const char *user, size_t len,
                  char out[TOKEN_ID_SIZE]);

/* Read the secret from path.  If the file does not exist and create is set, write a new random
 * secret there with mode 0600 first.  secret receives up to TOKEN_SECRET_MAX bytes.
 * Returns 0 or TW_E_CONFIG / TW_E_IO with the reason in err. */
int token_secret_load(const char *path, int create, unsigned char *secret, size_t *secret_len,
                      char *err, size_t errlen);

/* Sign a token for subject sub expiring at exp (Unix seconds), issued at iat.
 * out receives the NUL-terminated token.  0, or TW_E_INTERNAL if out is too small. */
int token_issue(const unsigned char *secret, size_t secret_len, const char *sub, int64_t iat,
                int64_t exp, char *out, size_t out_size);

/* As token_issue, with a channels claim (borrowed; NULL or an empty object for none), which
 * must be of the form token_verify accepts: TW_E_BAD_REQUEST when it is not. */
int token_issue_channels(const unsigned char *secret, size_t secret_len, const char *sub,
                         int64_t iat, int64_t exp, const json_t *channels, char *out,
                         size_t out_size);

/* As token_verify, and grants (may be NULL) receives the token's channels claim. */
int token_verify_grants(const unsigned char *secret, size_t secret_len, const char *token,
                        size_t token_len, int64_t now, char sub[TOKEN_ID_SIZE],
                        struct token_grants *grants, char *err, size_t errlen);

/* The TOKEN_GRANT_* bits grants (may be NULL) give channel (name, len): the union of every
 * entry whose name is it, or a pattern matching it; 0 for none. */
unsigned token_grants_permissions(const struct token_grants *grants, const char *name, size_t len);

/* Verify token (pointer, length) at time now (Unix seconds).  On success returns 0 and writes
 * the subject (a client id) into sub.  Otherwise TW_E_UNAUTHORIZED and err says which check
 * failed ("bad signature", "expired", ...); err never contains the token. */
int token_verify(const unsigned char *secret, size_t secret_len, const char *token,
                 size_t token_len, int64_t now, char sub[TOKEN_ID_SIZE], char *err, size_t errlen);

/* The claims of token (pointer, length), unchecked, for showing a token token_verify judged:
 * the subject (cut at TOKEN_ID_SIZE - 1 bytes) into sub, iat (0 unless an integer) and exp.
 * 0, or TW_E_UNAUTHORIZED when its payload is not readable claims with sub and exp. */
int token_claims(const char *token, size_t token_len, char sub[TOKEN_ID_SIZE], int64_t *iat,
                 int64_t *exp);

#endif
