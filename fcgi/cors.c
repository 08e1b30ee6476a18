/* cors.c: the CORS headers of the REST API's replies, and its preflight answer. */
#include "cors.h"

#include <stdio.h>
#include <string.h>

#include "reply.h"

/* 1 when req comes from a page of a listed origin. */
static int
cors_listed(const struct config *cfg, const struct request *req)
{
    return req->origin &&
           origin_list_contains(&cfg->cors_origins, req->origin, strlen(req->origin));
}

void
cors_prepare(const struct config *cfg, struct request *req)
{
    req->cors[0] = '\0';
    if (cfg->cors_origins.count == 0)
        return;
    /* The origin echoed matched a listed one, so it holds no byte a header line cannot. */
    int n = cors_listed(cfg, req)
                ? snprintf(req->cors, sizeof req->cors,
                           "Access-Control-Allow-Origin: %s\r\n"
                           "Access-Control-Expose-Headers: " CORS_EXPOSE_HEADERS "\r\n"
                           "Vary: Origin\r\n",
                           req->origin)
                : snprintf(req->cors, sizeof req->cors, "Vary: Origin\r\n");
    if (n < 0 || (size_t)n >= sizeof req->cors)
        req->cors[0] = '\0';
}

int
cors_is_preflight(const struct config *cfg, const struct request *req)
{
    return strcmp(req->method, "OPTIONS") == 0 && req->cors_request_method &&
           cfg->cors_origins.count > 0 && cors_listed(cfg, req);
}

void
cors_preflight(const struct request *req, const char *allow)
{
    char headers[REPLY_HEADERS_MAX];
    snprintf(headers, sizeof headers,
             "Access-Control-Allow-Methods: %s\r\n"
             "Access-Control-Allow-Headers: " CORS_ALLOW_HEADERS "\r\n"
             "Access-Control-Max-Age: %d\r\n",
             allow, CORS_MAX_AGE_S);
    reply_empty(req, headers);
}
