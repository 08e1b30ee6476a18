/* wake.c: the pool's LISTEN connection to PostgreSQL, driven from the pool's loop (wake.h). */
#include "wake.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "log.h"
#include "store.h"

enum wake_state {
    WAKE_WAITING,     /* no connection: the next attempt at retry_at_ms */
    WAKE_CONNECTING,  /* PQconnectPoll under way */
    WAKE_SUBSCRIBING, /* LISTEN sent, its answer not in yet */
    WAKE_LISTENING    /* notifications arrive */
};

struct wake {
    const char *url;
    PGconn *conn;
    enum wake_state state;
    PostgresPollingStatusType polling; /* PQconnectPoll's last answer while connecting */
    int flush_pending;                 /* the LISTEN is not all written yet */
    int64_t retry_at_ms, connect_deadline_ms, backoff_ms;
    int outage_logged;            /* the connection's loss was logged since it last listened */
    unsigned long long malformed; /* notifications dropped for their shape */
};

/* Drop the connection and wait before the next attempt (doubling, up to WAKE_RETRY_MAX_MS). */
static void
wake_fail(struct wake *wake, const char *what)
{
    if (!wake->outage_logged) {
        char reason[256];
        snprintf(reason, sizeof reason, "%s", wake->conn ? PQerrorMessage(wake->conn) : "");
        for (char *c = reason; *c; c++)
            if (*c == '\n' || *c == '"')
                *c = ' ';
        log_warn("event=listen_lost op=%s error=\"%s\" next=\"connecting again every %d..%d ms;"
                 " the store is scanned meanwhile\"",
                 what, reason, WAKE_RETRY_MIN_MS, WAKE_RETRY_MAX_MS);
        wake->outage_logged = 1;
    }
    PQfinish(wake->conn);
    wake->conn = NULL;
    wake->state = WAKE_WAITING;
    wake->flush_pending = 0;
    wake->retry_at_ms = clock_mono_ms() + wake->backoff_ms;
    wake->backoff_ms =
        wake->backoff_ms * 2 > WAKE_RETRY_MAX_MS ? WAKE_RETRY_MAX_MS : wake->backoff_ms * 2;
}

/* Begin a connection without waiting for it. */
static void
wake_connect(struct wake *wake)
{
    /* The url's own settings override these defaults (expand_dbname). */
    static const char *const keys[] = {"keepalives",
                                       "keepalives_idle",
                                       "keepalives_interval",
                                       "keepalives_count",
                                       "fallback_application_name",
                                       "dbname",
                                       NULL};
    const char *values[] = {"1",
                            WAKE_KEEPALIVE_IDLE,
                            WAKE_KEEPALIVE_INTERVAL,
                            WAKE_KEEPALIVE_COUNT,
                            "taskwire-wake",
                            wake->url,
                            NULL};
    wake->conn = PQconnectStartParams(keys, values, 1);
    wake->state = WAKE_CONNECTING;
    wake->polling = PGRES_POLLING_WRITING; /* as libpq says to act after PQconnectStart */
    wake->connect_deadline_ms = clock_mono_ms() + WAKE_CONNECT_MAX_MS;
    if (!wake->conn || PQstatus(wake->conn) == CONNECTION_BAD)
        wake_fail(wake, "connect");
}

struct wake *
wake_new(const char *url)
{
    struct wake *wake = calloc(1, sizeof *wake);
    if (!wake)
        return NULL;
    wake->url = url;
    wake->backoff_ms = WAKE_RETRY_MIN_MS;
    wake_connect(wake);
    return wake;
}

void
wake_destroy(struct wake **wake)
{
    if (!wake || !*wake)
        return;
    PQfinish((*wake)->conn);
    free(*wake);
    *wake = NULL;
}

int
wake_fd(const struct wake *wake)
{
    return wake->conn && wake->state != WAKE_WAITING ? PQsocket(wake->conn) : -1;
}

short
wake_events(const struct wake *wake)
{
    if (wake->state == WAKE_CONNECTING)
        return wake->polling == PGRES_POLLING_READING ? ZMQ_POLLIN : ZMQ_POLLOUT;
    return (short)(ZMQ_POLLIN | (wake->flush_pending ? ZMQ_POLLOUT : 0));
}

int64_t
wake_deadline_ms(const struct wake *wake)
{
    if (wake->state == WAKE_WAITING)
        return wake->retry_at_ms;
    if (wake->state == WAKE_CONNECTING)
        return wake->connect_deadline_ms;
    return INT64_MAX;
}

/* One notification's payload as a note: 1, or 0 when it is not "VERB ID". */
static int
wake_parse(const char *payload, struct wake_note *note)
{
    static const char *const verbs[] = {PROTOCOL_VERB_SUBMIT, PROTOCOL_VERB_CANCEL,
                                        PROTOCOL_VERB_RETRY};
    const char *space = strchr(payload, ' ');
    if (!space || strlen(space + 1) != TOKEN_ID_SIZE - 1)
        return 0;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        size_t length = strlen(verbs[i]);
        if ((size_t)(space - payload) == length && memcmp(payload, verbs[i], length) == 0) {
            note->verb = verbs[i];
            memcpy(note->id, space + 1, TOKEN_ID_SIZE);
            return 1;
        }
    }
    return 0;
}

/* Go on with a connection under way; LISTEN once it is up. */
static void
wake_continue_connect(struct wake *wake)
{
    if (clock_mono_ms() >= wake->connect_deadline_ms) {
        wake_fail(wake, "connect_timeout");
        return;
    }
    wake->polling = PQconnectPoll(wake->conn);
    if (wake->polling == PGRES_POLLING_FAILED) {
        wake_fail(wake, "connect");
        return;
    }
    if (wake->polling != PGRES_POLLING_OK)
        return;
    if (PQsetnonblocking(wake->conn, 1) != 0 ||
        !PQsendQuery(wake->conn, "LISTEN " STORE_NOTIFY_CHANNEL)) {
        wake_fail(wake, "listen");
        return;
    }
    wake->state = WAKE_SUBSCRIBING;
    wake->flush_pending = 1;
}

size_t
wake_read(struct wake *wake, struct wake_note *notes, size_t max, int *resync)
{
    *resync = 0;
    if (wake->state == WAKE_WAITING && clock_mono_ms() >= wake->retry_at_ms)
        wake_connect(wake);
    if (wake->state == WAKE_CONNECTING)
        wake_continue_connect(wake);
    if (wake->state != WAKE_SUBSCRIBING && wake->state != WAKE_LISTENING)
        return 0;
    if (wake->flush_pending) {
        int flushed = PQflush(wake->conn);
        if (flushed < 0) {
            wake_fail(wake, "listen");
            return 0;
        }
        wake->flush_pending = flushed == 1;
    }
    if (!PQconsumeInput(wake->conn)) {
        wake_fail(wake, "read");
        return 0;
    }
    while (!PQisBusy(wake->conn)) {
        PGresult *result = PQgetResult(wake->conn);
        if (!result)
            break;
        int ok = PQresultStatus(result) == PGRES_COMMAND_OK;
        PQclear(result);
        if (!ok) {
            wake_fail(wake, "listen");
            return 0;
        }
        if (wake->state == WAKE_SUBSCRIBING) {
            wake->state = WAKE_LISTENING;
            wake->backoff_ms = WAKE_RETRY_MIN_MS;
            wake->outage_logged = 0;
            *resync = 1;
            log_info("event=listening channel=%s", STORE_NOTIFY_CHANNEL);
        }
    }
    size_t count = 0;
    PGnotify *notify;
    while (count < max && (notify = PQnotifies(wake->conn)) != NULL) {
        if (wake_parse(notify->extra, &notes[count]))
            count++;
        else if (wake->malformed++ == 0)
            log_warn("event=bad_notification channel=%s", STORE_NOTIFY_CHANNEL);
        PQfreemem(notify);
    }
    return count;
}
