/* Unit tests for common/curve.c: the CURVE key files of [zmq] curve = true. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "curve.h"

struct files {
    char dir[64];
    char public_key[CURVE_KEY_Z85 + 1], secret_key[CURVE_KEY_Z85 + 1];
    char other_public[CURVE_KEY_Z85 + 1], other_secret[CURVE_KEY_Z85 + 1];
};

/* dir/name with text, made with mode; its path in path (PATH_MAX). */
static void
write_file(const struct files *files, const char *name, const char *text, mode_t mode, char *path)
{
    snprintf(path, PATH_MAX, "%s/%s", files->dir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static int
setup(void **state)
{
    struct files *files = calloc(1, sizeof *files);
    if (!files)
        return -1;
    strcpy(files->dir, "/tmp/tw-curve-XXXXXX");
    if (!mkdtemp(files->dir) || zmq_curve_keypair(files->public_key, files->secret_key) != 0 ||
        zmq_curve_keypair(files->other_public, files->other_secret) != 0)
        return -1;
    *state = files;
    return 0;
}

static int
teardown(void **state)
{
    struct files *files = *state;
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", files->dir);
    int ignored = system(command);
    (void)ignored;
    free(files);
    return 0;
}

/* A config with curve on and the given files (NULL: left empty). */
static void
config_with(struct config *cfg, const char *secret, const char *server, const char *clients)
{
    config_defaults(cfg);
    cfg->curve = 1;
    snprintf(cfg->curve_secret_file, sizeof cfg->curve_secret_file, "%s", secret ? secret : "");
    snprintf(cfg->curve_server_public_file, sizeof cfg->curve_server_public_file, "%s",
             server ? server : "");
    snprintf(cfg->curve_clients_file, sizeof cfg->curve_clients_file, "%s", clients ? clients : "");
}

/* Good files would not load: no program could speak CURVE. */
static void
test_good_files_load(void **state)
{
    struct files *files = *state;
    char secret[PATH_MAX], server[PATH_MAX], clients[PATH_MAX], text[512];
    snprintf(text, sizeof text, "# this host's key\n\n  %s  \r\n", files->secret_key);
    write_file(files, "own.key", text, 0600, secret);
    snprintf(text, sizeof text, "%s\n", files->other_public);
    write_file(files, "pool.pub", text, 0644, server);
    snprintf(text, sizeof text, "# relays\n%s\n\n\t# operators\n%s\n#%s\n", files->public_key,
             files->other_public, files->secret_key);
    write_file(files, "clients", text, 0644, clients);

    static struct config cfg;
    char err[512] = "";
    struct curve *curve = NULL;
    config_with(&cfg, secret, server, NULL);
    assert_int_equal(curve_load(&cfg, CURVE_ROLE_CLIENT, NULL, 0, &curve, err, sizeof err), 0);
    assert_non_null(curve);
    curve_destroy(&curve);
    assert_null(curve);

    config_with(&cfg, secret, NULL, clients);
    assert_int_equal(curve_load(&cfg, CURVE_ROLE_SERVER, NULL, 0, &curve, err, sizeof err), 0);
    uint8_t key[CURVE_KEY_BYTES];
    assert_non_null(zmq_z85_decode(key, files->public_key));
    assert_int_equal(curve_client_allowed(curve, key, sizeof key), 1);
    assert_int_equal(curve_client_allowed(curve, key, sizeof key - 1), 0);
    assert_non_null(zmq_z85_decode(key, files->other_secret));
    assert_int_equal(curve_client_allowed(curve, key, sizeof key), 0);
    curve_destroy(&curve);
    curve_destroy(&curve); /* NULL-safe */
}

/* A typo in a key file would be used as a key, or a list cut short without a word. */
static void
test_malformed_files_are_refused(void **state)
{
    struct files *files = *state;
    char path[PATH_MAX], text[512], err[512];
    char keys[4][CURVE_KEY_Z85 + 1];
    const char *key = files->public_key;
    char bad[5][128];
    snprintf(bad[0], sizeof bad[0], "not a key\n");
    snprintf(bad[1], sizeof bad[1], "%.39s\n", key);      /* one character short */
    snprintf(bad[2], sizeof bad[2], "%s0\n", key);        /* one too many */
    snprintf(bad[3], sizeof bad[3], "%.39s\"\n", key);    /* '"' is not Z85 */
    snprintf(bad[4], sizeof bad[4], "%s %s\n", key, key); /* two on a line */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(files, "bad", bad[i], 0644, path);
        err[0] = '\0';
        if (curve_file_read(path, 0, keys, 4, 0, err, sizeof err) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, "line 1"));
        /* The line is not echoed: it may be a secret key mistyped. */
        assert_null(strstr(err, files->public_key));
    }
    /* An empty single-key file, and more keys than the bound. */
    write_file(files, "empty", "# nothing\n", 0600, path);
    assert_int_equal(curve_file_read(path, 1, keys, 1, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "holds no key"));
    snprintf(text, sizeof text, "%s\n%s\n", files->public_key, files->other_public);
    write_file(files, "two", text, 0644, path);
    assert_int_equal(curve_file_read(path, 0, keys, 1, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 1 key"));
    assert_int_equal(curve_file_read(path, 0, keys, 4, 0, err, sizeof err), 2);
    assert_string_equal(keys[1], files->other_public);
    /* Missing files are named. */
    snprintf(path, sizeof path, "%s/absent", files->dir);
    assert_int_equal(curve_file_read(path, 0, keys, 4, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
}

/* A secret key others could read would be accepted, as ssh refuses not to. */
static void
test_secret_others_can_read_is_refused(void **state)
{
    struct files *files = *state;
    char path[PATH_MAX], text[128], err[512];
    char keys[1][CURVE_KEY_Z85 + 1];
    snprintf(text, sizeof text, "%s\n", files->secret_key);
    static const mode_t refused[] = {0644, 0604, 0602, 0601};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        write_file(files, "secret", text, refused[i], path);
        assert_int_equal(curve_file_read(path, 1, keys, 1, 1, err, sizeof err), -1);
        assert_non_null(strstr(err, "chmod o-rwx"));
        assert_non_null(strstr(err, path));
    }
    /* The same file as a public key, or with the group's access only, is fine. */
    assert_int_equal(curve_file_read(path, 0, keys, 1, 1, err, sizeof err), 1);
    write_file(files, "secret", text, 0640, path);
    assert_int_equal(curve_file_read(path, 1, keys, 1, 1, err, sizeof err), 1);
    assert_string_equal(keys[0], files->secret_key);
}

/* curve = true with a key file missing from the config would start without CURVE. */
static void
test_missing_keys_in_config_are_refused(void **state)
{
    struct files *files = *state;
    char secret[PATH_MAX], text[128], err[512];
    snprintf(text, sizeof text, "%s\n", files->secret_key);
    write_file(files, "own.key", text, 0600, secret);
    static struct config cfg;
    struct curve *curve = NULL;
    config_with(&cfg, secret, NULL, NULL);
    assert_int_equal(curve_load(&cfg, CURVE_ROLE_CLIENT, NULL, 0, &curve, err, sizeof err), -1);
    assert_non_null(strstr(err, "curve_server_public_file"));
    assert_int_equal(curve_load(&cfg, CURVE_ROLE_SERVER, NULL, 0, &curve, err, sizeof err), -1);
    assert_non_null(strstr(err, "curve_clients_file"));
    assert_null(curve);
    /* Off: nothing is read, and the result is plaintext. */
    cfg.curve = 0;
    const char *endpoints[] = {"tcp://10.0.0.5:5571"};
    assert_int_equal(curve_load(&cfg, CURVE_ROLE_CLIENT, endpoints, 1, &curve, err, sizeof err), 0);
    assert_null(curve);
}

/* The plaintext warning would be missing for another host, or noise on a loopback setup. */
static void
test_local_endpoints(void **state)
{
    (void)state;
    static const char *const local[] = {"tcp://127.0.0.1:5571", "tcp://127.1.2.3:1",
                                        "tcp://[::1]:5571",     "tcp://localhost:5571",
                                        "inproc://x",           "ipc:///run/taskwire/tasks"};
    static const char *const remote[] = {"tcp://10.0.0.5:5571", "tcp://*:5571",
                                         "tcp://0.0.0.0:5571", "tcp://worker.example:5571",
                                         "tcp://eth0:5571"};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        assert_int_equal(curve_endpoint_local(local[i]), 1);
    for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++)
        assert_int_equal(curve_endpoint_local(remote[i]), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_files_load),
        cmocka_unit_test(test_malformed_files_are_refused),
        cmocka_unit_test(test_secret_others_can_read_is_refused),
        cmocka_unit_test(test_missing_keys_in_config_are_refused),
        cmocka_unit_test(test_local_endpoints),
    };
    log_setup("test_curve", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, setup, teardown);
}
