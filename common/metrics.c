/* metrics.c: the Prometheus text exposition writer and the process metrics (see metrics.h). */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define METRICS_PROC_STAT_MAX 1024 /* bytes of /proc/self/stat read (its fields fit) */

const double metrics_duration_bounds[METRICS_BUCKETS] = {0.005, 0.01, 0.05, 0.1, 0.5,  1,
                                                         5,     10,   60,   300, 1800, 3600};

void
metrics_text_init(struct metrics_text *text, char *buf, size_t size)
{
    text->buf = buf;
    text->size = size;
    text->len = 0;
    text->overflow = size == 0;
    if (size > 0)
        buf[0] = '\0';
}

static void metrics_append(struct metrics_text *text, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void
metrics_append(struct metrics_text *text, const char *format, ...)
{
    if (text->overflow)
        return;
    va_list args;
    va_start(args, format);
    int n = vsnprintf(text->buf + text->len, text->size - text->len, format, args);
    va_end(args);
    if (n < 0 || (size_t)n >= text->size - text->len) {
        text->overflow = 1;
        text->buf[text->len] = '\0';
        return;
    }
    text->len += (size_t)n;
}

/* A label value as the format wants it: \\, \" and \n escaped. */
static void
metrics_append_value(struct metrics_text *text, const char *value)
{
    for (const char *c = value; *c && !text->overflow; c++) {
        if (*c == '\\')
            metrics_append(text, "\\\\");
        else if (*c == '"')
            metrics_append(text, "\\\"");
        else if (*c == '\n')
            metrics_append(text, "\\n");
        else
            metrics_append(text, "%c", *c);
    }
}

/* {k="v",...[,le="bound"]}, or nothing without labels and le. */
static void
metrics_append_labels(struct metrics_text *text, const char *const *labels, const char *le)
{
    int any = 0;
    for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
        metrics_append(text, "%s%s=\"", any ? "," : "{", labels[i]);
        metrics_append_value(text, labels[i + 1]);
        metrics_append(text, "\"");
        any = 1;
    }
    if (le) {
        metrics_append(text, "%sle=\"%s\"", any ? "," : "{", le);
        any = 1;
    }
    if (any)
        metrics_append(text, "}");
}

/* A sample's value: integers exactly, others with enough digits. */
static void
metrics_append_number(struct metrics_text *text, double value)
{
    if (isnan(value))
        metrics_append(text, " NaN\n");
    else if (isinf(value))
        metrics_append(text, value > 0 ? " +Inf\n" : " -Inf\n");
    else if (value == floor(value) && fabs(value) < 9.0e15)
        metrics_append(text, " %.0f\n", value);
    else {
        /* The shortest of 15 or 17 digits that reads back as the same double. */
        char digits[40];
        snprintf(digits, sizeof digits, "%.15g", value);
        if (strtod(digits, NULL) != value)
            snprintf(digits, sizeof digits, "%.17g", value);
        metrics_append(text, " %s\n", digits);
    }
}

void
metrics_family(struct metrics_text *text, const char *name, const char *type, const char *help)
{
    metrics_append(text, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void
metrics_sample(struct metrics_text *text, const char *name, const char *const *labels, double value)
{
    metrics_append(text, "%s", name);
    metrics_append_labels(text, labels, NULL);
    metrics_append_number(text, value);
}

void
metrics_histogram_write(struct metrics_text *text, const char *name, const char *const *labels,
                        const struct metrics_histogram *histogram)
{
    for (size_t i = 0; i < METRICS_BUCKETS; i++) {
        char le[32];
        snprintf(le, sizeof le, "%g", metrics_duration_bounds[i]);
        metrics_append(text, "%s_bucket", name);
        metrics_append_labels(text, labels, le);
        metrics_append_number(text, (double)histogram->buckets[i]);
    }
    metrics_append(text, "%s_bucket", name);
    metrics_append_labels(text, labels, "+Inf");
    metrics_append_number(text, (double)histogram->count);
    metrics_append(text, "%s_sum", name);
    metrics_append_labels(text, labels, NULL);
    metrics_append_number(text, histogram->sum);
    metrics_append(text, "%s_count", name);
    metrics_append_labels(text, labels, NULL);
    metrics_append_number(text, (double)histogram->count);
}

void
metrics_histogram_observe(struct metrics_histogram *histogram, double seconds)
{
    if (!(seconds >= 0))
        seconds = 0; /* a clock that stepped back counts as instant */
    for (size_t i = 0; i < METRICS_BUCKETS; i++)
        if (seconds <= metrics_duration_bounds[i])
            histogram->buckets[i]++;
    histogram->count++;
    histogram->sum += seconds;
}

/* The whole of a small /proc file into buf: its length, or -1. */
static long
metrics_read_proc(const char *path, char *buf, size_t size)
{
    FILE *file = fopen(path, "re");
    if (!file)
        return -1;
    size_t n = fread(buf, 1, size - 1, file);
    fclose(file);
    buf[n] = '\0';
    return (long)n;
}

/* Field number (1-based, as proc(5) counts) of /proc/self/stat, from its text after the
 * command's closing parenthesis (field 3 on).  0, or -1. */
static int
metrics_stat_field(const char *after_command, int field, unsigned long long *value)
{
    const char *p = after_command;
    for (int n = 3; n < field && *p; n++) {
        while (*p == ' ')
            p++;
        while (*p && *p != ' ')
            p++;
    }
    char *end;
    errno = 0;
    *value = strtoull(p, &end, 10);
    return errno || end == p ? -1 : 0;
}

/* The machine's boot time in seconds since the epoch (/proc/stat btime), or -1. */
static long long
metrics_boot_time(void)
{
    char buf[8192];
    if (metrics_read_proc("/proc/stat", buf, sizeof buf) < 0)
        return -1;
    const char *line = strstr(buf, "\nbtime ");
    if (!line)
        return -1;
    char *end;
    errno = 0;
    long long value = strtoll(line + 7, &end, 10);
    return errno || end == line + 7 ? -1 : value;
}

void
metrics_process(struct metrics_text *text)
{
    char stat[METRICS_PROC_STAT_MAX];
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    const char *after =
        metrics_read_proc("/proc/self/stat", stat, sizeof stat) > 0 ? strrchr(stat, ')') : NULL;
    unsigned long long utime, stime, start, rss;
    if (after && ticks > 0 && metrics_stat_field(after + 1, 14, &utime) == 0 &&
        metrics_stat_field(after + 1, 15, &stime) == 0) {
        metrics_family(text, "process_cpu_seconds_total", "counter",
                       "Total user and system CPU time spent in seconds.");
        metrics_sample(text, "process_cpu_seconds_total", NULL,
                       (double)(utime + stime) / (double)ticks);
    }
    if (after && page > 0 && metrics_stat_field(after + 1, 24, &rss) == 0) {
        metrics_family(text, "process_resident_memory_bytes", "gauge",
                       "Resident memory size in bytes.");
        metrics_sample(text, "process_resident_memory_bytes", NULL, (double)rss * (double)page);
    }
    long long boot = metrics_boot_time();
    if (after && ticks > 0 && boot >= 0 && metrics_stat_field(after + 1, 22, &start) == 0) {
        metrics_family(text, "process_start_time_seconds", "gauge",
                       "Start time of the process since unix epoch in seconds.");
        metrics_sample(text, "process_start_time_seconds", NULL,
                       (double)boot + (double)start / (double)ticks);
    }
    /* One readdir per descriptor: with a million connections a scrape costs the relay a
     * fraction of a second, which a scrape every 15 s or more can afford. */
    DIR *fds = opendir("/proc/self/fd");
    if (fds) {
        long open_fds = -1; /* the directory's own descriptor is not counted */
        while (readdir(fds))
            open_fds++;
        closedir(fds);
        open_fds -= 2; /* "." and ".." */
        metrics_family(text, "process_open_fds", "gauge", "Number of open file descriptors.");
        metrics_sample(text, "process_open_fds", NULL, (double)(open_fds < 0 ? 0 : open_fds));
    }
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        metrics_family(text, "process_max_fds", "gauge",
                       "Maximum number of open file descriptors.");
        metrics_sample(text, "process_max_fds", NULL,
                       limit.rlim_cur == RLIM_INFINITY ? INFINITY : (double)limit.rlim_cur);
    }
}

long
metrics_text_finish(const struct metrics_text *text)
{
    return text->overflow ? -1 : (long)text->len;
}

int
metrics_listen_parse(const char *text, char *host, size_t host_size, int *port)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= host_size)
        return -1;
    char *end;
    errno = 0;
    long value = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || value < 1 || value > 65535)
        return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    *port = (int)value;
    return 0;
}
