/* adminkey.c: read the admin key file. */
#include "adminkey.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
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

int
adminkey_matches(const char *path, const char *given, size_t len, const char **why)
{
    char key[ADMINKEY_MAX];
    int rc = adminkey_read(path, key, why);
    if (rc == 0)
        rc = len == ADMINKEY_HEX && CRYPTO_memcmp(given, key, ADMINKEY_HEX) == 0 ? 0 : 1;
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}
