/* origin.h: lists of web origins (RFC 6454), as the config names them and browsers send them.
 *
 * An origin is "scheme://host" or "scheme://host:port" with the scheme http or https, exactly
 * as a browser writes it in the Origin header: no path, no trailing slash, no user.  A list
 * holds at most ORIGIN_LIST_MAX origins of at most ORIGIN_MAX - 1 bytes; one more is refused
 * (the config then reports it).  Matching is exact, ignoring ASCII case (browsers send scheme
 * and host in lower case; the config may not).  What an empty list means is the caller's
 * policy: the relay lets any origin in, the REST API sends no CORS headers.
 */
#ifndef TW_COMMON_ORIGIN_H
#define TW_COMMON_ORIGIN_H

#include <stddef.h>

#define ORIGIN_LIST_MAX 16 /* origins in one list */
#define ORIGIN_MAX 128     /* bytes of one origin, NUL included */

struct origin_list {
    size_t count;
    char origins[ORIGIN_LIST_MAX][ORIGIN_MAX];
};

/* Append origin (len bytes, not NUL-terminated) to list.  0, or -1 with the reason in err when
 * it is not an origin, is too long or the list is full. */
int origin_list_add(struct origin_list *list, const char *origin, size_t len, char *err,
                    size_t errlen);

/* 1 when origin (len bytes) is in list, else 0 (an empty list contains nothing). */
int origin_list_contains(const struct origin_list *list, const char *origin, size_t len);

#endif
