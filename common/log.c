/* log.c: key=value log lines on stderr. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "errors.h"

static const char *log_program = "taskwire";
static enum log_level log_max = LOG_LEVEL_INFO;

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

/* The process id every line carries, asked of the kernel once (glibc does not cache getpid,
 * and a busy worker writes a few lines per task); a forked child asks again. */
static atomic_int log_pid;
static pthread_once_t log_pid_once = PTHREAD_ONCE_INIT;

static void
log_pid_forget(void)
{
    atomic_store_explicit(&log_pid, 0, memory_order_relaxed);
}

static void
log_pid_setup(void)
{
    pthread_atfork(NULL, NULL, log_pid_forget);
}

static int
log_pid_get(void)
{
    int pid = atomic_load_explicit(&log_pid, memory_order_relaxed);
    if (pid == 0) {
        pthread_once(&log_pid_once, log_pid_setup);
        pid = (int)getpid();
        atomic_store_explicit(&log_pid, pid, memory_order_relaxed);
    }
    return pid;
}

void
log_setup(const char *program, enum log_level level)
{
    log_program = program;
    log_max = level;
}

int
log_level_parse(const char *text, enum log_level *level)
{
    for (size_t i = 0; i < sizeof log_level_names / sizeof log_level_names[0]; i++) {
        if (strcmp(text, log_level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return TW_E_CONFIG;
}

void
log_write(enum log_level level, const char *fmt, ...)
{
    if (level > log_max)
        return;
    char line[LOG_LINE_MAX];
    char stamp[CLOCK_ISO8601_SIZE];
    clock_iso8601(clock_now_ms(), stamp, sizeof stamp);
    int used = snprintf(line, sizeof line, "%s %s[%d] %s ", stamp, log_program, log_pid_get(),
                        log_level_names[level]);
    if (used < 0 || (size_t)used >= sizeof line)
        return;
    va_list ap;
    va_start(ap, fmt);
    int more = vsnprintf(line + used, sizeof line - (size_t)used, fmt, ap);
    va_end(ap);
    if (more < 0)
        return;
    size_t length = strlen(line);
    if (length + 1 < sizeof line) {
        line[length++] = '\n';
    } else {
        line[sizeof line - 2] = '\n';
        length = sizeof line - 1;
    }
    /* One write per line so lines from several processes do not interleave. */
    ssize_t ignored = write(STDERR_FILENO, line, length);
    (void)ignored;
}
