/* upstream.c: the PUSH to the worker pools, and presence's batches and beats (upstream.h). */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "curve.h"
#include "log.h"
#include "protocol.h"
#include "relay.h"
#include "token.h"
#include "wire.h"

#define UPSTREAM_HOST_MAX 48 /* bytes of the host name kept in the relay id */

/* host-pid-random, the host name cut to what a relay id may hold. */
static int
upstream_make_id(struct upstream *up)
{
    char host[UPSTREAM_HOST_MAX + 1] = "", nonce[TOKEN_ID_SIZE];
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        snprintf(host, sizeof host, "relay");
    for (char *c = host; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", *c))
            *c = '_';
    if (token_random_id(nonce) != 0)
        return -1;
    snprintf(up->relay_id, sizeof up->relay_id, "%s-%d-%.8s", host, (int)getpid(), nonce);
    return 0;
}

int
upstream_init(struct relay *relay, char *err, size_t errlen)
{
    struct upstream *up = &relay->upstream;
    const struct config *cfg = relay->cfg;
    roster_init(&up->roster);
    for (size_t i = 0; i < cfg->namespace_count; i++)
        up->presence |= cfg->namespaces[i].presence;
    if (upstream_make_id(up) != 0) {
        snprintf(err, errlen, "no randomness for the relay id");
        return -1;
    }
    if (up->presence && !(up->update = calloc(1, sizeof *up->update))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->curve && !cfg->curve_server_public_file[0]) {
        /* A relay of an older setup (events_listen, no pool key): it serves as before, but
         * publishes are refused busy and presence stays here.  Never plaintext instead. */
        log_warn("event=upstream_off relay=%s reason=\"[zmq] curve = true without "
                 "curve_server_public_file: no way to the pools' [zmq] tasks\"",
                 up->relay_id);
        return 0;
    }
    const char *endpoints[CONFIG_ENDPOINTS_MAX];
    for (size_t i = 0; i < cfg->tasks_endpoints.count; i++)
        endpoints[i] = cfg->tasks_endpoints.endpoints[i];
    /* A client of the pools, whichever way the ingress goes (it may be a CURVE server). */
    if (curve_load(cfg, CURVE_ROLE_CLIENT, endpoints, cfg->tasks_endpoints.count, &up->curve, err,
                   errlen) != 0)
        return -1;
    struct wire_options push = {.send_hwm = UPSTREAM_HWM,
                                .recv_hwm = WIRE_DEFAULT,
                                .linger_ms = UPSTREAM_LINGER_MS,
                                .connect_list = &cfg->tasks_endpoints,
                                .immediate = 1,
                                .curve = up->curve};
    up->push = wire_socket(relay->ingress.zmq, ZMQ_PUSH, &push, err, errlen);
    if (!up->push)
        return -1;
    int64_t now = clock_mono_ms();
    up->last_sent_ms = up->last_changes_ms = now;
    up->next_full_ms = now + (int64_t)cfg->presence_ttl_ms * UPSTREAM_RESEND_TTLS;
    return 0;
}

/* [verb][first][second] to a pool, never waiting: 0, or -1 (counted) when none takes it. */
static int
upstream_send(struct upstream *up, const char *verb, const void *first, size_t first_len,
              const void *second, size_t second_len)
{
    if (up->push && zmq_send(up->push, verb, strlen(verb), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0) {
        /* The rest of a message a socket took goes with it. */
        zmq_send(up->push, first, first_len, ZMQ_SNDMORE);
        zmq_send(up->push, second, second_len, 0);
        up->sent++;
        return 0;
    }
    up->dropped++;
    log_debug("event=upstream_dropped verb=%s error=\"%s\" dropped=%llu", verb,
              zmq_strerror(zmq_errno()), (unsigned long long)up->dropped);
    return -1;
}

/* Send up->update as the next presence message: 0, or -1 (it did not go). */
static int
upstream_send_update(struct relay *relay)
{
    struct upstream *up = &relay->upstream;
    up->update->seq = up->seq + 1;
    up->update->since = up->since;
    up->update->ttl_ms = relay->cfg->presence_ttl_ms;
    char *text = presence_wire_update_build(up->update);
    int rc = text ? upstream_send(up, PROTOCOL_VERB_PRESENCE, up->relay_id, strlen(up->relay_id),
                                  text, strlen(text))
                  : -1;
    free(text);
    int64_t now = clock_mono_ms();
    if (rc != 0) {
        up->resend_soon = 1;
        up->retry_at_ms = now + UPSTREAM_RETRY_MS;
        return rc;
    }
    up->seq++;
    up->last_sent_ms = now;
    log_debug("event=presence_sent relay=%s seq=%lld entries=%zu", up->relay_id, (long long)up->seq,
              up->update->count);
    if (up->resend_soon && !up->resend_from) {
        up->resend_soon = 0;
        up->next_full_ms = now; /* what went missing meanwhile: all of it again */
    }
    return 0;
}

void
upstream_fini(struct relay *relay)
{
    struct upstream *up = &relay->upstream;
    if (up->push && up->update) {
        up->update->count = 0;
        up->update->gone = 1;
        if (upstream_send_update(relay) == 0)
            log_info("event=presence_gone relay=%s", up->relay_id);
    }
    if (up->push)
        zmq_close(up->push);
    up->push = NULL;
    curve_destroy(&up->curve);
    roster_fini(&up->roster);
    free(up->update);
    up->update = NULL;
}

int
upstream_signal(struct relay *relay, const char *topic, size_t topic_len, const char *payload,
                size_t len)
{
    struct upstream *up = &relay->upstream;
    int rc = upstream_send(up, PROTOCOL_VERB_SIGNAL, topic, topic_len, payload, len);
    if (rc == 0)
        up->signals++;
    else
        up->signals_busy++;
    return rc;
}

static void
upstream_batch_due(lws_sorted_usec_list_t *sul)
{
    struct relay *relay = lws_container_of(sul, struct relay, upstream.batch_later);
    relay->upstream.timer_set = 0;
    upstream_turn(relay);
}

/* Run upstream_turn again in delay_ms, at most UPSTREAM_BATCH_MS (an idle loop would not turn
 * before its heartbeat, which takes care of longer waits: lws runs a timer seconds away only
 * at a full turn, up to a second late).  An earlier time replaces a later one. */
static void
upstream_later(struct relay *relay, int64_t delay_ms)
{
    struct upstream *up = &relay->upstream;
    int64_t at = clock_mono_ms() + (delay_ms > 0 ? delay_ms : 1);
    if (!relay->context || delay_ms > UPSTREAM_BATCH_MS || (up->timer_set && up->timer_at_ms <= at))
        return;
    up->timer_set = 1;
    up->timer_at_ms = at;
    lws_sul_cancel(&up->batch_later);
    lws_sul_schedule(relay->context, 0, &up->batch_later, upstream_batch_due,
                     (lws_usec_t)(delay_ms > 0 ? delay_ms : 1) * LWS_US_PER_MS);
    relay_lws_near(relay, clock_mono_us());
}

/* The changes, a batch each UPSTREAM_BATCH_MS: those that went are clean; the rest (more than
 * a batch, or none went) wait for the next. */
static void
upstream_send_changes(struct relay *relay, int64_t now)
{
    struct upstream *up = &relay->upstream;
    if (!up->roster.dirty_count)
        return;
    int64_t due = up->last_changes_ms + UPSTREAM_BATCH_MS;
    if (due < up->retry_at_ms)
        due = up->retry_at_ms;
    if (now < due) {
        upstream_later(relay, due - now);
        return;
    }
    up->last_changes_ms = now;
    size_t n = roster_take_changes(&up->roster, up->update);
    if (upstream_send_update(relay) == 0)
        roster_changes_sent(&up->roster, n);
    if (up->roster.dirty_count)
        upstream_later(relay, up->retry_at_ms > now ? up->retry_at_ms - now : UPSTREAM_BATCH_MS);
}

void
upstream_turn(struct relay *relay)
{
    struct upstream *up = &relay->upstream;
    if (!up->presence || !up->update || !up->push)
        return;
    int64_t now = clock_mono_ms();
    up->update->gone = 0;
    upstream_send_changes(relay, now);
    if (!up->resend_from && now >= up->next_full_ms) {
        up->next_full_ms = now + (int64_t)relay->cfg->presence_ttl_ms * UPSTREAM_RESEND_TTLS;
        up->resend_from = up->seq + 1;
        roster_resend_start(&up->roster);
        log_debug("event=presence_resend relay=%s from=%lld entries=%zu", up->relay_id,
                  (long long)up->resend_from, up->roster.entries);
    }
    for (int chunk = 0; up->resend_from && chunk < UPSTREAM_RESEND_CHUNKS; chunk++) {
        if (!roster_take_all(&up->roster, up->update)) {
            /* Every entry went: rows older than this resend are no longer renewed. */
            up->since = up->resend_from;
            up->resend_from = 0;
            break;
        }
        if (upstream_send_update(relay) != 0) {
            /* No pool takes it: all again once one does (resend_soon). */
            up->resend_from = 0;
            break;
        }
    }
    if (now - up->last_sent_ms >= relay->cfg->presence_ttl_ms / 3) {
        up->update->count = 0;
        if (upstream_send_update(relay) != 0) /* a beat: renews the rows */
            up->last_sent_ms = now;           /* tried: the next in a third of the ttl */
    }
}
