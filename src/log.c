/* log.c — key=value lines on stderr (see log.h).
 *
 * The one module with global state: the level threshold, the rate
 * limiter's table and its timer. stockd is single-threaded, so none is
 * locked.
 * Each line is built in a fixed buffer and written with one write(2), so
 * lines from several processes sharing stderr do not interleave.
 */
#include "stockd/log.h"
#include "stockd/clock.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define LOG_LINE_MAX 4096        /* longer lines are cut and marked */
#define LOG_VALUE_MAX 512        /* bytes of one value before it is cut */
#define LOG_RATE_SLOTS 64        /* distinct messages tracked at once */
#define LOG_RATE_PER_SEC 10      /* lines of one msg per second before summarising */
#define LOG_MSG_KEY_MAX 64       /* bytes of msg kept to recognise repeats */

typedef struct log_rate_slot {
    char msg[LOG_MSG_KEY_MAX];
    int64_t window_s;            /* monotonic second this count belongs to */
    uint32_t count;              /* lines seen in window_s */
    uint32_t suppressed;         /* of those, not printed */
    log_level lvl;               /* level of the suppressed lines, for the summary */
} log_rate_slot;

static log_level log_threshold = LOG_INFO;
static log_rate_slot log_slots[LOG_RATE_SLOTS];
static struct event *log_timer;  /* log_attach_loop: writes summaries as windows end */

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

int log_set_level_name(const char *name) {
    if (!name) return -1;
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            log_threshold = (log_level)i;
            return 0;
        }
    }
    if (strcmp(name, "warning") == 0) {
        log_threshold = LOG_WARN;
        return 0;
    }
    return -1;
}

void log_set_level(log_level lvl) {
    if (lvl >= LOG_DEBUG && lvl <= LOG_ERROR) log_threshold = lvl;
}

/* ---- line building ------------------------------------------------------ */

typedef struct log_buf {
    char b[LOG_LINE_MAX];
    size_t n;                    /* bytes used; always < LOG_LINE_MAX - 1 */
    bool cut;
} log_buf;

static void log_putc(log_buf *lb, char ch) {
    /* keep room for the "…" marker and the newline */
    if (lb->n + 8 >= sizeof lb->b) {
        lb->cut = true;
        return;
    }
    lb->b[lb->n++] = ch;
}

static void log_puts(log_buf *lb, const char *s) {
    for (; *s; s++) log_putc(lb, *s);
}

static bool log_needs_quotes(const char *s) {
    if (*s == '\0') return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f) return true;
    return false;
}

/* Writes a value, quoted if needed, with control bytes escaped so that a
 * hostile string cannot start a new line or fake a key. */
static void log_put_value(log_buf *lb, const char *v) {
    if (!v) v = "(null)";
    bool q = log_needs_quotes(v);
    if (q) log_putc(lb, '"');
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++, used++) {
        if (used >= LOG_VALUE_MAX) {
            log_puts(lb, "...");
            break;
        }
        unsigned char ch = *p;
        if (ch == '"' || ch == '\\') {
            log_putc(lb, '\\');
            log_putc(lb, (char)ch);
        } else if (ch == '\n') {
            log_puts(lb, "\\n");
        } else if (ch == '\t') {
            log_puts(lb, "\\t");
        } else if (ch == '\r') {
            log_puts(lb, "\\r");
        } else if (ch < 0x20 || ch == 0x7f) {
            char hex[8];
            snprintf(hex, sizeof hex, "\\x%02x", ch);
            log_puts(lb, hex);
        } else {
            log_putc(lb, (char)ch);
        }
    }
    if (q) log_putc(lb, '"');
}

static void log_put_ts(log_buf *lb) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char t[40];
    size_t n = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t + n, sizeof t - n, ".%03ldZ", ts.tv_nsec / 1000000L);
    log_puts(lb, "ts=");
    log_puts(lb, t);
}

static void log_begin(log_buf *lb, log_level lvl, const char *msg) {
    lb->n = 0;
    lb->cut = false;
    log_put_ts(lb);
    log_puts(lb, " level=");
    log_puts(lb, log_level_names[lvl]);
    log_puts(lb, " msg=");
    log_put_value(lb, msg);
}

static void log_pair(log_buf *lb, const char *k, const char *v) {
    log_putc(lb, ' ');
    log_put_value(lb, k); /* keys are literals, but quoting keeps a bad one harmless */
    log_putc(lb, '=');
    log_put_value(lb, v);
}

static void log_emit(log_buf *lb) {
    if (lb->cut) {
        memcpy(lb->b + lb->n, " cut=1", 6);
        lb->n += 6;
    }
    lb->b[lb->n++] = '\n';
    /* stderr is unbuffered; a short or failed write has nowhere to be reported */
    ssize_t w = write(STDERR_FILENO, lb->b, lb->n);
    (void)w;
}

/* ---- rate limiting ------------------------------------------------------- */

static int64_t log_now_s(void) { return clock_mono_ns() / 1000000000; }

static void log_summarise(log_rate_slot *s) {
    if (s->suppressed == 0) return;
    log_buf lb;
    char n[16];
    snprintf(n, sizeof n, "%u", s->suppressed);
    log_begin(&lb, s->lvl, "log.suppressed");
    log_pair(&lb, "repeated_msg", s->msg);
    log_pair(&lb, "suppressed", n);
    log_emit(&lb);
    s->suppressed = 0;
}

/* Prints the summaries of windows that have ended, so a burst is reported
 * by the next line logged for any reason. */
static void log_flush_ended(int64_t now_s) {
    for (size_t i = 0; i < LOG_RATE_SLOTS; i++)
        if (log_slots[i].suppressed && log_slots[i].window_s != now_s)
            log_summarise(&log_slots[i]);
}

/* Arms the timer for the end of the current second when a summary is
 * held back (a little after it: the window must have ended when it fires;
 * if not, it fires again). */
static void log_arm(void) {
    if (!log_timer || evtimer_pending(log_timer, NULL)) return;
    bool held = false;
    for (size_t i = 0; i < LOG_RATE_SLOTS && !held; i++) held = log_slots[i].suppressed != 0;
    if (!held) return;
    long left_us = 1000000L - (long)(clock_mono_ns() % 1000000000) / 1000L + 10000L;
    struct timeval tv = {left_us / 1000000L, left_us % 1000000L};
    evtimer_add(log_timer, &tv);
}

static void log_timer_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    log_flush_ended(log_now_s());
    log_arm();
}

int log_attach_loop(struct event_base *base) {
    log_detach_loop();
    log_timer = evtimer_new(base, log_timer_cb, NULL);
    if (!log_timer) return -1;
    log_arm();
    return 0;
}

void log_detach_loop(void) {
    for (size_t i = 0; i < LOG_RATE_SLOTS; i++) log_summarise(&log_slots[i]);
    if (log_timer) event_free(log_timer);
    log_timer = NULL;
}

static uint32_t log_hash(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a: tiny and good enough for 64 slots */
    for (size_t i = 0; s[i] && i < LOG_MSG_KEY_MAX - 1; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* True when this line may be printed; counts it otherwise. */
static bool log_rate_ok(log_level lvl, const char *msg, int64_t now_s) {
    log_rate_slot *s = &log_slots[log_hash(msg) % LOG_RATE_SLOTS];
    if (strncmp(s->msg, msg, LOG_MSG_KEY_MAX - 1) != 0) {
        log_summarise(s); /* evicting another message: report what it held back */
        snprintf(s->msg, sizeof s->msg, "%s", msg);
        s->window_s = now_s;
        s->count = 0;
    }
    if (s->window_s != now_s) {
        log_summarise(s);
        s->window_s = now_s;
        s->count = 0;
    }
    if (++s->count <= LOG_RATE_PER_SEC) return true;
    s->suppressed++;
    s->lvl = lvl;
    if (s->suppressed == 1) log_arm();
    return false;
}

void log_kv(log_level lvl, const char *msg, ...) {
    if (lvl < LOG_DEBUG || lvl > LOG_ERROR) lvl = LOG_ERROR;
    if (lvl < log_threshold) return;
    if (!msg) msg = "(null)";
    int64_t now_s = log_now_s();
    log_flush_ended(now_s);
    if (!log_rate_ok(lvl, msg, now_s)) return;
    log_buf lb;
    log_begin(&lb, lvl, msg);
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k) break;
        const char *v = va_arg(ap, const char *);
        log_pair(&lb, k, v);
        if (!v) break; /* an odd list: the NULL sentinel was read as a value */
    }
    va_end(ap);
    log_emit(&lb);
}
