/* config.c: load and validate the INI configuration through inih.
 *
 * Each key is one row of config_keys[] (section, name, how to parse it, where it goes, range);
 * `[type NAME]` sections are handled by config_type_key(), `[namespace NAME]` sections by
 * config_namespace_key().  The first error stops the parse and
 * is reported with the file and line inih gives.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "errors.h"
#include "metrics.h"

/* KEY_ORIGINS and KEY_ADDRESSES are lists: items separated by spaces or commas, continued on
 * indented lines (inih hands each line over as another value of the key); the file's first
 * value of such a key replaces the default list. */
enum key_kind {
    KEY_INT,
    KEY_LONG,
    KEY_TEXT,
    KEY_PATH,
    KEY_PATH_OPTIONAL, /* a path, or empty for none */
    KEY_LOG_LEVEL,
    KEY_STORE_BACKEND,
    KEY_ORIGINS,
    KEY_ADDRESSES,
    KEY_URLS,
    KEY_ENDPOINTS,
    KEY_ENDPOINT_OPTIONAL, /* a tcp:// or ipc:// endpoint, or empty for none */
    KEY_LISTEN,            /* host:port, or empty for off */
    KEY_BOOL,              /* true or false, into an int 1 or 0 */
    KEY_SESSION_CHANNELS   /* NAME=PERMISSION[,PERMISSION] items ([auth] session_channels) */
};

struct config_key {
    const char *section;
    const char *name;
    enum key_kind kind;
    size_t offset;
    size_t size; /* text and path: the field's capacity */
    long long min, max;
};

#define KEY_NUM(sec, key, kind, field, lo, hi)                                                     \
    {                                                                                              \
        sec, key, kind, offsetof(struct config, field), 0, lo, hi                                  \
    }
#define KEY_STR(sec, key, kind, field)                                                             \
    {                                                                                              \
        sec, key, kind, offsetof(struct config, field), sizeof(((struct config *)0)->field), 0, 0  \
    }
#define KEY_LIST(sec, key, kind, field)                                                            \
    {                                                                                              \
        sec, key, kind, offsetof(struct config, field), 0, 0, 0                                    \
    }

static const struct config_key config_keys[] = {
    {"log", "level", KEY_LOG_LEVEL, offsetof(struct config, log_level), 0, 0, 0},
    {"store", "backend", KEY_STORE_BACKEND, offsetof(struct config, store_backend), 0, 0, 0},
    KEY_STR("store", "url", KEY_TEXT, store_url),
    KEY_STR("store", "database", KEY_PATH, database),
    KEY_NUM("store", "busy_timeout_ms", KEY_INT, busy_timeout_ms, 0, 600000),
    KEY_NUM("store", "keep_finished", KEY_LONG, keep_finished, 0, 315360000),
    KEY_STR("auth", "secret_file", KEY_PATH, secret_file),
    KEY_NUM("auth", "token_ttl", KEY_LONG, token_ttl, 60, 31536000),
    KEY_NUM("auth", "trust_remote_user", KEY_BOOL, trust_remote_user, 0, 1),
    KEY_NUM("auth", "anonymous", KEY_BOOL, anonymous, 0, 1),
    KEY_NUM("auth", "cookie", KEY_BOOL, cookie, 0, 1),
    KEY_STR("auth", "cookie_name", KEY_TEXT, cookie_name),
    KEY_STR("auth", "cookie_path", KEY_TEXT, cookie_path),
    KEY_LIST("auth", "session_channels", KEY_SESSION_CHANNELS, session_channels),
    KEY_LIST("zmq", "tasks", KEY_ENDPOINTS, tasks_endpoints),
    KEY_STR("zmq", "publish", KEY_TEXT, publish_endpoint),
    KEY_STR("zmq", "events", KEY_TEXT, events_endpoint),
    KEY_LIST("zmq", "relays", KEY_ENDPOINTS, relays),
    KEY_NUM("zmq", "curve", KEY_BOOL, curve, 0, 1),
    KEY_STR("zmq", "curve_secret_file", KEY_PATH_OPTIONAL, curve_secret_file),
    KEY_STR("zmq", "curve_server_public_file", KEY_PATH_OPTIONAL, curve_server_public_file),
    KEY_STR("zmq", "curve_clients_file", KEY_PATH_OPTIONAL, curve_clients_file),
    KEY_STR("zmq", "curve_relay_public_file", KEY_PATH_OPTIONAL, curve_relay_public_file),
    KEY_NUM("http", "max_body", KEY_LONG, max_body, 1024, 16777216),
    KEY_NUM("http", "threads", KEY_INT, threads, 1, 64),
    KEY_NUM("http", "max_queued", KEY_INT, max_queued, 1, 100000000),
    KEY_NUM("http", "submit_rate", KEY_INT, submit_rate, 0, 1000000),
    KEY_NUM("http", "submit_burst", KEY_INT, submit_burst, 1, 1000000),
    KEY_LIST("http", "cors_origins", KEY_ORIGINS, cors_origins),
    KEY_NUM("worker", "concurrency", KEY_INT, concurrency, 0, 1024),
    KEY_NUM("worker", "progress_interval_ms", KEY_INT, progress_interval_ms, 0, 60000),
    KEY_NUM("worker", "scan_interval_ms", KEY_INT, scan_interval_ms, 50, 600000),
    KEY_NUM("worker", "heartbeat_ms", KEY_INT, heartbeat_ms, 50, 60000),
    KEY_NUM("worker", "stale_after_ms", KEY_INT, stale_after_ms, 200, 600000),
    KEY_NUM("worker", "cancel_grace_ms", KEY_INT, cancel_grace_ms, 0, 600000),
    KEY_NUM("worker", "lease_ms", KEY_INT, lease_ms, 200, 3600000),
    KEY_STR("worker", "metrics_listen", KEY_LISTEN, worker_metrics_listen),
    KEY_STR("relay", "listen", KEY_TEXT, relay_listen),
    KEY_NUM("relay", "port", KEY_INT, relay_port, 1, 65535),
    KEY_NUM("relay", "ping_interval", KEY_INT, ping_interval, 1, 3600),
    KEY_NUM("relay", "ping_timeout", KEY_INT, ping_timeout, 1, 3600),
    KEY_NUM("relay", "ring", KEY_INT, ring, 2, 65536),
    KEY_NUM("relay", "max_message", KEY_INT, max_message, 256, 16777216),
    KEY_NUM("relay", "max_connections", KEY_INT, max_connections, 1, 10000000),
    KEY_NUM("relay", "max_connections_per_client", KEY_INT, max_connections_per_client, 1, 100000),
    KEY_NUM("relay", "connect_rate", KEY_INT, connect_rate, 0, 1000000),
    KEY_NUM("relay", "connect_burst", KEY_INT, connect_burst, 1, 1000000),
    KEY_LIST("relay", "connect_rate_exempt", KEY_ADDRESSES, connect_rate_exempt),
    KEY_LIST("relay", "allowed_origins", KEY_ORIGINS, allowed_origins),
    KEY_NUM("relay", "io_uring", KEY_INT, relay_io_uring, 0, 1),
    KEY_NUM("relay", "auth_timeout_ms", KEY_INT, auth_timeout_ms, 100, 600000),
    KEY_NUM("relay", "token_in_query", KEY_BOOL, token_in_query, 0, 1),
    KEY_STR("relay", "metrics_listen", KEY_LISTEN, relay_metrics_listen),
    KEY_STR("relay", "events_listen", KEY_ENDPOINT_OPTIONAL, relay_events_listen),
    KEY_STR("admin", "key_file", KEY_PATH_OPTIONAL, admin_key_file),
    KEY_STR("admin", "api_url", KEY_TEXT, admin_api_url),
    KEY_LIST("admin", "relays", KEY_URLS, admin_relays),
    KEY_NUM("channels", "max_per_connection", KEY_INT, channels_per_connection, 0, 1024),
    KEY_NUM("channels", "max_name", KEY_INT, channel_name_max, 8, CONFIG_CHANNEL_NAME_LIMIT),
    KEY_NUM("channels", "max_per_task", KEY_INT, channels_per_task, 0,
            CONFIG_CHANNELS_PER_TASK_LIMIT),
    KEY_STR("channels", "publish_key_file", KEY_PATH_OPTIONAL, publish_key_file),
    /* Browser publish and presence. */
    KEY_NUM("channels", "publish_max", KEY_INT, publish_max, 16, 65536),
    KEY_NUM("channels", "publish_rate", KEY_INT, publish_rate, 0, 1000000),
    KEY_NUM("channels", "publish_burst", KEY_INT, publish_burst, 1, 1000000),
    KEY_NUM("channels", "presence_ttl_ms", KEY_INT, presence_ttl_ms, 3000, 600000),
};

#define CONFIG_KEY_COUNT (sizeof config_keys / sizeof config_keys[0])

struct load_state {
    struct config *cfg;
    char dir[PATH_MAX]; /* directory of the config file, for relative paths */
    char err[400];      /* what went wrong, without file and line: the first error only */
    unsigned char seen[CONFIG_KEY_COUNT];              /* list keys given in the file so far */
    unsigned char events_given[CONFIG_MAX_NAMESPACES]; /* presence_events set in the file */
    int publish_max_given;                             /* [channels] publish_max set in it */
    FILE *file;
    int lines;    /* lines read so far */
    int bad_line; /* the line config_read_line refused, or 0 */
};

_Static_assert(CONFIG_LINE_MAX < INI_MAX_LINE, "inih must take a whole line");

static int
parse_integer(const char *text, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0' || value < min || value > max)
        return TW_E_CONFIG;
    *out = value;
    return 0;
}

static int
copy_text(char *dst, size_t size, const char *src)
{
    size_t length = strlen(src);
    if (length >= size)
        return TW_E_CONFIG;
    memcpy(dst, src, length + 1);
    return 0;
}

static int
resolve_path(const struct load_state *state, char *dst, size_t size, const char *value)
{
    if (value[0] == '/' || value[0] == '\0')
        return copy_text(dst, size, value);
    int written = snprintf(dst, size, "%s/%s", state->dir, value);
    return written < 0 || (size_t)written >= size ? TW_E_CONFIG : 0;
}

static void
config_type_policy_defaults(struct config_type *type)
{
    type->max_attempts = CONFIG_DEFAULT_MAX_ATTEMPTS;
    type->retry_on = CONFIG_DEFAULT_RETRY_ON;
    type->on_lost_fail = 0;
    type->retry_base_ms = CONFIG_DEFAULT_RETRY_BASE_MS;
    type->retry_max_ms = CONFIG_DEFAULT_RETRY_MAX_MS;
    type->concurrency = 0;
}

static struct config_type *
type_for_section(struct load_state *state, const char *name)
{
    struct config *cfg = state->cfg;
    for (size_t i = 0; i < cfg->type_count; i++)
        if (strcmp(cfg->types[i].name, name) == 0)
            return &cfg->types[i];
    if (cfg->type_count >= CONFIG_MAX_TYPES) {
        snprintf(state->err, sizeof state->err, "more than %d task types", CONFIG_MAX_TYPES);
        return NULL;
    }
    size_t length = strlen(name);
    if (length == 0 || length >= CONFIG_NAME_MAX ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != length) {
        snprintf(state->err, sizeof state->err, "task type name must be 1..%d of [a-z0-9_-]",
                 CONFIG_NAME_MAX - 1);
        return NULL;
    }
    struct config_type *type = &cfg->types[cfg->type_count++];
    memset(type, 0, sizeof *type);
    memcpy(type->name, name, length + 1);
    type->kind = CONFIG_TYPE_EXEC;
    type->timeout_ms = CONFIG_DEFAULT_EXEC_TIMEOUT_MS;
    config_type_policy_defaults(type);
    return type;
}

/* "integer min=1 max=10 default=3" | "string min=0 max=200 default=text" | "boolean default=true"
 */
static int
param_parse(struct load_state *state, struct config_param *param, const char *value)
{
    char spec[CONFIG_TEXT_MAX * 2];
    if (copy_text(spec, sizeof spec, value) != 0) {
        snprintf(state->err, sizeof state->err, "parameter spec too long");
        return TW_E_CONFIG;
    }
    char *save = NULL;
    char *word = strtok_r(spec, " \t", &save);
    if (!word) {
        snprintf(state->err, sizeof state->err, "parameter needs a type");
        return TW_E_CONFIG;
    }
    if (strcmp(word, "integer") == 0) {
        param->kind = CONFIG_PARAM_INTEGER;
        param->min = 0;
        param->max = 1000000000LL;
    } else if (strcmp(word, "string") == 0) {
        param->kind = CONFIG_PARAM_STRING;
        param->min = 0;
        param->max = CONFIG_TEXT_MAX - 1;
    } else if (strcmp(word, "boolean") == 0) {
        param->kind = CONFIG_PARAM_BOOLEAN;
        param->min = 0;
        param->max = 1;
    } else {
        snprintf(state->err, sizeof state->err,
                 "parameter type must be integer, string or boolean");
        return TW_E_CONFIG;
    }
    const char *default_text = NULL;
    while ((word = strtok_r(NULL, " \t", &save)) != NULL) {
        char *equals = strchr(word, '=');
        if (!equals) {
            snprintf(state->err, sizeof state->err, "expected key=value, got '%s'", word);
            return TW_E_CONFIG;
        }
        *equals = '\0';
        const char *option = word, *text = equals + 1;
        long long number;
        if (strcmp(option, "default") == 0) {
            default_text = text;
        } else if ((strcmp(option, "min") == 0 || strcmp(option, "max") == 0) &&
                   param->kind != CONFIG_PARAM_BOOLEAN &&
                   parse_integer(text, param->kind == CONFIG_PARAM_STRING ? 0 : -1000000000000LL,
                                 param->kind == CONFIG_PARAM_STRING ? CONFIG_STRING_PARAM_MAX
                                                                    : 1000000000000LL,
                                 &number) == 0) {
            if (option[1] == 'i')
                param->min = number;
            else
                param->max = number;
        } else {
            snprintf(state->err, sizeof state->err, "bad parameter option '%s'", option);
            return TW_E_CONFIG;
        }
    }
    if (param->min > param->max) {
        snprintf(state->err, sizeof state->err, "min is above max");
        return TW_E_CONFIG;
    }
    if (!default_text)
        return 0;
    param->has_default = 1;
    if (param->kind == CONFIG_PARAM_INTEGER) {
        if (parse_integer(default_text, param->min, param->max, &param->default_integer) != 0) {
            snprintf(state->err, sizeof state->err, "default is not an integer in range");
            return TW_E_CONFIG;
        }
    } else if (param->kind == CONFIG_PARAM_BOOLEAN) {
        if (strcmp(default_text, "true") && strcmp(default_text, "false")) {
            snprintf(state->err, sizeof state->err, "boolean default must be true or false");
            return TW_E_CONFIG;
        }
        param->default_integer = strcmp(default_text, "true") == 0;
    } else {
        long long length = (long long)strlen(default_text);
        if (length < param->min || length > param->max ||
            copy_text(param->default_string, sizeof param->default_string, default_text)) {
            snprintf(state->err, sizeof state->err, "default length is out of range");
            return TW_E_CONFIG;
        }
    }
    return 0;
}

/* retry_on: a comma-separated list of lost, failed, timeout (or "none"). */
static int
retry_on_parse(const char *value, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bit;
    } reasons[] = {{"lost", CONFIG_RETRY_LOST},
                   {"failed", CONFIG_RETRY_FAILED},
                   {"timeout", CONFIG_RETRY_TIMEOUT},
                   {"none", 0}};
    char list[CONFIG_TEXT_MAX];
    if (copy_text(list, sizeof list, value) != 0)
        return TW_E_CONFIG;
    unsigned bits = 0;
    char *save = NULL;
    int words = 0;
    for (char *word = strtok_r(list, ", \t", &save); word; word = strtok_r(NULL, ", \t", &save)) {
        size_t i;
        for (i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
            if (strcmp(word, reasons[i].name) == 0)
                break;
        if (i == sizeof reasons / sizeof reasons[0])
            return TW_E_CONFIG;
        bits |= reasons[i].bit;
        words++;
    }
    if (words == 0)
        return TW_E_CONFIG;
    *out = bits;
    return 0;
}

/* The retry and admission keys, which every type has (the built-in sleep included): 1 when
 * name is one of them (set, or the error in state->err), 0 when it is not. */
static int
config_type_policy_key(struct load_state *state, struct config_type *type, const char *name,
                       const char *value, int *rc)
{
    static const struct {
        const char *name;
        long long min, max;
    } numbers[] = {{"max_attempts", 1, 1000},
                   {"retry_base_ms", 0, 86400000LL},
                   {"retry_max_ms", 0, 604800000LL},
                   {"concurrency", 0, 1000000}};
    long long number;
    *rc = 0;
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        if (strcmp(name, numbers[i].name) != 0)
            continue;
        if (parse_integer(value, numbers[i].min, numbers[i].max, &number) != 0) {
            snprintf(state->err, sizeof state->err, "%s must be an integer %lld..%lld", name,
                     numbers[i].min, numbers[i].max);
            *rc = TW_E_CONFIG;
        } else if (i == 0) {
            type->max_attempts = (int)number;
        } else if (i == 1) {
            type->retry_base_ms = number;
        } else if (i == 2) {
            type->retry_max_ms = number;
        } else {
            type->concurrency = (int)number;
        }
        return 1;
    }
    if (strcmp(name, "retry_on") == 0) {
        if (retry_on_parse(value, &type->retry_on) != 0) {
            snprintf(state->err, sizeof state->err,
                     "retry_on must list lost, failed, timeout (or be none)");
            *rc = TW_E_CONFIG;
        }
        return 1;
    }
    if (strcmp(name, "on_lost") == 0) {
        if (strcmp(value, "retry") == 0 || strcmp(value, "fail") == 0) {
            type->on_lost_fail = strcmp(value, "fail") == 0;
        } else {
            snprintf(state->err, sizeof state->err, "on_lost must be retry or fail");
            *rc = TW_E_CONFIG;
        }
        return 1;
    }
    return 0;
}

static int
config_type_key(struct load_state *state, const char *type_name, const char *name,
                const char *value)
{
    struct config_type *type = type_for_section(state, type_name);
    if (!type)
        return TW_E_CONFIG;
    int policy_rc;
    if (config_type_policy_key(state, type, name, value, &policy_rc))
        return policy_rc;
    if (strcmp(type->name, "sleep") == 0) {
        snprintf(state->err, sizeof state->err,
                 "the sleep type is built in: only its retry and concurrency keys can be set");
        return TW_E_CONFIG;
    }
    if (strcmp(name, "label") == 0) {
        if (copy_text(type->label, sizeof type->label, value) == 0)
            return 0;
        snprintf(state->err, sizeof state->err, "label too long");
        return TW_E_CONFIG;
    }
    if (strcmp(name, "command") == 0) {
        if (resolve_path(state, type->command, sizeof type->command, value) == 0 && *value)
            return 0;
        snprintf(state->err, sizeof state->err, "command path empty or too long");
        return TW_E_CONFIG;
    }
    if (strcmp(name, "timeout_ms") == 0) {
        if (parse_integer(value, 100, 86400000LL, &type->timeout_ms) == 0)
            return 0;
        snprintf(state->err, sizeof state->err, "timeout_ms must be an integer 100..86400000");
        return TW_E_CONFIG;
    }
    if (strncmp(name, "param.", 6) == 0) {
        const char *param_name = name + 6;
        size_t length = strlen(param_name);
        if (length == 0 || length >= CONFIG_NAME_MAX ||
            strspn(param_name, "abcdefghijklmnopqrstuvwxyz0123456789_") != length) {
            snprintf(state->err, sizeof state->err, "parameter name must be [a-z0-9_]");
            return TW_E_CONFIG;
        }
        for (size_t i = 0; i < type->param_count; i++) {
            if (strcmp(type->params[i].name, param_name) == 0) {
                snprintf(state->err, sizeof state->err, "parameter declared twice");
                return TW_E_CONFIG;
            }
        }
        if (type->param_count >= CONFIG_MAX_PARAMS) {
            snprintf(state->err, sizeof state->err, "more than %d parameters", CONFIG_MAX_PARAMS);
            return TW_E_CONFIG;
        }
        struct config_param *param = &type->params[type->param_count];
        memset(param, 0, sizeof *param);
        memcpy(param->name, param_name, length + 1);
        int rc = param_parse(state, param, value);
        if (rc == 0)
            type->param_count++;
        return rc;
    }
    snprintf(state->err, sizeof state->err, "unknown key '%s' in [type %s]", name, type_name);
    return TW_E_CONFIG;
}

int
config_endpoint_valid(const char *text, size_t length)
{
    size_t scheme = length > 6 && strncmp(text, "tcp://", 6) == 0   ? 6
                    : length > 6 && strncmp(text, "ipc://", 6) == 0 ? 6
                                                                    : 0;
    if (scheme == 0 || length >= CONFIG_TEXT_MAX)
        return 0;
    for (size_t i = scheme; i < length; i++)
        if ((unsigned char)text[i] <= ' ' || (unsigned char)text[i] >= 0x7f || text[i] == ',')
            return 0;
    return 1;
}

/* Append item (len bytes), valid or not as its caller found (what it should be: "a ..."), to a
 * list of texts (items[*count], at most max, called plural in the error). */
static int
config_text_item(struct load_state *state, const struct config_key *key, int valid,
                 const char *what, char (*items)[CONFIG_TEXT_MAX], size_t *count, size_t max,
                 const char *plural, const char *item, size_t len)
{
    if (!valid) {
        snprintf(state->err, sizeof state->err, "%s: '%.*s' is not %s of at most %d bytes",
                 key->name, (int)(len < 64 ? len : 64), item, what, CONFIG_TEXT_MAX - 1);
        return TW_E_CONFIG;
    }
    if (*count >= max) {
        snprintf(state->err, sizeof state->err, "%s: at most %zu %s", key->name, max, plural);
        return TW_E_CONFIG;
    }
    memcpy(items[*count], item, len);
    items[(*count)++][len] = '\0';
    return 0;
}

/* The namespaces every config has, in this order: "user" (fixed) and two a section may change. */
static const struct config_namespace config_builtin_namespaces[] = {
    {.name = "user",
     .subscribe = CONFIG_SUBSCRIBE_OWNER,
     .publish = CONFIG_PUBLISH_NOBODY,
     .history_size = CONFIG_DEFAULT_HISTORY_SIZE,
     .history_ttl = CONFIG_DEFAULT_HISTORY_TTL},
    {.name = "task",
     .subscribe = CONFIG_SUBSCRIBE_CLAIM,
     .publish = CONFIG_PUBLISH_MEMBERS,
     .history_size = CONFIG_DEFAULT_HISTORY_SIZE,
     .history_ttl = CONFIG_DEFAULT_HISTORY_TTL},
    {.name = "project",
     .subscribe = CONFIG_SUBSCRIBE_CLAIM,
     .publish = CONFIG_PUBLISH_MEMBERS,
     .history_size = CONFIG_DEFAULT_HISTORY_SIZE,
     .history_ttl = CONFIG_DEFAULT_HISTORY_TTL},
};

/* A history key of a [namespace NAME] section (history_size, history_ttl): 1 when name is one
 * (set, or the error in state->err and *rc), 0 when it is not. */
static int
config_namespace_history_key(struct load_state *state, struct config_namespace *ns,
                             const char *name, const char *value, int *rc)
{
    int size = strcmp(name, "history_size") == 0, ttl = strcmp(name, "history_ttl") == 0;
    long long number;
    *rc = 0;
    if (!size && !ttl)
        return 0;
    long long min = size ? 0 : 1, max = size ? CONFIG_HISTORY_SIZE_MAX : CONFIG_HISTORY_TTL_MAX;
    if (parse_integer(value, min, max, &number) != 0) {
        snprintf(state->err, sizeof state->err, "%s must be an integer %lld..%lld", name, min, max);
        *rc = TW_E_CONFIG;
    } else if (size) {
        ns->history_size = (int)number;
    } else {
        ns->history_ttl = (int)number;
    }
    return 1;
}

/* The words of [namespace NAME] subscribe and publish, each to its enum value. */
static const char *const config_subscribe_words[] = {
    [CONFIG_SUBSCRIBE_OWNER] = "owner",
    [CONFIG_SUBSCRIBE_CLAIM] = "claim",
    [CONFIG_SUBSCRIBE_SIGNED_IN] = "signed_in",
};
static const char *const config_publish_words[] = {
    [CONFIG_PUBLISH_NOBODY] = "nobody",
    [CONFIG_PUBLISH_MEMBERS] = "members",
};

#define CONFIG_WORDS(words) (sizeof words / sizeof words[0])

/* The index of value among count words, or -1. */
static int
config_word(const char *const *words, size_t count, const char *value)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(words[i], value) == 0)
            return (int)i;
    return -1;
}

/* One key of a [namespace NAME] section: the namespace, declared by its first key. */
static int
config_namespace_key(struct load_state *state, const char *ns_name, const char *name,
                     const char *value)
{
    struct config *cfg = state->cfg;
    size_t length = strlen(ns_name);
    if (length == 0 || length >= CONFIG_NAMESPACE_MAX ||
        strspn(ns_name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != length) {
        snprintf(state->err, sizeof state->err, "namespace name must be 1..%d of [a-z0-9_-]",
                 CONFIG_NAMESPACE_MAX - 1);
        return TW_E_CONFIG;
    }
    if (strcmp(ns_name, "user") == 0) {
        snprintf(state->err, sizeof state->err,
                 "the user namespace is built in (subscribe = owner, publish = nobody)");
        return TW_E_CONFIG;
    }
    struct config_namespace *ns =
        (struct config_namespace *)config_namespace_find(cfg, ns_name, length);
    if (!ns) {
        if (cfg->namespace_count >= CONFIG_MAX_NAMESPACES) {
            snprintf(state->err, sizeof state->err, "more than %d namespaces",
                     CONFIG_MAX_NAMESPACES);
            return TW_E_CONFIG;
        }
        ns = &cfg->namespaces[cfg->namespace_count++];
        memcpy(ns->name, ns_name, length + 1);
        ns->subscribe = CONFIG_SUBSCRIBE_CLAIM;
        ns->publish = CONFIG_PUBLISH_NOBODY;
        ns->history_size = CONFIG_DEFAULT_HISTORY_SIZE;
        ns->history_ttl = CONFIG_DEFAULT_HISTORY_TTL;
        ns->presence = 0;
        ns->presence_events = 0;
    }
    if (strcmp(name, "presence") == 0 || strcmp(name, "presence_events") == 0) {
        int on = strcmp(value, "true") == 0;
        if (!on && strcmp(value, "false") != 0) {
            snprintf(state->err, sizeof state->err, "%s must be true or false", name);
            return TW_E_CONFIG;
        }
        if (name[8] == '\0') {
            ns->presence = on;
        } else {
            ns->presence_events = on;
            state->events_given[ns - cfg->namespaces] = 1;
        }
        return 0;
    }
    int history_rc;
    if (config_namespace_history_key(state, ns, name, value, &history_rc))
        return history_rc;
    int subscribe = strcmp(name, "subscribe") == 0, publish = strcmp(name, "publish") == 0;
    int word =
        subscribe ? config_word(config_subscribe_words, CONFIG_WORDS(config_subscribe_words), value)
        : publish ? config_word(config_publish_words, CONFIG_WORDS(config_publish_words), value)
                  : -1;
    if (subscribe && word >= 0)
        ns->subscribe = (enum config_subscribe)word;
    if (publish && word >= 0)
        ns->publish = (enum config_publish)word;
    if (word >= 0)
        return 0;
    if (subscribe || publish) {
        snprintf(state->err, sizeof state->err, "%s",
                 subscribe ? "subscribe must be owner, claim or signed_in"
                           : "publish must be nobody or members");
        return TW_E_CONFIG;
    }
    snprintf(state->err, sizeof state->err, "unknown key '%s' in [namespace %s]", name, ns_name);
    return TW_E_CONFIG;
}

/* Append one item (len bytes) of a list key to its field. */
static int
config_list_item(struct load_state *state, const struct config_key *key, void *field,
                 const char *item, size_t len)
{
    if (key->kind == KEY_ORIGINS) {
        char why[256];
        if (origin_list_add(field, item, len, why, sizeof why) == 0)
            return 0;
        snprintf(state->err, sizeof state->err, "%s: %s", key->name, why);
        return TW_E_CONFIG;
    }
    if (key->kind == KEY_ENDPOINTS) {
        struct config_endpoints *list = field;
        return config_text_item(state, key, config_endpoint_valid(item, len),
                                "a tcp:// or ipc:// endpoint", list->endpoints, &list->count,
                                CONFIG_ENDPOINTS_MAX, "endpoints", item, len);
    }
    if (key->kind == KEY_URLS) {
        struct config_urls *urls = field;
        int http = len > 7 && strncmp(item, "http://", 7) == 0;
        int https = len > 8 && strncmp(item, "https://", 8) == 0;
        return config_text_item(state, key, (http || https) && len < CONFIG_TEXT_MAX,
                                "an http:// or https:// URL", urls->urls, &urls->count,
                                CONFIG_URLS_MAX, "URLs", item, len);
    }
    struct config_addresses *list = field;
    char text[INET_ADDRSTRLEN] = "";
    struct in_addr address;
    if (len < sizeof text) {
        memcpy(text, item, len);
        text[len] = '\0';
    }
    if (len >= sizeof text || inet_pton(AF_INET, text, &address) != 1) {
        snprintf(state->err, sizeof state->err, "%s: '%.*s' is not an IPv4 address", key->name,
                 (int)(len < 64 ? len : 64), item);
        return TW_E_CONFIG;
    }
    if (list->count >= CONFIG_ADDRESSES_MAX) {
        snprintf(state->err, sizeof state->err, "%s: at most %d addresses", key->name,
                 CONFIG_ADDRESSES_MAX);
        return TW_E_CONFIG;
    }
    list->addresses[list->count++] = address.s_addr;
    return 0;
}

/* ---- [auth] session_channels ---- */

/* One item of session_channels, "NAME=subscribe,publish" (len bytes): appended to list. */
static int
config_session_channel_item(struct load_state *state, struct config_session_channels *list,
                            const char *item, size_t len)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789:._-*";
    static const struct {
        const char *word;
        unsigned bit;
    } permissions[] = {{"subscribe", CONFIG_GRANT_SUBSCRIBE}, {"publish", CONFIG_GRANT_PUBLISH}};
    const char *equals = memchr(item, '=', len);
    size_t name_len = equals ? (size_t)(equals - item) : len;
    int shown = (int)(len < 64 ? len : 64);
    if (!equals || name_len == 0 || name_len > CONFIG_SESSION_CHANNEL_MAX) {
        snprintf(state->err, sizeof state->err,
                 "session_channels: '%.*s' is not NAME=subscribe,publish (a name of 1..%d bytes)",
                 shown, item, CONFIG_SESSION_CHANNEL_MAX);
        return TW_E_CONFIG;
    }
    for (size_t i = 0; i < name_len; i++) {
        if (!strchr(allowed, item[i])) {
            snprintf(state->err, sizeof state->err,
                     "session_channels: '%.*s' has a character a channel name cannot have "
                     "(letters, digits and : . _ - *)",
                     shown, item);
            return TW_E_CONFIG;
        }
    }
    unsigned bits = 0;
    const char *word = equals + 1, *end = item + len;
    for (;;) {
        const char *comma = memchr(word, ',', (size_t)(end - word));
        size_t word_len = (size_t)((comma ? comma : end) - word);
        size_t i = 0, kinds = sizeof permissions / sizeof permissions[0];
        while (i < kinds && !(strlen(permissions[i].word) == word_len &&
                              memcmp(permissions[i].word, word, word_len) == 0))
            i++;
        if (i == kinds || bits & permissions[i].bit) {
            snprintf(state->err, sizeof state->err,
                     "session_channels: '%.*s' must grant subscribe and/or publish, each once",
                     shown, item);
            return TW_E_CONFIG;
        }
        bits |= permissions[i].bit;
        if (!comma)
            break;
        word = comma + 1;
    }
    for (size_t i = 0; i < list->count; i++) {
        if (strlen(list->entries[i].name) == name_len &&
            memcmp(list->entries[i].name, item, name_len) == 0) {
            snprintf(state->err, sizeof state->err, "session_channels: '%.*s' is given twice",
                     (int)name_len, item);
            return TW_E_CONFIG;
        }
    }
    if (list->count >= CONFIG_SESSION_CHANNELS_MAX) {
        snprintf(state->err, sizeof state->err, "session_channels: at most %d entries",
                 CONFIG_SESSION_CHANNELS_MAX);
        return TW_E_CONFIG;
    }
    struct config_session_channel *entry = &list->entries[list->count++];
    memcpy(entry->name, item, name_len);
    entry->name[name_len] = '\0';
    entry->permissions = bits;
    return 0;
}

/* A line of session_channels: items separated by spaces (a comma belongs to an item's
 * permissions), continued on indented lines; the file's first line replaces the default. */
static int
config_session_channels_set(struct load_state *state, const struct config_key *key,
                            struct config_session_channels *list, const char *value)
{
    size_t index = (size_t)(key - config_keys);
    if (!state->seen[index]) {
        state->seen[index] = 1;
        list->count = 0;
    }
    static const char separators[] = " \t";
    for (const char *item = value + strspn(value, separators); *item;
         item += strspn(item, separators)) {
        size_t len = strcspn(item, separators);
        if (config_session_channel_item(state, list, item, len) != 0)
            return TW_E_CONFIG;
        item += len;
    }
    return 0;
}

size_t
config_session_claims_bytes(const struct config_session_channels *list)
{
    /* {"sub":"<32 hex>","iat":<11 digits>,"exp":<11 digits>} less its closing brace: the
     * longest claims without a channels claim that a session token has until the year 5138. */
    size_t bytes = sizeof "{\"sub\":\"\",\"iat\":,\"exp\":" - 1 + 32 + 11 + 11;
    if (list->count == 0)
        return bytes + 1;
    bytes += sizeof ",\"channels\":{}}" - 1; /* both closing braces */
    for (size_t i = 0; i < list->count; i++) {
        unsigned bits = list->entries[i].permissions;
        /* ,"NAME":[ ... ] with "subscribe" and "publish" inside, a comma between them */
        bytes += (i ? 1 : 0) + strlen(list->entries[i].name) + sizeof "\"\":[]" - 1;
        if (bits & CONFIG_GRANT_SUBSCRIBE)
            bytes += sizeof "\"subscribe\"" - 1;
        if (bits & CONFIG_GRANT_PUBLISH)
            bytes += sizeof "\"publish\"" - 1;
        if (bits == (CONFIG_GRANT_SUBSCRIBE | CONFIG_GRANT_PUBLISH))
            bytes += 1;
    }
    return bytes;
}

/* A list key's value (one line of it): its first line replaces the default list. */
static int
config_list_set(struct load_state *state, const struct config_key *key, void *field,
                const char *value)
{
    size_t index = (size_t)(key - config_keys);
    if (!state->seen[index]) {
        state->seen[index] = 1;
        if (key->kind == KEY_ORIGINS)
            ((struct origin_list *)field)->count = 0;
        else if (key->kind == KEY_URLS)
            ((struct config_urls *)field)->count = 0;
        else if (key->kind == KEY_ENDPOINTS)
            ((struct config_endpoints *)field)->count = 0;
        else
            ((struct config_addresses *)field)->count = 0;
    }
    static const char separators[] = " \t,";
    for (const char *item = value + strspn(value, separators); *item;
         item += strspn(item, separators)) {
        size_t len = strcspn(item, separators);
        if (config_list_item(state, key, field, item, len) != 0)
            return TW_E_CONFIG;
        item += len;
    }
    return 0;
}

static int
config_key_set(struct load_state *state, const struct config_key *key, const char *value)
{
    char *field = (char *)state->cfg + key->offset;
    long long number;
    switch (key->kind) {
    case KEY_INT:
    case KEY_LONG:
        if (parse_integer(value, key->min, key->max, &number) != 0) {
            snprintf(state->err, sizeof state->err, "%s must be an integer %lld..%lld", key->name,
                     key->min, key->max);
            return TW_E_CONFIG;
        }
        if (key->kind == KEY_INT)
            *(int *)(void *)field = (int)number;
        else
            *(long long *)(void *)field = number;
        return 0;
    case KEY_BOOL:
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            snprintf(state->err, sizeof state->err, "%s must be true or false", key->name);
            return TW_E_CONFIG;
        }
        *(int *)(void *)field = strcmp(value, "true") == 0;
        return 0;
    case KEY_TEXT:
        if (copy_text(field, key->size, value) == 0 && *value)
            return 0;
        break;
    case KEY_PATH:
        if (resolve_path(state, field, key->size, value) == 0 && *value)
            return 0;
        break;
    case KEY_PATH_OPTIONAL:
        if (resolve_path(state, field, key->size, value) == 0)
            return 0;
        break;
    case KEY_LISTEN: {
        char host[METRICS_HOST_MAX];
        int port;
        if (*value && metrics_listen_parse(value, host, sizeof host, &port) != 0) {
            snprintf(state->err, sizeof state->err,
                     "%s must be host:port (port 1..65535), or empty for off", key->name);
            return TW_E_CONFIG;
        }
        if (copy_text(field, key->size, value) == 0)
            return 0;
        break;
    }
    case KEY_LOG_LEVEL:
        if (log_level_parse(value, (enum log_level *)(void *)field) == 0)
            return 0;
        snprintf(state->err, sizeof state->err, "level must be error, warn, info or debug");
        return TW_E_CONFIG;
    case KEY_STORE_BACKEND: {
        enum config_store_backend *backend = (enum config_store_backend *)(void *)field;
        if (strcmp(value, "sqlite") == 0)
            *backend = CONFIG_STORE_SQLITE;
        else if (strcmp(value, "postgresql") == 0)
            *backend = CONFIG_STORE_POSTGRESQL;
        else {
            snprintf(state->err, sizeof state->err, "backend must be sqlite or postgresql");
            return TW_E_CONFIG;
        }
        return 0;
    }
    case KEY_ENDPOINT_OPTIONAL:
        if (*value && !config_endpoint_valid(value, strlen(value))) {
            snprintf(state->err, sizeof state->err,
                     "%s must be a tcp:// or ipc:// endpoint, or empty for none", key->name);
            return TW_E_CONFIG;
        }
        if (copy_text(field, key->size, value) == 0)
            return 0;
        break;
    case KEY_ORIGINS:
    case KEY_ADDRESSES:
    case KEY_URLS:
    case KEY_ENDPOINTS:
        return config_list_set(state, key, field, value);
    case KEY_SESSION_CHANNELS:
        return config_session_channels_set(state, key, (struct config_session_channels *)field,
                                           value);
    }
    snprintf(state->err, sizeof state->err, "%s is empty or too long", key->name);
    return TW_E_CONFIG;
}

/* inih handler: nonzero means OK.  inih goes on after an error and reports the first error's
 * line, so once there is one the rest of the file is not looked at (its message is kept). */
static int
config_handler(void *user, const char *section, const char *name, const char *value)
{
    struct load_state *state = user;
    if (state->err[0])
        return 1;
    if (strncmp(section, "type ", 5) == 0)
        return config_type_key(state, section + 5, name, value) == 0;
    if (strncmp(section, "namespace ", 10) == 0)
        return config_namespace_key(state, section + 10, name, value) == 0;
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        const struct config_key *key = &config_keys[i];
        if (strcmp(key->section, section) == 0 && strcmp(key->name, name) == 0) {
            if (key->offset == offsetof(struct config, publish_max))
                state->publish_max_given = 1;
            return config_key_set(state, key, value) == 0;
        }
    }
    snprintf(state->err, sizeof state->err, "unknown key '%s' in section [%s]", name, section);
    return 0;
}

/* inih reader: the file's next line, without its newline.  inih takes the rest of a line longer
 * than its buffer for a line of its own (a value cut short, its tail read as a key), and a NUL
 * byte would end a line early: such a line stops the parse here, as an error of that line. */
static char *
config_read_line(char *line, int size, void *user)
{
    struct load_state *state = user;
    size_t max = (size_t)size - 1 < CONFIG_LINE_MAX ? (size_t)size - 1 : CONFIG_LINE_MAX;
    size_t length = 0;
    int c;
    if (state->err[0])
        return NULL;
    while ((c = getc(state->file)) != EOF && c != '\n') {
        if (c == '\0' || length == max) {
            if (c == '\0')
                snprintf(state->err, sizeof state->err, "NUL byte in the line");
            else
                snprintf(state->err, sizeof state->err, "line longer than %d bytes",
                         CONFIG_LINE_MAX);
            state->bad_line = state->lines + 1;
            return NULL;
        }
        line[length++] = (char)c;
    }
    if (c == EOF && length == 0)
        return NULL;
    line[length] = '\0';
    state->lines++;
    return line;
}

static void
sleep_type_fill(struct config_type *type)
{
    memset(type, 0, sizeof *type);
    strcpy(type->name, "sleep");
    strcpy(type->label, "Sleep (demo)");
    type->kind = CONFIG_TYPE_SLEEP;
    type->param_count = 2;
    type->params[0] = (struct config_param){.name = "duration_ms",
                                            .kind = CONFIG_PARAM_INTEGER,
                                            .min = 0,
                                            .max = 600000,
                                            .has_default = 1,
                                            .default_integer = 3000};
    type->params[1] = (struct config_param){.name = "steps",
                                            .kind = CONFIG_PARAM_INTEGER,
                                            .min = 1,
                                            .max = 1000,
                                            .has_default = 1,
                                            .default_integer = 10};
    config_type_policy_defaults(type);
}

void
config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = LOG_LEVEL_INFO;
    strcpy(cfg->database, "/var/lib/taskwire/taskwire.db");
    cfg->busy_timeout_ms = CONFIG_DEFAULT_BUSY_TIMEOUT_MS;
    cfg->keep_finished = CONFIG_DEFAULT_KEEP_FINISHED;
    strcpy(cfg->secret_file, "/var/lib/taskwire/secret");
    cfg->token_ttl = CONFIG_DEFAULT_TOKEN_TTL;
    cfg->anonymous = CONFIG_DEFAULT_ANONYMOUS;
    cfg->cookie = CONFIG_DEFAULT_COOKIE;
    snprintf(cfg->cookie_name, sizeof cfg->cookie_name, "%s", CONFIG_DEFAULT_COOKIE_NAME);
    snprintf(cfg->cookie_path, sizeof cfg->cookie_path, "%s", CONFIG_DEFAULT_COOKIE_PATH);
    strcpy(cfg->tasks_endpoints.endpoints[0], "tcp://127.0.0.1:5571");
    cfg->tasks_endpoints.count = 1;
    strcpy(cfg->publish_endpoint, "tcp://127.0.0.1:5572");
    strcpy(cfg->events_endpoint, "tcp://127.0.0.1:5573");
    cfg->max_body = CONFIG_DEFAULT_MAX_BODY;
    cfg->threads = CONFIG_DEFAULT_HTTP_THREADS;
    cfg->max_queued = CONFIG_DEFAULT_MAX_QUEUED;
    cfg->submit_rate = CONFIG_DEFAULT_SUBMIT_RATE;
    cfg->submit_burst = CONFIG_DEFAULT_SUBMIT_BURST;
    cfg->concurrency = 0;
    cfg->progress_interval_ms = CONFIG_DEFAULT_PROGRESS_INTERVAL_MS;
    cfg->scan_interval_ms = CONFIG_DEFAULT_SCAN_INTERVAL_MS;
    cfg->heartbeat_ms = CONFIG_DEFAULT_HEARTBEAT_MS;
    cfg->stale_after_ms = CONFIG_DEFAULT_STALE_AFTER_MS;
    cfg->cancel_grace_ms = CONFIG_DEFAULT_CANCEL_GRACE_MS;
    cfg->lease_ms = CONFIG_DEFAULT_LEASE_MS;
    strcpy(cfg->relay_listen, "127.0.0.1");
    cfg->relay_port = CONFIG_DEFAULT_RELAY_PORT;
    cfg->ping_interval = CONFIG_DEFAULT_PING_INTERVAL;
    cfg->ping_timeout = CONFIG_DEFAULT_PING_TIMEOUT;
    cfg->ring = CONFIG_DEFAULT_RING;
    cfg->max_message = CONFIG_DEFAULT_MAX_MESSAGE;
    cfg->relay_io_uring = CONFIG_DEFAULT_RELAY_IO_URING;
    cfg->auth_timeout_ms = CONFIG_DEFAULT_AUTH_TIMEOUT_MS;
    cfg->token_in_query = CONFIG_DEFAULT_TOKEN_IN_QUERY;
    cfg->max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS;
    cfg->max_connections_per_client = CONFIG_DEFAULT_MAX_CONNECTIONS_PER_CLIENT;
    cfg->connect_rate = CONFIG_DEFAULT_CONNECT_RATE;
    cfg->connect_burst = CONFIG_DEFAULT_CONNECT_BURST;
    struct in_addr exempt;
    if (inet_pton(AF_INET, CONFIG_DEFAULT_CONNECT_RATE_EXEMPT, &exempt) == 1)
        cfg->connect_rate_exempt.addresses[cfg->connect_rate_exempt.count++] = exempt.s_addr;
    strcpy(cfg->admin_api_url, "http://127.0.0.1:8080");
    cfg->channels_per_connection = CONFIG_DEFAULT_CHANNELS_PER_CONNECTION;
    cfg->channel_name_max = CONFIG_DEFAULT_CHANNEL_NAME_MAX;
    cfg->channels_per_task = CONFIG_DEFAULT_CHANNELS_PER_TASK;
    cfg->publish_max = CONFIG_DEFAULT_PUBLISH_MAX;
    cfg->publish_rate = CONFIG_DEFAULT_PUBLISH_RATE;
    cfg->publish_burst = CONFIG_DEFAULT_PUBLISH_BURST;
    cfg->presence_ttl_ms = CONFIG_DEFAULT_PRESENCE_TTL_MS;
    cfg->namespace_count = sizeof config_builtin_namespaces / sizeof config_builtin_namespaces[0];
    memcpy(cfg->namespaces, config_builtin_namespaces, sizeof config_builtin_namespaces);
    cfg->type_count = 1;
    sleep_type_fill(&cfg->types[0]);
}

static int
config_check(struct config *cfg, char *err, size_t errlen)
{
    if (cfg->store_backend == CONFIG_STORE_POSTGRESQL && !cfg->store_url[0]) {
        /* Refused here rather than at the first store call, so `-n` says so too. */
        snprintf(err, errlen, "%s: [store] backend = postgresql needs a url", cfg->path);
        return TW_E_CONFIG;
    }
    for (size_t i = 0; i < cfg->type_count; i++) {
        const struct config_type *type = &cfg->types[i];
        if (type->retry_max_ms < type->retry_base_ms) {
            snprintf(err, errlen, "%s: [type %s] retry_max_ms is below retry_base_ms", cfg->path,
                     type->name);
            return TW_E_CONFIG;
        }
    }
    for (size_t i = 1; i < cfg->type_count; i++) {
        struct config_type *type = &cfg->types[i];
        if (type->command[0] == '\0') {
            snprintf(err, errlen, "%s: [type %s] needs a command", cfg->path, type->name);
            return TW_E_CONFIG;
        }
        if (type->label[0] == '\0')
            memcpy(type->label, type->name, sizeof type->name);
    }
    /* Without [admin] relays, the admin API asks the relay this config describes. */
    if (cfg->admin_relays.count == 0 && cfg->relay_metrics_listen[0]) {
        char *url = cfg->admin_relays.urls[0];
        size_t size = sizeof cfg->admin_relays.urls[0];
        if (snprintf(url, size, "http://%.*s", (int)(size - sizeof "http://"),
                     cfg->relay_metrics_listen) > 0)
            cfg->admin_relays.count = 1;
    }
    /* Which of the other key files a program needs depends on its role: curve_load checks. */
    if (cfg->curve && !cfg->curve_secret_file[0]) {
        snprintf(err, errlen, "%s: [zmq] curve = true needs curve_secret_file", cfg->path);
        return TW_E_CONFIG;
    }
    /* RFC 6265: a cookie's name is a token; its Path an absolute path with no ';' or
     * control character, since both go into a Set-Cookie line as they are. */
    size_t name_len = strlen(cfg->cookie_name);
    if (name_len == 0 ||
        strspn(cfg->cookie_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789!#$%&'*+-.^_`|~") != name_len) {
        snprintf(err, errlen,
                 "%s: [auth] cookie_name '%s' must be 1..%d letters, digits or !#$%%&'*+-.^_`|~",
                 cfg->path, cfg->cookie_name, CONFIG_COOKIE_NAME_MAX - 1);
        return TW_E_CONFIG;
    }
    int path_ok = cfg->cookie_path[0] == '/';
    for (const char *c = cfg->cookie_path; path_ok && *c; c++)
        path_ok = *c > ' ' && *c < 127 && *c != ';';
    if (!path_ok) {
        snprintf(err, errlen,
                 "%s: [auth] cookie_path '%s' must start with / and hold no space, ';' or control "
                 "character",
                 cfg->path, cfg->cookie_path);
        return TW_E_CONFIG;
    }
    size_t claims = config_session_claims_bytes(&cfg->session_channels);
    if (claims > CONFIG_SESSION_CLAIMS_MAX) {
        snprintf(err, errlen,
                 "%s: [auth] session_channels make a token's claims %zu bytes long, more than "
                 "the %d a token holds: grant fewer or shorter names (a pattern covers many)",
                 cfg->path, claims, CONFIG_SESSION_CLAIMS_MAX);
        return TW_E_CONFIG;
    }
    if (cfg->tasks_endpoints.count == 0) {
        snprintf(err, errlen, "%s: [zmq] tasks needs at least one endpoint", cfg->path);
        return TW_E_CONFIG;
    }
    /* A browser's publish goes out as a signal of its data and an envelope; relays drop a
     * message over max_message, so the largest allowed must fit. */
    if (cfg->publish_max > 0 && cfg->publish_max + CONFIG_PUBLISH_ENVELOPE > cfg->max_message) {
        snprintf(err, errlen,
                 "%s: [channels] publish_max must leave %d bytes of [relay] max_message for "
                 "the message around the data",
                 cfg->path, CONFIG_PUBLISH_ENVELOPE);
        return TW_E_CONFIG;
    }
    if (cfg->stale_after_ms <= cfg->heartbeat_ms) {
        snprintf(err, errlen, "%s: [worker] stale_after_ms must be above heartbeat_ms", cfg->path);
        return TW_E_CONFIG;
    }
    if (cfg->lease_ms < 2 * cfg->heartbeat_ms) {
        snprintf(err, errlen,
                 "%s: [worker] lease_ms must be at least twice heartbeat_ms (a lease outlives "
                 "one missed renewal)",
                 cfg->path);
        return TW_E_CONFIG;
    }
    return 0;
}

int
config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
    config_defaults(cfg);
    struct load_state *state = calloc(1, sizeof *state);
    if (!state) {
        snprintf(err, errlen, "out of memory");
        return TW_E_NOMEM;
    }
    int rc = TW_E_CONFIG;
    if (copy_text(cfg->path, sizeof cfg->path, path) != 0) {
        snprintf(err, errlen, "config path too long");
        goto out;
    }
    char copy[PATH_MAX];
    if (!realpath(path, copy)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    snprintf(state->dir, sizeof state->dir, "%s", dirname(copy));
    state->cfg = cfg;
    state->file = fopen(path, "re");
    if (!state->file) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    int line = ini_parse_stream(config_read_line, state, config_handler, state);
    fclose(state->file);
    if (line == 0)
        line = state->bad_line;
    if (line < 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    if (line > 0) {
        snprintf(err, errlen, "%s:%d: %s", path, line, state->err[0] ? state->err : "syntax error");
        goto out;
    }
    /* publish_max not given fits max_message (a small max_message set before publish_max
     * existed keeps working; 0 refuses every browser publish as too_large). */
    if (!state->publish_max_given && cfg->publish_max + CONFIG_PUBLISH_ENVELOPE > cfg->max_message)
        cfg->publish_max = cfg->max_message > CONFIG_PUBLISH_ENVELOPE
                               ? cfg->max_message - CONFIG_PUBLISH_ENVELOPE
                               : 0;
    /* presence_events not given follows presence. */
    for (size_t i = 0; i < cfg->namespace_count; i++)
        if (!state->events_given[i])
            cfg->namespaces[i].presence_events = cfg->namespaces[i].presence;
    rc = config_check(cfg, err, errlen);
out:
    free(state);
    return rc;
}

/* 1 when the NUL-terminated candidate is (name, name_len). */
static int
config_name_is(const char *candidate, const char *name, size_t name_len)
{
    return strlen(candidate) == name_len && memcmp(candidate, name, name_len) == 0;
}

const struct config_type *
config_type_find(const struct config *cfg, const char *name, size_t name_len)
{
    for (size_t i = 0; i < cfg->type_count; i++)
        if (config_name_is(cfg->types[i].name, name, name_len))
            return &cfg->types[i];
    return NULL;
}

const struct config_namespace *
config_namespace_find(const struct config *cfg, const char *name, size_t name_len)
{
    for (size_t i = 0; i < cfg->namespace_count; i++)
        if (config_name_is(cfg->namespaces[i].name, name, name_len))
            return &cfg->namespaces[i];
    return NULL;
}
