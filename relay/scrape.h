/* scrape.h: the relay's metrics port ([relay] metrics_listen, or -m): GET /metrics (Prometheus
 * text 0.0.4), GET /status (the JSON of the main port's /status) and GET /health.
 *
 * A second lws vhost on the relay's one context, listening on its own port: lws's own poll set
 * holds its socket, and the relay's loop gives lws a full turn at least every
 * RELAY_TIMER_TURN_US while events flow and sleeps in lws_service when idle (relay.c), so a
 * scrape is answered within that even under load, and nothing of it runs on the per-message
 * path.  Every number it exposes is a counter the relay keeps anyway (route_stats, the
 * listener's and ingress's counts) or, for closes, one increment per connection closed into
 * relay->closed[code].  One exposition is at most SCRAPE_TEXT_MAX bytes; should it ever be
 * more, the scrape is answered 500 rather than cut short.
 */
#ifndef TW_RELAY_SCRAPE_H
#define TW_RELAY_SCRAPE_H

#include <jansson.h>
#include <libwebsockets.h>
#include <stddef.h>

#define SCRAPE_TEXT_MAX (64 * 1024) /* bytes of the relay's exposition */

struct relay;

/* Create the metrics vhost when metrics_listen is set (a no-op when empty).  0, or -1 with
 * err set. */
int scrape_start(struct relay *relay, char *err, size_t errlen);

/* The relay's counters as the /status JSON.  Caller owns; json_decref(). */
json_t *scrape_status(const struct relay *relay);

/* The lws protocols of the metrics vhost, with a terminating row. */
extern const struct lws_protocols scrape_protocols[2];

#endif
