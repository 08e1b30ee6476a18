/* httpreply.h: one whole HTTP answer on a libwebsockets HTTP connection (the relay's and the
 * worker pool's metrics ports).
 *
 * Assumes: the connection is in its HTTP callback with no answer started; body has LWS_PRE
 * bytes of headroom before it (lws_write's rule); the headers fit HTTPREPLY_HEADERS_MAX.
 * The answer says Cache-Control: no-store, and the transaction is completed after it.
 */
#ifndef TW_COMMON_HTTPREPLY_H
#define TW_COMMON_HTTPREPLY_H

#include <libwebsockets.h>
#include <stddef.h>

#define HTTPREPLY_HEADERS_MAX 512 /* bytes of an answer's status line and headers */

/* Answer status with len bytes at body, of the given content type: 0, or -1 when the
 * connection is to be closed (the answer could not be written, or lws ends it). */
int httpreply_send(struct lws *wsi, unsigned int status, const char *type, unsigned char *body,
                   size_t len);

#endif
