/* tasktype.c: check a submission's params against its type and describe the types. */
#include "tasktype.h"

#include <stdio.h>
#include <string.h>

#include "errors.h"

static int
param_fail(const struct config_param *param, char *err, size_t errlen)
{
    switch (param->kind) {
    case CONFIG_PARAM_INTEGER:
        snprintf(err, errlen, "%s must be an integer %lld..%lld", param->name, param->min,
                 param->max);
        break;
    case CONFIG_PARAM_STRING:
        snprintf(err, errlen, "%s must be a string of %lld..%lld bytes", param->name, param->min,
                 param->max);
        break;
    case CONFIG_PARAM_BOOLEAN:
        snprintf(err, errlen, "%s must be true or false", param->name);
        break;
    }
    return TW_E_BAD_PARAMS;
}

static json_t *
param_default(const struct config_param *param)
{
    switch (param->kind) {
    case CONFIG_PARAM_INTEGER:
        return json_integer(param->default_integer);
    case CONFIG_PARAM_STRING:
        return json_string(param->default_string);
    case CONFIG_PARAM_BOOLEAN:
        return json_boolean(param->default_integer);
    }
    return NULL;
}

/* 1 when value fits param's kind and range. */
static int
param_accepts(const struct config_param *param, const json_t *value)
{
    switch (param->kind) {
    case CONFIG_PARAM_INTEGER:
        return json_is_integer(value) && json_integer_value(value) >= param->min &&
               json_integer_value(value) <= param->max;
    case CONFIG_PARAM_STRING:
        return json_is_string(value) && (long long)json_string_length(value) >= param->min &&
               (long long)json_string_length(value) <= param->max &&
               strlen(json_string_value(value)) == json_string_length(value);
    case CONFIG_PARAM_BOOLEAN:
        return json_is_boolean(value);
    }
    return 0;
}

int
tasktype_validate(const struct config_type *type, json_t *params, json_t **normalized, char *err,
                  size_t errlen)
{
    if (params && !json_is_object(params)) {
        snprintf(err, errlen, "params must be an object");
        return TW_E_BAD_PARAMS;
    }
    const char *key;
    json_t *value;
    json_object_foreach(params, key, value)
    {
        size_t i;
        for (i = 0; i < type->param_count; i++)
            if (strcmp(type->params[i].name, key) == 0)
                break;
        if (i == type->param_count) {
            snprintf(err, errlen, "unknown parameter '%.64s' for type %s", key, type->name);
            return TW_E_BAD_PARAMS;
        }
    }
    json_t *out = json_object();
    if (!out)
        return TW_E_NOMEM;
    for (size_t i = 0; i < type->param_count; i++) {
        const struct config_param *param = &type->params[i];
        value = params ? json_object_get(params, param->name) : NULL;
        json_t *chosen;
        if (!value || json_is_null(value)) {
            if (!param->has_default) {
                json_decref(out);
                snprintf(err, errlen, "%s is required", param->name);
                return TW_E_BAD_PARAMS;
            }
            chosen = param_default(param);
        } else if (param_accepts(param, value)) {
            chosen = json_incref(value);
        } else {
            json_decref(out);
            return param_fail(param, err, errlen);
        }
        if (json_object_set_new(out, param->name, chosen) != 0) {
            json_decref(out);
            return TW_E_NOMEM;
        }
    }
    *normalized = out;
    return 0;
}

static json_t *
param_describe(const struct config_param *param)
{
    static const char *const kinds[] = {"integer", "string", "boolean"};
    json_t *spec = json_pack("{s:s, s:s}", "name", param->name, "type", kinds[param->kind]);
    if (!spec)
        return NULL;
    if (param->kind != CONFIG_PARAM_BOOLEAN) {
        const char *min = param->kind == CONFIG_PARAM_STRING ? "min_length" : "min";
        const char *max = param->kind == CONFIG_PARAM_STRING ? "max_length" : "max";
        json_object_set_new(spec, min, json_integer(param->min));
        json_object_set_new(spec, max, json_integer(param->max));
    }
    if (param->has_default)
        json_object_set_new(spec, "default", param_default(param));
    return spec;
}

json_t *
tasktype_describe(const struct config *cfg)
{
    json_t *types = json_array();
    for (size_t i = 0; types && i < cfg->type_count; i++) {
        const struct config_type *type = &cfg->types[i];
        json_t *params = json_array();
        for (size_t j = 0; params && j < type->param_count; j++)
            if (json_array_append_new(params, param_describe(&type->params[j])) != 0)
                json_decref(params), params = NULL;
        json_t *entry = json_pack("{s:s, s:s, s:o*}", "name", type->name, "label", type->label,
                                  "params", params);
        if (!params || json_array_append_new(types, entry) != 0) {
            json_decref(types);
            types = NULL;
        }
    }
    return types;
}
