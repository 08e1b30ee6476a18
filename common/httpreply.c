/* httpreply.c: a whole HTTP answer through libwebsockets. */
#include "httpreply.h"

int
httpreply_send(struct lws *wsi, unsigned int status, const char *type, unsigned char *body,
               size_t len)
{
    unsigned char head[LWS_PRE + HTTPREPLY_HEADERS_MAX], *start = head + LWS_PRE, *p = start,
                                                         *end = head + sizeof head - 1;
    if (lws_add_http_common_headers(wsi, status, type, len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (lws_write(wsi, body, len, LWS_WRITE_HTTP_FINAL) < (int)len)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}
