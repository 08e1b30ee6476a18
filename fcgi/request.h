/* request.h: one HTTP request as the web server hands it over (FastCGI or CGI).
 *
 * Under FastCGI each thread has its own fcgi2 request (FCGX_Request); as a CGI program the
 * request is the process's environment, stdin and stdout.  Fields point into the one or the
 * other: they are valid until the request ends.  The body is read on demand, at most the
 * configured limit; a longer body is refused without reading it.
 */
#ifndef TW_FCGI_REQUEST_H
#define TW_FCGI_REQUEST_H

#include <fcgiapp.h>
#include <jansson.h>
#include <stddef.h>

#define REQUEST_PATH_MAX 512        /* bytes of a request path; longer is 404 */
#define REQUEST_QUERY_VALUE_MAX 128 /* bytes of one query value */
#define REQUEST_CORS_MAX 384        /* bytes of the CORS header lines of a reply (cors.h) */

struct request {
    FCGX_Request *fcgx; /* borrowed; NULL for CGI (environment, stdin, stdout) */
    const char *method;
    char path[REQUEST_PATH_MAX];     /* without the query string */
    const char *query;               /* after '?', or "" */
    const char *content_type;        /* or "" */
    const char *authorization;       /* or "" */
    const char *idempotency_key;     /* the Idempotency-Key header, or NULL */
    const char *origin;              /* the Origin header, or NULL */
    const char *remote_user;         /* the user the web server authenticated, or NULL */
    int https;                       /* the web server says the request came over TLS */
    const char *cors_request_method; /* Access-Control-Request-Method (a preflight), or NULL */
    char cors[REQUEST_CORS_MAX];     /* header lines every reply carries (cors_prepare), or "" */
    long long content_length;        /* -1 when not given */
};

/* Fill req from the variables of fcgx (borrowed until the request ends), or of the process
 * when fcgx is NULL (CGI).  0, or TW_E_NOT_FOUND for a path over REQUEST_PATH_MAX. */
int request_init(struct request *req, FCGX_Request *fcgx);

/* Read the body as a JSON object no longer than max_body bytes, requiring an
 * application/json content type.  On success *body is a new object (caller owns; json_decref).
 * Errors: TW_E_TOO_LARGE, TW_E_MEDIA_TYPE, TW_E_BAD_JSON (message in err). */
int request_json_body(const struct request *req, long long max_body, json_t **body, char *err,
                      size_t errlen);

/* As request_json_body, but a JSON array is a body too (POST /api/publish's list). */
int request_json_body_or_list(const struct request *req, long long max_body, json_t **body,
                              char *err, size_t errlen);

/* Copy query parameter name's raw value into value (size bytes).  1 when present, 0 when
 * absent, TW_E_BAD_REQUEST when it does not fit. */
int request_query(const struct request *req, const char *name, char *value, size_t size);

/* The bearer token of the Authorization header, as (pointer, length); 0 or TW_E_UNAUTHORIZED. */
int request_bearer(const struct request *req, const char **token, size_t *token_len);

#endif
