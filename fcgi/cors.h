/* cors.h: Cross-Origin Resource Sharing for the REST API ([http] cors_origins).
 *
 * Off while the list is empty: no reply carries a CORS header, and OPTIONS is answered like
 * any other method a route does not take (405).  With a list, every reply carries
 * "Vary: Origin" (its headers depend on the Origin asked from); a request whose Origin is
 * listed also gets Access-Control-Allow-Origin naming it and Access-Control-Expose-Headers
 * (Location, Retry-After), and a preflight from a listed origin (OPTIONS with
 * Access-Control-Request-Method) gets 204 with the route's methods, the request headers the
 * API reads and a Max-Age.  Other origins get no CORS header at all, so their pages' browsers
 * refuse them the answers.  No credentials: the API takes bearer tokens, never cookies.
 */
#ifndef TW_FCGI_CORS_H
#define TW_FCGI_CORS_H

#include "config.h"
#include "request.h"

#define CORS_ALLOW_HEADERS "Authorization, Content-Type, Idempotency-Key" /* what the API reads */
#define CORS_EXPOSE_HEADERS "Location, Retry-After" /* what a page may read of an answer */
#define CORS_MAX_AGE_S 600                          /* a browser keeps a preflight this long */

/* Fill req->cors with the CORS header lines every reply to req carries ("" when none). */
void cors_prepare(const struct config *cfg, struct request *req);

/* 1 when req is a preflight from a listed origin (req->cors prepared), else 0. */
int cors_is_preflight(const struct config *cfg, const struct request *req);

/* Answer the preflight req for a route that takes the methods allow ("GET, POST"). */
void cors_preflight(const struct request *req, const char *allow);

#endif
