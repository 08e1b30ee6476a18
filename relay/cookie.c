/* cookie.c: a cookie's value by its name (see cookie.h). */
#include "cookie.h"

#include <string.h>

int
cookie_find(const char *header, size_t len, const char *name, const char **value, size_t *value_len)
{
    size_t name_len = strlen(name);
    const char *at = header, *end = header + len;
    while (at < end) {
        while (at < end && (*at == ' ' || *at == '\t'))
            at++;
        const char *pair_end = memchr(at, ';', (size_t)(end - at));
        if (!pair_end)
            pair_end = end;
        if ((size_t)(pair_end - at) > name_len && memcmp(at, name, name_len) == 0 &&
            at[name_len] == '=') {
            *value = at + name_len + 1;
            *value_len = (size_t)(pair_end - *value);
            return *value_len > 0 ? 0 : -1; /* "name=": a cookie cleared, no token */
        }
        at = pair_end + 1;
    }
    return -1;
}
