/* fuzz_rest: one HTTP request through the FastCGI handler's real path (fcgi/request.c,
 * router.c, tasks.c, reply.c, common/tasktype.c), as a web server hands it over.
 *
 * The first byte sets flags; the rest is fields separated by newlines: method, request URI
 * (path and query), content type, Authorization, Idempotency-Key, Origin, the web server's
 * authenticated user, and the body (the rest).
 *   flags & 3: 0 no Authorization, 1 "Bearer <a valid token>" (the fuzzer cannot sign), 2 the
 *              Authorization field as given, 3 "Bearer " and that field;
 *   flags & 4: send the Idempotency-Key field;  flags & 8: no CONTENT_LENGTH;
 *   flags & 16: a CONTENT_LENGTH of half the body;  flags & 32: the URI as SCRIPT_NAME and
 *              PATH_INFO (CGI style) instead of REQUEST_URI;
 *   flags & 64: with flags & 3 == 1 on a GET, the admin key instead of the token (the admin
 *              API's writes are the store calls the client's routes reach, so they are left
 *              out: every run sees the same store);
 *   flags & 128: [auth] trust_remote_user on for this request.
 * A non-empty Origin field is sent as Origin ([http] cors_origins lists one origin), and on an
 * OPTIONS request the content type field as Access-Control-Request-Method; a non-empty user
 * field is sent as REMOTE_USER.
 * The request's variables are a FastCGI environment and its body and reply are fcgi2 streams
 * on memory.  The app is the real one (app_new: a real store holding three tasks of the valid
 * token's client, a secret file, a PUSH socket with no peer) with the built-in sleep type and
 * an exec type with an integer, a string and a boolean parameter, and two namespaces with
 * history (room: signed_in, so the valid token reads its empty history; project: a claim).  A submission that passes
 * every check is answered as one over [http] max_queued (429), so no run stores a task and
 * every run sees the same store.  What must hold: exactly one reply, a known status below 500
 * (or health's 503: no worker runs here) with its Content-Length equal to its body, and that
 * body a JSON object ({"error":{"code","message"}} for an error). */
#include "fuzz_store.h"

#include "clock.h"
#include "errors.h"
#include "fcgi/admin.h"
#include "fcgi/app.h"
#include "fcgi/reply.h"
#include "fcgi/request.h"
#include "fcgi/router.h"
#include "fcgi/tasks.h"

#define OUT_MAX (1 << 20) /* bytes of one reply; more is a finding */

static const char config_text[] = "[type report]\n"
                                  "command = /bin/true\n"
                                  "param.pages = integer min=1 max=100\n"
                                  "param.title = string min=0 max=64 default=untitled\n"
                                  "param.draft = boolean default=false\n"
                                  "[http]\n"
                                  "cors_origins = https://app.example\n"
                                  "[namespace room]\n"
                                  "subscribe = signed_in\n"
                                  "history_size = 10\n"
                                  "[namespace project]\n"
                                  "history_size = 5\n";
static const char admin_key[] = "00112233445566778899aabbccddeeff"
                                "00112233445566778899aabbccddeeff";

static struct config cfg;
static struct app *app;
static char valid_token[TOKEN_MAX];

static unsigned char out_bytes[OUT_MAX];

/* fcgi2 calls these when a memory stream is used up: the body has ended; the reply is too big. */
static void
stream_in_end(FCGX_Stream *stream)
{
    stream->isClosed = 1;
}

static void
stream_out_full(FCGX_Stream *stream, int do_close)
{
    (void)stream;
    (void)do_close;
    FUZZ_CHECK(!"a reply over OUT_MAX bytes");
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup(NULL);
    const char *dir = fuzz_scratch("rest");
    char ids[FUZZ_TASKS][TOKEN_ID_SIZE], path[256], err[512];
    struct store *store = fuzz_store_open(dir, ids);
    store_destroy(&store);
    snprintf(path, sizeof path, "%s/taskwire.conf", dir);
    FILE *file = fopen(path, "w");
    if (!file || fputs(config_text, file) < 0 || fclose(file) != 0 ||
        config_load(&cfg, path, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    snprintf(cfg.database, sizeof cfg.database, "%s/fuzz.db", dir);
    snprintf(cfg.secret_file, sizeof cfg.secret_file, "%s/secret", dir);
    snprintf(cfg.tasks_endpoints.endpoints[0], sizeof cfg.tasks_endpoints.endpoints[0],
             "inproc://fuzz-rest-tasks");
    cfg.tasks_endpoints.count = 1;
    snprintf(cfg.admin_key_file, sizeof cfg.admin_key_file, "%s/admin.key", dir);
    file = fopen(cfg.admin_key_file, "w");
    if (!file || fprintf(file, "%s\n", admin_key) < 0 || fclose(file) != 0)
        abort();
    cfg.max_body = 4096;
    app = app_new(&cfg, NULL, NULL, NULL, err, sizeof err);
    if (!app) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    int64_t now = clock_now_ms() / 1000;
    if (token_issue(app->secret, app->secret_len, FUZZ_CLIENT, now, now + 10 * 365 * 86400,
                    valid_token, sizeof valid_token) != 0)
        abort();
    return 0;
}

/* "NAME=value" for the environment (caller frees). */
static char *
variable(const char *name, const char *value)
{
    char *text;
    if (asprintf(&text, "%s=%s", name, value) < 0)
        abort();
    return text;
}

/* The reply is "Status: NNN Reason\r\n", headers, "\r\n", and a body of Content-Length bytes. */
static void
check_reply(const char *reply, size_t length)
{
    FUZZ_CHECK(length > 0 && memchr(reply, '\0', length) == NULL);
    int status = 0;
    FUZZ_CHECK(sscanf(reply, "Status: %d ", &status) == 1);
    FUZZ_CHECK(status >= 200 && status <= 503 && status != 500);
    const char *head_end = memmem(reply, length, "\r\n\r\n", 4);
    FUZZ_CHECK(head_end != NULL);
    const char *body = head_end + 4;
    size_t body_len = length - (size_t)(body - reply);
    if (status == 204) {
        FUZZ_CHECK(body_len == 0);
        return;
    }
    const char *stated = memmem(reply, (size_t)(head_end - reply), "Content-Length: ", 16);
    FUZZ_CHECK(stated != NULL);
    FUZZ_CHECK(strtoul(stated + 16, NULL, 10) == body_len);
    json_error_t error;
    json_t *json = json_loadb(body, body_len, 0, &error);
    FUZZ_CHECK(json_is_object(json));
    /* No worker runs here, so health is degraded: the one 503 expected. */
    if (status == 503)
        FUZZ_CHECK(json_is_string(json_object_get(json, "pool")));
    else if (status >= 400) {
        json_t *fault = json_object_get(json, "error");
        FUZZ_CHECK(json_is_string(json_object_get(fault, "code")));
        FUZZ_CHECK(json_is_string(json_object_get(fault, "message")));
    }
    json_decref(json);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    uint8_t flags = fuzz_byte(&in);
    char *method = fuzz_field_string(&in, '\n');
    char *uri = fuzz_field_string(&in, '\n');
    char *content_type = fuzz_field_string(&in, '\n');
    char *authorization = fuzz_field_string(&in, '\n');
    char *key = fuzz_field_string(&in, '\n');
    char *origin = fuzz_field_string(&in, '\n');
    char *user = fuzz_field_string(&in, '\n');
    unsigned char *body = malloc(in.size + 1); /* a copy, so the stream owns writable bytes */
    if (!body)
        abort();
    memcpy(body, in.data, in.size);
    size_t body_len = in.size;

    char *envp[16];
    int n = 0;
    envp[n++] = variable("REQUEST_METHOD", method);
    if (flags & 32) {
        char *question = strchr(uri, '?');
        if (question)
            *question = '\0';
        envp[n++] = variable("SCRIPT_NAME", "");
        envp[n++] = variable("PATH_INFO", uri);
        envp[n++] = variable("QUERY_STRING", question ? question + 1 : "");
    } else {
        char *question = strchr(uri, '?');
        envp[n++] = variable("REQUEST_URI", uri);
        envp[n++] = variable("QUERY_STRING", question ? question + 1 : "");
    }
    envp[n++] = variable("CONTENT_TYPE", content_type);
    switch (flags & 3) {
    case 1: {
        char bearer[TOKEN_MAX + 8];
        int admin = (flags & 64) && strcmp(method, "GET") == 0;
        snprintf(bearer, sizeof bearer, "Bearer %s", admin ? admin_key : valid_token);
        envp[n++] = variable("HTTP_AUTHORIZATION", bearer);
        break;
    }
    case 2:
        envp[n++] = variable("HTTP_AUTHORIZATION", authorization);
        break;
    case 3: {
        char *bearer = variable("Bearer", authorization); /* "Bearer=..." with ' ' for '=' */
        bearer[6] = ' ';
        envp[n++] = variable("HTTP_AUTHORIZATION", bearer);
        free(bearer);
        break;
    }
    }
    if (flags & 4)
        envp[n++] = variable("HTTP_IDEMPOTENCY_KEY", key);
    if (origin[0])
        envp[n++] = variable("HTTP_ORIGIN", origin);
    if (origin[0] && strcmp(method, "OPTIONS") == 0)
        envp[n++] = variable("HTTP_ACCESS_CONTROL_REQUEST_METHOD", content_type);
    if (user[0])
        envp[n++] = variable("REMOTE_USER", user);
    cfg.trust_remote_user = (flags & 128) != 0;
    if (!(flags & 8)) {
        char length[32];
        snprintf(length, sizeof length, "%zu", flags & 16 ? body_len / 2 : body_len);
        envp[n++] = variable("CONTENT_LENGTH", length);
    }
    envp[n] = NULL;

    FCGX_Stream body_stream = {.rdNext = body,
                               .wrNext = body + body_len,
                               .stop = body + body_len,
                               .stopUnget = body,
                               .isReader = 1,
                               .fillBuffProc = stream_in_end};
    FCGX_Stream reply_stream = {.rdNext = out_bytes,
                                .wrNext = out_bytes,
                                .stop = out_bytes + OUT_MAX,
                                .emptyBuffProc = stream_out_full};
    FCGX_Request fcgx = {.in = &body_stream, .out = &reply_stream, .envp = envp};

    /* As acceptors.c serves a request; a submission that passed its checks is answered as
     * refused rather than inserted, so the store does not grow with the run. */
    struct request req;
    app_batch_open(app);
    if (request_init(&req, &fcgx) != 0)
        reply_error(&req, TW_E_NOT_FOUND, "path too long");
    else
        router_dispatch(app, &req);
    app_batch_refuse(app, TW_E_TOO_MANY_TASKS);
    check_reply((const char *)out_bytes, (size_t)(reply_stream.wrNext - out_bytes));

    for (int i = 0; i < n; i++)
        free(envp[i]);
    free(body);
    free(method);
    free(uri);
    free(content_type);
    free(authorization);
    free(key);
    free(origin);
    free(user);
    return 0;
}
