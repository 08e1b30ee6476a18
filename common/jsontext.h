/* jsontext.h: compact JSON text of a jansson value, the same bytes as jansson's
 * json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY), in a fraction of its instructions.
 *
 * Why it exists: every task event is a whole task object written as text (three per job at
 * least), and jansson spends about 75 instructions per byte on it, most of them decoding each
 * string's UTF-8 one character at a time: a third of a no-op job's cost in the worker.  Most of
 * an event's bytes are strings that need no escape at all (ids, timestamps, statuses) and
 * integers.
 *
 * What it does itself, and what it leaves to jansson:
 *   - objects and arrays: walked here, members in jansson's own order (json_object_foreach,
 *     the insertion order json_dumps writes), "," and ":" with no spaces, as JSON_COMPACT;
 *   - integers: written here in decimal (json_int_t is long long, as JSON_INTEGER_FORMAT);
 *   - true, false, null: here;
 *   - a string (or an object key) whose every byte is printable ASCII (0x20..0x7E) other than
 *     '"' and '\\': copied between quotes here, which is exactly what jansson writes for it
 *     (it escapes '/' only with JSON_ESCAPE_SLASH, which this never asks for);
 *   - any other string (control characters, quotes, backslashes, UTF-8) and every real:
 *     written by jansson (json_dumpb of that value alone), so escaping, UTF-8 validation and
 *     number formatting stay jansson's.
 * A string that is not valid UTF-8 cannot be in a jansson value (json_string refuses it), and
 * jansson's own refusals (json_dumpb failing) fail the whole text here too.
 * The tests (tests/unit/common/test_jsontext.c and the fuzz harness) compare every output
 * with json_dumps byte for byte.
 *
 * Bounds: the text is at most JSONTEXT_MAX bytes; a value that would need more fails (NULL),
 * as an out-of-memory would.  Nesting deeper than JSONTEXT_DEPTH fails too (jansson's own
 * parser refuses deeper input, so no stored value has it).
 */
#ifndef TW_COMMON_JSONTEXT_H
#define TW_COMMON_JSONTEXT_H

#include <jansson.h>
#include <stddef.h>

#define JSONTEXT_MAX (64u << 20) /* bytes of one text at most */
#define JSONTEXT_DEPTH 2048      /* nesting at most (jansson's JSON_PARSER_MAX_DEPTH) */

/* A text being built: start it zeroed; jsontext_take or jsontext_free ends it. */
struct jsontext {
    char *data;
    size_t length;
    size_t capacity;
    int failed; /* an append failed: the text is unusable */
};

/* Append len bytes of plain text (the caller's own, already JSON).  0, or -1 (failed set). */
int jsontext_raw(struct jsontext *text, const char *bytes, size_t len);

/* Append value as compact JSON.  0, or -1 (failed set). */
int jsontext_value(struct jsontext *text, const json_t *value);

/* Append len bytes of UTF-8 as a JSON string (quoted and escaped as jansson would).  0, or -1
 * (failed set; also when the bytes are not valid UTF-8). */
int jsontext_string(struct jsontext *text, const char *bytes, size_t len);

/* Append a decimal integer.  0, or -1 (failed set). */
int jsontext_integer(struct jsontext *text, json_int_t value);

/* The finished NUL-terminated text (caller frees with free()), or NULL when any append
 * failed; the struct is reset either way. */
char *jsontext_take(struct jsontext *text);

/* Drop the text. */
void jsontext_free(struct jsontext *text);

/* json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) by the above.  Caller frees; NULL on
 * failure. */
char *jsontext_dumps(const json_t *value);

#endif
