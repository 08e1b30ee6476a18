/* table.h: rows of text printed as aligned columns (the tables of `tasks list` and `status`).
 *
 * A table holds at most TABLE_COLUMNS columns and TABLE_ROWS rows; a cell is copied and cut at
 * TABLE_CELL_MAX bytes, with control characters shown as spaces so one row stays one line.  A
 * row past TABLE_ROWS is dropped and counted (table_print says how many).  The last column is
 * not padded.
 */
#ifndef TW_CLI_TABLE_H
#define TW_CLI_TABLE_H

#include <stddef.h>
#include <stdio.h>

#define TABLE_COLUMNS 10   /* columns of one table */
#define TABLE_ROWS 1000    /* rows of one table, the header included */
#define TABLE_CELL_MAX 200 /* bytes of one cell */

struct table;

/* An empty table of columns columns (at most TABLE_COLUMNS), or NULL without memory.  Caller
 * owns; table_destroy. */
struct table *table_new(size_t columns);

/* NULL-safe; nulls *table. */
void table_destroy(struct table **table);

/* Append a row of the table's column count of cells (NULL prints as "-").  0, or -1 without
 * memory. */
int table_add(struct table *table, const char *const *cells);

/* Print every row to out, each column as wide as its widest cell, two spaces between. */
void table_print(const struct table *table, FILE *out);

#endif
