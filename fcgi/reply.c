/* reply.c: CGI-style responses ("Status: 202 Accepted") through fcgi2's stdio. */
#include "reply.h"

#include <fcgi_stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "log.h"

static const char *
reply_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

void
reply_json(int status, json_t **body, const char *extra_headers)
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
    FCGI_printf("Status: %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                "Cache-Control: no-store\r\n%s\r\n",
                status, reply_reason(status), length + 1, extra_headers ? extra_headers : "");
    FCGI_fwrite(text, 1, length, FCGI_stdout);
    FCGI_fwrite("\n", 1, 1, FCGI_stdout);
    free(text);
}

void
reply_error_with(int err, const char *message, const char *extra_headers)
{
    int status = tw_error_status(err);
    if (status >= 500)
        log_error("event=reply_error code=%s message=\"%s\"", tw_error_name(err),
                  message ? message : tw_error_message(err));
    json_t *body = json_pack("{s:{s:s, s:s}}", "error", "code", tw_error_name(err), "message",
                             message ? message : tw_error_message(err));
    reply_json(status, &body, extra_headers);
}

void
reply_error(int err, const char *message)
{
    reply_error_with(err, message, NULL);
}
