/* retry.h: what becomes of a task whose attempt ended without success: the retry policy of its
 * type ([type] max_attempts, retry_on, on_lost, retry_base_ms, retry_max_ms) in one place, for
 * the attempts a worker ends itself and for those the lease sweep takes back from a lost one.
 *
 * An attempt counts against max_attempts when it ended with an error (each has an entry in the
 * task's errors); one a worker handed back while stopping cleanly does not.  Backoff is
 * exponential with full jitter: the n-th retry waits a uniformly random time in
 * [0, min(retry_max_ms, retry_base_ms * 2^(n-1))].  A lost attempt is retried at once: the task
 * did not fail, its worker did, and it has waited out the lease already.
 */
#ifndef TW_WORKER_RETRY_H
#define TW_WORKER_RETRY_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"

/* 1 when an attempt that ended for reason (an enum config_retry_reason) earns another: the type
 * retries that reason and the task's errors, this one included, stay below its max_attempts
 * (task: the task object as the attempt saw it). */
int retry_allowed(const struct config_type *type, unsigned reason, const json_t *task);

/* Milliseconds to wait before the attempt after the n-th error (n >= 1), drawn with full
 * jitter from random (any 32 random bits). */
int64_t retry_backoff_ms(const struct config_type *type, int n, uint32_t random);

/* 32 random bits from OpenSSL, for retry_backoff_ms. */
uint32_t retry_random(void);

/* The errors entry of an ended attempt: {"attempt","at","error","worker","host"} as JSON text.
 * Caller owns; free().  NULL on allocation failure. */
char *retry_error_entry(int attempt, const char *error, const char *worker, const char *host);

#endif
