/* errors.c: lookups into the TW_ERROR_MAP table. */
#include "errors.h"

struct error_row {
    int status;
    const char *name;
    const char *message;
};

static const struct error_row error_rows[] = {
#define TW_ERROR_ROW(name, status, code, message) {status, code, message},
    TW_ERROR_MAP(TW_ERROR_ROW)
#undef TW_ERROR_ROW
};

static const struct error_row *
error_row(int err)
{
    int index = err - TW_E_FIRST_ - 1;
    if (err >= 0 || index < 0 || index >= (int)(sizeof error_rows / sizeof error_rows[0]))
        return 0;
    return &error_rows[index];
}

const char *
tw_error_name(int err)
{
    const struct error_row *row = error_row(err);
    return err == 0 ? "ok" : row ? row->name : "internal";
}

int
tw_error_status(int err)
{
    const struct error_row *row = error_row(err);
    return err == 0 ? 200 : row ? row->status : 500;
}

const char *
tw_error_message(int err)
{
    const struct error_row *row = error_row(err);
    return err == 0 ? "ok" : row ? row->message : "internal error";
}
