/* fuzz_config: the configuration file (common/config.c over inih) on arbitrary bytes.
 *
 * Each input is written as taskwire.conf in a scratch directory and read by the real
 * config_load.  A file it refuses must be named in the message; one it accepts must hold only
 * values in their documented ranges, every string terminated. */
#include "fuzz.h"

#include <fcntl.h>

#include "config.h"
#include "errors.h"

static char path[128];
static int fd = -1;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(path, sizeof path, "%s/taskwire.conf", fuzz_scratch("config"));
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    return 0;
}

static int
terminated(const char *text, size_t size)
{
    return memchr(text, '\0', size) != NULL;
}

/* What config.h promises of a loaded config. */
static void
check_config(const struct config *cfg)
{
    FUZZ_CHECK(terminated(cfg->database, sizeof cfg->database) && cfg->database[0]);
    FUZZ_CHECK(terminated(cfg->secret_file, sizeof cfg->secret_file) && cfg->secret_file[0]);
    FUZZ_CHECK(cfg->tasks_endpoints.count >= 1 &&
               cfg->tasks_endpoints.count <= CONFIG_ENDPOINTS_MAX);
    for (size_t i = 0; i < cfg->tasks_endpoints.count; i++)
        FUZZ_CHECK(terminated(cfg->tasks_endpoints.endpoints[i],
                              sizeof cfg->tasks_endpoints.endpoints[i]));
    FUZZ_CHECK(cfg->publish_max == 0 ||
               cfg->publish_max + CONFIG_PUBLISH_ENVELOPE <= cfg->max_message);
    FUZZ_CHECK(terminated(cfg->relay_listen, sizeof cfg->relay_listen));
    FUZZ_CHECK(cfg->token_ttl >= 60 && cfg->max_body >= 1024 && cfg->threads >= 1);
    FUZZ_CHECK(cfg->stale_after_ms > cfg->heartbeat_ms && cfg->lease_ms >= 2 * cfg->heartbeat_ms);
    FUZZ_CHECK(cfg->ring >= 2 && cfg->max_message >= 256 && cfg->relay_port >= 1);
    FUZZ_CHECK(cfg->type_count >= 1 && cfg->type_count <= CONFIG_MAX_TYPES);
    FUZZ_CHECK(strcmp(cfg->types[0].name, "sleep") == 0);
    FUZZ_CHECK(cfg->namespace_count >= 3 && cfg->namespace_count <= CONFIG_MAX_NAMESPACES);
    FUZZ_CHECK(cfg->namespaces[0].history_size == 0); /* user keeps no history */
    for (size_t i = 0; i < cfg->namespace_count; i++)
        FUZZ_CHECK(cfg->namespaces[i].history_size >= 0 &&
                   cfg->namespaces[i].history_size <= CONFIG_HISTORY_SIZE_MAX &&
                   cfg->namespaces[i].history_ttl >= 1 &&
                   cfg->namespaces[i].history_ttl <= CONFIG_HISTORY_TTL_MAX);
    for (size_t i = 0; i < cfg->type_count; i++) {
        const struct config_type *type = &cfg->types[i];
        FUZZ_CHECK(terminated(type->name, sizeof type->name) && type->name[0]);
        FUZZ_CHECK(terminated(type->label, sizeof type->label) && type->label[0]);
        FUZZ_CHECK(config_type_find(cfg, type->name, strlen(type->name)) == type);
        FUZZ_CHECK(type->max_attempts >= 1 && type->retry_max_ms >= type->retry_base_ms);
        FUZZ_CHECK(type->param_count <= CONFIG_MAX_PARAMS);
        if (i > 0)
            FUZZ_CHECK(type->command[0] == '/' && terminated(type->command, sizeof type->command));
        for (size_t j = 0; j < type->param_count; j++) {
            const struct config_param *param = &type->params[j];
            FUZZ_CHECK(terminated(param->name, sizeof param->name) && param->name[0]);
            FUZZ_CHECK(param->min <= param->max);
            if (param->has_default && param->kind == CONFIG_PARAM_INTEGER)
                FUZZ_CHECK(param->default_integer >= param->min &&
                           param->default_integer <= param->max);
            if (param->has_default && param->kind == CONFIG_PARAM_STRING) {
                FUZZ_CHECK(terminated(param->default_string, sizeof param->default_string));
                long long length = (long long)strlen(param->default_string);
                FUZZ_CHECK(length >= param->min && length <= param->max);
            }
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    static struct config cfg; /* 1.3 MB: not on the stack */
    char err[512];
    err[0] = '\0';
    int rc = config_load(&cfg, path, err, sizeof err);
    if (rc == 0) {
        check_config(&cfg);
        /* inih reads at most CONFIG_LINE_MAX bytes of a line: a longer one must be refused, not
         * cut (its value truncated, its rest read as a line of its own). */
        for (const uint8_t *line = data, *end; line < data + size; line = end + 1) {
            end = memchr(line, '\n', (size_t)(data + size - line));
            if (!end)
                end = data + size;
            FUZZ_CHECK((size_t)(end - line) <= CONFIG_LINE_MAX);
        }
    } else {
        FUZZ_CHECK(rc == TW_E_CONFIG);
        FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0);
    }
    return 0;
}
