/* job_exec.c: exec task types: run the configured program and follow its line protocol.
 *
 * The program gets the task's params as JSON on stdin and in the environment
 * (TASKWIRE_TASK_ID, TASKWIRE_PARAM_<NAME>), runs in its own process group and dies with the
 * worker (PR_SET_PDEATHSIG).  Its stdout lines "PROGRESS <0-100> <message>" and
 * "RESULT <json>" are read as they come (other lines are ignored; a line over
 * EXEC_LINE_MAX bytes is cut); the last EXEC_STDERR_TAIL bytes of stderr become the error of a
 * failed task.  Timeout and cancel: SIGTERM to the group, SIGKILL after cancel_grace_ms.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "job.h"
#include "log.h"

#define EXEC_LINE_MAX 4096    /* bytes of one stdout line; the rest of a longer line is dropped */
#define EXEC_STDERR_TAIL 4096 /* bytes of stderr kept (the tail) */
#define EXEC_ENV_MAX 512      /* environment entries passed on; more are dropped */
#define EXEC_POLL_MS 50       /* longest wait between checks for cancel and progress */

extern char **environ;

struct exec_child {
    pid_t pid;
    int in, out, err; /* our ends of the pipes, -1 when closed */
    char *input;      /* params JSON still to write */
    size_t input_len, input_off;
    char line[EXEC_LINE_MAX + 1];
    size_t line_len;
    int line_cut; /* the current line was too long: drop until newline */
    char tail[EXEC_STDERR_TAIL];
    size_t tail_len;
    int bad_result;
};

/* Build envp: the worker's environment, then the task's variables. Caller frees each. */
static char **
exec_environment(struct job *job)
{
    char **env = calloc(EXEC_ENV_MAX + CONFIG_MAX_PARAMS + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t n = 0;
    for (char **e = environ; *e && n < EXEC_ENV_MAX; e++)
        if (strncmp(*e, "TASKWIRE_PARAM_", 15) != 0 && strncmp(*e, "TASKWIRE_TASK_ID=", 17) != 0)
            env[n++] = strdup(*e);
    if (asprintf(&env[n++], "TASKWIRE_TASK_ID=%s", job->id) < 0)
        env[n - 1] = NULL;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)job->params, key, value)
    {
        char *text = json_is_string(value) ? strdup(json_string_value(value))
                                           : json_dumps(value, JSON_ENCODE_ANY);
        char name[CONFIG_NAME_MAX];
        size_t i;
        for (i = 0; key[i] && i + 1 < sizeof name; i++)
            name[i] = (char)toupper((unsigned char)key[i]);
        name[i] = '\0';
        if (text && asprintf(&env[n], "TASKWIRE_PARAM_%s=%s", name, text) >= 0)
            n++;
        free(text);
    }
    return env;
}

static void
exec_environment_free(char **env)
{
    if (!env)
        return;
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

/* Start the program with pipes on stdin, stdout and stderr.  0 or -1 with job->error set. */
static int
exec_spawn(struct job *job, struct exec_child *child)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    char **env = exec_environment(job);
    char command[PATH_MAX];
    snprintf(command, sizeof command, "%s", job->type->command);
    char *argv[] = {command, NULL};
    if (!env || pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
        pipe2(err, O_CLOEXEC) != 0) {
        snprintf(job->error, sizeof job->error, "cannot start %.256s: %s", job->type->command,
                 strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    child->pid = fork();
    if (child->pid < 0) {
        snprintf(job->error, sizeof job->error, "cannot fork: %s", strerror(errno));
        goto fail;
    }
    if (child->pid == 0) {
        /* Only async-signal-safe calls from here to exec. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
            _exit(127);
        execve(argv[0], argv, env);
        static const char message[] = "cannot execute the task's command\n";
        (void)!write(2, message, sizeof message - 1);
        _exit(127);
    }
    setpgid(child->pid, child->pid); /* also here, so a signal to the group cannot miss */
    close(in[0]);
    close(out[1]);
    close(err[1]);
    child->in = in[1];
    child->out = out[0];
    child->err = err[0];
    fcntl(child->in, F_SETFL, O_NONBLOCK);
    fcntl(child->out, F_SETFL, O_NONBLOCK);
    fcntl(child->err, F_SETFL, O_NONBLOCK);
    exec_environment_free(env);
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    exec_environment_free(env);
    return -1;
}

/* One complete stdout line. */
static void
exec_line(struct job *job, struct exec_child *child, char *line)
{
    if (strncmp(line, "PROGRESS ", 9) == 0) {
        char *end;
        errno = 0;
        long percent = strtol(line + 9, &end, 10);
        if (errno || end == line + 9 || (*end && *end != ' '))
            return;
        while (*end == ' ')
            end++;
        job_progress(job, percent < 0 ? 0 : percent > 100 ? 100 : (int)percent, end);
    } else if (strncmp(line, "RESULT ", 7) == 0) {
        json_error_t error;
        json_t *result = json_loads(line + 7, JSON_DECODE_ANY, &error);
        json_decref(job->result);
        job->result = result;
        child->bad_result = result == NULL;
    }
}

/* Split n bytes of stdout into lines and act on each complete one; the rest of the last line
 * waits for more (or for exec_feed_end). */
static void
exec_feed(struct job *job, struct exec_child *child, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            child->line[child->line_len] = '\0';
            if (child->line_len > 0 && child->line[child->line_len - 1] == '\r')
                child->line[child->line_len - 1] = '\0';
            exec_line(job, child, child->line);
            child->line_len = 0;
            child->line_cut = 0;
        } else if (child->line_len < EXEC_LINE_MAX) {
            child->line[child->line_len++] = buf[i];
        } else {
            child->line_cut = 1;
        }
    }
}

/* stdout ended: a last line without its newline counts too. */
static void
exec_feed_end(struct job *job, struct exec_child *child)
{
    if (child->line_len == 0)
        return;
    child->line[child->line_len] = '\0';
    exec_line(job, child, child->line);
    child->line_len = 0;
}

/* Read what stdout has: 0 at end of file, 1 after reading, 2 when nothing is there now. */
static int
exec_read_out(struct job *job, struct exec_child *child)
{
    char buf[4096];
    ssize_t n = read(child->out, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return 0;
    if (n < 0)
        return 2;
    exec_feed(job, child, buf, (size_t)n);
    return 1;
}

/* Keep the tail of stderr: 0 at end of file, 1 after reading, 2 when nothing is there now. */
static int
exec_read_err(struct exec_child *child)
{
    char buf[4096];
    ssize_t n = read(child->err, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return 0;
    if (n < 0)
        return 2;
    size_t keep = (size_t)n > EXEC_STDERR_TAIL ? EXEC_STDERR_TAIL : (size_t)n;
    const char *from = buf + n - keep;
    if (child->tail_len + keep > EXEC_STDERR_TAIL) {
        size_t drop = child->tail_len + keep - EXEC_STDERR_TAIL;
        memmove(child->tail, child->tail + drop, child->tail_len - drop);
        child->tail_len -= drop;
    }
    memcpy(child->tail + child->tail_len, from, keep);
    child->tail_len += keep;
    return 1;
}

static void
exec_write_in(struct exec_child *child)
{
    ssize_t n =
        write(child->in, child->input + child->input_off, child->input_len - child->input_off);
    if (n > 0)
        child->input_off += (size_t)n;
    if ((n < 0 && errno != EAGAIN && errno != EINTR) || child->input_off == child->input_len) {
        close(child->in);
        child->in = -1;
    }
}

static void
exec_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Describe a wait status for a failed task. */
static void
exec_failure(struct job *job, struct exec_child *child, int status)
{
    /* The stderr tail, trimmed, is the most useful error; else the exit status. */
    while (child->tail_len > 0 && isspace((unsigned char)child->tail[child->tail_len - 1]))
        child->tail_len--;
    if (child->tail_len > 0)
        snprintf(job->error, sizeof job->error, "%.*s", (int)child->tail_len, child->tail);
    else if (WIFEXITED(status))
        snprintf(job->error, sizeof job->error, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(job->error, sizeof job->error, "killed by signal %d", WTERMSIG(status));
}

enum job_end
job_exec_run(struct job *job)
{
    struct exec_child child = {.pid = -1, .in = -1, .out = -1, .err = -1};
    child.input = json_dumps(job->params, JSON_COMPACT);
    if (!child.input || exec_spawn(job, &child) != 0) {
        free(child.input);
        if (!job->error[0])
            snprintf(job->error, sizeof job->error, "out of memory");
        return JOB_END_FAILED;
    }
    child.input_len = strlen(child.input);
    log_info("event=exec_started task=%s pid=%d command=%s", job->id, (int)child.pid,
             job->type->command);

    int64_t start = clock_mono_ms();
    int64_t deadline = start + job->type->timeout_ms;
    int64_t kill_at = 0; /* when SIGKILL follows the SIGTERM already sent */
    int stop = JOB_STOP_NONE, timed_out = 0, status = 0, exited = 0;
    while (!exited) {
        struct pollfd fds[3];
        int n = 0;
        if (child.out >= 0)
            fds[n++] = (struct pollfd){.fd = child.out, .events = POLLIN};
        if (child.err >= 0)
            fds[n++] = (struct pollfd){.fd = child.err, .events = POLLIN};
        if (child.in >= 0)
            fds[n++] = (struct pollfd){.fd = child.in, .events = POLLOUT};
        if (poll(fds, (nfds_t)n, EXEC_POLL_MS) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            if (!fds[i].revents)
                continue;
            if (fds[i].fd == child.out && !exec_read_out(job, &child))
                exec_close(&child.out);
            else if (fds[i].fd == child.err && !exec_read_err(&child))
                exec_close(&child.err);
            else if (fds[i].fd == child.in)
                exec_write_in(&child);
        }
        if (!exited && waitpid(child.pid, &status, WNOHANG) == child.pid) {
            exited = 1;
            /* Read what is left; grandchildren may hold the pipes open, so stop at EAGAIN. */
            while (child.out >= 0 && exec_read_out(job, &child) == 1)
                ;
            while (child.err >= 0 && exec_read_err(&child) == 1)
                ;
            exec_feed_end(job, &child);
            break;
        }
        job_flush(job);
        int64_t now = clock_mono_ms();
        if (!kill_at) {
            stop = job_cancelled(job);
            if (stop == JOB_STOP_NONE && now >= deadline)
                timed_out = 1;
            if (stop == JOB_STOP_LOST) {
                /* Another attempt owns the task: no grace for this one. */
                kill(-child.pid, SIGKILL);
                kill_at = INT64_MAX;
                log_info("event=exec_killed task=%s pid=%d reason=fenced", job->id, (int)child.pid);
            } else if (stop != JOB_STOP_NONE || timed_out) {
                kill(-child.pid, SIGTERM);
                kill_at = now + job->cfg->cancel_grace_ms;
                if (kill_at == now)
                    kill_at = now + 1;
                log_info("event=exec_terminate task=%s pid=%d reason=%s", job->id, (int)child.pid,
                         timed_out ? "timeout" : "cancel");
            }
        } else if (now >= kill_at) {
            kill(-child.pid, SIGKILL);
            kill_at = INT64_MAX;
        }
    }
    if (!exited)
        waitpid(child.pid, &status, 0);
    /* Whatever the program left behind in its group goes with it. */
    kill(-child.pid, SIGKILL);
    exec_close(&child.out);
    exec_close(&child.err);
    exec_close(&child.in);
    free(child.input);

    if (stop == JOB_STOP_LOST)
        return JOB_END_LOST;
    if (stop == JOB_STOP_SHUTDOWN)
        return JOB_END_INTERRUPTED;
    if (stop == JOB_STOP_CANCEL)
        return JOB_END_CANCELLED;
    if (timed_out) {
        snprintf(job->error, sizeof job->error, "timed out after %lld ms",
                 (long long)job->type->timeout_ms);
        return JOB_END_TIMEOUT;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        if (child.bad_result) {
            snprintf(job->error, sizeof job->error, "the RESULT line is not valid JSON");
            return JOB_END_FAILED;
        }
        return JOB_END_SUCCEEDED;
    }
    exec_failure(job, &child, status);
    return JOB_END_FAILED;
}
