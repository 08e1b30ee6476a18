/* fuzz_exec_lines: the exec task line protocol (worker/job_exec.c) on what a program prints.
 *
 * The input is the program's stdout, handed to the worker's line splitter in reads of the
 * sizes the input's first bytes choose (a pipe gives any split), then the end of the stream.
 * The job's store side (job.c) is replaced by stubs that check what reaches it: a percent in
 * 0..100, a message of one line at most EXEC_LINE_MAX bytes, a result that is JSON or marked
 * bad. */
#include "fuzz.h"

#include "worker/job_exec.c"

static int progress_seen;

void
job_progress(struct job *job, int percent, const char *message)
{
    (void)job;
    FUZZ_CHECK(percent >= 0 && percent <= 100);
    FUZZ_CHECK(message != NULL);
    size_t length = strlen(message);
    FUZZ_CHECK(length <= EXEC_LINE_MAX);
    FUZZ_CHECK(memchr(message, '\n', length) == NULL);
    progress_seen++;
}

void
job_flush(struct job *job)
{
    (void)job;
}

int
job_cancelled(struct job *job)
{
    (void)job;
    return JOB_STOP_NONE;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    /* Two bytes choose the read size: 1..4096, like the worker's read buffer. */
    size_t chunk = ((size_t)fuzz_byte(&in) << 8 | fuzz_byte(&in)) % 4096 + 1;
    static struct exec_child child;
    memset(&child, 0, sizeof child);
    child.pid = -1;
    child.in = child.out = child.err = -1;
    struct job job;
    memset(&job, 0, sizeof job);
    progress_seen = 0;
    while (in.size > 0) {
        size_t n = in.size < chunk ? in.size : chunk;
        exec_feed(&job, &child, (const char *)in.data, n);
        FUZZ_CHECK(child.line_len <= EXEC_LINE_MAX);
        in.data += n;
        in.size -= n;
    }
    exec_feed_end(&job, &child);
    FUZZ_CHECK(child.line_len == 0);
    if (child.bad_result)
        FUZZ_CHECK(job.result == NULL);
    if (job.result) {
        char *text = json_dumps(job.result, JSON_COMPACT | JSON_ENCODE_ANY);
        FUZZ_CHECK(text != NULL);
        free(text);
    }
    json_decref(job.result);
    return 0;
}
