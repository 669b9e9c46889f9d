/* test_conn.c — connection lifecycle on a real loop and real sockets: a
 * connection closed from inside its own frame's handling (a listener over
 * its output limit whose own request made a notification) stays valid
 * until the callback returns, drops what is sent to it, and is freed by its
 * last in-flight request, once. Meant to run under ASan and valgrind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "stockd/config.h"
#include "stockd/conn.h"

typedef struct ctx {
    struct event_base *base;
    conn_mgr *m;
    conn *held;
    int frames, closes;
    enum conn_state state_in_cb;
    struct event *release_ev;
} ctx;

static void release_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ctx *x = arg;
    conn_release(x->held);  /* the last hold: frees the CLOSED conn */
    x->held = NULL;
    event_base_loopexit(x->base, NULL);
}

/* What notify_send did to a listener over its limit, from inside that
 * listener's own request: queue past the limit, close it, and then the
 * handler still answers it and keeps a request in flight on it. */
static bool on_frame(void *arg, conn *c, const uint8_t *p, size_t n)
{
    (void)p;
    (void)n;
    ctx *x = arg;
    x->frames++;
    static uint8_t big[100000];
    conn_send(c, big, sizeof big);
    conn_close(c);
    x->state_in_cb = conn_get_state(c);
    conn_send(c, "late reply", 10);  /* dropped, not written to freed memory */
    conn_close(c);                   /* idempotent */
    conn_hold(c);
    x->held = c;
    struct timeval tv = {0, 100000};
    event_add(x->release_ev, &tv);
    return true;
}

static void on_close(void *arg, conn *c)
{
    (void)c;
    ((ctx *)arg)->closes++;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static void test_close_from_own_frame(void **state)
{
    (void)state;
    stockd_config cfg;
    config_defaults(&cfg);
    cfg.listen_port = free_port();
    cfg.max_output_bytes = 65536;
    ctx x = {0};
    x.base = event_base_new();
    assert_non_null(x.base);
    assert_int_equal(event_base_priority_init(x.base, CONN_PRIOS), 0);
    x.release_ev = evtimer_new(x.base, release_cb, &x);
    conn_callbacks cb = {.on_frame = on_frame, .on_close = on_close, .arg = &x};
    x.m = conn_mgr_new(x.base, &cfg, &cb, 16);
    assert_non_null(x.m);
    char err[128];
    assert_int_equal(conn_mgr_listen(x.m, err, sizeof err), 0);

    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.listen_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof a), 0);
    /* [0, 1, "x", [{}]] */
    static const uint8_t frame[] = {0x94, 0x00, 0x01, 0xa1, 'x', 0x91, 0x80};
    assert_int_equal(write(s, frame, sizeof frame), (ssize_t)sizeof frame);
    struct timeval limit = {5, 0};
    event_base_loopexit(x.base, &limit);
    event_base_dispatch(x.base);

    assert_int_equal(x.frames, 1);
    assert_int_equal(x.closes, 1);
    assert_int_equal(x.state_in_cb, CONN_CLOSING);
    assert_null(x.held);
    conn_stats st;
    conn_mgr_stats_get(x.m, &st);
    assert_int_equal(st.current, 0);
    assert_int_equal(st.output_bytes, 0);
    /* The client saw the close and none of the dropped bytes. */
    char buf[16];
    assert_int_equal(read(s, buf, sizeof buf), 0);
    close(s);
    conn_mgr_free(x.m);
    event_free(x.release_ev);
    event_base_free(x.base);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Out of descriptors at accept: the listener pauses (100 ms at a time)
 * instead of being called back a million times a second, and accepts again
 * once descriptors are back. The clients live in a child process, so only
 * the listener's process runs short. */
static void test_emfile_pauses(void **state)
{
    (void)state;
    stockd_config cfg;
    config_defaults(&cfg);
    cfg.listen_port = free_port();
    ctx x = {0};
    x.base = event_base_new();
    assert_int_equal(event_base_priority_init(x.base, CONN_PRIOS), 0);
    x.release_ev = evtimer_new(x.base, release_cb, &x);
    conn_callbacks cb = {.on_frame = on_frame, .on_close = on_close, .arg = &x};
    x.m = conn_mgr_new(x.base, &cfg, &cb, 16);
    char err[128];
    assert_int_equal(conn_mgr_listen(x.m, err, sizeof err), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int socks[20];
        for (int i = 0; i < 20; i++) {
            socks[i] = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET,
                                    .sin_port = htons((uint16_t)cfg.listen_port),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            (void)connect(socks[i], (struct sockaddr *)&a, sizeof a);
        }
        sleep(3);
        _exit(0);
    }
    /* No descriptor left for accept. */
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    int probe = dup(0);
    low = old;
    low.rlim_cur = (rlim_t)probe;
    close(probe);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    struct event *stop = evtimer_new(x.base, stop_cb, x.base);
    struct timeval one = {1, 0};
    event_add(stop, &one);
    event_base_dispatch(x.base);
    conn_stats st;
    conn_mgr_stats_get(x.m, &st);
    assert_true(st.accept_pauses >= 1);
    assert_true(st.accept_errors >= 1 && st.accept_errors < 200);  /* ~10 a second, not 1e6 */
    assert_int_equal(st.total, 0);
    /* Descriptors back: the queued connections are accepted. */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    event_add(stop, &one);
    event_base_dispatch(x.base);
    conn_mgr_stats_get(x.m, &st);
    assert_true(st.total >= 1);
    waitpid(child, NULL, 0);
    event_free(stop);
    conn_mgr_free(x.m);
    event_free(x.release_ev);
    event_base_free(x.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_from_own_frame),
        cmocka_unit_test(test_emfile_pauses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
