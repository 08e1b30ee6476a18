/* store_backend.h: what store.c offers the store's backends (store_sqlite.c), so that every
 * backend answers the same JSON for the same task.  Not for the store's callers: they include
 * store.h only.
 */
#ifndef TW_COMMON_STORE_BACKEND_H
#define TW_COMMON_STORE_BACKEND_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A JSON string of text (length bytes), or null for NULL text; bytes that are not valid UTF-8
 * turn the non-ASCII bytes into '?', since exec programs can write anything to stderr.  New
 * reference, or NULL when out of memory. */
json_t *store_json_text(const unsigned char *text, int length);

/* text cut to at most max bytes, keeping the head (keep_tail 0) or the tail; *length is the
 * part's length.  Borrowed from text. */
const char *store_cut(const char *text, size_t max, int keep_tail, int *length);

/* The per-minute counts counts (an array of {"minute","submitted","started","succeeded",
 * "failed","queued"}, newest first, minutes after last included; "queued" the change of the
 * queue in that minute) made into one row per minute of [first, last], oldest first, with the
 * queued depth at each minute's end, walking back from queued_now.  New array (caller owns),
 * or NULL when out of memory; counts is borrowed. */
json_t *store_minutes_fill(json_t *counts, int64_t first, int64_t last, int64_t queued_now);

#endif
