/* fuzz.h: what the libFuzzer harnesses share: a cursor that cuts the input into fields, a
 * scratch directory under /tmp removed at exit, and a check that aborts (a finding) when an
 * invariant the code promises does not hold. */
#ifndef TW_TESTS_FUZZ_H
#define TW_TESTS_FUZZ_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken promise is a crash libFuzzer records, with the reason on stderr. */
#define FUZZ_CHECK(condition)                                                                      \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Logging of errors only (a harness's stderr is libFuzzer's), and cfg at its defaults. */
static inline void
fuzz_setup(struct config *cfg)
{
    log_setup("fuzz", LOG_LEVEL_ERROR);
    if (cfg)
        config_defaults(cfg);
}

struct fuzz_input {
    const uint8_t *data;
    size_t size;
};

/* The next byte, or 0 when the input is used up. */
static inline uint8_t
fuzz_byte(struct fuzz_input *in)
{
    if (in->size == 0)
        return 0;
    in->size--;
    return *in->data++;
}

/* The bytes up to the next separator (not included; consumed), or the rest of the input. */
static inline size_t
fuzz_field(struct fuzz_input *in, char separator, const uint8_t **field)
{
    const uint8_t *end = memchr(in->data, separator, in->size);
    size_t length = end ? (size_t)(end - in->data) : in->size;
    *field = in->data;
    in->data += length + (end ? 1 : 0);
    in->size -= length + (end ? 1 : 0);
    return length;
}

/* The bytes up to the next separator as a new NUL-terminated string (caller frees). */
static inline char *
fuzz_field_string(struct fuzz_input *in, char separator)
{
    const uint8_t *field;
    size_t length = fuzz_field(in, separator, &field);
    char *text = malloc(length + 1);
    if (!text)
        abort();
    memcpy(text, field, length);
    text[length] = '\0';
    return text;
}

#define FUZZ_FRAMES_MAX 4 /* frames of one message of fuzz_message */

/* The next ZeroMQ message of an input coded as a series of them: a byte for the frame count
 * (1..FUZZ_FRAMES_MAX), then per frame a length byte (255: two more bytes give a length up to
 * 65535) and its bytes, cut short where the input ends.  Frames point into the input.  Returns
 * the frame count, 0 when the input is used up. */
static inline int
fuzz_message(struct fuzz_input *in, const uint8_t *frame[FUZZ_FRAMES_MAX],
             size_t length[FUZZ_FRAMES_MAX])
{
    if (in->size == 0)
        return 0;
    int frames = fuzz_byte(in) % FUZZ_FRAMES_MAX + 1;
    for (int f = 0; f < frames; f++) {
        size_t len = fuzz_byte(in);
        if (len == 255)
            len = (size_t)fuzz_byte(in) << 8 | fuzz_byte(in);
        if (len > in->size)
            len = in->size;
        frame[f] = in->data;
        length[f] = len;
        in->data += len;
        in->size -= len;
    }
    return frames;
}

static char fuzz_dir[64];

/* Remove the scratch directory and what the harness left in it (no subdirectories). */
static void
fuzz_dir_remove(void)
{
    DIR *dir = opendir(fuzz_dir);
    if (!dir)
        return;
    struct dirent *entry;
    char path[512];
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, entry->d_name);
        unlink(path);
    }
    closedir(dir);
    rmdir(fuzz_dir);
}

/* A fresh directory /tmp/tw-fuzz-NAME-XXXXXX, removed at exit; aborts when none can be made. */
static inline const char *
fuzz_scratch(const char *name)
{
    snprintf(fuzz_dir, sizeof fuzz_dir, "/tmp/tw-fuzz-%s-XXXXXX", name);
    if (!mkdtemp(fuzz_dir))
        abort();
    atexit(fuzz_dir_remove);
    return fuzz_dir;
}

#endif
