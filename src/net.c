/* net.c — a listener that pauses instead of spinning on EMFILE; see net.h. */
#include "stockd/net.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>

#include "stockd/clock.h"
#include "stockd/log.h"

struct net_listener {
    struct evconnlistener *lev;
    struct event *resume_ev;
    char name[16];
    net_accept_fn fn;
    void *arg;
    bool enabled;                /* the owner's wish */
    bool paused;                 /* out of descriptors: waiting for the timer */
    int64_t last_log_s;
    uint64_t errors_unlogged;
    net_listener_stats st;
};


static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    (void)lev;
    (void)sa;
    (void)len;
    net_listener *l = arg;
    l->fn(l->arg, fd);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    net_listener *l = arg;
    l->paused = false;
    if (l->enabled)
        evconnlistener_enable(l->lev);
}

static void error_cb(struct evconnlistener *lev, void *arg)
{
    net_listener *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    l->st.accept_errors++;
    l->errors_unlogged++;
    /* Anything but a lack of descriptors or memory is transient (a client
     * that reset before accept): go on accepting. */
    bool starved = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
    if (starved && !l->paused) {
        l->paused = true;
        l->st.accept_pauses++;
        evconnlistener_disable(lev);
        struct timeval tv = {0, NET_ACCEPT_PAUSE_MS * 1000};
        event_add(l->resume_ev, &tv);
    }
    int64_t now = clock_mono_ms() / 1000;
    if (now != l->last_log_s) {
        char n[24];
        snprintf(n, sizeof n, "%llu", (unsigned long long)l->errors_unlogged);
        LOG_W("accept failed", "listener", l->name, "error", evutil_socket_error_to_string(err),
              "failures", n, "action", starved ? "paused 100 ms" : "none");
        l->last_log_s = now;
        l->errors_unlogged = 0;
    }
}

net_listener *net_listen(struct event_base *base, const char *name, const char *host, int port,
                         net_accept_fn fn, void *arg, char *err, size_t err_len)
{
    assert(base && name && host && fn);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, h, &sin.sin_addr) != 1) {
        snprintf(err, err_len, "%s: listen on %s:%d: not an IPv4 address and port", name, host, port);
        return NULL;
    }
    net_listener *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->resume_ev = evtimer_new(base, resume_cb, l)) == NULL) {
        free(l);
        snprintf(err, err_len, "%s: out of memory", name);
        return NULL;
    }
    snprintf(l->name, sizeof l->name, "%s", name);
    l->fn = fn;
    l->arg = arg;
    l->enabled = true;
    l->last_log_s = -1;
    l->lev = evconnlistener_new_bind(base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                     NET_BACKLOG, (struct sockaddr *)&sin, sizeof(sin));
    if (l->lev == NULL) {
        snprintf(err, err_len, "%s: listen on %s:%d: %s", name, host, port, strerror(errno));
        event_free(l->resume_ev);
        free(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->lev, error_cb);
    return l;
}

void net_listener_enable(net_listener *l, bool on)
{
    l->enabled = on;
    if (!on)
        evconnlistener_disable(l->lev);
    else if (!l->paused)
        evconnlistener_enable(l->lev);
}

void net_listener_free(net_listener *l)
{
    if (l == NULL)
        return;
    evconnlistener_free(l->lev);
    event_free(l->resume_ev);
    free(l);
}

void net_listener_stats_get(const net_listener *l, net_listener_stats *out)
{
    *out = l->st;
}
