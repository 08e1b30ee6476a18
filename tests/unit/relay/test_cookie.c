/* Unit tests for relay/cookie.c: the session's cookie out of a Cookie header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "relay/cookie.c"

/* The value of name in header as a NUL-terminated string in out, or "(none)". */
static const char *
find(const char *header, const char *name, char *out, size_t size)
{
    const char *value;
    size_t len;
    if (cookie_find(header, strlen(header), name, &value, &len) != 0)
        return "(none)";
    assert_true(len < size);
    memcpy(out, value, len);
    out[len] = '\0';
    return out;
}

/* The name is found where a pair starts, whatever the separators around it, and only there:
 * a cookie whose name ends with it (another application's), or holds it in its value, is not
 * the session's. */
static void
test_a_cookie_is_found_only_by_its_whole_name(void **state)
{
    (void)state;
    static const struct {
        const char *header, *want;
    } cases[] = {
        {"tw=a.b.c", "a.b.c"},
        {"other=1; tw=a.b.c", "a.b.c"},
        {"other=1;tw=a.b.c; last=2", "a.b.c"},
        {"other=1;  \ttw=a.b.c;last=2", "a.b.c"},
        {"xtw=evil; tw=mine", "mine"},
        {"xtw=evil", "(none)"},
        {"tw_other=evil", "(none)"},
        {"other=tw=evil", "(none)"},
        {"TW=upper", "(none)"},
        {"tw", "(none)"},
        {"tw=", "(none)"},
        {"", "(none)"},
        {";;; tw=x;", "x"},
        {"tw=first; tw=second", "first"},
        {"tw=\"quoted\"", "\"quoted\""},
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(find(cases[i].header, "tw", out, sizeof out), cases[i].want);
}

/* The header's length bounds the search: bytes after it are never read as a pair. */
static void
test_the_length_bounds_the_search(void **state)
{
    (void)state;
    static const char header[] = "a=1; tw=yes";
    const char *value;
    size_t len;
    assert_int_equal(cookie_find(header, 8, "tw", &value, &len), -1);
    assert_int_equal(cookie_find(header, 10, "tw", &value, &len), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(value, "ye", 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_cookie_is_found_only_by_its_whole_name),
        cmocka_unit_test(test_the_length_bounds_the_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
