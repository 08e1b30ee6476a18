/* table.c: aligned columns (see table.h). */
#include "table.h"

#include <stdlib.h>
#include <string.h>

struct table {
    size_t columns, rows, dropped;
    char **cells; /* rows * columns, row by row */
};

struct table *
table_new(size_t columns)
{
    if (columns == 0 || columns > TABLE_COLUMNS)
        return NULL;
    struct table *table = calloc(1, sizeof *table);
    if (!table)
        return NULL;
    table->columns = columns;
    table->cells = calloc(TABLE_ROWS * columns, sizeof *table->cells);
    if (!table->cells)
        table_destroy(&table);
    return table;
}

void
table_destroy(struct table **table)
{
    if (!*table)
        return;
    if ((*table)->cells)
        for (size_t i = 0; i < (*table)->rows * (*table)->columns; i++)
            free((*table)->cells[i]);
    free((*table)->cells);
    free(*table);
    *table = NULL;
}

/* A copy of text cut at TABLE_CELL_MAX bytes (on a UTF-8 boundary), control characters as
 * spaces. */
static char *
table_cell(const char *text)
{
    if (!text || !*text)
        text = "-";
    size_t len = strnlen(text, TABLE_CELL_MAX);
    while (len < strlen(text) && len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
        len--;
    char *cell = malloc(len + 1);
    if (!cell)
        return NULL;
    for (size_t i = 0; i < len; i++)
        cell[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7F ? ' ' : text[i];
    cell[len] = '\0';
    return cell;
}

int
table_add(struct table *table, const char *const *cells)
{
    if (table->rows == TABLE_ROWS) {
        table->dropped++;
        return 0;
    }
    char **row = table->cells + table->rows * table->columns;
    for (size_t i = 0; i < table->columns; i++) {
        row[i] = table_cell(cells[i]);
        if (!row[i]) {
            for (size_t j = 0; j < i; j++) {
                free(row[j]);
                row[j] = NULL;
            }
            return -1;
        }
    }
    table->rows++;
    return 0;
}

/* Columns a cell takes on a terminal: its bytes less UTF-8 continuation bytes. */
static size_t
table_width(const char *cell)
{
    size_t width = 0;
    for (; *cell; cell++)
        width += ((unsigned char)*cell & 0xC0) != 0x80;
    return width;
}

void
table_print(const struct table *table, FILE *out)
{
    size_t widths[TABLE_COLUMNS] = {0};
    for (size_t r = 0; r < table->rows; r++)
        for (size_t c = 0; c < table->columns; c++) {
            size_t width = table_width(table->cells[r * table->columns + c]);
            if (width > widths[c])
                widths[c] = width;
        }
    for (size_t r = 0; r < table->rows; r++) {
        for (size_t c = 0; c < table->columns; c++) {
            const char *cell = table->cells[r * table->columns + c];
            if (c + 1 == table->columns) {
                fprintf(out, "%s\n", cell);
                break;
            }
            fprintf(out, "%s%*s", cell, (int)(widths[c] - table_width(cell) + 2), "");
        }
    }
    if (table->dropped)
        fprintf(out, "(%zu more rows not shown)\n", table->dropped);
}
