/* errors.h: the one table of taskwire error codes.
 *
 * Every failure a client or operator can see is one row here: its enum value (negative, so
 * functions return 0 or a code), its HTTP status, its stable machine name and its default
 * human message.  The FastCGI handler's error replies come from this table, and `make lint`
 * checks the error list in docs/PROTOCOL.md against it (tools/check-errors.py); a new error is
 * one line here and one row there.  Several rows may
 * share a machine name (the STORE_* 503s are all "unavailable"): clients act on the name, and
 * the message says which part failed and how.
 */
#ifndef TW_COMMON_ERRORS_H
#define TW_COMMON_ERRORS_H

/* XX(enum suffix, HTTP status, machine name, default message) */
#define TW_ERROR_MAP(XX)                                                                           \
    XX(BAD_JSON, 400, "bad_json", "request body is not valid JSON")                                \
    XX(BAD_REQUEST, 400, "bad_request", "request is malformed")                                    \
    XX(UNAUTHORIZED, 401, "unauthorized", "missing, forged or expired token")                      \
    XX(FORBIDDEN, 403, "forbidden", "the token does not allow this")                               \
    XX(NOT_FOUND, 404, "not_found", "no such resource")                                            \
    XX(METHOD, 405, "method_not_allowed", "method not allowed on this resource")                   \
    XX(CONFLICT, 409, "conflict", "the task has already finished")                                 \
    XX(PRESENCE_OFF, 409, "presence_off", "this channel's namespace keeps no presence")            \
    XX(FENCED, 409, "fenced", "the write belongs to an attempt that is no longer current")         \
    XX(NO_HISTORY, 409, "no_history", "this channel's namespace keeps no history")                 \
    XX(TOO_LARGE, 413, "too_large", "request body is over the limit")                              \
    XX(MEDIA_TYPE, 415, "unsupported_media_type", "content type must be application/json")         \
    XX(UNKNOWN_TYPE, 422, "unknown_type", "unknown task type")                                     \
    XX(BAD_PARAMS, 422, "bad_params", "task parameters do not match the type's spec")              \
    XX(BAD_CHANNEL, 422, "bad_channel", "not a channel name this service knows")                   \
    XX(IDEMPOTENCY_MISMATCH, 422, "idempotency_mismatch",                                          \
       "this Idempotency-Key was used with a different request")                                   \
    XX(TOO_MANY_TASKS, 429, "too_many_tasks", "too many queued tasks for this client")             \
    XX(TOO_MANY_REQUESTS, 429, "too_many_requests",                                                \
       "too many submissions from this client: try again after Retry-After seconds")               \
    XX(UNAVAILABLE, 503, "unavailable", "a required part of the service is down")                  \
    XX(STORE_BUSY, 503, "unavailable", "the task store is busy: another writer held it too long")  \
    XX(STORE_FULL, 503, "unavailable", "the task store is full")                                   \
    XX(STORE_READONLY, 503, "unavailable", "the task store is read-only")                          \
    XX(STORE_IO, 503, "unavailable", "the task store cannot be read or written (I/O error)")       \
    XX(STORE_UNREACHABLE, 503, "unavailable", "the task store's server cannot be reached")         \
    XX(STORE, 500, "store_error", "the task store failed")                                         \
    XX(NOMEM, 500, "out_of_memory", "out of memory")                                               \
    XX(INTERNAL, 500, "internal", "internal error")                                                \
    XX(CONFIG, 500, "config", "invalid configuration")                                             \
    XX(IO, 500, "io", "input/output error")

enum tw_error {
    TW_OK = 0,
#define TW_ERROR_ENUM(name, status, code, message) TW_E_##name,
    TW_E_FIRST_ = -1000,
    TW_ERROR_MAP(TW_ERROR_ENUM)
#undef TW_ERROR_ENUM
        TW_E_LAST_
};

/* Machine name of an error ("bad_json"); "ok" for 0, "internal" for an unknown code.
 * Borrowed; static storage. */
const char *tw_error_name(int err);

/* HTTP status of an error; 200 for 0, 500 for an unknown code. */
int tw_error_status(int err);

/* Default human message of an error. Borrowed; static storage. */
const char *tw_error_message(int err);

#endif
