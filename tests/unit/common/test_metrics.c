/* Unit tests for common/metrics.c: the Prometheus text writer, the histograms, the process
 * metrics and the metrics_listen parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

/* Prometheus would refuse the scrape (or mislabel a series) for a quote or newline in a label
 * value. */
static void
test_labels_are_escaped(void **state)
{
    (void)state;
    char buf[512];
    struct metrics_text text;
    metrics_text_init(&text, buf, sizeof buf);
    metrics_family(&text, "x_total", "counter", "Things.");
    metrics_sample(&text, "x_total", (const char *const[]){"type", "a\"b\\c\nd", "s", "ok", NULL},
                   3);
    metrics_sample(&text, "x_total", NULL, 0.25);
    assert_true(metrics_text_finish(&text) > 0);
    assert_string_equal(buf, "# HELP x_total Things.\n# TYPE x_total counter\n"
                             "x_total{type=\"a\\\"b\\\\c\\nd\",s=\"ok\"} 3\n"
                             "x_total 0.25\n");
}

/* A histogram whose buckets were not cumulative, or lacked +Inf, would fail promtool. */
static void
test_histogram_is_cumulative(void **state)
{
    (void)state;
    struct metrics_histogram h;
    memset(&h, 0, sizeof h);
    metrics_histogram_observe(&h, 0.001);
    metrics_histogram_observe(&h, 2);
    metrics_histogram_observe(&h, 7200);
    metrics_histogram_observe(&h, -1); /* a clock that stepped back: instant */
    assert_int_equal(h.count, 4);
    assert_int_equal(h.buckets[0], 2);                   /* le 0.005 */
    assert_int_equal(h.buckets[METRICS_BUCKETS - 1], 3); /* le 3600 */
    char buf[4096];
    struct metrics_text text;
    metrics_text_init(&text, buf, sizeof buf);
    metrics_histogram_write(&text, "d_seconds", (const char *const[]){"type", "t", NULL}, &h);
    assert_true(metrics_text_finish(&text) > 0);
    assert_non_null(strstr(buf, "d_seconds_bucket{type=\"t\",le=\"0.005\"} 2\n"));
    assert_non_null(strstr(buf, "d_seconds_bucket{type=\"t\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(buf, "d_seconds_count{type=\"t\"} 4\n"));
    assert_non_null(strstr(buf, "d_seconds_sum{type=\"t\"} 7202.001\n"));
}

/* A scrape cut short would read as counters gone back to zero: too small a buffer refuses the
 * whole exposition. */
static void
test_overflow_refuses_the_whole(void **state)
{
    (void)state;
    char buf[40];
    struct metrics_text text;
    metrics_text_init(&text, buf, sizeof buf);
    metrics_family(&text, "a_long_metric_name_total", "counter", "Help that does not fit.");
    metrics_sample(&text, "b", NULL, 1);
    assert_int_equal(metrics_text_finish(&text), -1);
}

/* An operator would lose the process metrics every Prometheus dashboard expects. */
static void
test_process_metrics_are_there(void **state)
{
    (void)state;
    static char buf[METRICS_TEXT_MAX];
    struct metrics_text text;
    metrics_text_init(&text, buf, sizeof buf);
    metrics_process(&text);
    assert_true(metrics_text_finish(&text) > 0);
    const char *names[] = {"\nprocess_cpu_seconds_total ", "\nprocess_resident_memory_bytes ",
                           "\nprocess_open_fds ", "\nprocess_max_fds ",
                           "\nprocess_start_time_seconds "};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_non_null(strstr(buf, names[i]));
}

/* A typo in metrics_listen would start a program listening nowhere, or on port 0. */
static void
test_listen_parse(void **state)
{
    (void)state;
    char host[METRICS_HOST_MAX];
    int port = 0;
    assert_int_equal(metrics_listen_parse("127.0.0.1:9101", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 9101);
    const char *bad[] = {
        "", "9101", ":9101", "host:", "host:0", "host:65536", "host:12x", "host:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(metrics_listen_parse(bad[i], host, sizeof host, &port), -1);
    char long_host[METRICS_HOST_MAX + 8];
    memset(long_host, 'a', sizeof long_host);
    strcpy(long_host + METRICS_HOST_MAX, ":1");
    assert_int_equal(metrics_listen_parse(long_host, host, sizeof host, &port), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_are_escaped),
        cmocka_unit_test(test_histogram_is_cumulative),
        cmocka_unit_test(test_overflow_refuses_the_whole),
        cmocka_unit_test(test_process_metrics_are_there),
        cmocka_unit_test(test_listen_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
