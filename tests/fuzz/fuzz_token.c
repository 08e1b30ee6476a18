/* fuzz_token: token_verify (common/token.c) on what a client sends as its bearer token.
 *
 * The first byte picks what the rest is:
 *   0: the token itself, verbatim (a forged token never passes the signature check);
 *   1: "header.payload" in base64url, signed here with the secret, so the decoding of both
 *      parts and the checks of the header and claims are reached;
 *   2: header JSON and claims JSON separated by a newline, encoded and signed here.
 * A token that passes must name a client id; err must never repeat the token.  token_claims
 * (what `taskwire token verify` shows) reads any of them without a fault, and a token that
 * passes has the claims it was verified with. */
#include "fuzz.h"

#include "common/token.c"

static const unsigned char secret[] = "fuzzing secret, 32 bytes long..";
#define NOW 1700000000 /* verification time: tokens expiring later are valid */

/* base64url of (data, length) appended at out + *used; 0, or -1 when out is full. */
static int
append_encoded(char *out, size_t size, size_t *used, const uint8_t *data, size_t length)
{
    int written = base64url_encode(data, length, out + *used, size - *used);
    if (written < 0)
        return -1;
    *used += (size_t)written;
    return 0;
}

/* Append ".signature" of out[0, *used). */
static int
append_signature(char *out, size_t size, size_t *used)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len;
    if (*used + 1 >= size || token_sign(secret, sizeof secret - 1, out, *used, mac, &mac_len) != 0)
        return -1;
    out[(*used)++] = '.';
    return append_encoded(out, size, used, mac, mac_len);
}

static void
verify(const char *token, size_t length)
{
    char sub[TOKEN_ID_SIZE], err[128];
    memset(sub, 0, sizeof sub);
    err[0] = '\0';
    int rc = token_verify(secret, sizeof secret - 1, token, length, NOW, sub, err, sizeof err);
    char claimed[TOKEN_ID_SIZE];
    int64_t iat, exp;
    int claims = token_claims(token, length, claimed, &iat, &exp);
    FUZZ_CHECK(claims == 0 || claims == TW_E_UNAUTHORIZED);
    if (rc == 0) {
        FUZZ_CHECK(strlen(sub) == TOKEN_ID_SIZE - 1);
        FUZZ_CHECK(strspn(sub, "0123456789abcdef") == TOKEN_ID_SIZE - 1);
        FUZZ_CHECK(claims == 0 && strcmp(claimed, sub) == 0 && exp > NOW);
    } else {
        FUZZ_CHECK(rc == TW_E_UNAUTHORIZED);
        FUZZ_CHECK(err[0] != '\0');
        if (length >= 16)
            FUZZ_CHECK(memmem(err, strlen(err), token, length) == NULL);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    uint8_t mode = fuzz_byte(&in) % 3;
    char token[2 * TOKEN_MAX];
    size_t used = 0;
    if (mode == 0) {
        verify((const char *)in.data, in.size);
        return 0;
    }
    if (mode == 1) {
        if (in.size >= sizeof token)
            return 0;
        memcpy(token, in.data, in.size);
        used = in.size;
    } else {
        const uint8_t *header, *claims;
        size_t header_len = fuzz_field(&in, '\n', &header);
        size_t claims_len = fuzz_field(&in, '\n', &claims);
        if (append_encoded(token, sizeof token, &used, header, header_len) != 0 ||
            used + 1 >= sizeof token)
            return 0;
        token[used++] = '.';
        if (append_encoded(token, sizeof token, &used, claims, claims_len) != 0)
            return 0;
    }
    if (append_signature(token, sizeof token, &used) != 0)
        return 0;
    verify(token, used);
    return 0;
}
