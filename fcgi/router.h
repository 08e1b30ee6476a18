/* router.h: the REST API's one table of endpoints {method, path pattern, handler}.
 *
 * A pattern is a path whose "{id}" segments match one task id (or a channel name).  A path
 * that matches no pattern is 404; one that matches with another method is 405 with an Allow
 * header.
 */
#ifndef TW_FCGI_ROUTER_H
#define TW_FCGI_ROUTER_H

#include "app.h"
#include "request.h"

#define ROUTER_ID_MAX 200 /* bytes of an {id} path segment (a channel name, %-escaped) */

/* Handle one request: prepare its CORS headers (cors.h), route it and have it answered with
 * exactly one reply: at once, or (a task submission while app's batch is open, app.h) when the
 * batch is inserted.  A CORS preflight of a route is answered 204 (cors.h). */
void router_dispatch(struct app *app, struct request *req);

#endif
