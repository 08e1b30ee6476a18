/* job_sleep.c: the built-in demo task: waits duration_ms in `steps` equal steps, reporting
 * "step i of n" after each, and stops at once when cancelled.  duration_ms 0 is a no-op task
 * that reports no steps (its final state carries progress 100). */
#include <stdio.h>

#include "clock.h"
#include "job.h"

enum job_end
job_sleep_run(struct job *job)
{
    json_int_t duration = json_integer_value(json_object_get(job->params, "duration_ms"));
    json_int_t steps = json_integer_value(json_object_get(job->params, "steps"));
    if (steps < 1)
        steps = 1;
    int64_t start = clock_mono_ms();
    for (json_int_t step = 1; step <= steps; step++) {
        int stop = job_wait_until(job, start + (int64_t)(duration * step / steps));
        if (stop != JOB_STOP_NONE)
            return stop == JOB_STOP_SHUTDOWN ? JOB_END_INTERRUPTED : JOB_END_CANCELLED;
        if (duration == 0)
            continue; /* a no-op task: its final state says all there is */
        char message[64];
        snprintf(message, sizeof message, "step %lld of %lld", (long long)step, (long long)steps);
        job_progress(job, (int)(step * 100 / steps), message);
    }
    job->result = json_pack("{s:I, s:I}", "duration_ms", duration, "steps", steps);
    return JOB_END_SUCCEEDED;
}
