/* curve.c: `taskwire curve keygen|public`, the key files of [zmq] curve = true (common/curve.h
 * states their format): a new key pair from zmq_curve_keypair, or the public key of a secret
 * key file. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "curve.h"
#include "taskwire.h"

static const char curve_help[] =
    "usage: taskwire curve keygen PATH [--force]\n"
    "       taskwire curve public PATH\n"
    "\n"
    "  keygen  write a new CURVE key pair: the secret key to PATH (mode 0600) and the public\n"
    "          key to PATH.pub; an existing file is left alone unless --force is given\n"
    "  public  print the public key of the secret key file PATH\n"
    "\n"
    "  --force            overwrite PATH and PATH.pub\n"
    "  -c, --config FILE  configuration (not read by these commands)\n"
    "  -h, --help         this help\n";

enum curve_option { OPT_FORCE = 256 };

/* Write key and a newline to path, made with mode (and given it when overwritten).  0, or an
 * exit status after saying why. */
static int
curve_write(struct context *ctx, const char *path, const char *key, mode_t mode, int force)
{
    int fd =
        open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (force ? O_TRUNC : O_EXCL), mode);
    if (fd < 0) {
        context_error(ctx, "%s: %s%s", path, strerror(errno),
                      errno == EEXIST ? " (--force overwrites it)" : "");
        return errno == EEXIST ? CLI_EXIT_REFUSED : CLI_EXIT_CONFIG;
    }
    char line[CURVE_KEY_Z85 + 2];
    int length = snprintf(line, sizeof line, "%s\n", key);
    int ok = fchmod(fd, mode) == 0 && write(fd, line, (size_t)length) == length && fsync(fd) == 0;
    OPENSSL_cleanse(line, sizeof line);
    if (close(fd) != 0)
        ok = 0;
    if (!ok) {
        context_error(ctx, "%s: cannot write: %s", path, strerror(errno));
        return CLI_EXIT_CONFIG;
    }
    return CLI_EXIT_OK;
}

static int
curve_keygen(struct context *ctx, const char *path, int force)
{
    char public_path[PATH_MAX];
    if (snprintf(public_path, sizeof public_path, "%s.pub", path) >= (int)sizeof public_path)
        return context_usage(ctx, "PATH is too long");
    /* Nothing is written when either file would be refused. */
    if (!force && (access(path, F_OK) == 0 || access(public_path, F_OK) == 0)) {
        context_error(ctx, "%s exists (--force overwrites it)",
                      access(path, F_OK) == 0 ? path : public_path);
        return CLI_EXIT_REFUSED;
    }
    char public_key[CURVE_KEY_Z85 + 1], secret_key[CURVE_KEY_Z85 + 1];
    if (zmq_curve_keypair(public_key, secret_key) != 0) {
        context_error(ctx, "no key pair: %s", zmq_strerror(zmq_errno()));
        return CLI_EXIT_CONFIG;
    }
    int status = curve_write(ctx, path, secret_key, 0600, force);
    OPENSSL_cleanse(secret_key, sizeof secret_key);
    if (status == CLI_EXIT_OK)
        status = curve_write(ctx, public_path, public_key, 0644, force);
    if (status == CLI_EXIT_OK)
        printf("%s\n", public_key);
    return status;
}

static int
curve_public(struct context *ctx, const char *path)
{
    char keys[1][CURVE_KEY_Z85 + 1], public_key[CURVE_KEY_Z85 + 1], err[512];
    if (curve_file_read(path, 1, keys, 1, 1, err, sizeof err) != 1) {
        context_error(ctx, "%s", err);
        return CLI_EXIT_CONFIG;
    }
    int rc = zmq_curve_public(public_key, keys[0]);
    OPENSSL_cleanse(keys, sizeof keys);
    if (rc != 0) {
        context_error(ctx, "%s: %s", path, zmq_strerror(zmq_errno()));
        return CLI_EXIT_CONFIG;
    }
    printf("%s\n", public_key);
    return CLI_EXIT_OK;
}

int
curve_main(struct context *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"force", no_argument, NULL, OPT_FORCE},
        CONTEXT_LONG_OPTIONS,
    };
    if (argc < 2)
        return context_usage(ctx, "keygen or public?");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(curve_help, stdout);
        return CLI_EXIT_OK;
    }
    int keygen = strcmp(argv[1], "keygen") == 0;
    if (!keygen && strcmp(argv[1], "public") != 0)
        return context_usage(ctx, "unknown subcommand '%s'", argv[1]);
    ctx->command = keygen ? "curve keygen" : "curve public";
    int option, done, status, force = 0;
    argc--;
    argv++;
    optind = 0;
    while ((option = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        if (option == OPT_FORCE && keygen) {
            force = 1;
            continue;
        }
        if (option == OPT_FORCE)
            return context_usage(ctx, "public takes no --force");
        status = context_common_option(ctx, option, argv, curve_help, &done);
        if (done)
            return status;
    }
    if (optind + 1 != argc)
        return context_usage(ctx, optind >= argc ? "PATH is missing" : "one PATH only");
    return keygen ? curve_keygen(ctx, argv[optind], force) : curve_public(ctx, argv[optind]);
}
