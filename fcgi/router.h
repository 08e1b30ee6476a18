/* router.h: the REST API's one table of endpoints {method, path pattern, handler}.
 *
 * A pattern is a path whose "{id}" segments match one task id.  A path that matches no pattern
 * is 404; one that matches with another method is 405 with an Allow header.
 */
#ifndef TW_FCGI_ROUTER_H
#define TW_FCGI_ROUTER_H

#include "app.h"
#include "request.h"
#include "tasks.h"

#define ROUTER_ID_MAX 64 /* bytes of an {id} path segment */

/* Handle one request: prepare its CORS headers (cors.h), route it and write exactly one
 * reply.  Returns 0 once it is answered.  With pending (not NULL), a task submission that
 * passed its checks is left there instead and 1 returned: the caller inserts pending->sub and
 * answers with tasks_create_end.  A CORS preflight of a route is answered 204 (cors.h). */
int router_dispatch(struct app *app, struct request *req, struct tasks_pending *pending);

#endif
