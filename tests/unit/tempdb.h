/* tempdb.h: a SQLite store file in a fresh directory under /tmp, for unit tests, and its
 * removal with the files SQLite and the store keep beside it. */
#ifndef TW_TESTS_TEMPDB_H
#define TW_TESTS_TEMPDB_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store.h"

/* Make dir (a "/tmp/tw-NAME-XXXXXX" pattern, filled in) and put "dir/t.db" in path. */
static inline int
tempdb_make(char *dir, size_t dir_size, const char *name, char *path, size_t path_size)
{
    snprintf(dir, dir_size, "/tmp/tw-%s-XXXXXX", name);
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, path_size, "%s/t.db", dir);
    return 0;
}

/* The SQLite store of the file at file; NULL with err (store_new). */
static inline struct store *
tempdb_store(const char *file, int busy_timeout_ms, char *err, size_t errlen)
{
    struct store_options options = {
        .backend = STORE_BACKEND_SQLITE, .path = file, .busy_timeout_ms = busy_timeout_ms};
    return store_new(&options, err, errlen);
}

/* Remove path, its -wal, -shm and -queue files and dir; 0 when dir is gone. */
static inline int
tempdb_remove(const char *dir, const char *path)
{
    char file[512];
    const char *suffixes[] = {"", "-wal", "-shm", "-queue"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
        unlink(file);
    }
    return rmdir(dir);
}

#endif
