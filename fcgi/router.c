/* router.c: match the request path against the endpoint table. */
#include "router.h"

#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "cors.h"
#include "errors.h"
#include "history.h"
#include "presence.h"
#include "publish.h"
#include "reply.h"
#include "tasks.h"

struct endpoint {
    const char *method;
    const char *pattern;
    void (*handler)(struct app *, const struct request *, const char *);
};

static const struct endpoint endpoints[] = {
    {"POST", "/api/session", tasks_session},
    {"GET", "/api/health", tasks_health},
    {"GET", "/api/task-types", tasks_types},
    {"POST", "/api/tasks", tasks_create},
    {"GET", "/api/tasks", tasks_list},
    {"GET", "/api/tasks/{id}", tasks_get},
    {"POST", "/api/tasks/{id}/cancel", tasks_cancel},
    {"POST", "/api/tasks/{id}/retry", tasks_retry},
    {"DELETE", "/api/tasks/{id}", tasks_delete},
    {"POST", "/api/publish", publish_post},
    {"GET", "/api/channels/{id}/history", history_get},
    {"GET", "/api/channels/{id}/presence", presence_get},
    {"GET", "/api/admin/tasks", admin_tasks_list},
    {"GET", "/api/admin/tasks/{id}", admin_task_get},
    {"POST", "/api/admin/tasks/{id}/cancel", admin_task_cancel},
    {"POST", "/api/admin/tasks/{id}/retry", admin_task_retry},
    {"DELETE", "/api/admin/tasks/{id}", admin_task_delete},
    {"GET", "/api/admin/status", admin_status},
    {"GET", "/api/admin/stats", admin_stats},
};

#define ROUTER_ADMIN_PREFIX "/api/admin/"

/* 1 when path matches pattern; the {id} segment, if any, is copied into id. */
static int
endpoint_match(const char *pattern, const char *path, char id[ROUTER_ID_MAX])
{
    id[0] = '\0';
    while (*pattern && *path) {
        if (strncmp(pattern, "{id}", 4) == 0) {
            size_t length = strcspn(path, "/");
            if (length == 0 || length >= ROUTER_ID_MAX)
                return 0;
            memcpy(id, path, length);
            id[length] = '\0';
            pattern += 4;
            path += length;
        } else if (*pattern++ != *path++) {
            return 0;
        }
    }
    /* A trailing slash is the same resource. */
    return *pattern == '\0' && (*path == '\0' || strcmp(path, "/") == 0);
}

void
router_dispatch(struct app *app, struct request *req)
{
    char id[ROUTER_ID_MAX];
    char allow[64] = "";
    cors_prepare(app->cfg, req);
    /* With [admin] key_file unset there is no admin API at all, whatever the method. */
    if (!app->cfg->admin_key_file[0] &&
        strncmp(req->path, ROUTER_ADMIN_PREFIX, strlen(ROUTER_ADMIN_PREFIX)) == 0) {
        reply_error(req, TW_E_NOT_FOUND, "no such route");
        return;
    }
    for (size_t i = 0; i < sizeof endpoints / sizeof endpoints[0]; i++) {
        if (!endpoint_match(endpoints[i].pattern, req->path, id))
            continue;
        if (strcmp(endpoints[i].method, req->method) == 0) {
            endpoints[i].handler(app, req, id);
            return;
        }
        if (!strstr(allow, endpoints[i].method)) {
            size_t used = strlen(allow);
            snprintf(allow + used, sizeof allow - used, "%s%s", used ? ", " : "",
                     endpoints[i].method);
        }
    }
    if (allow[0] == '\0') {
        reply_error(req, TW_E_NOT_FOUND, "no such route");
        return;
    }
    if (cors_is_preflight(app->cfg, req)) {
        cors_preflight(req, allow);
        return;
    }
    char headers[128];
    snprintf(headers, sizeof headers, "Allow: %s\r\n", allow);
    char message[128];
    snprintf(message, sizeof message, "use %s on this resource", allow);
    reply_error_with(req, TW_E_METHOD, message, headers);
}
