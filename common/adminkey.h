/* adminkey.h: the key files of the admin API ([admin] key_file) and of the publish API
 * ([channels] publish_key_file), read the same way by the handler that checks a key and the
 * taskwire commands that send one.
 *
 * The file's first line, trailing white space dropped, is the key: ADMINKEY_HEX hex digits
 * (32 random bytes, `openssl rand -hex 32`).  Anything else is refused rather than used, so a
 * short or guessable key never opens the admin API.
 */
#ifndef TW_COMMON_ADMINKEY_H
#define TW_COMMON_ADMINKEY_H

#include <stddef.h>

#define ADMINKEY_HEX 64  /* hex digits of a key */
#define ADMINKEY_MAX 128 /* bytes of the file read at most */

/* Read the key at path into key: 0; -2 when there is no such file; -1 with why (static text)
 * when it cannot be read or holds no valid key.  The caller cleanses key after use. */
int adminkey_read(const char *path, char key[ADMINKEY_MAX], const char **why);

/* Whether (given, len) is the key in path, compared in constant time (CRYPTO_memcmp): 0 when
 * it is, 1 when it is not, or adminkey_read's -2 and -1 (with why).  Nothing of the key is left
 * on the stack. */
int adminkey_matches(const char *path, const char *given, size_t len, const char **why);

#endif
