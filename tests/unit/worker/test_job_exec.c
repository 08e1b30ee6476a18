/* Unit tests for worker/job_exec.c: the exec line protocol, stderr tails, exit statuses,
 * timeouts and cancel.  The job's store side (job.c) is replaced by recording stubs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "worker/job_exec.c"

#define PROGRESS_MAX 64

static int progress_count;
static int progress_percent[PROGRESS_MAX];
static char progress_message[PROGRESS_MAX][128];
static int cancel_after_progress = -1; /* request a cancel once this many steps were seen */
static int stop_reason = JOB_STOP_CANCEL; /* the stop cancel_after_progress requests */

void
job_progress(struct job *job, int percent, const char *message)
{
    (void)job;
    if (progress_count < PROGRESS_MAX) {
        progress_percent[progress_count] = percent;
        snprintf(progress_message[progress_count], sizeof progress_message[0], "%s", message);
    }
    progress_count++;
    if (cancel_after_progress >= 0 && progress_count >= cancel_after_progress)
        atomic_store(job->stop, stop_reason);
}

void
job_flush(struct job *job)
{
    (void)job;
}

int
job_cancelled(struct job *job)
{
    return atomic_load(job->stop);
}

static struct config cfg;
static struct config_type type;
static atomic_int stop;
static char script[64];

/* A job running the shell script text with params. */
static struct job *
make_job(const char *text, const char *params, long long timeout_ms)
{
    strcpy(script, "/tmp/taskwire-test-exec-XXXXXX");
    int fd = mkstemp(script);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    fchmod(fd, 0700);
    close(fd);
    config_defaults(&cfg);
    cfg.cancel_grace_ms = 200;
    memset(&type, 0, sizeof type);
    snprintf(type.name, sizeof type.name, "t");
    type.kind = CONFIG_TYPE_EXEC;
    snprintf(type.command, sizeof type.command, "%s", script);
    type.timeout_ms = timeout_ms;
    atomic_init(&stop, JOB_STOP_NONE);
    progress_count = 0;
    cancel_after_progress = -1;
    stop_reason = JOB_STOP_CANCEL;
    struct job *job = calloc(1, sizeof *job);
    job->cfg = &cfg;
    job->type = &type;
    job->stop = &stop;
    snprintf(job->id, sizeof job->id, "0123456789abcdef0123456789abcdef");
    job->task = json_loads(params, 0, NULL);
    job->params = job->task;
    return job;
}

static void
free_job(struct job *job)
{
    unlink(script);
    json_decref(job->result);
    json_decref(job->task);
    free(job);
}

/* A program's PROGRESS and RESULT lines become the task's progress and result; its params
 * arrive on stdin and in the environment; other lines are ignored. */
static void
test_progress_and_result(void **state)
{
    (void)state;
    struct job *job = make_job("#!/bin/sh\n"
                               "read -r line\n"
                               "echo \"PROGRESS 10 got $TASKWIRE_PARAM_NAME\"\n"
                               "echo 'just chatter'\n"
                               "echo 'PROGRESS 150 too far'\n"
                               "echo 'PROGRESS x not a number'\n"
                               "echo \"RESULT {\\\"stdin\\\":$line,\\\"id\\\":\\\"$TASKWIRE_TASK_ID\\\"}\"\n",
                               "{\"name\":\"alpha\",\"n\":3}", 10000);
    assert_int_equal(job_exec_run(job), JOB_END_SUCCEEDED);
    assert_int_equal(progress_count, 2);
    assert_int_equal(progress_percent[0], 10);
    assert_string_equal(progress_message[0], "got alpha");
    assert_int_equal(progress_percent[1], 100);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(job->result, "stdin"), "n")),
                     3);
    assert_string_equal(json_string_value(json_object_get(job->result, "id")), job->id);
    free_job(job);
}

/* A failing program's error is the tail of what it wrote to stderr, not the head. */
static void
test_failure_keeps_the_stderr_tail(void **state)
{
    (void)state;
    struct job *job = make_job("#!/bin/sh\n"
                               "i=0; while [ $i -lt 2000 ]; do echo \"noise line $i\" >&2; "
                               "i=$((i+1)); done\n"
                               "echo 'the real reason' >&2\n"
                               "exit 4\n",
                               "{}", 10000);
    assert_int_equal(job_exec_run(job), JOB_END_FAILED);
    assert_true(strlen(job->error) <= EXEC_STDERR_TAIL);
    size_t len = strlen(job->error);
    assert_true(len >= 15);
    assert_string_equal(job->error + len - 15, "the real reason");
    free_job(job);
}

/* A silent failure still says how it ended; a bad RESULT fails rather than passing junk. */
static void
test_exit_status_and_bad_result(void **state)
{
    (void)state;
    struct job *job = make_job("#!/bin/sh\nexit 7\n", "{}", 10000);
    assert_int_equal(job_exec_run(job), JOB_END_FAILED);
    assert_string_equal(job->error, "exited with status 7");
    free_job(job);
    job = make_job("#!/bin/sh\necho 'RESULT {not json'\n", "{}", 10000);
    assert_int_equal(job_exec_run(job), JOB_END_FAILED);
    assert_string_equal(job->error, "the RESULT line is not valid JSON");
    free_job(job);
}

/* A program that overruns its timeout and ignores SIGTERM is killed, and the task says it
 * timed out. */
static void
test_timeout_kills(void **state)
{
    (void)state;
    struct job *job = make_job("#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.05; done\n", "{}",
                               300);
    int64_t start = clock_mono_ms();
    assert_int_equal(job_exec_run(job), JOB_END_TIMEOUT);
    int64_t took = clock_mono_ms() - start;
    assert_string_equal(job->error, "timed out after 300 ms");
    assert_true(took >= 300 + 200 && took < 5000);
    free_job(job);
}

/* A cancel while the program runs ends the job as cancelled, promptly. */
static void
test_cancel(void **state)
{
    (void)state;
    struct job *job = make_job("#!/bin/sh\necho 'PROGRESS 5 started'\nsleep 30\n", "{}", 60000);
    cancel_after_progress = 1;
    int64_t start = clock_mono_ms();
    assert_int_equal(job_exec_run(job), JOB_END_CANCELLED);
    assert_true(clock_mono_ms() - start < 5000);
    free_job(job);
}

/* A fenced attempt (a newer one owns the task) kills the program's group at once, without the
 * grace a cancel gets, even when it ignores SIGTERM. */
static void
test_lost_attempt_is_killed_at_once(void **state)
{
    (void)state;
    struct job *job = make_job("#!/bin/sh\ntrap '' TERM\necho 'PROGRESS 5 started'\n"
                               "while :; do sleep 0.05; done\n",
                               "{}", 60000);
    cfg.cancel_grace_ms = 5000;
    cancel_after_progress = 1;
    stop_reason = JOB_STOP_LOST;
    int64_t start = clock_mono_ms();
    assert_int_equal(job_exec_run(job), JOB_END_LOST);
    assert_true(clock_mono_ms() - start < 2000);
    free_job(job);
}

/* A program that cannot be executed fails with a message instead of hanging the slot. */
static void
test_missing_program(void **state)
{
    (void)state;
    struct job *job = make_job("#!/bin/sh\nexit 0\n", "{}", 1000);
    snprintf(type.command, sizeof type.command, "/nonexistent/program");
    assert_int_equal(job_exec_run(job), JOB_END_FAILED);
    assert_non_null(strstr(job->error, "cannot execute"));
    free_job(job);
}

int
main(void)
{
    /* As in the worker (cli_setup): a command that exits before reading its params must not
     * kill the writer with SIGPIPE, here the test itself. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_and_result),
        cmocka_unit_test(test_failure_keeps_the_stderr_tail),
        cmocka_unit_test(test_exit_status_and_bad_result),
        cmocka_unit_test(test_timeout_kills),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_lost_attempt_is_killed_at_once),
        cmocka_unit_test(test_missing_program),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
