/* mysql_wait.h — Connector/C's nonblocking wait mask and libevent's event
 * flags, both ways: a _start/_cont call says what it waits for
 * (MYSQL_WAIT_*), the loop says what happened (EV_*). Header-only, so the
 * store and stockbench (which does not link the store) translate alike.
 * A timeout is not a flag here: the caller arms it from
 * mysql_get_timeout_value_ms() when MYSQL_WAIT_TIMEOUT is set. */
#ifndef STOCKD_MYSQL_WAIT_H
#define STOCKD_MYSQL_WAIT_H

#include <event2/event.h>
#include <mysql.h>

/* What to wait for on the socket (an exception is read as readable). */
static inline short mysql_wait_events(int status)
{
    short what = 0;
    if (status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT))
        what |= EV_READ;
    if (status & MYSQL_WAIT_WRITE)
        what |= EV_WRITE;
    return what;
}

/* What happened, for the _cont call. */
static inline int mysql_wait_status(short what)
{
    int st = 0;
    if (what & EV_READ)
        st |= MYSQL_WAIT_READ;
    if (what & EV_WRITE)
        st |= MYSQL_WAIT_WRITE;
    if (what & EV_TIMEOUT)
        st |= MYSQL_WAIT_TIMEOUT;
    return st;
}

#endif
