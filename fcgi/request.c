/* request.c: read the request line, headers and body the web server passes us. */
#include "request.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errors.h"

/* A variable of the request, or NULL. */
static const char *
request_param(const struct request *req, const char *name)
{
    return req->fcgx ? FCGX_GetParam(name, req->fcgx->envp) : getenv(name);
}

static const char *
request_env(const struct request *req, const char *name)
{
    const char *value = request_param(req, name);
    return value ? value : "";
}

int
request_init(struct request *req, FCGX_Request *fcgx)
{
    memset(req, 0, sizeof *req);
    req->fcgx = fcgx;
    req->method = request_env(req, "REQUEST_METHOD");
    req->content_type = request_env(req, "CONTENT_TYPE");
    req->authorization = request_env(req, "HTTP_AUTHORIZATION");
    req->idempotency_key = request_param(req, "HTTP_IDEMPOTENCY_KEY");
    req->origin = request_param(req, "HTTP_ORIGIN");
    req->remote_user = request_param(req, "REMOTE_USER");
    const char *https = request_param(req, "HTTPS"); /* "on" from Apache, lighttpd and nginx */
    req->https = https && (strcasecmp(https, "on") == 0 || strcmp(https, "1") == 0);
    req->cors_request_method = request_param(req, "HTTP_ACCESS_CONTROL_REQUEST_METHOD");
    req->query = request_env(req, "QUERY_STRING");
    req->content_length = -1;
    const char *length = request_param(req, "CONTENT_LENGTH");
    if (length && *length) {
        char *end;
        errno = 0;
        long long value = strtoll(length, &end, 10);
        if (!errno && *end == '\0' && value >= 0)
            req->content_length = value;
    }
    /* REQUEST_URI is what the client asked for under every server we support; SCRIPT_NAME plus
     * PATH_INFO is the CGI fallback. */
    const char *uri = request_param(req, "REQUEST_URI");
    size_t path_len;
    if (uri && *uri) {
        const char *question = strchr(uri, '?');
        path_len = question ? (size_t)(question - uri) : strlen(uri);
        if (path_len >= sizeof req->path)
            return TW_E_NOT_FOUND;
        memcpy(req->path, uri, path_len);
        req->path[path_len] = '\0';
    } else {
        int written = snprintf(req->path, sizeof req->path, "%s%s", request_env(req, "SCRIPT_NAME"),
                               request_env(req, "PATH_INFO"));
        if (written < 0 || (size_t)written >= sizeof req->path)
            return TW_E_NOT_FOUND;
    }
    return 0;
}

/* 1 when the content type is application/json, parameters (charset) allowed. */
static int
request_is_json(const char *content_type)
{
    static const char json[] = "application/json";
    size_t length = sizeof json - 1;
    if (strncasecmp(content_type, json, length) != 0)
        return 0;
    char next = content_type[length];
    return next == '\0' || next == ';' || next == ' ';
}

/* request_json_body, with a JSON array allowed too when list is set. */
static int
request_json_read(const struct request *req, long long max_body, int list, json_t **body, char *err,
                  size_t errlen)
{
    if (req->content_length > max_body) {
        snprintf(err, errlen, "request body is over the limit of %lld bytes", max_body);
        return TW_E_TOO_LARGE;
    }
    if (!request_is_json(req->content_type)) {
        snprintf(err, errlen, "content type must be application/json");
        return TW_E_MEDIA_TYPE;
    }
    /* The stated length (the web server passes that many bytes), or when none was given, one
     * byte more than the limit to tell "at the limit" from "over it".  A buffer the size of
     * the body, not of the limit: a 64 KiB block per request made glibc trim and refault its
     * heap on every free. */
    size_t capacity = (size_t)(req->content_length >= 0 ? req->content_length : max_body + 1);
    char *buffer = malloc(capacity + 1);
    if (!buffer)
        return TW_E_NOMEM;
    size_t used = 0;
    while (used < capacity) {
        size_t want = capacity - used;
        int got = req->fcgx ? FCGX_GetStr(buffer + used, want > INT_MAX ? INT_MAX : (int)want,
                                          req->fcgx->in)
                            : (int)fread(buffer + used, 1, want, stdin);
        if (got <= 0)
            break;
        used += (size_t)got;
    }
    int rc = 0;
    if (used > (size_t)max_body) {
        snprintf(err, errlen, "request body is over the limit of %lld bytes", max_body);
        rc = TW_E_TOO_LARGE;
    } else {
        json_error_t json_err;
        *body = json_loadb(buffer, used, JSON_REJECT_DUPLICATES, &json_err);
        if (!*body) {
            snprintf(err, errlen, "request body is not valid JSON: %s (line %d, column %d)",
                     json_err.text, json_err.line, json_err.column);
            rc = TW_E_BAD_JSON;
        } else if (!json_is_object(*body) && !(list && json_is_array(*body))) {
            json_decref(*body);
            *body = NULL;
            snprintf(err, errlen, "request body must be a JSON object%s", list ? " or list" : "");
            rc = TW_E_BAD_JSON;
        }
    }
    free(buffer);
    return rc;
}

int
request_json_body(const struct request *req, long long max_body, json_t **body, char *err,
                  size_t errlen)
{
    return request_json_read(req, max_body, 0, body, err, errlen);
}

int
request_json_body_or_list(const struct request *req, long long max_body, json_t **body, char *err,
                          size_t errlen)
{
    return request_json_read(req, max_body, 1, body, err, errlen);
}

int
request_query(const struct request *req, const char *name, char *value, size_t size)
{
    size_t name_len = strlen(name);
    const char *cursor = req->query;
    while (*cursor) {
        const char *end = strchr(cursor, '&');
        size_t pair_len = end ? (size_t)(end - cursor) : strlen(cursor);
        if (pair_len > name_len && strncmp(cursor, name, name_len) == 0 &&
            cursor[name_len] == '=') {
            size_t value_len = pair_len - name_len - 1;
            if (value_len >= size)
                return TW_E_BAD_REQUEST;
            memcpy(value, cursor + name_len + 1, value_len);
            value[value_len] = '\0';
            return 1;
        }
        cursor += pair_len + (end ? 1 : 0);
    }
    return 0;
}

int
request_bearer(const struct request *req, const char **token, size_t *token_len)
{
    const char *header = req->authorization;
    if (strncasecmp(header, "Bearer ", 7) != 0)
        return TW_E_UNAUTHORIZED;
    header += 7;
    while (*header == ' ')
        header++;
    size_t length = strcspn(header, " \t");
    if (length == 0)
        return TW_E_UNAUTHORIZED;
    *token = header;
    *token_len = length;
    return 0;
}
