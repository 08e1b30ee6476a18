/* Unit tests for common/token.c: identities, the secret file and HS256 tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "errors.h"
#include "token.h"

static const unsigned char secret[] = "0123456789abcdef0123456789abcdef";
#define SECRET_LEN 32

/* Client ids would collide or not be URL-safe. */
static void
test_random_ids_are_hex_and_distinct(void **state)
{
    (void)state;
    char a[TOKEN_ID_SIZE], b[TOKEN_ID_SIZE];
    assert_int_equal(token_random_id(a), 0);
    assert_int_equal(token_random_id(b), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
}

static int
compare_ids(const void *a, const void *b)
{
    return memcmp(a, b, TOKEN_ID_SIZE);
}

/* Ids come from a pool of random bytes refilled as it runs out: a thousand in a row (many
 * refills) must still all differ. */
static void
test_many_ids_are_distinct(void **state)
{
    (void)state;
    enum { COUNT = 1000 };
    static char ids[COUNT][TOKEN_ID_SIZE];
    for (int i = 0; i < COUNT; i++)
        assert_int_equal(i % 2 ? token_random_id(ids[i]) : token_ordered_id(0, ids[i]), 0);
    qsort(ids, COUNT, TOKEN_ID_SIZE, compare_ids);
    for (int i = 1; i < COUNT; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
}

/* A forked child that made ids from its parent's pool would hand out the parent's next
 * ids: two clients, one identity. */
static void
test_forked_child_does_not_repeat_parent_ids(void **state)
{
    (void)state;
    char parent[TOKEN_ID_SIZE], child[TOKEN_ID_SIZE] = {0};
    assert_int_equal(token_random_id(parent), 0); /* the pool holds bytes now */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[TOKEN_ID_SIZE];
        int ok = token_random_id(id) == 0 && write(fds[1], id, TOKEN_ID_SIZE) == TOKEN_ID_SIZE;
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], child, TOKEN_ID_SIZE), TOKEN_ID_SIZE);
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(token_random_id(parent), 0);
    assert_string_not_equal(child, parent);
}

/* Task ids out of creation order would scatter a batch's inserts over the id index, and
 * a collision would hand one client another's task. */
static void
test_ordered_ids_sort_by_time_and_are_distinct(void **state)
{
    (void)state;
    char a[TOKEN_ID_SIZE], b[TOKEN_ID_SIZE], c[TOKEN_ID_SIZE];
    int64_t t = 1795000000123; /* 2026-11-18, in milliseconds */
    assert_int_equal(token_ordered_id(t, a), 0);
    assert_int_equal(token_ordered_id(t, b), 0);
    assert_int_equal(token_ordered_id(t + 1, c), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_memory_equal(a, "01a1ee565e7b", 12); /* the time, 48 bits in hex */
    assert_memory_equal(a, b, 12);
    assert_string_not_equal(a, b); /* the 80 random bits */
    assert_true(strcmp(a, c) < 0 && strcmp(b, c) < 0);
}

/* A page's token would be refused by the API or the relay. */
static void
test_issued_token_verifies(void **state)
{
    (void)state;
    char id[TOKEN_ID_SIZE], token[TOKEN_MAX], sub[TOKEN_ID_SIZE], err[128];
    token_random_id(id);
    assert_int_equal(token_issue(secret, SECRET_LEN, id, 1000, 2000, token, sizeof token), 0);
    assert_int_equal(token_verify(secret, SECRET_LEN, token, strlen(token), 1500, sub, err,
                                  sizeof err),
                     0);
    assert_string_equal(sub, id);
}

/* Someone could forge or replay a token to read another client's tasks. */
static void
test_forged_expired_and_malformed_tokens_fail(void **state)
{
    (void)state;
    char id[TOKEN_ID_SIZE], token[TOKEN_MAX], sub[TOKEN_ID_SIZE], err[128];
    token_random_id(id);
    token_issue(secret, SECRET_LEN, id, 1000, 2000, token, sizeof token);
    assert_int_equal(token_verify(secret, SECRET_LEN, token, strlen(token), 2000, sub, err,
                                  sizeof err),
                     TW_E_UNAUTHORIZED);
    assert_string_equal(err, "expired");

    const unsigned char other[] = "ffffffffffffffffffffffffffffffff";
    assert_int_equal(token_verify(other, SECRET_LEN, token, strlen(token), 1500, sub, err,
                                  sizeof err),
                     TW_E_UNAUTHORIZED);
    assert_string_equal(err, "bad signature");

    char tampered[TOKEN_MAX];
    strcpy(tampered, token);
    tampered[40] = tampered[40] == 'A' ? 'B' : 'A';
    assert_int_equal(token_verify(secret, SECRET_LEN, tampered, strlen(tampered), 1500, sub, err,
                                  sizeof err),
                     TW_E_UNAUTHORIZED);

    const char *bad[] = {"", "abc", "a.b", "a.b.c.d", "...", "eyJ.eyJ.!!!!"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(token_verify(secret, SECRET_LEN, bad[i], strlen(bad[i]), 1500, sub, err,
                                      sizeof err),
                         TW_E_UNAUTHORIZED);
    /* Length-bounded input: the token is not read past its length. */
    assert_int_equal(token_verify(secret, SECRET_LEN, token, strlen(token) - 1, 1500, sub, err,
                                  sizeof err),
                     TW_E_UNAUTHORIZED);
}

/* `taskwire token verify` would show an operator claims the token does not hold. */
static void
test_claims_are_read_back_and_junk_refused(void **state)
{
    (void)state;
    char id[TOKEN_ID_SIZE], token[TOKEN_MAX], sub[TOKEN_ID_SIZE];
    int64_t iat = -1, exp = -1;
    token_random_id(id);
    assert_int_equal(token_issue(secret, SECRET_LEN, id, 1000, 2000, token, sizeof token), 0);
    assert_int_equal(token_claims(token, strlen(token), sub, &iat, &exp), 0);
    assert_string_equal(sub, id);
    assert_int_equal(iat, 1000);
    assert_int_equal(exp, 2000);
    const char *bad[] = {"", "abc", "a.b", "a.!!!.c", "eyJ.eyJ9.x", "a.bm90IGpzb24.c"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(token_claims(bad[i], strlen(bad[i]), sub, &iat, &exp),
                         TW_E_UNAUTHORIZED);
    /* Only the given length is read: the claims cut short are not claims. */
    const char *dot = strchr(token, '.');
    assert_int_equal(token_claims(token, (size_t)(dot - token) + 5, sub, &iat, &exp),
                     TW_E_UNAUTHORIZED);
}

/* The HMAC secret would be readable by other users, or change between restarts. */
static void
test_secret_is_created_once_with_mode_0600(void **state)
{
    (void)state;
    char dir[] = "/tmp/tw-token-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/secret", dir);
    unsigned char first[TOKEN_SECRET_MAX], second[TOKEN_SECRET_MAX];
    size_t first_len, second_len;
    char err[256];
    assert_int_equal(token_secret_load(path, 0, first, &first_len, err, sizeof err), TW_E_CONFIG);
    assert_int_equal(token_secret_load(path, 1, first, &first_len, err, sizeof err), 0);
    assert_int_equal(first_len, TOKEN_SECRET_BYTES);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(token_secret_load(path, 1, second, &second_len, err, sizeof err), 0);
    assert_memory_equal(first, second, first_len);
    unlink(path);
    rmdir(dir);
}

/* A user's tasks would not follow them to another device (a different id for the same name),
 * two users would share tasks, or a name with spaces, quotes or non-ASCII bytes would become
 * an identity. */
static void
test_user_ids_are_stable_distinct_and_checked(void **state)
{
    (void)state;
    char a[TOKEN_ID_SIZE], b[TOKEN_ID_SIZE], c[TOKEN_ID_SIZE], sub[TOKEN_ID_SIZE];
    char token[TOKEN_MAX], why[64];
    assert_int_equal(token_user_id(secret, SECRET_LEN, "alice", 5, a), 0);
    assert_int_equal(token_user_id(secret, SECRET_LEN, "alice", 5, b), 0);
    assert_string_equal(a, b);
    assert_int_equal(token_user_id(secret, SECRET_LEN, "bob@example.org", 15, c), 0);
    assert_string_not_equal(a, c);
    assert_int_equal(token_user_id((const unsigned char *)"another secret, 32 bytes long!!!",
                                   SECRET_LEN, "alice", 5, c),
                     0);
    assert_string_not_equal(a, c);
    /* The id is an ordinary client id: a token for it verifies. */
    assert_int_equal(token_issue(secret, SECRET_LEN, a, 1000, 2000, token, sizeof token), 0);
    assert_int_equal(token_verify(secret, SECRET_LEN, token, strlen(token), 1500, sub, why,
                                  sizeof why),
                     0);
    assert_string_equal(sub, a);
    char longest[TOKEN_USER_MAX + 1];
    memset(longest, 'x', sizeof longest);
    assert_int_equal(token_user_id(secret, SECRET_LEN, longest, TOKEN_USER_MAX, c), 0);
    assert_int_equal(token_user_id(secret, SECRET_LEN, longest, TOKEN_USER_MAX + 1, c),
                     TW_E_BAD_REQUEST);
    static const char *const bad[] = {"", "a b", "a\"b", "a/b", "caf\xc3\xa9", "a\nb"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(token_user_id(secret, SECRET_LEN, bad[i], strlen(bad[i]), c),
                         TW_E_BAD_REQUEST);
    assert_int_equal(token_user_id(secret, SECRET_LEN, "a\0b", 3, c), TW_E_BAD_REQUEST);
}

/* base64url without padding of (in, len) appended at out. */
static void
append_b64url(char *out, const void *in, size_t len)
{
    char *at = out + strlen(out);
    int written = EVP_EncodeBlock((unsigned char *)at, in, (int)len);
    while (written > 0 && at[written - 1] == '=')
        written--;
    at[written] = '\0';
    for (char *c = at; *c; c++)
        *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
}

/* A token of header and claims (JSON texts) signed with the test secret, as a backend makes
 * one. */
static void
sign_with_header(const char *header, const char *claims, char out[TOKEN_MAX])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len;
    out[0] = '\0';
    append_b64url(out, header, strlen(header));
    strcat(out, ".");
    append_b64url(out, claims, strlen(claims));
    HMAC(EVP_sha256(), secret, SECRET_LEN, (const unsigned char *)out, strlen(out), mac, &mac_len);
    strcat(out, ".");
    append_b64url(out, mac, mac_len);
}

/* An HS256 token of claims (JSON text) signed with the test secret. */
static void
sign_claims(const char *claims, char out[TOKEN_MAX])
{
    sign_with_header("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims, out);
}

/* Another minter's header (its own key order, a kid) is read as JSON and taken; one that is
 * not HS256 is refused even when its bytes are close to the one token_issue writes. */
static void
test_headers_of_other_minters_are_read(void **state)
{
    (void)state;
    static const char claims[] = "{\"sub\":\"0123456789abcdef0123456789abcdef\",\"exp\":2000}";
    static const char *const good[] = {"{\"typ\":\"JWT\",\"alg\":\"HS256\"}",
                                       "{\"alg\":\"HS256\"}",
                                       "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}"};
    static const char *const bad[] = {"{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
                                      "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"typ\":\"JWT\"}",
                                      "[\"HS256\"]"};
    char token[TOKEN_MAX], sub[TOKEN_ID_SIZE], err[128];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        sign_with_header(good[i], claims, token);
        assert_int_equal(token_verify(secret, SECRET_LEN, token, strlen(token), 1500, sub, err,
                                      sizeof err),
                         0);
        assert_string_equal(sub, "0123456789abcdef0123456789abcdef");
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sign_with_header(bad[i], claims, token);
        assert_int_equal(token_verify(secret, SECRET_LEN, token, strlen(token), 1500, sub, err,
                                      sizeof err),
                         TW_E_UNAUTHORIZED);
        assert_string_equal(err, "header is not HS256");
    }
}

/* Two secrets used in turn on one thread, and on a second thread: each token verifies with its
 * own secret only (the keyed context of a thread follows the secret it is given). */
static void *
verify_in_turn(void *arg)
{
    const unsigned char *other = arg;
    char a[TOKEN_MAX], b[TOKEN_MAX], sub[TOKEN_ID_SIZE], err[128];
    static const char id[] = "0123456789abcdef0123456789abcdef";
    for (int round = 0; round < 3; round++) {
        if (token_issue(secret, SECRET_LEN, id, 1000, 2000, a, sizeof a) != 0 ||
            token_issue(other, SECRET_LEN, id, 1000, 2000, b, sizeof b) != 0 || !strcmp(a, b) ||
            token_verify(secret, SECRET_LEN, a, strlen(a), 1500, sub, err, sizeof err) != 0 ||
            token_verify(other, SECRET_LEN, b, strlen(b), 1500, sub, err, sizeof err) != 0 ||
            token_verify(secret, SECRET_LEN, b, strlen(b), 1500, sub, err, sizeof err) == 0 ||
            token_verify(other, SECRET_LEN, a, strlen(a), 1500, sub, err, sizeof err) == 0 ||
            token_verify(other, SECRET_LEN - 1, b, strlen(b), 1500, sub, err, sizeof err) == 0)
            return (void *)1;
    }
    return NULL;
}

static void
test_secrets_in_turn_each_verify_their_own(void **state)
{
    (void)state;
    static unsigned char other[SECRET_LEN];
    memcpy(other, secret, SECRET_LEN);
    other[0] ^= 1;
    assert_null(verify_in_turn(other));
    pthread_t thread;
    void *result = (void *)1;
    assert_int_equal(pthread_create(&thread, NULL, verify_in_turn, other), 0);
    assert_int_equal(pthread_join(thread, &result), 0);
    assert_null(result);
}

/* A backend's token with channels would be refused, or one whose channels claim nothing can
 * read (the wrong shape, unknown permissions, too many or too long names) would be taken. */
static void
test_channels_claim_is_checked(void **state)
{
    (void)state;
    static const char *const good[] = {
        "{}",
        "{\"project:42\":[\"subscribe\",\"publish\"]}",
        "{\"news\":[\"subscribe\"],\"user:*\":[\"publish\"]}",
    };
    static const char *const bad[] = {
        "[]",
        "\"project:42\"",
        "{\"project:42\":[]}",
        "{\"project:42\":\"subscribe\"}",
        "{\"project:42\":[\"read\"]}",
        "{\"project:42\":[\"subscribe\",\"subscribe\"]}",
        "{\"project:42\":[1]}",
        "{\"\":[\"subscribe\"]}",
        "{\"a b\":[\"subscribe\"]}",
        "{\"a\":[\"subscribe\"],\"b\":[\"subscribe\"],\"c\":[\"subscribe\"],\"d\":[\"subscribe\"],"
        "\"e\":[\"subscribe\"],\"f\":[\"subscribe\"],\"g\":[\"subscribe\"],\"h\":[\"subscribe\"],"
        "\"i\":[\"subscribe\"],\"j\":[\"subscribe\"],\"k\":[\"subscribe\"],\"l\":[\"subscribe\"],"
        "\"m\":[\"subscribe\"],\"n\":[\"subscribe\"],\"o\":[\"subscribe\"],\"p\":[\"subscribe\"],"
        "\"q\":[\"subscribe\"]}",
        "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":[\"publish\"]}",
    };
    char claims[700], token[TOKEN_MAX], sub[TOKEN_ID_SIZE], err[128];
    size_t n_good = sizeof good / sizeof good[0], n_bad = sizeof bad / sizeof bad[0];
    for (size_t i = 0; i < n_good + n_bad; i++) {
        snprintf(claims, sizeof claims,
                 "{\"sub\":\"0123456789abcdef0123456789abcdef\",\"exp\":2000,\"channels\":%s}",
                 i < n_good ? good[i] : bad[i - n_good]);
        sign_claims(claims, token);
        int rc = token_verify(secret, SECRET_LEN, token, strlen(token), 1500, sub, err, sizeof err);
        assert_int_equal(rc, i < n_good ? 0 : TW_E_UNAUTHORIZED);
        /* The 17-entry claim is over the size a token's claims may have: refused either way. */
        if (i >= n_good && strlen(claims) < 512)
            assert_string_equal(err, "channels claim is malformed");
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_ids_are_hex_and_distinct),
        cmocka_unit_test(test_many_ids_are_distinct),
        cmocka_unit_test(test_forked_child_does_not_repeat_parent_ids),
        cmocka_unit_test(test_ordered_ids_sort_by_time_and_are_distinct),
        cmocka_unit_test(test_issued_token_verifies),
        cmocka_unit_test(test_user_ids_are_stable_distinct_and_checked),
        cmocka_unit_test(test_channels_claim_is_checked),
        cmocka_unit_test(test_headers_of_other_minters_are_read),
        cmocka_unit_test(test_secrets_in_turn_each_verify_their_own),
        cmocka_unit_test(test_forged_expired_and_malformed_tokens_fail),
        cmocka_unit_test(test_claims_are_read_back_and_junk_refused),
        cmocka_unit_test(test_secret_is_created_once_with_mode_0600),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
