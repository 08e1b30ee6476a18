/* metrics.h: a Prometheus text exposition (format 0.0.4) writer, the process metrics every
 * program exports, and the [relay]/[worker] metrics_listen address.
 *
 * Assumptions: one writer per request, in one thread; the caller holds (or copies) whatever
 * counters it prints, so the writer takes plain numbers and never locks.  The text goes into
 * a buffer of the caller's of at most METRICS_TEXT_MAX bytes; what does not fit is not
 * written and metrics_text_finish reports -1, so an exposition is complete or refused (a
 * Prometheus scrape of a half-written one would read it as counters reset).  Label values are
 * escaped as the format wants (backslash, quote, newline); metric and label names are the
 * caller's constants, not checked.  Process metrics come from /proc/self (Linux only).
 */
#ifndef TW_COMMON_METRICS_H
#define TW_COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_TEXT_MAX (256 * 1024) /* bytes of one exposition; more is refused whole */
#define METRICS_HOST_MAX 64           /* bytes of a metrics_listen host, NUL included */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_BUCKETS 12 /* bounds of every histogram (metrics_duration_bounds) */

/* An exposition under construction: the caller's buffer and how much of it is used. */
struct metrics_text {
    char *buf;
    size_t size, len;
    int overflow; /* something did not fit */
};

/* One histogram's observations: cumulative counts per bound of metrics_duration_bounds, the
 * count and the sum, in seconds.  Plain storage: the owner serialises its updates. */
struct metrics_histogram {
    uint64_t buckets[METRICS_BUCKETS];
    uint64_t count;
    double sum;
};

/* The histograms' upper bounds in seconds (0.005 s to an hour): a task lasts from a
 * millisecond (sleep 0) to hours (exec), so the buckets grow tenfold-ish across that range. */
extern const double metrics_duration_bounds[METRICS_BUCKETS];

/* Start an exposition in buf (size bytes, borrowed until finished). */
void metrics_text_init(struct metrics_text *text, char *buf, size_t size);

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge, histogram). */
void metrics_family(struct metrics_text *text, const char *name, const char *type,
                    const char *help);

/* One sample: name{labels} value.  labels is NULL or "key", "value", ..., NULL pairs. */
void metrics_sample(struct metrics_text *text, const char *name, const char *const *labels,
                    double value);

/* A histogram's _bucket (with le, after the labels), _sum and _count lines. */
void metrics_histogram_write(struct metrics_text *text, const char *name, const char *const *labels,
                             const struct metrics_histogram *histogram);

/* Count one observation of seconds. */
void metrics_histogram_observe(struct metrics_histogram *histogram, double seconds);

/* The process metrics: process_cpu_seconds_total, process_resident_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds (from /proc/self).  A value
 * /proc does not give is left out. */
void metrics_process(struct metrics_text *text);

/* The length of the finished exposition, or -1 when it did not fit. */
long metrics_text_finish(const struct metrics_text *text);

/* Parse "host:port" (an IPv4 address or a name, port 1..65535) into host and *port: 0, or -1
 * when text is not one. */
int metrics_listen_parse(const char *text, char *host, size_t host_size, int *port);

#endif
