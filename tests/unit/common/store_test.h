/* store_test.h: what the store's unit tests share (test_store.c, on every backend, and
 * test_store_sqlite.c): reading fields of a task, submitting and claiming in one call. */
#ifndef TW_TESTS_UNIT_COMMON_STORE_TEST_H
#define TW_TESTS_UNIT_COMMON_STORE_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h> /* after what it needs */

#include "errors.h"
#include "store.h"

static inline const char *
text(json_t *task, const char *key)
{
    return json_string_value(json_object_get(task, key));
}

static inline long long
number(json_t *task, const char *key)
{
    return json_integer_value(json_object_get(task, key));
}

/* Insert one submission as given (client, type and params filled in when missing); its rc. */
static inline int
submit(struct store *store, struct store_submission *sub)
{
    json_t *params = json_pack("{s:i}", "steps", 3);
    if (!sub->type)
        sub->type = "sleep";
    if (!sub->name)
        sub->name = "demo";
    sub->params = params;
    if (!sub->max_attempts)
        sub->max_attempts = 3;
    struct store_submission *one = sub;
    assert_int_equal(store_tasks_insert(store, &one, 1), 0);
    json_decref(params);
    sub->params = NULL;
    return sub->rc;
}

static inline json_t *
insert(struct store *store, const char *client)
{
    struct store_submission sub = {.client_id = client};
    assert_int_equal(submit(store, &sub), 0);
    assert_non_null(sub.task);
    return sub.task;
}

/* Claim at most one task for worker with a lease of lease_ms: 0 with *task, or TW_E_NOT_FOUND.
 * *announce (when given) says whether its queued event was still to be published. */
static inline int
claim_for(struct store *store, const char *worker, int64_t lease_ms, const char *limits,
          json_t **task, int *announce)
{
    int first = 0;
    json_t *claimed = NULL;
    int64_t waited = -1;
    int n =
        store_tasks_claim(store, worker, "host-a", lease_ms, limits, 1, &claimed, &first, &waited);
    if (announce)
        *announce = first;
    if (n != 1)
        return n == 0 ? TW_E_NOT_FOUND : n;
    /* A claim gives the whole task as it left it: what a read of it gives. */
    assert_true(waited >= 0);
    assert_string_equal(text(claimed, "status"), "running");
    assert_int_equal(store_task_get(store, text(claimed, "id"), NULL, task), 0);
    assert_true(json_equal(*task, claimed));
    json_decref(claimed);
    return 0;
}

static inline int
claim(struct store *store, const char *worker, json_t **task)
{
    return claim_for(store, worker, 10000, NULL, task, NULL);
}

/* A sleep task of client with params (borrowed), and an Idempotency-Key if key. */
static inline struct store_submission
submission(const char *client, json_t *params, const char *key)
{
    return (struct store_submission){.client_id = client,
                                     .type = "sleep",
                                     .name = "",
                                     .params = params,
                                     .max_attempts = 1,
                                     .idempotency_key = key,
                                     .request_hash = key ? "h" : NULL};
}

/* How many tasks client has (up to 10). */
static inline size_t
tasks_of(struct store *store, const char *client)
{
    json_t *list = NULL;
    assert_int_equal(store_task_list(store, client, NULL, NULL, 10, &list), 0);
    size_t count = json_array_size(list);
    json_decref(list);
    return count;
}

/* The sum of key over the rows of a stats window. */
static inline long long
column_sum(json_t *rows, const char *key)
{
    long long sum = 0;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) sum += number(row, key);
    return sum;
}

#endif
