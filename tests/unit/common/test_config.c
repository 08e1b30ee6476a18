/* Unit tests for common/config.c: the INI file every program reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "errors.h"

static char dir[] = "/tmp/tw-config-XXXXXX";

static int
setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/t.conf", dir);
    unlink(path);
    return rmdir(dir);
}

/* Load text as a config file; the return code of config_load. */
static int
load(struct config *cfg, const char *text, char *err, size_t errlen)
{
    char path[256];
    snprintf(path, sizeof path, "%s/t.conf", dir);
    FILE *file = fopen(path, "w");
    fputs(text, file);
    fclose(file);
    return config_load(cfg, path, err, errlen);
}

/* The shipped defaults and a relative path would not resolve where the operator expects. */
static void
test_defaults_and_relative_paths(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, "[store]\ndatabase = ../db/x.db\n[relay]\nport = 9000\n", err,
                          sizeof err),
                     0);
    char expected[PATH_MAX];
    char *real = realpath(dir, NULL);
    snprintf(expected, sizeof expected, "%s/../db/x.db", real);
    free(real);
    assert_string_equal(cfg.database, expected);
    assert_int_equal(cfg.relay_port, 9000);
    assert_int_equal(cfg.ring, CONFIG_DEFAULT_RING);
    assert_string_equal(cfg.types[0].name, "sleep");
}

/* A typo in the config would be silently ignored instead of reported with its line. */
static void
test_unknown_keys_and_bad_values_name_the_line(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512];
    assert_int_equal(load(&cfg, "[relay]\nport = 80\nprot = 81\n", err, sizeof err), TW_E_CONFIG);
    assert_non_null(strstr(err, ":3: unknown key 'prot'"));
    assert_int_equal(load(&cfg, "[relay]\nport = 99999\n", err, sizeof err), TW_E_CONFIG);
    assert_non_null(strstr(err, ":2: port must be an integer 1..65535"));
    assert_int_equal(load(&cfg, "[relay]\nport = 12abc\n", err, sizeof err), TW_E_CONFIG);
    assert_int_equal(load(&cfg, "[nosuch]\nkey = 1\n", err, sizeof err), TW_E_CONFIG);
    assert_int_equal(load(&cfg, "[type x]\ncommand = /bin/true\nparam.n = float\n", err,
                          sizeof err),
                     TW_E_CONFIG);
    assert_int_equal(load(&cfg, "[type x]\nlabel = no command\n", err, sizeof err), TW_E_CONFIG);
    assert_non_null(strstr(err, "needs a command"));
}

/* A declared exec type would not appear in the page's form with its parameters. */
static void
test_exec_types_and_param_specs(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg,
                          "[type zip]\nlabel = Zip it\ncommand = /usr/bin/zip\ntimeout_ms = 5000\n"
                          "param.level = integer min=0 max=9 default=6\n"
                          "param.dir = string min=1 max=100\n"
                          "param.fast = boolean default=true\n",
                          err, sizeof err),
                     0);
    const struct config_type *type = config_type_find(&cfg, "zip", 3);
    assert_non_null(type);
    assert_int_equal(type->kind, CONFIG_TYPE_EXEC);
    assert_int_equal(type->timeout_ms, 5000);
    assert_int_equal(type->param_count, 3);
    assert_int_equal(type->params[0].default_integer, 6);
    assert_int_equal(type->params[1].has_default, 0);
    assert_int_equal(type->params[2].default_integer, 1);
    assert_null(config_type_find(&cfg, "zi", 2));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_relative_paths),
        cmocka_unit_test(test_unknown_keys_and_bad_values_name_the_line),
        cmocka_unit_test(test_exec_types_and_param_specs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
