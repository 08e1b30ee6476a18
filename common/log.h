/* log.h: one line per event on stderr, "time program level key=value ...".
 *
 * Callers write the key=value fields themselves (client=... task=...), so operators can grep.
 * Never log a token or a secret.  No buffering beyond one line; lines longer than
 * LOG_LINE_MAX are truncated.
 */
#ifndef TW_COMMON_LOG_H
#define TW_COMMON_LOG_H

#define LOG_LINE_MAX 2048 /* bytes per log line, truncated beyond */

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Set the program name shown on each line and the most verbose level written.
 * The name is borrowed and must outlive logging (a string literal). */
void log_setup(const char *program, enum log_level level);

/* Parse "error", "warn", "info" or "debug"; 0 on success, TW_E_CONFIG otherwise. */
int log_level_parse(const char *text, enum log_level *level);

/* Write one line if level is enabled. */
void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(__printf__, 2, 3)));

#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
