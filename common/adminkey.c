/* adminkey.c: read the admin key file. */
#include "adminkey.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int
adminkey_read(const char *path, char key[ADMINKEY_MAX], const char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        return errno == ENOENT ? -2 : -1;
    }
    ssize_t got = read(fd, key, ADMINKEY_MAX - 1);
    if (got < 0)
        *why = strerror(errno);
    close(fd);
    if (got < 0)
        return -1;
    key[got] = '\0';
    size_t length = strcspn(key, "\r\n");
    while (length > 0 && (key[length - 1] == ' ' || key[length - 1] == '\t'))
        length--;
    key[length] = '\0';
    if (length != ADMINKEY_HEX || strspn(key, "0123456789abcdefABCDEF") != length) {
        *why = "not a key of 64 hex digits (openssl rand -hex 32)";
        return -1;
    }
    return 0;
}
