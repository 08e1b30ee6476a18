/* api.h: a client of the REST API's key-holders' endpoints (the admin API, /api/admin/, and the
 * publish API, POST /api/publish; docs/PROTOCOL.md) through libcurl.
 *
 * The base URL is --url, else [admin] api_url; the key is the first line of --key-file, else
 * of [admin] key_file (the caller names [channels] publish_key_file for publishing), sent as
 * "Authorization: Bearer KEY" (never printed).  A reply's body is
 * read into memory up to API_BODY_MAX bytes (a longer one is an error); a call takes at most
 * API_TIMEOUT_S seconds, API_CONNECT_TIMEOUT_S of them to connect.  Redirects are not followed.
 *
 * Errors become exit statuses (enum cli_exit) once, here, with the API's own code and message
 * on stderr: a 401 or 403 is CLI_EXIT_CONFIG (the key is wrong), any other 4xx
 * CLI_EXIT_REFUSED, a 5xx (the store is down, ...) or no answer CLI_EXIT_UNREACHABLE.
 */
#ifndef TW_CLI_API_H
#define TW_CLI_API_H

#include <jansson.h>

#include "taskwire.h"

#define API_BODY_MAX (64 << 20)  /* bytes of one reply (500 tasks with large params fit) */
#define API_TIMEOUT_S 30L        /* seconds a whole call may take */
#define API_CONNECT_TIMEOUT_S 5L /* seconds to connect */
#define API_URL_MAX 4096         /* bytes of a request's URL */

struct api;

/* A client for url (NULL: [admin] api_url) with the key in key_file (NULL: [admin] key_file).
 * Returns CLI_EXIT_OK and *api (caller owns; api_destroy), or an exit status after saying why. */
int api_new(struct context *ctx, const char *url, const char *key_file, struct api **api);

/* NULL-safe; nulls *api. */
void api_destroy(struct api **api);

/* method ("GET", "POST", "DELETE") on path (from "/api/admin/", with its query string already
 * escaped).  On a 2xx answer: CLI_EXIT_OK and *body the parsed JSON (caller owns; json_decref;
 * NULL for a 204).  Otherwise an exit status, the error said on stderr. */
int api_call(struct api *api, const char *method, const char *path, json_t **body);

/* As api_call, a POST of request (JSON text, borrowed) to path. */
int api_post(struct api *api, const char *path, const char *request, json_t **body);

/* What a command that calls the API and takes no options of its own is given: --url, --key-file
 * (NULL when absent: api_new's defaults) and --json. */
struct api_options {
    const char *url, *key_file;
    int json;
};

/* Parse argv's options into *options (the common ones too, context_common_option's way, with
 * help for --help): 0 with *done clear to go on, or an exit status with *done set. */
int api_options_parse(struct context *ctx, int argc, char **argv, const char *help,
                      struct api_options *options, int *done);

/* value escaped for a URL's query (caller owns; curl_free), or NULL without memory. */
char *api_escape(struct api *api, const char *value);

#endif
