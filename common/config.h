/* config.h: the taskwire configuration file (INI, read with inih), shared by all programs.
 *
 * Loaded once at start, validated completely (unknown sections and keys are errors that name
 * the file, line and key; lines over CONFIG_LINE_MAX bytes too), then read-only: programs pass
 * `const struct config *`.  Relative paths in the file are resolved against the directory that
 * holds the file.  Defaults and limits are the CONFIG_* constants below; docs/CONFIG.md lists every
 * key.
 *
 * Task types: "sleep" is built in; each `[type NAME]` section declares an exec type with up to
 * CONFIG_MAX_PARAMS parameters (`param.NAME = integer min=1 max=10 default=3`,
 * `string max=200 default=/usr/share/doc`, `boolean default=false`).  At most CONFIG_MAX_TYPES
 * types; one more is a config error.
 *
 * Channel namespaces (common/channel.h): "user", "task" and "project" are built in; each
 * `[namespace NAME]` section sets `subscribe` (owner, claim, signed_in) and `publish` (nobody,
 * members) of a built-in one (but "user", which is fixed) or declares another, up to
 * CONFIG_MAX_NAMESPACES in all.  `history_size` (0..CONFIG_HISTORY_SIZE_MAX, 0: none) and
 * `history_ttl` (seconds, 1..CONFIG_HISTORY_TTL_MAX) say how much of a channel's published
 * messages the store keeps for recovery by offset.
 *
 * `[auth] session_channels` (`project:demo=subscribe,publish task:*=subscribe`) is the channels
 * claim every token POST /api/session issues carries: at most CONFIG_SESSION_CHANNELS_MAX
 * entries, together no longer than a token's claims may be (CONFIG_SESSION_CLAIMS_MAX).
 */
#ifndef TW_COMMON_CONFIG_H
#define TW_COMMON_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "origin.h"

#define CONFIG_MAX_TYPES 32           /* task types, the built-in sleep included */
#define CONFIG_MAX_PARAMS 16          /* parameters per task type */
#define CONFIG_NAME_MAX 32            /* type and parameter names, NUL included */
#define CONFIG_TEXT_MAX 256           /* labels, string defaults, endpoints */
#define CONFIG_STORE_URL_MAX 1024     /* bytes of [store] url, NUL included */
#define CONFIG_STRING_PARAM_MAX 65536 /* longest string parameter value a type may allow */
#define CONFIG_ADDRESSES_MAX 16       /* addresses in one address list */
#define CONFIG_LINE_MAX 199           /* bytes of a line of the file (inih's, less its NUL) */
#define CONFIG_URLS_MAX 16            /* URLs in one URL list ([admin] relays) */
#define CONFIG_ENDPOINTS_MAX 16       /* ZeroMQ endpoints in one list ([zmq] relays) */
#define CONFIG_MAX_NAMESPACES 16      /* channel namespaces, the three built-in ones included */
#define CONFIG_NAMESPACE_MAX 17       /* bytes of a namespace name, NUL included */

#define CONFIG_DEFAULT_TOKEN_TTL 86400          /* seconds a session token lives */
#define CONFIG_DEFAULT_MAX_BODY 65536           /* bytes of a request body */
#define CONFIG_DEFAULT_HTTP_THREADS 2           /* FastCGI threads of one handler process */
#define CONFIG_DEFAULT_BUSY_TIMEOUT_MS 5000     /* SQLite busy timeout */
#define CONFIG_DEFAULT_PROGRESS_INTERVAL_MS 100 /* progress coalescing window per task */
#define CONFIG_DEFAULT_SCAN_INTERVAL_MS 1000    /* worker looks for queued tasks this often */
#define CONFIG_DEFAULT_HEARTBEAT_MS 1000        /* worker heartbeat period */
#define CONFIG_DEFAULT_STALE_AFTER_MS 5000      /* a worker silent this long is dead */
#define CONFIG_DEFAULT_CANCEL_GRACE_MS 2000     /* SIGTERM to SIGKILL for exec tasks */
#define CONFIG_DEFAULT_EXEC_TIMEOUT_MS 600000   /* exec type timeout when none is given */
#define CONFIG_DEFAULT_LEASE_MS 10000           /* a claim's lease, renewed by every heartbeat */
#define CONFIG_DEFAULT_MAX_QUEUED 1000          /* queued tasks per client before 429 */
#define CONFIG_DEFAULT_SUBMIT_RATE 50       /* submissions a second per client, after the burst */
#define CONFIG_DEFAULT_SUBMIT_BURST 200     /* submissions per client at once */
#define CONFIG_DEFAULT_KEEP_FINISHED 604800 /* seconds a finished task is kept (7 days) */
#define CONFIG_DEFAULT_MAX_ATTEMPTS 3       /* attempts of a task, the first included */
#define CONFIG_DEFAULT_RETRY_BASE_MS 1000   /* backoff of the first retry (full jitter) */
#define CONFIG_DEFAULT_RETRY_MAX_MS 600000  /* longest backoff between attempts */
#define CONFIG_DEFAULT_ANONYMOUS 1          /* POST /api/session makes anonymous ids */
#define CONFIG_DEFAULT_COOKIE 1             /* the session's token also as an HttpOnly cookie */
#define CONFIG_DEFAULT_COOKIE_NAME "taskwire_token"
#define CONFIG_DEFAULT_COOKIE_PATH "/ws" /* the relay's path, where browsers send the cookie */
#define CONFIG_COOKIE_NAME_MAX 64
#define CONFIG_COOKIE_PATH_MAX 256
#define CONFIG_DEFAULT_RELAY_PORT 8081
#define CONFIG_DEFAULT_PING_INTERVAL 20       /* seconds idle before a WebSocket ping */
#define CONFIG_DEFAULT_PING_TIMEOUT 10        /* seconds more before a silent peer is dropped */
#define CONFIG_DEFAULT_RING 256               /* messages kept per client id in the relay */
#define CONFIG_DEFAULT_MAX_MESSAGE 65536      /* bytes of one relayed message */
#define CONFIG_DEFAULT_MAX_CONNECTIONS 100000 /* relay connections per process */
#define CONFIG_DEFAULT_MAX_CONNECTIONS_PER_CLIENT 32 /* a client id's connections per process */
#define CONFIG_DEFAULT_CONNECT_RATE 100   /* new connections a second per source address */
#define CONFIG_DEFAULT_CONNECT_BURST 1000 /* new connections per source address at once */
#define CONFIG_DEFAULT_CONNECT_RATE_EXEMPT "127.0.0.1" /* the local web server proxying /ws */
#define CONFIG_DEFAULT_RELAY_IO_URING 1                /* relay writes batched through io_uring */
#define CONFIG_DEFAULT_AUTH_TIMEOUT_MS 5000 /* a new connection's time to send its auth message */
#define CONFIG_DEFAULT_TOKEN_IN_QUERY 0     /* ?token= in the /ws URL is ignored */
#define CONFIG_DEFAULT_CHANNELS_PER_CONNECTION                                                     \
    16                                     /* channels a connection subscribes beyond its own */
#define CONFIG_DEFAULT_CHANNEL_NAME_MAX 64 /* bytes of a channel name */
#define CONFIG_DEFAULT_CHANNELS_PER_TASK 8 /* channels a task may be submitted with */
#define CONFIG_CHANNEL_NAME_LIMIT 64 /* [channels] max_name at most (the relay's topic bound) */
#define CONFIG_CHANNELS_PER_TASK_LIMIT 16 /* [channels] max_per_task at most */
/* Browser publish and presence ([channels], [namespace NAME] presence). */
#define CONFIG_DEFAULT_PUBLISH_MAX 4096      /* bytes of a browser publish's data */
#define CONFIG_DEFAULT_PUBLISH_RATE 10       /* browser publishes a second per connection */
#define CONFIG_DEFAULT_PUBLISH_BURST 20      /* ... at once before the rate applies */
#define CONFIG_DEFAULT_PRESENCE_TTL_MS 15000 /* a relay's presence rows live this unrenewed */
#define CONFIG_PUBLISH_ENVELOPE 512 /* bytes a signal adds to its data: max_message keeps room */

/* Channel history ([namespace NAME] history_size, history_ttl; docs/PROTOCOL.md). */
#define CONFIG_DEFAULT_HISTORY_SIZE 0  /* messages kept per channel: none */
#define CONFIG_HISTORY_SIZE_MAX 10000  /* history_size at most */
#define CONFIG_DEFAULT_HISTORY_TTL 300 /* seconds a message of a channel's history is kept */
#define CONFIG_HISTORY_TTL_MAX 2592000 /* history_ttl at most (30 days) */
/* [auth] session_channels: the channels claim every session token gets. */
#define CONFIG_SESSION_CHANNELS_MAX 16 /* entries (a token's channels claim holds 16) */
#define CONFIG_SESSION_CHANNEL_MAX 64  /* bytes of one name or pattern */
#define CONFIG_SESSION_CLAIMS_MAX 511  /* bytes of a session token's claims, JSON (token.c's) */
#define CONFIG_GRANT_SUBSCRIBE 1u      /* an entry's permission bits: "subscribe" ... */
#define CONFIG_GRANT_PUBLISH 2u        /* ... and "publish" (token.h's TOKEN_GRANT_* values) */

/* http:// or https:// base URLs ([admin] relays). */
struct config_urls {
    size_t count;
    char urls[CONFIG_URLS_MAX][CONFIG_TEXT_MAX];
};

/* tcp:// or ipc:// ZeroMQ endpoints ([zmq] relays). */
struct config_endpoints {
    size_t count;
    char endpoints[CONFIG_ENDPOINTS_MAX][CONFIG_TEXT_MAX];
};

/* IPv4 addresses, in network byte order. */
struct config_addresses {
    size_t count;
    uint32_t addresses[CONFIG_ADDRESSES_MAX];
};

enum config_param_kind { CONFIG_PARAM_INTEGER, CONFIG_PARAM_STRING, CONFIG_PARAM_BOOLEAN };

struct config_param {
    char name[CONFIG_NAME_MAX];
    enum config_param_kind kind;
    long long min, max; /* integer range; string length range */
    int has_default;
    long long default_integer; /* integer and boolean default */
    char default_string[CONFIG_TEXT_MAX];
};

enum config_type_kind { CONFIG_TYPE_SLEEP, CONFIG_TYPE_EXEC };

/* Why an attempt ended, as [type] retry_on names them (bits of retry_on). */
enum config_retry_reason {
    CONFIG_RETRY_LOST = 1,    /* its worker died or lost its lease */
    CONFIG_RETRY_FAILED = 2,  /* the task reported failure */
    CONFIG_RETRY_TIMEOUT = 4, /* it ran past timeout_ms */
};
#define CONFIG_DEFAULT_RETRY_ON CONFIG_RETRY_LOST

struct config_type {
    char name[CONFIG_NAME_MAX];
    char label[CONFIG_TEXT_MAX];
    enum config_type_kind kind;
    char command[PATH_MAX];  /* exec: absolute path of the program */
    long long timeout_ms;    /* exec: wall-clock limit */
    int max_attempts;        /* attempts at most, the first included */
    unsigned retry_on;       /* enum config_retry_reason bits that earn another attempt */
    int on_lost_fail;        /* 1: a task whose worker was lost fails (on_lost = fail) */
    long long retry_base_ms; /* backoff of the first retry; doubles per attempt */
    long long retry_max_ms;  /* longest backoff */
    int concurrency;         /* running at most, across every worker; 0: no limit */
    size_t param_count;
    struct config_param params[CONFIG_MAX_PARAMS];
};

/* Who may subscribe to a namespace's channels ([namespace NAME] subscribe). */
enum config_subscribe {
    CONFIG_SUBSCRIBE_OWNER,    /* the name after the colon is the connection's client id */
    CONFIG_SUBSCRIBE_CLAIM,    /* the token's channels claim grants "subscribe" on it */
    CONFIG_SUBSCRIBE_SIGNED_IN /* any authenticated connection */
};

/* Who may publish to a namespace's channels from a browser ([namespace NAME] publish). */
enum config_publish {
    CONFIG_PUBLISH_NOBODY, /* only servers (POST /api/publish, the ZeroMQ publish endpoint) */
    CONFIG_PUBLISH_MEMBERS /* those the subscribe rule admits (a claim: with "publish") */
};

struct config_namespace {
    char name[CONFIG_NAMESPACE_MAX];
    enum config_subscribe subscribe;
    enum config_publish publish;
    int history_size;    /* messages of POST /api/publish kept per channel; 0: no history */
    int history_ttl;     /* seconds each of them is kept */
    int presence;        /* 1: the relays count who is in its channels (presence = true) */
    int presence_events; /* 1: joins and leaves are published (presence_events; default:
                            what presence says) */
};

/* One entry of [auth] session_channels: a channel name or pattern and the CONFIG_GRANT_* bits
 * every session token is granted there. */
struct config_session_channel {
    char name[CONFIG_SESSION_CHANNEL_MAX + 1];
    unsigned permissions;
};

/* [auth] session_channels: count entries, in the order of the file. */
struct config_session_channels {
    size_t count;
    struct config_session_channel entries[CONFIG_SESSION_CHANNELS_MAX];
};

/* [store] backend: where the tasks live. */
enum config_store_backend {
    CONFIG_STORE_SQLITE,    /* [store] database, a file of this host */
    CONFIG_STORE_POSTGRESQL /* [store] url, a libpq connection string (needed) */
};

struct config {
    char path[PATH_MAX]; /* the file this came from */
    enum log_level log_level;

    /* [store] */
    enum config_store_backend store_backend;
    char store_url[CONFIG_STORE_URL_MAX]; /* libpq connection string (backend postgresql) */
    char database[PATH_MAX];
    int busy_timeout_ms;
    long long keep_finished; /* seconds a finished task is kept; 0: for ever */

    /* [auth] */
    char secret_file[PATH_MAX];
    long long token_ttl;   /* seconds */
    int trust_remote_user; /* 1: POST /api/session names the web server's REMOTE_USER */
    int anonymous;         /* 1: POST /api/session without a trusted user makes a random id */
    struct config_session_channels session_channels; /* every session's channels claim */
    int cookie; /* 1: POST /api/session sets the token as a cookie; the relay takes it on
                   /ws?auth=cookie */
    char cookie_name[CONFIG_COOKIE_NAME_MAX];
    char cookie_path[CONFIG_COOKIE_PATH_MAX];

    /* [zmq] */
    struct config_endpoints tasks_endpoints; /* worker binds PULL on each; handlers and relays
                                                connect PUSH to every one */
    char publish_endpoint[CONFIG_TEXT_MAX];  /* worker binds XSUB; any PUB may connect */
    char events_endpoint[CONFIG_TEXT_MAX];   /* worker binds XPUB; relays and taps connect SUB */
    struct config_endpoints relays;          /* relays' events_listen the worker connects to */

    /* [zmq] CURVE (common/curve.h) */
    int curve;                               /* 1: CURVE on every tcp:// socket */
    char curve_secret_file[PATH_MAX];        /* this program's secret key (Z85) */
    char curve_server_public_file[PATH_MAX]; /* the pool's public key (connecting programs) */
    char curve_clients_file[PATH_MAX];       /* public keys a binding program allows */
    char curve_relay_public_file[PATH_MAX];  /* the relays' public key (worker, with relays) */

    /* [http] */
    long long max_body;
    int threads;                     /* FastCGI threads of a handler process */
    int max_queued;                  /* queued tasks of one client before 429 */
    int submit_rate;                 /* submissions a second per client id; 0: no limit */
    int submit_burst;                /* submissions per client id at once */
    struct origin_list cors_origins; /* origins the REST API answers with CORS; empty: off */

    /* [worker] */
    int concurrency; /* 0 in the file means the number of cores */
    int progress_interval_ms;
    int scan_interval_ms;
    int heartbeat_ms;
    int stale_after_ms;
    int cancel_grace_ms;
    int lease_ms;                                /* a claim's lease; the heartbeat renews it */
    char worker_metrics_listen[CONFIG_TEXT_MAX]; /* host:port of GET /metrics; empty: off */

    /* [relay] */
    char relay_listen[CONFIG_TEXT_MAX];
    int relay_port;
    int ping_interval;
    int ping_timeout;
    int ring;
    int max_message;
    int max_connections;
    int max_connections_per_client;
    int connect_rate; /* new connections a second per source address; 0: off */
    int connect_burst;
    struct config_addresses connect_rate_exempt; /* sources connect_rate does not apply to */
    struct origin_list allowed_origins;          /* WebSocket handshakes' origins; empty: any */
    int relay_io_uring;  /* 1: batch the per-message writes with io_uring where the kernel can */
    int auth_timeout_ms; /* a connection without its auth message by then is closed (4003) */
    int token_in_query;  /* 1: a ?token= in the /ws URL authenticates at the handshake */
    char relay_metrics_listen[CONFIG_TEXT_MAX]; /* host:port of /metrics, /status; empty: off */
    char relay_events_listen[CONFIG_TEXT_MAX];  /* the SUB binds here (workers connect in);
                                                   empty: it connects to [zmq] events */

    /* [admin] */
    char admin_key_file[PATH_MAX];       /* the admin key's file; "": the admin API is off */
    char admin_api_url[CONFIG_TEXT_MAX]; /* where operator tools reach the admin API */
    struct config_urls admin_relays;     /* the relays' metrics (or main) ports' base URLs */

    /* [channels] */
    int channels_per_connection;     /* beyond the connection's own; one more is refused */
    int channel_name_max;            /* bytes of a channel name */
    int channels_per_task;           /* channels one task may be submitted with */
    char publish_key_file[PATH_MAX]; /* POST /api/publish's key; "": the publish API is off */
    int publish_max;                 /* bytes of a browser publish's data */
    int publish_rate;                /* browser publishes a second per connection; 0: no limit */
    int publish_burst;               /* browser publishes per connection at once */
    int presence_ttl_ms;             /* a relay's presence rows expire this long unrenewed */

    /* channel namespaces: [0] is always the built-in "user" */
    size_t namespace_count;
    struct config_namespace namespaces[CONFIG_MAX_NAMESPACES];

    /* task types: [0] is always the built-in "sleep" */
    size_t type_count;
    struct config_type types[CONFIG_MAX_TYPES];
};

/* Fill cfg with every default (and the built-in sleep type), then read the file at path over
 * them.  Returns 0, or TW_E_CONFIG with "file:line: what" in err.  cfg is caller storage. */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);

/* The namespace called (name, name_len), or NULL.  Borrowed from cfg. */
const struct config_namespace *config_namespace_find(const struct config *cfg, const char *name,
                                                     size_t name_len);

/* The bytes of the JSON claims (compact, as token.c writes them) of a session token granted
 * list, for the longest subject and times a token has: config_load refuses a list over
 * CONFIG_SESSION_CLAIMS_MAX. */
size_t config_session_claims_bytes(const struct config_session_channels *list);

/* Fill cfg with defaults only (no file), as config_load does before reading. */
void config_defaults(struct config *cfg);

/* 1 when text (length bytes) is a tcp:// or ipc:// endpoint of printable ASCII without spaces
 * or commas, shorter than CONFIG_TEXT_MAX, else 0. */
int config_endpoint_valid(const char *text, size_t length);

/* The type called name (length name_len), or NULL.  Borrowed from cfg. */
const struct config_type *config_type_find(const struct config *cfg, const char *name,
                                           size_t name_len);

#endif
