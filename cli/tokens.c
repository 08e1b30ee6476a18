/* tokens.c: `taskwire token mint|verify`, a client's session token made or checked with the
 * secret of [auth] secret_file, as POST /api/session and the relay do (common/token.c). */
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "errors.h"
#include "taskwire.h"
#include "token.h"

#define TOKEN_TTL_MAX 315360000LL /* seconds a minted token may live: ten years */

static const char token_help[] =
    "usage: taskwire token mint --client ID | --user NAME [--ttl SECONDS]\n"
    "                           [--channel NAME[=PERMISSIONS]]... [--json]\n"
    "       taskwire token verify [TOKEN | -] [--json]\n"
    "\n"
    "  mint    print a session token for client ID (32 hex digits), valid --ttl seconds\n"
    "          (default [auth] token_ttl); --json prints it as POST /api/session does;\n"
    "          --user NAME: for the client id [auth] trust_remote_user gives user NAME;\n"
    "          --channel NAME[=subscribe,publish] (repeatable, at most 16): a channels claim\n"
    "          entry, NAME a channel or a pattern ending in '*', subscribe when no\n"
    "          permission is given\n"
    "  verify  check TOKEN (read from standard input when it is '-' or absent): print its\n"
    "          claims and whether it is valid; exit 1, with the reason on stderr, when not\n"
    "\n"
    "  --secret-file FILE the signing secret (default [auth] secret_file)\n"
    "  -c, --config FILE  configuration (default $TASKWIRE_CONFIG or "
    "/etc/taskwire/taskwire.conf)\n"
    "  -h, --help         this help\n";

enum token_option { OPT_CLIENT = 256, OPT_USER, OPT_TTL, OPT_JSON, OPT_SECRET_FILE, OPT_CHANNEL };

struct token_args {
    const char *client, *user, *secret_file, *token;
    long long ttl; /* 0: [auth] token_ttl */
    int json;
    const char *channels[TOKEN_CHANNELS_MAX]; /* the --channel options, borrowed from argv */
    size_t channel_count;
};

/* Add --channel NAME[=PERMISSIONS] (text) to claim: 0, or -1 when it cannot be one (the
 * claim's form is token_issue_channels' to judge). */
static int
token_channel_add(json_t *claim, const char *text)
{
    const char *equals = strchr(text, '=');
    size_t name_len = equals ? (size_t)(equals - text) : strlen(text);
    char name[TOKEN_CHANNEL_MAX + 1];
    if (name_len == 0 || name_len > TOKEN_CHANNEL_MAX)
        return -1;
    memcpy(name, text, name_len);
    name[name_len] = '\0';
    if (json_object_get(claim, name))
        return -1; /* given twice */
    json_t *granted = json_array();
    const char *rest = equals ? equals + 1 : "subscribe";
    while (granted && *rest) {
        size_t len = strcspn(rest, ",");
        json_array_append_new(granted, json_stringn(rest, len));
        rest += len + (rest[len] == ',');
    }
    return granted && json_object_set_new(claim, name, granted) == 0 ? 0 : -1;
}

/* The channels claim of args' --channel options: a new object (caller frees), or NULL when
 * one of them cannot be one. */
static json_t *
token_channels_claim(const struct token_args *args)
{
    json_t *claim = json_object();
    for (size_t i = 0; claim && i < args->channel_count; i++)
        if (token_channel_add(claim, args->channels[i]) != 0) {
            json_decref(claim);
            return NULL;
        }
    return claim;
}

/* The secret into secret (TOKEN_SECRET_MAX bytes): 0, or an exit status after saying why. */
static int
token_secret(struct context *ctx, const struct token_args *args, unsigned char *secret,
             size_t *secret_len)
{
    const char *path = args->secret_file;
    if (!path) {
        const struct config *cfg;
        int status = context_config(ctx, &cfg);
        if (status != CLI_EXIT_OK)
            return status;
        path = cfg->secret_file;
    }
    char err[512];
    if (token_secret_load(path, 0, secret, secret_len, err, sizeof err) != 0) {
        context_error(ctx, "%s", err);
        return CLI_EXIT_CONFIG;
    }
    return CLI_EXIT_OK;
}

static int
token_mint(struct context *ctx, const struct token_args *args)
{
    if (!args->client == !args->user)
        return context_usage(ctx, "either --client ID or --user NAME is required");
    long long ttl = args->ttl;
    if (!ttl) {
        const struct config *cfg;
        int status = context_config(ctx, &cfg);
        if (status != CLI_EXIT_OK)
            return status;
        ttl = cfg->token_ttl;
    }
    unsigned char secret[TOKEN_SECRET_MAX];
    size_t secret_len = 0;
    int status = token_secret(ctx, args, secret, &secret_len);
    if (status != CLI_EXIT_OK)
        return status;
    char token[TOKEN_MAX], derived[TOKEN_ID_SIZE];
    int64_t now = clock_now_ms() / 1000;
    const char *client = args->user ? derived : args->client;
    int rc =
        args->user ? token_user_id(secret, secret_len, args->user, strlen(args->user), derived) : 0;
    if (rc == TW_E_BAD_REQUEST) {
        OPENSSL_cleanse(secret, sizeof secret);
        return context_usage(ctx, "--user must be " TOKEN_USER_RULE);
    }
    json_t *claim = rc == 0 ? token_channels_claim(args) : NULL;
    if (rc == 0)
        rc = claim ? token_issue_channels(secret, secret_len, client, now, now + ttl, claim, token,
                                          sizeof token)
                   : TW_E_BAD_REQUEST;
    json_decref(claim);
    OPENSSL_cleanse(secret, sizeof secret);
    if (rc == TW_E_BAD_REQUEST)
        return context_usage(ctx,
                             "--channel must be NAME[=subscribe,publish], NAME 1..%d letters, "
                             "digits or : . _ - * (a pattern ends in *), each NAME once",
                             TOKEN_CHANNEL_MAX);
    if (rc != 0) {
        context_error(ctx, "cannot sign the token");
        return CLI_EXIT_CONFIG;
    }
    if (args->json) {
        char expires[CLOCK_ISO8601_SIZE];
        clock_iso8601((now + ttl) * 1000, expires, sizeof expires);
        printf("{\"client_id\":\"%s\",\"token\":\"%s\",\"expires_at\":\"%s\"}\n", client, token,
               expires);
    } else {
        printf("%s\n", token);
    }
    return CLI_EXIT_OK;
}

/* A grant's TOKEN_GRANT_* bits as text: "subscribe,publish", or quoted for JSON. */
static const char *
token_permissions_text(unsigned permissions, int json)
{
    static const char *const texts[2][4] = {
        {"", "subscribe", "publish", "subscribe,publish"},
        {"", "\"subscribe\"", "\"publish\"", "\"subscribe\",\"publish\""},
    };
    return texts[json ? 1 : 0][permissions & 3u];
}

/* One line of standard input (without its newline) into token: its length, or -1. */
static int
token_read_stdin(char token[TOKEN_MAX])
{
    if (!fgets(token, TOKEN_MAX, stdin))
        return -1;
    size_t len = strcspn(token, "\r\n");
    if (token[len] == '\0' && !feof(stdin))
        return -1; /* longer than any token */
    token[len] = '\0';
    return (int)len;
}

static int
token_verify_command(struct context *ctx, const struct token_args *args)
{
    char given[TOKEN_MAX];
    const char *token = args->token;
    if (!token || strcmp(token, "-") == 0) {
        if (token_read_stdin(given) < 0) {
            context_error(ctx, "no token on standard input (one line of at most %d bytes)",
                          TOKEN_MAX - 1);
            return CLI_EXIT_REFUSED;
        }
        token = given;
    }
    /* Surrounding white space (a pasted token) is not part of it. */
    while (*token == ' ' || *token == '\t')
        token++;
    size_t len = strlen(token);
    while (len > 0 && (token[len - 1] == ' ' || token[len - 1] == '\t'))
        len--;
    unsigned char secret[TOKEN_SECRET_MAX];
    size_t secret_len = 0;
    int status = token_secret(ctx, args, secret, &secret_len);
    if (status != CLI_EXIT_OK)
        return status;
    char sub[TOKEN_ID_SIZE], why[128] = "";
    int64_t now = clock_now_ms() / 1000;
    struct token_grants grants;
    int valid = token_verify_grants(secret, secret_len, token, len, now, sub, &grants, why,
                                    sizeof why) == 0;
    OPENSSL_cleanse(secret, sizeof secret);
    /* The claims are shown when they can be trusted: valid, or signed but expired. */
    int64_t iat = 0, exp = 0;
    int show =
        (valid || strcmp(why, "expired") == 0) && token_claims(token, len, sub, &iat, &exp) == 0;
    char issued[CLOCK_ISO8601_SIZE] = "", expires[CLOCK_ISO8601_SIZE] = "";
    if (show) {
        clock_iso8601(iat * 1000, issued, sizeof issued);
        clock_iso8601(exp * 1000, expires, sizeof expires);
    }
    if (args->json) {
        printf("{\"valid\":%s", valid ? "true" : "false");
        if (!valid)
            printf(",\"reason\":\"%s\"", why);
        if (show)
            printf(",\"client_id\":\"%s\",\"issued_at\":\"%s\",\"expires_at\":\"%s\"", sub, issued,
                   expires);
        for (size_t i = 0; i < grants.count; i++) /* names are letters, digits, : . _ - * */
            printf("%s\"%.*s\":[%s]%s", i ? "," : ",\"channels\":{", (int)grants.grants[i].len,
                   grants.grants[i].name, token_permissions_text(grants.grants[i].permissions, 1),
                   i + 1 == grants.count ? "}" : "");
        printf("}\n");
    } else {
        printf("%s\n", valid ? "valid" : "invalid");
        if (show)
            printf("client_id   %s\nissued_at   %s\nexpires_at  %s (%s%lld s%s)\n", sub, issued,
                   expires, exp > now ? "in " : "", (long long)(exp > now ? exp - now : now - exp),
                   exp > now ? "" : " ago");
        for (size_t i = 0; i < grants.count; i++)
            printf("channel     %.*s %s\n", (int)grants.grants[i].len, grants.grants[i].name,
                   token_permissions_text(grants.grants[i].permissions, 0));
    }
    if (!valid) {
        context_error(ctx, "invalid token: %s", why);
        return CLI_EXIT_REFUSED;
    }
    return CLI_EXIT_OK;
}

int
token_main(struct context *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"client", required_argument, NULL, OPT_CLIENT},
        {"user", required_argument, NULL, OPT_USER},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"json", no_argument, NULL, OPT_JSON},
        {"secret-file", required_argument, NULL, OPT_SECRET_FILE},
        {"channel", required_argument, NULL, OPT_CHANNEL},
        CONTEXT_LONG_OPTIONS,
    };
    if (argc < 2)
        return context_usage(ctx, "mint or verify?");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(token_help, stdout);
        return CLI_EXIT_OK;
    }
    int mint = strcmp(argv[1], "mint") == 0;
    if (!mint && strcmp(argv[1], "verify") != 0)
        return context_usage(ctx, "unknown subcommand '%s'", argv[1]);
    ctx->command = mint ? "token mint" : "token verify";
    struct token_args args = {0};
    int option, done, status;
    argc--;
    argv++;
    optind = 0;
    while ((option = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (option) {
        case OPT_CLIENT:
            if (!mint || !context_is_id(optarg))
                return context_usage(ctx, mint ? "--client must be a client id (32 hex digits)"
                                               : "verify takes no --client");
            args.client = optarg;
            break;
        case OPT_USER:
            if (!mint)
                return context_usage(ctx, "verify takes no --user");
            args.user = optarg;
            break;
        case OPT_TTL:
            if (!mint)
                return context_usage(ctx, "verify takes no --ttl");
            if (context_integer(optarg, 1, TOKEN_TTL_MAX, &args.ttl) != 0)
                return context_usage(ctx, "--ttl must be seconds, 1..%lld", TOKEN_TTL_MAX);
            break;
        case OPT_JSON:
            args.json = 1;
            break;
        case OPT_SECRET_FILE:
            args.secret_file = optarg;
            break;
        case OPT_CHANNEL:
            if (!mint)
                return context_usage(ctx, "verify takes no --channel");
            if (args.channel_count == TOKEN_CHANNELS_MAX)
                return context_usage(ctx, "at most %d --channel options", TOKEN_CHANNELS_MAX);
            args.channels[args.channel_count++] = optarg;
            break;
        default:
            status = context_common_option(ctx, option, argv, token_help, &done);
            if (done)
                return status;
        }
    }
    if (mint && optind < argc)
        return context_usage(ctx, "unexpected argument '%s'", argv[optind]);
    if (!mint && optind + 1 < argc)
        return context_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
    if (!mint && optind < argc)
        args.token = argv[optind];
    return mint ? token_mint(ctx, &args) : token_verify_command(ctx, &args);
}
