/* cpu.c — where a run's CPU went: this process and the processes named
 * with --cpu (stockd, mariadbd, redis-server...), each read from
 * /proc/PID/stat at the start and at the end of the measured window.
 *
 * Why: on a machine that also runs the servers, a figure means little
 * without the cores it cost; the report turns these into cores busy and
 * microseconds of CPU per reservation. A process's utime + stime add up to
 * its scheduler runtime, counted in clock ticks (100 Hz here), so a window
 * of a few seconds gives its share of a core to about 1 %. /proc/stat's
 * machine-wide idle time is not used: it is sampled at each tick, and on
 * this kind of load (short bursts between ticks on a VM) it showed less busy
 * time than the processes' own runtimes added up.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The text of a small /proc file, NUL-terminated; -1 when unreadable. */
static int read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = '\0';
    return n > 0 ? 0 : -1;
}

int bench_cpu_parse_stat(const char *text, uint64_t *ticks)
{
    /* The command name (field 2) may hold spaces and ')': the fields we
     * want are counted from the last ')'. utime and stime are fields 14
     * and 15, i.e. the 12th and 13th after the state (field 3). */
    const char *p = strrchr(text, ')');
    if (p == NULL)
        return -1;
    p++;
    uint64_t v[13];
    for (int i = 0; i < 13; i++) {
        while (*p == ' ')
            p++;
        if (*p == '\0' || *p == '\n')
            return -1;
        if (i == 0) {                       /* the state: one letter */
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno != 0 || (*end != ' ' && *end != '\n' && *end != '\0'))
            return -1;
        v[i] = (uint64_t)x;                 /* fields 4..13 may be negative; unused */
        p = end;
    }
    *ticks = v[11] + v[12];
    return 0;
}

int bench_cpu_read(int pid, uint64_t *ticks)
{
    char path[64], buf[1024];
    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/stat");
    else
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (read_small(path, buf, sizeof buf) != 0)
        return -1;
    return bench_cpu_parse_stat(buf, ticks);
}

void bench_cpu_snap_take(const bench_opts *o, bench_cpu_snap *s)
{
    memset(s, 0, sizeof *s);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    s->t_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    s->self_ok = bench_cpu_read(0, &s->self) == 0;
    for (unsigned i = 0; i < o->n_cpu; i++)
        s->proc_ok[i] = bench_cpu_read(o->cpu[i].pid, &s->proc[i]) == 0;
}

void bench_cpu_finish(const bench_opts *o, const bench_cpu_snap *a, const bench_cpu_snap *b,
                      bench_result *res)
{
    double hz = (double)sysconf(_SC_CLK_TCK);
    double win = (double)(b->t_ns - a->t_ns) / 1e9;
    if (hz <= 0 || win <= 0 || !a->self_ok || !b->self_ok)
        return;
    res->has_cpu = true;
    res->cpu_window_s = win;
    res->cpu_self_cores = (double)(b->self - a->self) / hz / win;
    for (unsigned i = 0; i < o->n_cpu; i++)
        /* A process that ended (or was replaced) in the window: unknown. */
        res->cpu_proc_cores[i] = a->proc_ok[i] && b->proc_ok[i] && b->proc[i] >= a->proc[i]
                               ? (double)(b->proc[i] - a->proc[i]) / hz / win : -1;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    res->cpu_machine_cores = n > 0 ? (unsigned)n : 0;
}
