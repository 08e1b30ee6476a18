/* origin.c: checking and matching web origins. */
#include "origin.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Length of the scheme and "://" that origin starts with (http or https), or 0. */
static size_t
origin_scheme_length(const char *origin, size_t len)
{
    static const char *const schemes[] = {"http://", "https://"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i]);
        if (len > n && strncasecmp(origin, schemes[i], n) == 0)
            return n;
    }
    return 0;
}

int
origin_list_add(struct origin_list *list, const char *origin, size_t len, char *err, size_t errlen)
{
    size_t scheme = origin_scheme_length(origin, len);
    if (scheme == 0) {
        snprintf(err, errlen, "'%.*s' is not an origin (http://host[:port] or https://...)",
                 (int)(len < 64 ? len : 64), origin);
        return -1;
    }
    /* The host and port: anything but what would make it a URL rather than an origin. */
    for (size_t i = scheme; i < len; i++) {
        unsigned char c = (unsigned char)origin[i];
        if (c <= ' ' || c >= 0x7f || strchr("/?#@\\", c)) {
            snprintf(err, errlen, "'%.*s' is not an origin: no path, query or user after the host",
                     (int)(len < 64 ? len : 64), origin);
            return -1;
        }
    }
    if (len >= ORIGIN_MAX) {
        snprintf(err, errlen, "an origin is at most %d bytes", ORIGIN_MAX - 1);
        return -1;
    }
    if (list->count >= ORIGIN_LIST_MAX) {
        snprintf(err, errlen, "at most %d origins", ORIGIN_LIST_MAX);
        return -1;
    }
    memcpy(list->origins[list->count], origin, len);
    list->origins[list->count][len] = '\0';
    list->count++;
    return 0;
}

int
origin_list_contains(const struct origin_list *list, const char *origin, size_t len)
{
    for (size_t i = 0; i < list->count; i++)
        if (strlen(list->origins[i]) == len && strncasecmp(list->origins[i], origin, len) == 0)
            return 1;
    return 0;
}
