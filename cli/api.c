/* api.c: the admin REST API over libcurl (see api.h). */
#include "api.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adminkey.h"

struct api {
    struct context *ctx;
    CURL *curl;
    struct curl_slist *headers; /* Authorization and Content-Type */
    char base[API_URL_MAX];     /* the base URL without its trailing slashes */
    char *body;                 /* the reply being read */
    size_t body_len, body_cap;
    int too_large; /* the reply passed API_BODY_MAX */
};

int
api_new(struct context *ctx, const char *url, const char *key_file, struct api **out)
{
    *out = NULL;
    if (!url || !key_file) {
        const struct config *cfg;
        int status = context_config(ctx, &cfg);
        if (status != CLI_EXIT_OK)
            return status;
        if (!url)
            url = cfg->admin_api_url;
        if (!key_file)
            key_file = cfg->admin_key_file;
        if (!*key_file) {
            context_error(ctx,
                          "%s: [admin] key_file is not set (the admin API is off); "
                          "give --key-file",
                          cfg->path);
            return CLI_EXIT_CONFIG;
        }
    }
    size_t url_len = strlen(url);
    while (url_len > 0 && url[url_len - 1] == '/')
        url_len--;
    if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        url_len + 256 >= API_URL_MAX) {
        context_error(ctx, "'%s' is not an http:// or https:// URL", url);
        return CLI_EXIT_USAGE;
    }
    char key[ADMINKEY_MAX];
    const char *why = "";
    if (adminkey_read(key_file, key, &why) != 0) {
        context_error(ctx, "%s: cannot read the key: %s", key_file, why);
        return CLI_EXIT_CONFIG;
    }
    int status = CLI_EXIT_CONFIG;
    char header[ADMINKEY_MAX + 32];
    struct api *api = calloc(1, sizeof *api);
    if (!api)
        goto out;
    api->ctx = ctx;
    memcpy(api->base, url, url_len);
    api->base[url_len] = '\0';
    snprintf(header, sizeof header, "Authorization: Bearer %s", key);
    struct curl_slist *with_key = curl_slist_append(NULL, header);
    api->headers = with_key ? curl_slist_append(with_key, "Content-Type: application/json") : NULL;
    if (!api->headers)
        curl_slist_free_all(with_key);
    api->curl = curl_easy_init();
    if (!api->headers || !api->curl)
        goto out;
    *out = api;
    api = NULL;
    status = CLI_EXIT_OK;
out:
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(header, sizeof header);
    if (status != CLI_EXIT_OK)
        context_error(ctx, "cannot set up libcurl");
    api_destroy(&api);
    return status;
}

void
api_destroy(struct api **api)
{
    if (!*api)
        return;
    curl_easy_cleanup((*api)->curl);
    curl_slist_free_all((*api)->headers);
    free((*api)->body);
    free(*api);
    *api = NULL;
}

char *
api_escape(struct api *api, const char *value)
{
    return curl_easy_escape(api->curl, value, 0);
}

static size_t
api_receive(char *data, size_t size, size_t count, void *user)
{
    struct api *api = user;
    size_t len = size * count;
    if (len > API_BODY_MAX - api->body_len) {
        api->too_large = 1;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    if (api->body_len + len + 1 > api->body_cap) {
        size_t cap = api->body_cap ? api->body_cap : 16384;
        while (cap < api->body_len + len + 1)
            cap *= 2;
        char *grown = realloc(api->body, cap);
        if (!grown)
            return 0;
        api->body = grown;
        api->body_cap = cap;
    }
    memcpy(api->body + api->body_len, data, len);
    api->body_len += len;
    api->body[api->body_len] = '\0';
    return len;
}

/* The exit status of an error answer, its code and message said on stderr. */
static int
api_refused(struct api *api, long http, json_t *body)
{
    const char *code = NULL, *message = NULL;
    json_unpack(body, "{s:{s:s, s?s}}", "error", "code", &code, "message", &message);
    if (code)
        context_error(api->ctx, "%s (HTTP %ld): %s", code, http, message ? message : "");
    else
        context_error(api->ctx, "the API answered HTTP %ld", http);
    if (http == 401 || http == 403) {
        context_error(api->ctx, "the API refused the key: check the key file ([admin] key_file, "
                                "[channels] publish_key_file, or --key-file) against the "
                                "handler's");
        return CLI_EXIT_CONFIG;
    }
    return http >= 500 ? CLI_EXIT_UNREACHABLE : CLI_EXIT_REFUSED;
}

/* method on path, with request (JSON text) as a POST's body: api_call's contract. */
static int
api_request(struct api *api, const char *method, const char *path, const char *request,
            json_t **body)
{
    *body = NULL;
    char url[API_URL_MAX];
    if ((size_t)snprintf(url, sizeof url, "%s%s", api->base, path) >= sizeof url) {
        context_error(api->ctx, "the request's URL is too long");
        return CLI_EXIT_USAGE;
    }
    char curl_error[CURL_ERROR_SIZE] = "";
    CURL *curl = api->curl;
    curl_easy_reset(curl);
    api->body_len = 0;
    api->too_large = 0;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, api->headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, api_receive);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, api);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, API_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, API_CONNECT_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "taskwire");
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(request));
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        if (api->too_large)
            context_error(api->ctx, "%s: the reply is over %d bytes", url, API_BODY_MAX);
        else
            context_error(api->ctx, "%s: %s", api->base,
                          curl_error[0] ? curl_error : curl_easy_strerror(rc));
        return CLI_EXIT_UNREACHABLE;
    }
    long http = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
    json_error_t json_err;
    json_t *parsed = api->body_len ? json_loadb(api->body, api->body_len, 0, &json_err) : NULL;
    if (http < 200 || http > 299) {
        int status = api_refused(api, http, parsed);
        json_decref(parsed);
        return status;
    }
    if (!parsed && http != 204) {
        context_error(api->ctx, "%s: HTTP %ld without a JSON body: is this taskwire's API?", url,
                      http);
        return CLI_EXIT_UNREACHABLE;
    }
    *body = parsed;
    return CLI_EXIT_OK;
}

int
api_call(struct api *api, const char *method, const char *path, json_t **body)
{
    return api_request(api, method, path, "", body);
}

int
api_post(struct api *api, const char *path, const char *request, json_t **body)
{
    return api_request(api, "POST", path, request, body);
}

enum api_option { API_OPT_URL = 256, API_OPT_KEY_FILE, API_OPT_JSON };

int
api_options_parse(struct context *ctx, int argc, char **argv, const char *help,
                  struct api_options *options, int *done)
{
    static const struct option long_options[] = {
        {"url", required_argument, NULL, API_OPT_URL},
        {"key-file", required_argument, NULL, API_OPT_KEY_FILE},
        {"json", no_argument, NULL, API_OPT_JSON},
        CONTEXT_LONG_OPTIONS,
    };
    int option, status;
    *options = (struct api_options){0};
    *done = 0;
    while ((option = getopt_long(argc, argv, ":c:h", long_options, NULL)) != -1) {
        switch (option) {
        case API_OPT_URL:
            options->url = optarg;
            break;
        case API_OPT_KEY_FILE:
            options->key_file = optarg;
            break;
        case API_OPT_JSON:
            options->json = 1;
            break;
        default:
            status = context_common_option(ctx, option, argv, help, done);
            if (*done)
                return status;
        }
    }
    return CLI_EXIT_OK;
}
