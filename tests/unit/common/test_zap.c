/* Unit tests for common/zap.c: the ZAP decisions on requests and the bound on refusal lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/zap.c"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static char listed_public[CURVE_KEY_Z85 + 1], listed_secret[CURVE_KEY_Z85 + 1];
static struct curve *curve;

static void
write_file(const char *name, const char *text, char *path)
{
    snprintf(path, PATH_MAX, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* A pool's keys whose clients file lists listed_public. */
static int
setup(void **state)
{
    (void)state;
    char pool_public[CURVE_KEY_Z85 + 1], pool_secret[CURVE_KEY_Z85 + 1];
    char secret[PATH_MAX], clients[PATH_MAX], text[128], err[256];
    strcpy(dir, "/tmp/tw-zap-XXXXXX");
    if (!mkdtemp(dir) || zmq_curve_keypair(pool_public, pool_secret) != 0 ||
        zmq_curve_keypair(listed_public, listed_secret) != 0)
        return -1;
    snprintf(text, sizeof text, "%s\n", pool_secret);
    write_file("pool.key", text, secret);
    snprintf(text, sizeof text, "# a relay\n%s\n", listed_public);
    write_file("clients", text, clients);
    static struct config cfg;
    config_defaults(&cfg);
    cfg.curve = 1;
    strcpy(cfg.curve_secret_file, secret);
    strcpy(cfg.curve_clients_file, clients);
    int rc = curve_load(&cfg, CURVE_ROLE_SERVER, NULL, 0, &curve, err, sizeof err);
    unlink(secret);
    unlink(clients);
    rmdir(dir);
    return rc;
}

static int
teardown(void **state)
{
    (void)state;
    curve_destroy(&curve);
    return 0;
}

#define FRAME(text)                                                                                \
    {                                                                                              \
        (const uint8_t *)(text), sizeof(text) - 1                                                  \
    }

/* The seven frames of a CURVE request from libzmq, offering key. */
static void
request(struct zap_frame frames[7], const uint8_t *key)
{
    const struct zap_frame head[6] = {FRAME("1.0"),      FRAME("7"), FRAME("taskwire"),
                                      FRAME("10.0.0.9"), FRAME(""),  FRAME("CURVE")};
    memcpy(frames, head, sizeof head);
    frames[6] = (struct zap_frame){key, CURVE_KEY_BYTES};
}

/* A listed relay would be refused, or anyone else let in. */
static void
test_exactly_the_listed_keys_pass(void **state)
{
    (void)state;
    uint8_t key[CURVE_KEY_BYTES];
    struct zap_frame frames[7];
    struct zap_verdict verdict;
    assert_non_null(zmq_z85_decode(key, listed_public));
    request(frames, key);
    zap_decide(curve, frames, 7, &verdict);
    assert_string_equal(verdict.status, "200");
    assert_string_equal(verdict.key, listed_public);
    assert_string_equal(verdict.peer, "10.0.0.9");
    assert_int_equal(verdict.request_id.size, 1);
    assert_memory_equal(verdict.request_id.data, "7", 1);

    key[5] ^= 1;
    zap_decide(curve, frames, 7, &verdict);
    assert_string_equal(verdict.status, "400");
    char offered[CURVE_KEY_Z85 + 1];
    assert_non_null(zmq_z85_encode(offered, key, sizeof key));
    assert_string_equal(verdict.key, offered); /* the refused key is what the log names */
}

/* A request of another shape would crash the worker, or be let in. */
static void
test_other_requests_are_refused(void **state)
{
    (void)state;
    uint8_t key[CURVE_KEY_BYTES];
    struct zap_frame frames[7];
    struct zap_verdict verdict;
    assert_non_null(zmq_z85_decode(key, listed_public));
    request(frames, key);
    frames[5] = (struct zap_frame)FRAME("NULL");
    zap_decide(curve, frames, 6, &verdict);
    assert_string_equal(verdict.status, "400");
    assert_string_equal(verdict.key, "-");
    request(frames, key);
    frames[6].size = CURVE_KEY_BYTES - 1;
    zap_decide(curve, frames, 7, &verdict);
    assert_string_equal(verdict.status, "400");
    request(frames, key);
    zap_decide(curve, frames, 6, &verdict); /* no credentials frame */
    assert_string_equal(verdict.status, "400");
    request(frames, key);
    frames[0] = (struct zap_frame)FRAME("2.0");
    zap_decide(curve, frames, 7, &verdict);
    assert_string_equal(verdict.status, "500");
    for (size_t count = 0; count < 6; count++) {
        request(frames, key);
        zap_decide(curve, frames, count, &verdict);
        assert_string_equal(verdict.status, "500");
        assert_int_equal(verdict.request_id.size, count >= 2 ? 1 : 0);
    }
    /* An address of bytes no address has is logged as '?', cut at ZAP_PEER_MAX. */
    request(frames, key);
    char address[200];
    memset(address, 'a', sizeof address);
    memcpy(address, "1\n2 \"x=", 7);
    frames[3] = (struct zap_frame){(const uint8_t *)address, sizeof address};
    zap_decide(curve, frames, 7, &verdict);
    assert_string_equal(verdict.status, "200");
    assert_int_equal(strlen(verdict.peer), ZAP_PEER_MAX - 1);
    assert_memory_equal(verdict.peer, "1?2????aa", 9);
}

/* A flood of refused peers would fill the disk with log lines. */
static void
test_refusal_lines_are_bounded(void **state)
{
    (void)state;
    struct zap zap = {.window_start_ms = clock_mono_ms()};
    int written = 0;
    for (int i = 0; i < ZAP_LOG_BURST * 10; i++)
        written += zap_log_allowed(&zap);
    assert_int_equal(written, ZAP_LOG_BURST);
    assert_int_equal(zap.left_out, ZAP_LOG_BURST * 9);
    zap.window_start_ms -= ZAP_LOG_WINDOW_MS; /* the next window */
    assert_int_equal(zap_log_allowed(&zap), 1);
    assert_int_equal(zap.left_out, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_the_listed_keys_pass),
        cmocka_unit_test(test_other_requests_are_refused),
        cmocka_unit_test(test_refusal_lines_are_bounded),
    };
    log_setup("test_zap", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, setup, teardown);
}
