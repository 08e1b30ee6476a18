/* bucket.h: a token bucket, the one rate limiter of taskwire.
 *
 * A bucket holds at most `burst` tokens and gains `rate` a second; each event takes one, and
 * an event that finds less than one is refused (nothing is queued).  A source never seen
 * starts full, so `burst` events pass at once and then `rate` a second.  The state is two
 * integers (tokens in thousandths, and when they were counted), so it can live in a table
 * slot or a database row; the caller owns it and decides where (relay/throttle.h keeps one
 * per source address, the store one per client id).
 */
#ifndef TW_COMMON_BUCKET_H
#define TW_COMMON_BUCKET_H

#include <stdint.h>

#define BUCKET_UNIT 1000 /* a token, in the units a bucket counts */

struct bucket {
    int64_t units; /* tokens held, in thousandths, as of at_ms */
    int64_t at_ms; /* when they were counted (any clock, the same for every call) */
};

/* A full bucket as of now_ms: what a source never seen has. */
void bucket_fill(struct bucket *bucket, int burst, int64_t now_ms);

/* Refill bucket for the time since it was last counted (none when the clock went back), then
 * take one token.  1 when one was taken; 0 when the bucket holds less than one, with
 * *wait_ms (may be NULL) set to the milliseconds until it holds one.  rate <= 0 means no
 * limit: always 1.  burst is at least 1. */
int bucket_take(struct bucket *bucket, int rate, int burst, int64_t now_ms, int64_t *wait_ms);

/* 1 when bucket, refilled to now_ms, is full: forgetting it loses nothing. */
int bucket_is_full(const struct bucket *bucket, int rate, int burst, int64_t now_ms);

#endif
