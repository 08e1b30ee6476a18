/* Unit tests for common/config.c: the INI file every program reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "errors.h"

static char dir[] = "/tmp/tw-config-XXXXXX";

static int
setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/t.conf", dir);
    unlink(path);
    return rmdir(dir);
}

/* Load text as a config file; the return code of config_load. */
static int
load(struct config *cfg, const char *text, char *err, size_t errlen)
{
    char path[256];
    snprintf(path, sizeof path, "%s/t.conf", dir);
    FILE *file = fopen(path, "w");
    fputs(text, file);
    fclose(file);
    return config_load(cfg, path, err, errlen);
}

/* A config text that must be refused, and what its error must say. */
struct refusal {
    const char *text, *says;
};

static void
assert_refused(const struct refusal *bad, size_t count)
{
    static struct config cfg;
    char err[512];
    for (size_t i = 0; i < count; i++) {
        err[0] = '\0';
        assert_int_equal(load(&cfg, bad[i].text, err, sizeof err), TW_E_CONFIG);
        if (!strstr(err, bad[i].says))
            fail_msg("'%s' said '%s'", bad[i].text, err);
    }
}

/* The shipped defaults and a relative path would not resolve where the operator expects. */
static void
test_defaults_and_relative_paths(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, "[store]\ndatabase = ../db/x.db\n[relay]\nport = 9000\n", err,
                          sizeof err),
                     0);
    char expected[PATH_MAX];
    char *real = realpath(dir, NULL);
    snprintf(expected, sizeof expected, "%s/../db/x.db", real);
    free(real);
    assert_string_equal(cfg.database, expected);
    assert_int_equal(cfg.relay_port, 9000);
    assert_int_equal(cfg.ring, CONFIG_DEFAULT_RING);
    assert_string_equal(cfg.types[0].name, "sleep");
}

/* A typo in the config would be silently ignored instead of reported with its line. */
static void
test_unknown_keys_and_bad_values_name_the_line(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512];
    assert_int_equal(load(&cfg, "[relay]\nport = 80\nprot = 81\n", err, sizeof err), TW_E_CONFIG);
    assert_non_null(strstr(err, ":3: unknown key 'prot'"));
    assert_int_equal(load(&cfg, "[relay]\nport = 99999\n", err, sizeof err), TW_E_CONFIG);
    assert_non_null(strstr(err, ":2: port must be an integer 1..65535"));
    assert_int_equal(load(&cfg, "[relay]\nport = 12abc\n", err, sizeof err), TW_E_CONFIG);
    assert_int_equal(load(&cfg, "[nosuch]\nkey = 1\n", err, sizeof err), TW_E_CONFIG);
    assert_int_equal(load(&cfg, "[type x]\ncommand = /bin/true\nparam.n = float\n", err,
                          sizeof err),
                     TW_E_CONFIG);
    assert_int_equal(load(&cfg, "[type x]\nlabel = no command\n", err, sizeof err), TW_E_CONFIG);
    assert_non_null(strstr(err, "needs a command"));
    /* A switch is true or false, nothing that merely looks like one. */
    assert_int_equal(load(&cfg, "[auth]\nanonymous = yes\n", err, sizeof err), TW_E_CONFIG);
    assert_non_null(strstr(err, ":2: anonymous must be true or false"));
    assert_int_equal(load(&cfg, "[auth]\ntrust_remote_user = 1\n", err, sizeof err), TW_E_CONFIG);
    assert_int_equal(load(&cfg, "[auth]\nanonymous = false\ntrust_remote_user = true\n", err,
                          sizeof err),
                     TW_OK);
    assert_int_equal(cfg.anonymous, 0);
    assert_int_equal(cfg.trust_remote_user, 1);
    /* The relay takes the token from the first message unless told otherwise, within bounds. */
    assert_int_equal(load(&cfg, "[log]\n", err, sizeof err), TW_OK);
    assert_int_equal(cfg.token_in_query, 0);
    assert_int_equal(cfg.auth_timeout_ms, CONFIG_DEFAULT_AUTH_TIMEOUT_MS);
    assert_int_equal(load(&cfg, "[relay]\ntoken_in_query = true\nauth_timeout_ms = 250\n", err,
                          sizeof err),
                     TW_OK);
    assert_int_equal(cfg.token_in_query, 1);
    assert_int_equal(cfg.auth_timeout_ms, 250);
    assert_int_equal(load(&cfg, "[relay]\ntoken_in_query = on\n", err, sizeof err), TW_E_CONFIG);
    assert_non_null(strstr(err, ":2: token_in_query must be true or false"));
    assert_int_equal(load(&cfg, "[relay]\nauth_timeout_ms = 50\n", err, sizeof err), TW_E_CONFIG);
    assert_non_null(strstr(err, ":2: auth_timeout_ms must be an integer 100..600000"));
}

/* A store backend that does not exist, or a PostgreSQL store without a url, would be taken for
 * the SQLite file instead of refused at start; a PostgreSQL store with one would be refused. */
static void
test_store_backend_keys(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, "[store]\nbackend = sqlite\n", err, sizeof err), 0);
    assert_int_equal(cfg.store_backend, CONFIG_STORE_SQLITE);
    assert_int_equal(load(&cfg, "[log]\n", err, sizeof err), 0);
    assert_int_equal(cfg.store_backend, CONFIG_STORE_SQLITE);
    assert_string_equal(cfg.store_url, "");
    assert_int_equal(
        load(&cfg, "[store]\nbackend = postgresql\nurl = host=db dbname=taskwire sslmode=verify-full\n",
             err, sizeof err),
        0);
    assert_int_equal(cfg.store_backend, CONFIG_STORE_POSTGRESQL);
    assert_string_equal(cfg.store_url, "host=db dbname=taskwire sslmode=verify-full");
    static const struct refusal bad[] = {
        {"[store]\nbackend = mysql\n", ":2: backend must be sqlite or postgresql"},
        {"[store]\nbackend = postgresql\n", "backend = postgresql needs a url"},
    };
    assert_refused(bad, sizeof bad / sizeof bad[0]);
}

/* A declared exec type would not appear in the page's form with its parameters. */
static void
test_exec_types_and_param_specs(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg,
                          "[type zip]\nlabel = Zip it\ncommand = /usr/bin/zip\ntimeout_ms = 5000\n"
                          "param.level = integer min=0 max=9 default=6\n"
                          "param.dir = string min=1 max=100\n"
                          "param.fast = boolean default=true\n",
                          err, sizeof err),
                     0);
    const struct config_type *type = config_type_find(&cfg, "zip", 3);
    assert_non_null(type);
    assert_int_equal(type->kind, CONFIG_TYPE_EXEC);
    assert_int_equal(type->timeout_ms, 5000);
    assert_int_equal(type->param_count, 3);
    assert_int_equal(type->params[0].default_integer, 6);
    assert_int_equal(type->params[1].has_default, 0);
    assert_int_equal(type->params[2].default_integer, 1);
    assert_null(config_type_find(&cfg, "zi", 2));
}

/* A type's retry policy would be ignored, or a lease shorter than a missed renewal accepted. */
static void
test_retry_policy_and_lease_keys(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg,
                          "[worker]\nlease_ms = 4000\nheartbeat_ms = 1000\n[http]\nmax_queued = 7\n"
                          "[store]\nkeep_finished = 0\n"
                          "[type sleep]\nconcurrency = 2\non_lost = fail\n"
                          "[type job]\ncommand = /bin/true\nmax_attempts = 5\n"
                          "retry_on = failed, timeout\nretry_base_ms = 10\nretry_max_ms = 20\n",
                          err, sizeof err),
                     0);
    assert_int_equal(cfg.lease_ms, 4000);
    assert_int_equal(cfg.max_queued, 7);
    assert_int_equal(cfg.keep_finished, 0);
    const struct config_type *sleep = config_type_find(&cfg, "sleep", 5);
    assert_int_equal(sleep->concurrency, 2);
    assert_int_equal(sleep->on_lost_fail, 1);
    assert_int_equal(sleep->max_attempts, CONFIG_DEFAULT_MAX_ATTEMPTS);
    const struct config_type *job = config_type_find(&cfg, "job", 3);
    assert_int_equal(job->max_attempts, 5);
    assert_int_equal(job->retry_on, CONFIG_RETRY_FAILED | CONFIG_RETRY_TIMEOUT);
    assert_int_equal(job->retry_base_ms, 10);
    assert_int_equal(job->on_lost_fail, 0);
    static const struct refusal bad[] = {
        {"[worker]\nlease_ms = 1500\nheartbeat_ms = 1000\n", "twice heartbeat_ms"},
        {"[type sleep]\ncommand = /bin/true\n", "built in"},
        {"[type job]\ncommand = /bin/true\nretry_on = sometimes\n", "retry_on"},
        {"[type job]\ncommand = /bin/true\non_lost = maybe\n", "on_lost"},
        {"[type job]\ncommand = /bin/true\nmax_attempts = 0\n", "max_attempts"},
        {"[type job]\ncommand = /bin/true\nretry_base_ms = 50\nretry_max_ms = 10\n",
         "retry_max_ms"},
    };
    assert_refused(bad, sizeof bad / sizeof bad[0]);
}

/* A limit would not take the operator's value, or a bad origin or address would be ignored
 * instead of named with its line. */
static void
test_admin_keys(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    /* Off by default; the API URL is make run's web server. */
    assert_int_equal(load(&cfg, "[admin]\n", err, sizeof err), 0);
    assert_string_equal(cfg.admin_key_file, "");
    assert_string_equal(cfg.admin_api_url, "http://127.0.0.1:8080");
    assert_int_equal(cfg.admin_relays.count, 0);
    assert_int_equal(load(&cfg,
                          "[admin]\nkey_file = admin.key\napi_url = https://ops.example\n"
                          "relays = http://127.0.0.1:9101, http://127.0.0.1:9102\n"
                          "  https://relay.example/\n",
                          err, sizeof err),
                     0);
    char want[300];
    char *real = realpath(dir, NULL);
    snprintf(want, sizeof want, "%s/admin.key", real);
    free(real);
    assert_string_equal(cfg.admin_key_file, want);
    assert_string_equal(cfg.admin_api_url, "https://ops.example");
    assert_int_equal(cfg.admin_relays.count, 3);
    assert_string_equal(cfg.admin_relays.urls[1], "http://127.0.0.1:9102");
    assert_string_equal(cfg.admin_relays.urls[2], "https://relay.example/");
    /* An empty key_file turns it off again. */
    assert_int_equal(load(&cfg, "[admin]\nkey_file =\n", err, sizeof err), 0);
    assert_string_equal(cfg.admin_key_file, "");
    static const struct refusal bad[] = {
        {"[admin]\nrelays = 127.0.0.1:9101\n", ":2: relays: '127.0.0.1:9101' is not an http"},
        {"[admin]\nrelays = ftp://x\n", "is not an http:// or https:// URL"},
        {"[admin]\napi_url =\n", ":2: api_url is empty"},
        {"[admin]\nkey = x\n", "unknown key 'key' in section [admin]"},
        {"[admin]\nrelays = http://a http://b http://c http://d http://e http://f http://g\n"
         "  http://h http://i http://j http://k http://l http://m http://n http://o http://p\n"
         "  http://q\n",
         "relays: at most 16 URLs"},
    };
    assert_refused(bad, sizeof bad / sizeof bad[0]);
}

/* CURVE would be on with no key to use, or a switch typo read as off (plaintext). */
static void
test_curve_keys(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, "[zmq]\n", err, sizeof err), 0);
    assert_int_equal(cfg.curve, 0);
    assert_int_equal(load(&cfg,
                          "[zmq]\ncurve = true\ncurve_secret_file = own.key\n"
                          "curve_server_public_file = /etc/taskwire/pool.pub\n"
                          "curve_clients_file = clients\n",
                          err, sizeof err),
                     0);
    assert_int_equal(cfg.curve, 1);
    assert_non_null(strstr(cfg.curve_secret_file, "/own.key"));
    assert_string_equal(cfg.curve_server_public_file, "/etc/taskwire/pool.pub");
    static const struct refusal bad[] = {
        {"[zmq]\ncurve = yes\n", ":2: curve must be true or false"},
        {"[zmq]\ncurve = true\n", "curve = true needs curve_secret_file"},
        {"[zmq]\ncurve_key = x\n", "unknown key 'curve_key' in section [zmq]"},
    };
    assert_refused(bad, sizeof bad / sizeof bad[0]);
}

/* Without these, a worker host could not reach the relays, or a relay would not bind its
 * ingress (docs/DEPLOY.md "Scaling out"). */
static void
test_relay_ingress_keys(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, "[zmq]\n", err, sizeof err), 0);
    assert_int_equal(cfg.relays.count, 0);
    assert_string_equal(cfg.relay_events_listen, "");
    assert_int_equal(load(&cfg,
                          "[zmq]\nrelays = tcp://10.0.0.7:5574, tcp://10.0.0.8:5574\n"
                          "  ipc:///run/taskwire/ingress\n"
                          "curve_relay_public_file = relay.key.pub\n"
                          "[relay]\nevents_listen = tcp://*:5574\n",
                          err, sizeof err),
                     0);
    assert_int_equal(cfg.relays.count, 3);
    assert_string_equal(cfg.relays.endpoints[1], "tcp://10.0.0.8:5574");
    assert_string_equal(cfg.relays.endpoints[2], "ipc:///run/taskwire/ingress");
    assert_non_null(strstr(cfg.curve_relay_public_file, "/relay.key.pub"));
    assert_string_equal(cfg.relay_events_listen, "tcp://*:5574");
    assert_int_equal(config_endpoint_valid("tcp://", 6), 0);
    assert_int_equal(config_endpoint_valid("tcp://a\x01", 8), 0);
    static const struct refusal bad[] = {
        {"[zmq]\nrelays = 10.0.0.7:5574\n", ":2: relays: '10.0.0.7:5574' is not a tcp://"},
        {"[zmq]\nrelays = inproc://x\n", "is not a tcp:// or ipc:// endpoint"},
        {"[zmq]\nrelays = tcp://a tcp://b tcp://c tcp://d tcp://e tcp://f tcp://g tcp://h\n"
         "  tcp://i tcp://j tcp://k tcp://l tcp://m tcp://n tcp://o tcp://p tcp://q\n",
         "relays: at most 16 endpoints"},
        {"[relay]\nevents_listen = 5574\n", "events_listen must be a tcp:// or ipc:// endpoint"},
    };
    assert_refused(bad, sizeof bad / sizeof bad[0]);
}

static void
test_limit_keys_and_lists(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, "[relay]\nport = 9000\n", err, sizeof err), 0);
    assert_int_equal(cfg.max_connections_per_client, CONFIG_DEFAULT_MAX_CONNECTIONS_PER_CLIENT);
    assert_int_equal(cfg.connect_rate, CONFIG_DEFAULT_CONNECT_RATE);
    assert_int_equal(cfg.connect_burst, CONFIG_DEFAULT_CONNECT_BURST);
    assert_int_equal(cfg.submit_rate, CONFIG_DEFAULT_SUBMIT_RATE);
    assert_int_equal(cfg.submit_burst, CONFIG_DEFAULT_SUBMIT_BURST);
    assert_int_equal(cfg.allowed_origins.count, 0);
    assert_int_equal(cfg.cors_origins.count, 0);
    assert_int_equal(cfg.connect_rate_exempt.count, 1);
    assert_int_equal(cfg.connect_rate_exempt.addresses[0], htonl(0x7f000001));

    assert_int_equal(load(&cfg,
                          "[relay]\nmax_connections_per_client = 4\nconnect_rate = 0\n"
                          "connect_burst = 7\nconnect_rate_exempt = 10.0.0.1, 10.0.0.2\n"
                          "allowed_origins = https://a.example https://b.example:8443\n"
                          "  http://127.0.0.1:8080\n"
                          "[http]\nsubmit_rate = 3\nsubmit_burst = 9\ncors_origins =\n",
                          err, sizeof err),
                     0);
    assert_int_equal(cfg.max_connections_per_client, 4);
    assert_int_equal(cfg.connect_rate, 0);
    assert_int_equal(cfg.connect_burst, 7);
    assert_int_equal(cfg.connect_rate_exempt.count, 2);
    assert_int_equal(cfg.connect_rate_exempt.addresses[1], htonl(0x0a000002));
    assert_int_equal(cfg.allowed_origins.count, 3);
    assert_string_equal(cfg.allowed_origins.origins[2], "http://127.0.0.1:8080");
    assert_int_equal(cfg.cors_origins.count, 0);
    assert_int_equal(cfg.submit_rate, 3);
    assert_int_equal(cfg.submit_burst, 9);
    /* An empty exempt list: every source is limited. */
    assert_int_equal(load(&cfg, "[relay]\nconnect_rate_exempt =\n", err, sizeof err), 0);
    assert_int_equal(cfg.connect_rate_exempt.count, 0);

    static const struct refusal bad[] = {
        {"[relay]\nmax_connections_per_client = 0\n", ":2: max_connections_per_client must"},
        {"[relay]\nconnect_burst = 0\n", ":2: connect_burst must be an integer 1..1000000"},
        {"[http]\nsubmit_rate = -1\n", ":2: submit_rate must"},
        {"[relay]\nconnect_rate_exempt = localhost\n", ":2: connect_rate_exempt: 'localhost'"},
        {"[relay]\nallowed_origins = https://a.example\n  https://b.example/app\n",
         ":3: allowed_origins: 'https://b.example/app' is not an origin"},
        {"[http]\ncors_origins = example.com\n", ":2: cors_origins: 'example.com'"},
    };
    assert_refused(bad, sizeof bad / sizeof bad[0]);
}

/* An operator fixing the line an error names would find another line's problem described. */
static void
test_the_first_error_is_reported_with_its_line(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, "[relay]\nport = 99999\nprot = 81\n", err, sizeof err),
                     TW_E_CONFIG);
    if (!strstr(err, ":2: port must be an integer 1..65535"))
        fail_msg("said '%s'", err);
}

/* A value longer than inih reads of a line would be cut, and the rest of its line read as a line
 * of its own: here a command the operator never wrote as a key (found by fuzz_config). */
static void
test_long_lines_are_refused_not_cut(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "", text[1024];
    /* "label = " and the y's fill a line to where inih cuts it; the rest looks like a key. */
    snprintf(text, sizeof text, "[type a]\nlabel = %.*s command = /bin/evil\n", 191,
             "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
             "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
             "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
    assert_int_equal(load(&cfg, text, err, sizeof err), TW_E_CONFIG);
    if (!strstr(err, ":2: line longer than 199 bytes"))
        fail_msg("said '%s'", err);
    /* A path over the limit names its own line, not one after the end of the file. */
    char path[300];
    memset(path, 'p', sizeof path - 1);
    path[sizeof path - 1] = '\0';
    snprintf(text, sizeof text, "[type a]\ncommand = /%s\n", path);
    assert_int_equal(load(&cfg, text, err, sizeof err), TW_E_CONFIG);
    if (!strstr(err, ":2: line longer than 199 bytes"))
        fail_msg("said '%s'", err);
    /* A comment is a line too: its rest would be read as config. */
    snprintf(text, sizeof text, "; %.*s port = 1\n", 196, path);
    assert_int_equal(load(&cfg, text, err, sizeof err), TW_E_CONFIG);
    /* 199 bytes and a newline, or 199 bytes at the end of the file, are a line. */
    snprintf(text, sizeof text, "[type a]\ncommand = /bin/true\nlabel = %.*s\nlabel = %.*s", 191,
             path, 191, path);
    assert_int_equal(load(&cfg, text, err, sizeof err), 0);
    assert_int_equal(strlen(config_type_find(&cfg, "a", 1)->label), 191);
}

/* [auth] session_channels: a board page's session would get no channels claim, or one a token
 * cannot hold (every session then failing with 500), or a typo granted silently. */
static void
test_session_channels(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, "[auth]\n", err, sizeof err), 0);
    assert_int_equal(cfg.session_channels.count, 0);
    assert_int_equal(load(&cfg,
                          "[auth]\nsession_channels = project:demo=subscribe,publish\n"
                          "  task:*=subscribe user:*=publish\n",
                          err, sizeof err),
                     0);
    assert_int_equal(cfg.session_channels.count, 3);
    assert_string_equal(cfg.session_channels.entries[0].name, "project:demo");
    assert_int_equal(cfg.session_channels.entries[0].permissions,
                     CONFIG_GRANT_SUBSCRIBE | CONFIG_GRANT_PUBLISH);
    assert_string_equal(cfg.session_channels.entries[1].name, "task:*");
    assert_int_equal(cfg.session_channels.entries[1].permissions, CONFIG_GRANT_SUBSCRIBE);
    assert_int_equal(cfg.session_channels.entries[2].permissions, CONFIG_GRANT_PUBLISH);
    /* The bound is the JSON a token of the longest subject and times carries, to the byte. */
    json_t *claim = json_object();
    for (size_t i = 0; i < cfg.session_channels.count; i++) {
        const struct config_session_channel *entry = &cfg.session_channels.entries[i];
        json_t *granted = json_array();
        if (entry->permissions & CONFIG_GRANT_SUBSCRIBE)
            json_array_append_new(granted, json_string("subscribe"));
        if (entry->permissions & CONFIG_GRANT_PUBLISH)
            json_array_append_new(granted, json_string("publish"));
        json_object_set_new(claim, entry->name, granted);
    }
    json_t *claims = json_pack("{s:s, s:I, s:I, s:o}", "sub", "0123456789abcdef0123456789abcdef",
                               "iat", (json_int_t)99999999999LL, "exp",
                               (json_int_t)99999999999LL, "channels", claim);
    char *dumped = json_dumps(claims, JSON_COMPACT);
    assert_int_equal(config_session_claims_bytes(&cfg.session_channels), strlen(dumped));
    free(dumped);
    json_decref(claims);
    /* {"sub":"<32>","iat":N,"exp":N,"channels":{"project:demo":["subscribe","publish"],...}} */
    struct config_session_channels one = {.count = 1};
    strcpy(one.entries[0].name, "project:demo");
    one.entries[0].permissions = CONFIG_GRANT_SUBSCRIBE | CONFIG_GRANT_PUBLISH;
    assert_int_equal(config_session_claims_bytes(&one),
                     strlen("{\"sub\":\"0123456789abcdef0123456789abcdef\",\"iat\":12345678901,"
                            "\"exp\":12345678901,\"channels\":{\"project:demo\":"
                            "[\"subscribe\",\"publish\"]}}"));
    /* Empty: no claim. */
    assert_int_equal(load(&cfg, "[auth]\nsession_channels =\n", err, sizeof err), 0);
    assert_int_equal(cfg.session_channels.count, 0);
    /* Eleven long names fit in no token. */
    char text[2048] = "[auth]\nsession_channels =";
    for (int i = 0; i < 11; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text),
                 "\n  project:a-rather-long-project-name-%02d=subscribe,publish", i);
    strcat(text, "\n");
    assert_int_equal(load(&cfg, text, err, sizeof err), TW_E_CONFIG);
    if (!strstr(err, "more than the 511 a token holds"))
        fail_msg("said '%s'", err);
    const struct refusal bad[] = {
        {"[auth]\nsession_channels = project:demo\n", ":2: session_channels: 'project:demo' is"},
        {"[auth]\nsession_channels = project:demo=read\n", "subscribe and/or publish"},
        {"[auth]\nsession_channels = project:demo=subscribe,subscribe\n", "each once"},
        {"[auth]\nsession_channels = project:demo=subscribe,\n", "subscribe and/or publish"},
        {"[auth]\nsession_channels = =subscribe\n", "is not NAME=subscribe,publish"},
        {"[auth]\nsession_channels = proj/x=subscribe\n", "a character a channel name cannot"},
        {"[auth]\nsession_channels = a:b=publish a:b=subscribe\n", "'a:b' is given twice"},
        {"[auth]\nsession_channels = a:1=publish a:2=publish a:3=publish a:4=publish\n"
         "  a:5=publish a:6=publish a:7=publish a:8=publish a:9=publish b:1=publish\n"
         "  b:2=publish b:3=publish b:4=publish b:5=publish b:6=publish b:7=publish b:8=publish\n",
         ":4: session_channels: at most 16 entries"},
    };
    assert_refused(bad, sizeof bad / sizeof bad[0]);
}

/* Presence on where it was not asked for (or off where it was), a publish bound that cannot
 * fit a relayed message, or a tasks list cut to its first endpoint, would go unnoticed. */
static void
test_publish_presence_and_tasks_keys(void **state)
{
    (void)state;
    static struct config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, "[log]\n", err, sizeof err), 0);
    assert_int_equal(cfg.publish_max, CONFIG_DEFAULT_PUBLISH_MAX);
    assert_int_equal(cfg.publish_rate, CONFIG_DEFAULT_PUBLISH_RATE);
    assert_int_equal(cfg.publish_burst, CONFIG_DEFAULT_PUBLISH_BURST);
    assert_int_equal(cfg.presence_ttl_ms, CONFIG_DEFAULT_PRESENCE_TTL_MS);
    assert_int_equal(cfg.tasks_endpoints.count, 1);
    assert_string_equal(cfg.tasks_endpoints.endpoints[0], "tcp://127.0.0.1:5571");
    for (size_t i = 0; i < cfg.namespace_count; i++)
        assert_int_equal(cfg.namespaces[i].presence, 0);
    assert_int_equal(load(&cfg,
                          "[zmq]\ntasks = tcp://10.0.0.21:5571 tcp://10.0.0.22:5571\n"
                          "  ipc:///run/tw/tasks\n"
                          "[channels]\npublish_max = 1024\npublish_rate = 0\npublish_burst = 3\n"
                          "presence_ttl_ms = 3000\n"
                          "[namespace project]\npresence = true\n"
                          "[namespace task]\npresence = true\npresence_events = false\n"
                          "[namespace lobby]\npresence_events = true\n",
                          err, sizeof err),
                     0);
    assert_int_equal(cfg.tasks_endpoints.count, 3);
    assert_string_equal(cfg.tasks_endpoints.endpoints[2], "ipc:///run/tw/tasks");
    assert_int_equal(cfg.publish_max, 1024);
    assert_int_equal(cfg.publish_rate, 0);
    assert_int_equal(cfg.presence_ttl_ms, 3000);
    const struct config_namespace *project = config_namespace_find(&cfg, "project", 7);
    const struct config_namespace *task = config_namespace_find(&cfg, "task", 4);
    const struct config_namespace *lobby = config_namespace_find(&cfg, "lobby", 5);
    assert_true(project->presence && project->presence_events); /* events follow presence */
    assert_true(task->presence && !task->presence_events);
    assert_true(!lobby->presence && lobby->presence_events);
    assert_int_equal(project->subscribe, CONFIG_SUBSCRIBE_CLAIM); /* the rest kept */
    /* A small max_message without publish_max: publish_max fits it. */
    assert_int_equal(load(&cfg, "[relay]\nmax_message = 1024\n", err, sizeof err), 0);
    assert_int_equal(cfg.publish_max, 1024 - CONFIG_PUBLISH_ENVELOPE);
    assert_int_equal(load(&cfg, "[relay]\nmax_message = 256\n", err, sizeof err), 0);
    assert_int_equal(cfg.publish_max, 0);
    static const struct refusal bad[] = {
        {"[zmq]\ntasks =\n", "[zmq] tasks needs at least one endpoint"},
        {"[zmq]\ntasks = inproc://x\n", "tasks: 'inproc://x' is not a tcp:// or ipc://"},
        {"[channels]\npublish_max = 65536\n", "publish_max must leave 512 bytes"},
        {"[relay]\nmax_message = 1024\n[channels]\npublish_max = 1024\n",
         "publish_max must leave 512 bytes"},
        {"[channels]\npublish_max = 8\n", "publish_max must be an integer 16..65536"},
        {"[channels]\npresence_ttl_ms = 100\n", "presence_ttl_ms must be an integer 3000..600000"},
        {"[channels]\npublish_burst = 0\n", "publish_burst must be an integer 1..1000000"},
        {"[namespace project]\npresence = yes\n", "presence must be true or false"},
        {"[namespace user]\npresence = true\n", "the user namespace is built in"},
    };
    assert_refused(bad, sizeof bad / sizeof bad[0]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_relative_paths),
        cmocka_unit_test(test_unknown_keys_and_bad_values_name_the_line),
        cmocka_unit_test(test_exec_types_and_param_specs),
        cmocka_unit_test(test_retry_policy_and_lease_keys),
        cmocka_unit_test(test_store_backend_keys),
        cmocka_unit_test(test_limit_keys_and_lists),
        cmocka_unit_test(test_admin_keys),
        cmocka_unit_test(test_curve_keys),
        cmocka_unit_test(test_relay_ingress_keys),
        cmocka_unit_test(test_the_first_error_is_reported_with_its_line),
        cmocka_unit_test(test_long_lines_are_refused_not_cut),
        cmocka_unit_test(test_session_channels),
        cmocka_unit_test(test_publish_presence_and_tasks_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
