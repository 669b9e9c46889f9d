/* log.h — one line per event on stderr: "ts=... level=... msg=... key=value".
 *
 * Values are quoted when they hold spaces, quotes or '='; control bytes are
 * escaped, so a hostile string cannot forge a line. Secrets never go in: the
 * callers pass no passwords or tokens. The same (msg) repeated more than
 * 10 times a second is summarised once a second instead of flooding: one
 * "log.suppressed" line (repeated_msg, suppressed) when its one-second
 * window ends. With a loop attached (log_attach_loop) a timer writes it
 * then; without one it is written by the next line logged after the window
 * (and by log_detach_loop).
 */
#ifndef STOCKD_LOG_H
#define STOCKD_LOG_H

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Sets the threshold; returns -1 for an unknown name. */
int log_set_level_name(const char *name);
void log_set_level(log_level lvl);
struct event_base;
/* Summaries from then on are written by a timer on base when their window
 * ends (about a second after the first line held back), not only when a
 * later line happens to be logged. One loop at a time (stockd has one).
 * 0, or -1 out of memory (summaries then wait for the next line). */
int log_attach_loop(struct event_base *base);
/* Before base is freed: writes every summary still held back, windows not
 * yet ended included, and drops the timer. */
void log_detach_loop(void);

/* kv is a NULL-terminated list of key, value strings. */
void log_kv(log_level lvl, const char *msg, ...) __attribute__((sentinel));

#define LOG_D(msg, ...) log_kv(LOG_DEBUG, msg, ##__VA_ARGS__, (char *)0)
#define LOG_I(msg, ...) log_kv(LOG_INFO, msg, ##__VA_ARGS__, (char *)0)
#define LOG_W(msg, ...) log_kv(LOG_WARN, msg, ##__VA_ARGS__, (char *)0)
#define LOG_E(msg, ...) log_kv(LOG_ERROR, msg, ##__VA_ARGS__, (char *)0)

#endif
