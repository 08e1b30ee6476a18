/* tasktype.h: the task types a deployment offers, as seen by clients.
 *
 * Validates a submission's params against its type's spec (config_type) and describes the
 * types for GET /api/task-types.  Unknown params are rejected; missing ones take their
 * defaults; a missing param without a default is an error.
 */
#ifndef TW_COMMON_TASKTYPE_H
#define TW_COMMON_TASKTYPE_H

#include <jansson.h>
#include <stddef.h>

#include "config.h"

/* Check params (a JSON object, or NULL for none) against type.  On success returns 0 and sets
 * *normalized to a new object with every parameter present (caller owns; json_decref).
 * On failure returns TW_E_BAD_PARAMS with a message naming the parameter in err
 * ("steps must be an integer 1..1000"). */
int tasktype_validate(const struct config_type *type, json_t *params, json_t **normalized,
                      char *err, size_t errlen);

/* A new JSON array describing every type in cfg: [{"name","label","params":[{"name","type",
 * "min","max","default"}]}].  Caller owns; json_decref.  NULL on allocation failure. */
json_t *tasktype_describe(const struct config *cfg);

#endif
