/* cookie.h: one cookie's value out of a request's Cookie header, for the session's token
 * ([auth] cookie, /ws?auth=cookie).
 *
 * libwebsockets has lws_http_cookie_get for this, but the 4.1 the relay builds against
 * matches a name anywhere in the header: asked for "taskwire_token" it answers the value of
 * a cookie "xtaskwire_token" another application of the site set, which then stands for the
 * session's.  This module finds the name only where a cookie-pair starts, as RFC 6265 section
 * 4.2.1 writes the header: cookie-pair *( ";" SP cookie-pair ), a pair being name "=" value.
 *
 * Assumptions, and what breaks each:
 * - The header is the one Cookie line lws copied, NUL-free (lws_hdr_copy joins repeated
 *   Cookie headers with "; ", which keeps the grammar); a NUL inside would end it early.
 * - Pairs are separated by ';' with optional spaces or tabs after it (browsers send "; ",
 *   some clients ";"); a name is compared byte for byte, case-sensitively, as browsers store
 *   it; the value runs to the next ';' and is not unquoted or decoded (a token is base64url
 *   and dots, which need neither).  A quoted value would come back with its quotes and fail
 *   verification as a token: refused, not misread.  An empty value (a cleared cookie) is none.
 * - With the name given twice (cookies of two paths), the first wins: browsers put the one of
 *   the longer path first (RFC 6265 section 5.4), the relay's own.
 */
#ifndef TW_RELAY_COOKIE_H
#define TW_RELAY_COOKIE_H

#include <stddef.h>

/* In header (len bytes), the value of the first cookie named name: 0 with *value and
 * *value_len set (pointing into header), or -1 when there is none. */
int cookie_find(const char *header, size_t len, const char *name, const char **value,
                size_t *value_len);

#endif
