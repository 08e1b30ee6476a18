/* reply.c: CGI-style responses ("Status: 202 Accepted") to fcgi2's stream or CGI's stdout. */
#include "reply.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "log.h"

#define REPLY_HEAD_MAX 1024 /* bytes of the status line and headers */

static const char *
reply_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static void
reply_write(const struct request *req, const char *data, size_t length)
{
    if (!req->fcgx)
        fwrite(data, 1, length, stdout);
    else if (length <= INT_MAX)
        FCGX_PutStr(data, (int)length, req->fcgx->out);
}

void
reply_json(const struct request *req, int status, json_t **body, const char *extra_headers)
{
    char *text = *body ? json_dumps(*body, JSON_COMPACT) : NULL;
    json_decref(*body);
    *body = NULL;
    if (!text) {
        status = 500;
        text = strdup("{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}");
        if (!text)
            return;
    }
    size_t length = strlen(text);
    char head[REPLY_HEAD_MAX];
    int head_len = snprintf(head, sizeof head,
                            "Status: %d %s\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
                            status, reply_reason(status), length + 1,
                            extra_headers ? extra_headers : "", req->cors);
    if (head_len < 0 || (size_t)head_len >= sizeof head) {
        free(text);
        return;
    }
    reply_write(req, head, (size_t)head_len);
    reply_write(req, text, length);
    reply_write(req, "\n", 1);
    free(text);
}

void
reply_empty(const struct request *req, const char *extra_headers)
{
    char head[REPLY_HEAD_MAX];
    int head_len =
        snprintf(head, sizeof head, "Status: 204 No Content\r\nCache-Control: no-store\r\n%s%s\r\n",
                 extra_headers ? extra_headers : "", req->cors);
    if (head_len > 0 && (size_t)head_len < sizeof head)
        reply_write(req, head, (size_t)head_len);
}

void
reply_error_with(const struct request *req, int err, const char *message, const char *extra_headers)
{
    int status = tw_error_status(err);
    /* A 503 (the store held, full or read-only) is logged by the store, once per episode. */
    if (status >= 500 && status != 503)
        log_error("event=reply_error code=%s message=\"%s\"", tw_error_name(err),
                  message ? message : tw_error_message(err));
    json_t *body = json_pack("{s:{s:s, s:s}}", "error", "code", tw_error_name(err), "message",
                             message ? message : tw_error_message(err));
    /* A message quoting the client's bytes (a JSON parser's "near ...") may not be UTF-8,
     * which JSON cannot carry: the error's own message says it instead. */
    if (!body && message)
        body = json_pack("{s:{s:s, s:s}}", "error", "code", tw_error_name(err), "message",
                         tw_error_message(err));
    reply_json(req, status, &body, extra_headers);
}

void
reply_error(const struct request *req, int err, const char *message)
{
    /* A 503 is worth trying again, and says when. */
    reply_error_with(req, err, message, tw_error_status(err) == 503 ? "Retry-After: 1\r\n" : NULL);
}
