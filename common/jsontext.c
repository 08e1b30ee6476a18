/* jsontext.c: compact JSON text of jansson values (see jsontext.h). */
#include "jsontext.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JSONTEXT_FIRST 1024 /* bytes of a text's first buffer */

static int
jsontext_fail(struct jsontext *text)
{
    text->failed = 1;
    return -1;
}

/* Room for len more bytes and a NUL.  0, or -1. */
static int
jsontext_reserve(struct jsontext *text, size_t len)
{
    if (text->failed)
        return -1;
    if (len > JSONTEXT_MAX || text->length > JSONTEXT_MAX - len)
        return jsontext_fail(text);
    size_t need = text->length + len + 1;
    if (need <= text->capacity)
        return 0;
    size_t capacity = text->capacity ? text->capacity : JSONTEXT_FIRST;
    while (capacity < need)
        capacity *= 2;
    char *data = realloc(text->data, capacity);
    if (!data)
        return jsontext_fail(text);
    text->data = data;
    text->capacity = capacity;
    return 0;
}

int
jsontext_raw(struct jsontext *text, const char *bytes, size_t len)
{
    if (jsontext_reserve(text, len) != 0)
        return -1;
    memcpy(text->data + text->length, bytes, len);
    text->length += len;
    return 0;
}

int
jsontext_integer(struct jsontext *text, json_int_t value)
{
    char digits[24];
    size_t at = sizeof digits;
    /* The magnitude as unsigned, so the most negative value has one too. */
    unsigned long long magnitude =
        value < 0 ? 0ull - (unsigned long long)value : (unsigned long long)value;
    do {
        digits[--at] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        digits[--at] = '-';
    return jsontext_raw(text, digits + at, sizeof digits - at);
}

/* 1 when jansson writes these bytes between quotes unchanged: printable ASCII but for the
 * quote and the backslash. */
static int
jsontext_plain(const char *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (c < 0x20 || c > 0x7E || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

/* value written by jansson alone (a string that needs escapes, or a real). */
static int
jsontext_by_jansson(struct jsontext *text, const json_t *value)
{
    size_t need = json_dumpb(value, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    if (need == 0 || jsontext_reserve(text, need) != 0)
        return jsontext_fail(text);
    if (json_dumpb(value, text->data + text->length, need, JSON_COMPACT | JSON_ENCODE_ANY) != need)
        return jsontext_fail(text);
    text->length += need;
    return 0;
}

/* A string of len bytes, as jansson writes it: value is the string itself when there is one;
 * otherwise checked says whether the bytes are known to be valid UTF-8 (a key jansson holds). */
static int
jsontext_quoted(struct jsontext *text, const char *bytes, size_t len, const json_t *value,
                int checked)
{
    if (!jsontext_plain(bytes, len)) {
        if (value)
            return jsontext_by_jansson(text, value);
        json_t *made = checked ? json_stringn_nocheck(bytes, len) : json_stringn(bytes, len);
        int rc = made ? jsontext_by_jansson(text, made) : jsontext_fail(text);
        json_decref(made);
        return rc;
    }
    if (jsontext_reserve(text, len + 2) != 0)
        return -1;
    char *at = text->data + text->length;
    at[0] = '"';
    memcpy(at + 1, bytes, len);
    at[len + 1] = '"';
    text->length += len + 2;
    return 0;
}

static int
jsontext_nested(struct jsontext *text, const json_t *value, int depth)
{
    if (depth > JSONTEXT_DEPTH)
        return jsontext_fail(text);
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        if (jsontext_raw(text, "{", 1) != 0)
            return -1;
        const char *key;
        size_t key_len;
        json_t *member;
        int first = 1;
        json_object_keylen_foreach((json_t *)value, key, key_len, member)
        {
            if ((!first && jsontext_raw(text, ",", 1) != 0) ||
                jsontext_quoted(text, key, key_len, NULL, 1) != 0 ||
                jsontext_raw(text, ":", 1) != 0 || jsontext_nested(text, member, depth + 1) != 0)
                return -1;
            first = 0;
        }
        return jsontext_raw(text, "}", 1);
    }
    case JSON_ARRAY: {
        if (jsontext_raw(text, "[", 1) != 0)
            return -1;
        size_t index;
        json_t *member;
        json_array_foreach(value, index, member)
        {
            if ((index > 0 && jsontext_raw(text, ",", 1) != 0) ||
                jsontext_nested(text, member, depth + 1) != 0)
                return -1;
        }
        return jsontext_raw(text, "]", 1);
    }
    case JSON_STRING:
        return jsontext_quoted(text, json_string_value(value), json_string_length(value), value, 1);
    case JSON_INTEGER:
        return jsontext_integer(text, json_integer_value(value));
    case JSON_TRUE:
        return jsontext_raw(text, "true", 4);
    case JSON_FALSE:
        return jsontext_raw(text, "false", 5);
    case JSON_NULL:
        return jsontext_raw(text, "null", 4);
    default: /* JSON_REAL */
        return jsontext_by_jansson(text, value);
    }
}

int
jsontext_string(struct jsontext *text, const char *bytes, size_t len)
{
    return jsontext_quoted(text, bytes, len, NULL, 0);
}

int
jsontext_value(struct jsontext *text, const json_t *value)
{
    if (!value)
        return jsontext_fail(text);
    return jsontext_nested(text, value, 0);
}

char *
jsontext_take(struct jsontext *text)
{
    char *data = NULL;
    if (!text->failed && jsontext_reserve(text, 0) == 0) {
        data = text->data;
        data[text->length] = '\0';
        text->data = NULL;
    }
    jsontext_free(text);
    return data;
}

void
jsontext_free(struct jsontext *text)
{
    free(text->data);
    *text = (struct jsontext){0};
}

char *
jsontext_dumps(const json_t *value)
{
    struct jsontext text = {0};
    jsontext_value(&text, value);
    return jsontext_take(&text);
}
