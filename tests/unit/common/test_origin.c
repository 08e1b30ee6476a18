/* Unit tests for common/origin.c: the origin lists of [relay] allowed_origins and
 * [http] cors_origins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "origin.h"

static int
add(struct origin_list *list, const char *origin, char *err, size_t errlen)
{
    return origin_list_add(list, origin, strlen(origin), err, errlen);
}

/* A listed site would be refused, or a look-alike let in. */
static void
test_exact_match_ignoring_case(void **state)
{
    (void)state;
    struct origin_list list = {0};
    char err[128];
    assert_int_equal(add(&list, "https://App.Example.com", err, sizeof err), 0);
    assert_int_equal(add(&list, "http://127.0.0.1:8080", err, sizeof err), 0);
    static const char *const in[] = {"https://app.example.com", "HTTPS://APP.EXAMPLE.COM",
                                     "http://127.0.0.1:8080"};
    static const char *const out[] = {"https://app.example.com.evil.net",
                                      "https://app.example.co",
                                      "http://app.example.com",
                                      "http://127.0.0.1",
                                      "http://127.0.0.1:80800",
                                      "null",
                                      ""};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        assert_int_equal(origin_list_contains(&list, in[i], strlen(in[i])), 1);
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
        if (origin_list_contains(&list, out[i], strlen(out[i])))
            fail_msg("'%s' matched", out[i]);
    /* Length-bounded: a prefix of a longer buffer is what is compared. */
    assert_int_equal(origin_list_contains(&list, "http://127.0.0.1:8080/x", 21), 1);
    struct origin_list empty = {0};
    assert_int_equal(origin_list_contains(&empty, "https://a.b", 11), 0);
}

/* A config typo (a URL with a path, a bare host) would silently never match. */
static void
test_what_is_not_an_origin_is_refused(void **state)
{
    (void)state;
    struct origin_list list = {0};
    char err[128];
    static const char *const bad[] = {"example.com",
                                      "https://",
                                      "ftp://example.com",
                                      "https://example.com/",
                                      "https://example.com/app",
                                      "https://user@example.com",
                                      "https://a b",
                                      "*",
                                      "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (add(&list, bad[i], err, sizeof err) == 0)
            fail_msg("'%s' was accepted", bad[i]);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(list.count, 0);
    char long_origin[ORIGIN_MAX + 8];
    memset(long_origin, 'a', sizeof long_origin - 1);
    memcpy(long_origin, "https://", 8);
    long_origin[sizeof long_origin - 1] = '\0';
    assert_int_equal(add(&list, long_origin, err, sizeof err), -1);
    for (int i = 0; i < ORIGIN_LIST_MAX; i++)
        assert_int_equal(add(&list, "https://a.example", err, sizeof err), 0);
    assert_int_equal(add(&list, "https://b.example", err, sizeof err), -1);
    assert_non_null(strstr(err, "at most"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_match_ignoring_case),
        cmocka_unit_test(test_what_is_not_an_origin_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
