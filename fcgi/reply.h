/* reply.h: the only code that writes status lines, headers and bodies of the handler.
 *
 * Every reply is JSON with Cache-Control: no-store, and carries the request's CORS header
 * lines (req->cors, see cors.h).  Errors take the shape
 * {"error":{"code":"...","message":"..."}} with code and status from the error table.
 */
#ifndef TW_FCGI_REPLY_H
#define TW_FCGI_REPLY_H

#include <jansson.h>

#include "request.h"

#define REPLY_HEADERS_MAX 512 /* bytes of extra headers one reply may carry */

/* Answer req (borrowed) with status and *body (taken: decref'd and set to NULL), plus
 * extra_headers (each line ending in "\r\n"; NULL for none).  A NULL *body writes an internal
 * error instead. */
void reply_json(const struct request *req, int status, json_t **body, const char *extra_headers);

/* Answer req with 204 No Content (no body), plus extra_headers (as reply_json; NULL for
 * none). */
void reply_empty(const struct request *req, const char *extra_headers);

/* Write the error reply for err (a TW_E_* code) with message, or the table's message if NULL;
 * a 503 carries Retry-After: 1. */
void reply_error(const struct request *req, int err, const char *message);

/* Same with extra headers (Allow, Retry-After). */
void reply_error_with(const struct request *req, int err, const char *message,
                      const char *extra_headers);

#endif
