/* fuzz_store.h: a real store file for the harnesses that reach the store, holding a few tasks of
 * one client: FUZZ_TASKS_QUEUED queued, then one cancelled. */
#ifndef TW_TESTS_FUZZ_STORE_H
#define TW_TESTS_FUZZ_STORE_H

#include "fuzz.h"

#include "store.h"
#include "token.h"

#define FUZZ_TASKS 3        /* tasks in the store */
#define FUZZ_TASKS_QUEUED 2 /* the first ones; the last is cancelled */
#define FUZZ_CLIENT "c0ffee00c0ffee00c0ffee00c0ffee00"

/* Open dir/fuzz.db (aborts on failure) and insert the tasks; their ids go to ids. */
static inline struct store *
fuzz_store_open(const char *dir, char ids[FUZZ_TASKS][TOKEN_ID_SIZE])
{
    char path[256], err[256];
    snprintf(path, sizeof path, "%s/fuzz.db", dir);
    struct store_options options = {
        .backend = STORE_BACKEND_SQLITE, .path = path, .busy_timeout_ms = 1000};
    struct store *store = store_new(&options, err, sizeof err);
    if (!store) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    json_t *params = json_pack("{s:i, s:i}", "duration_ms", 10, "steps", 2);
    for (int i = 0; i < FUZZ_TASKS; i++) {
        struct store_submission sub = {.client_id = FUZZ_CLIENT,
                                       .type = "sleep",
                                       .name = "seed",
                                       .params = params,
                                       .max_attempts = 1,
                                       .max_queued = 1000};
        struct store_submission *subs[1] = {&sub};
        if (store_tasks_insert(store, subs, 1) != 0 || sub.rc != 0)
            abort();
        snprintf(ids[i], TOKEN_ID_SIZE, "%s", json_string_value(json_object_get(sub.task, "id")));
        json_decref(sub.task);
        if (i >= FUZZ_TASKS_QUEUED) {
            json_t *task = NULL;
            int now_final = 0;
            if (store_task_cancel(store, ids[i], NULL, &now_final, &task) != 0)
                abort();
            json_decref(task);
        }
    }
    json_decref(params);
    return store;
}

#endif
