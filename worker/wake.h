/* wake.h: the pool's LISTEN connection to PostgreSQL ([store] backend = postgresql), through
 * which the handlers of every host nudge every worker host: each submit, cancel and retry
 * transaction issues NOTIFY STORE_NOTIFY_CHANNEL "VERB TASK_ID" (store.h), which the server
 * delivers to every listening session once it commits, so a worker is never woken before the
 * row is there to read.
 *
 * One libpq connection of its own, never blocking the pool's loop: connected with
 * PQconnectStart/PQconnectPoll, its socket polled in the loop (wake_fd, wake_events), read with
 * PQconsumeInput.  When the server goes away (restart, network) the connection is dropped and
 * made again after a backoff from WAKE_RETRY_MIN_MS doubling to WAKE_RETRY_MAX_MS; notifications
 * sent meanwhile are lost, so every (re)connection is reported (wake_read's *resync) and the
 * pool scans the store at once, as its scan every scan_interval_ms would anyway: the scan stays
 * the safety net, this only makes wake-ups and cancels prompt.  TCP keepalives (WAKE_KEEPALIVE_*)
 * find a connection whose peer vanished without a word.
 *
 * Bounds: at most max notifications are handed over per wake_read (the rest stay in libpq for
 * the next call); a payload that is not "VERB ID" with a known verb and an id of TOKEN_ID_SIZE - 1
 * characters is dropped and counted.
 */
#ifndef TW_WORKER_WAKE_H
#define TW_WORKER_WAKE_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"
#include "token.h"

#define WAKE_RETRY_MIN_MS 100    /* first wait before connecting again */
#define WAKE_RETRY_MAX_MS 5000   /* longest wait between attempts */
#define WAKE_CONNECT_MAX_MS 5000 /* an attempt still not connected by then is given up */
#define WAKE_KEEPALIVE_IDLE "5"  /* seconds idle before TCP keepalive probes */
#define WAKE_KEEPALIVE_INTERVAL "2"
#define WAKE_KEEPALIVE_COUNT "2"

struct wake;

/* One nudge heard: verb is PROTOCOL_VERB_SUBMIT, _CANCEL or _RETRY (a string literal). */
struct wake_note {
    const char *verb;
    char id[TOKEN_ID_SIZE];
};

/* A listener for the store at url (a libpq connection string, borrowed until wake_destroy);
 * it starts connecting at once.  Caller owns; wake_destroy().  NULL when out of memory. */
struct wake *wake_new(const char *url);

/* Free and close.  NULL-safe; nulls *wake. */
void wake_destroy(struct wake **wake);

/* The socket to poll now, or -1 while there is none (waiting to connect again). */
int wake_fd(const struct wake *wake);

/* What to poll wake_fd for: ZMQ_POLLIN and/or ZMQ_POLLOUT bits (a connection under way may
 * wait to write). */
short wake_events(const struct wake *wake);

/* Milliseconds (monotonic) at which wake_read should be called even without input: the next
 * attempt to connect, or a connection attempt's deadline; INT64_MAX when none. */
int64_t wake_deadline_ms(const struct wake *wake);

/* Advance: go on connecting, read what arrived, reconnect when due.  Fills notes[0..n) and
 * returns n; *resync is set to 1 when the connection was (re)established and LISTEN is on,
 * since notifications may have been missed before. */
size_t wake_read(struct wake *wake, struct wake_note *notes, size_t max, int *resync);

#endif
