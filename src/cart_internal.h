/* cart_internal.h — the cart coordinator's private state and the
 * functions its files share: cart.c (the public API, coordinations'
 * life, deferral, the order's lines), cart_coord.c (the phases of a
 * coordination: parts placed on their owners, the decision, confirm and
 * release, the answers), cart_owner.c (what a node does for the parts it
 * owns: lapsed holds settled, listeners told, failed lines cascaded),
 * cart_wire.c (pure: the messages, include/stockd/cart_wire.h). cart.h is
 * the contract; nothing outside src/cart*.c includes this file.
 *
 * A coordination ("coord") is one client call. It moves through phases,
 * and in each phase it waits for exactly one kind of thing:
 *   CP_LINES    store_find_order_lines() (order calls only);
 *   CP_PLACE    the forwarded part reserves (one peer call per part);
 *   CP_RETREAT  the erases of parts to be placed again in SKU order;
 *   CP_SEQ      one part's reserve at a time, in SKU order;
 *   CP_DECIDE   store_cart_decide();
 *   CP_CONFIRM  / CP_RELEASE / CP_OP  peer calls to the parts' owners;
 *   CP_DEFER    an answer queued for delivery from the loop (never inside
 *               cart_reserve / cart_order_op).
 * Peer calls of one phase all end before the next phase starts (pending
 * counts them), so a part's slot is written by one reply at a time.
 *
 * Orphans: cart_free() detaches coordinations still waiting on peers
 * (owner = NULL); their remaining callbacks only count down and free.
 * Cascades and settle ops in the engine are orphaned the same way.
 */
#ifndef STOCKD_CART_INTERNAL_H
#define STOCKD_CART_INTERNAL_H

#include "stockd/cart.h"
#include "stockd/cart_wire.h"

#include <msgpack.h>

#define CART_SLACK_MS 1000        /* peer timeout beyond the queue deadline sent (commit) */
#define CART_PHASE_MIN_MS 1000    /* budget floor of phases after the first */
#define CART_DEADLINE_MAX_MS 600000
#define CART_RETRY_MS 1000        /* a lapsed part whose decision failed: again after */
#define CART_SETTLING_MAX 4096    /* lapsed parts being settled at once */
#define CART_DECIDE_TRIES 3       /* store_cart_decide attempts before giving up */
#define CART_RELEASE_ROUNDS 2     /* release rounds of an abort (a part not reached: again) */
#define CART_WATCH_MAX 1024       /* order fetches for listeners at once (beyond: dropped) */
#define CART_WATCH_BUDGET_MS 3000 /* a watch's fetch */
#define CART_UPDATE_TIMEOUT_MS 2000 /* a peer's delivery of an order update */
#define CART_CASCADE_MAX 1024     /* failed-line cascades at once (beyond: alert only) */
#define CART_CASCADE_TRIES 8      /* rounds of a cascade before it is left to support */
#define CART_CASCADE_BACKOFF_MS 250 /* first retry; doubles, up to CART_CASCADE_BACKOFF_MAX_MS */
#define CART_CASCADE_BACKOFF_MAX_MS 8000
#define CART_CASCADE_CALL_MS 3000 /* a cascade release's deadline on the owner */
/* A part that may wait for deciding parts stops waiting this long before
 * its deadline on the owner: time to decide it there (a tick of the
 * owner's timer, a commit) and answer before that deadline ends it. */
#define CART_WAIT_MARGIN_MS 300

/* CK_WATCH: internal, no client: the whole order fetched after one of
 * this node's parts changed, told to every node's listeners. */
typedef enum coord_kind { CK_RESERVE = 0, CK_GET, CK_CONFIRM, CK_RELEASE, CK_SHIP, CK_WATCH } coord_kind;
typedef enum coord_phase {
    CP_LINES = 0, CP_PLACE, CP_RETREAT, CP_SEQ, CP_DECIDE, CP_CONFIRM, CP_RELEASE, CP_OP, CP_DEFER
} coord_phase;

typedef struct coord coord;
typedef struct settle settle;
typedef struct cascade cascade;

struct coord {
    cart *owner;                  /* NULL: orphaned by cart_free */
    coord *prev, *next;
    coord_kind kind;
    coord_phase phase;
    uint32_t msgid;
    char order_id[ENG_ID_MAX + 1];
    int64_t hold_ms;              /* the client's (reserve) */
    int64_t end_ms;               /* monotonic: the client's deadline */
    cart_reply_fn fn;
    void (*single_fn)(void *ctx, const char *sku);
    void *ctx;
    uint32_t n;                   /* parts */
    int32_t n_lines;              /* the order's lines (order calls: from MariaDB) */
    bool plain;                   /* reserve of one SKU: relayed as a plain reserve */
    uint32_t pending;             /* peer calls in flight */
    bool store_wait;              /* a store call in flight */
    /* CP_DEFER: the answer to give */
    eng_err defer_err;
    const char *defer_msg;
    bool defer_lines;             /* continue with the order's lines (cart.c), not an error */
    bool defer_decide;            /* ask for the decision again (want) */
    bool defer_watch;             /* CK_WATCH: start the lines lookup */
    store_decision want;          /* the decision asked for */
    uint32_t decide_tries;
    uint32_t release_rounds;
    int lines_result;             /* store_find_order_lines' result */
    /* after the decision: what to answer once the phase's calls end */
    eng_err final_err;            /* ENG_OK: the merged record */
    int32_t fail_part;            /* >= 0: answer that part's error (fail_copy) */
    cart_part fail_copy;          /* kept: the part's slot is reused by its release */
    uint64_t attempt;             /* reserve, no client hold: this coordination's id; its
                                   * parts are deciding while held (engine.h "Waiting") */
    bool erase;                   /* this phase's releases erase their parts */
    int32_t short_part;           /* CP_RETREAT: the first part (by SKU) that must wait */
    uint8_t seq[ENG_LINES_MAX];   /* CP_SEQ: parts placed one by one, in SKU order */
    uint32_t n_seq, seq_at;
    bool has_told;                /* the standing ABORT carries the refusal told */
    store_abort_why told;
    coord *defer_next;
    cart_part parts[ENG_LINES_MAX];
};

struct cart {
    cart_env env;
    coord *coords;
    settle *settles;
    cascade *cascades;
    uint32_t n_cascades;
    uint32_t n_watches;
    coord *defer_head, *defer_tail;
    struct event *defer_ev;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint64_t attempt_next;        /* ids of coordinations (random start: unique per cluster) */
    cart_stats st;
};

/* The doubly linked lists of live coordinations, settles and cascades
 * (head: the cart's field; x: an element with prev and next). */
#define CT_LIST_PUSH(head, x)                                                                      \
    do {                                                                                           \
        (x)->next = (head);                                                                        \
        if ((head) != NULL)                                                                        \
            (head)->prev = (x);                                                                    \
        (head) = (x);                                                                              \
    } while (0)
#define CT_LIST_UNLINK(head, x)                                                                    \
    do {                                                                                           \
        if ((x)->prev != NULL)                                                                     \
            (x)->prev->next = (x)->next;                                                           \
        else                                                                                       \
            (head) = (x)->next;                                                                    \
        if ((x)->next != NULL)                                                                     \
            (x)->next->prev = (x)->prev;                                                           \
        (x)->prev = (x)->next = NULL;                                                              \
    } while (0)

/* cart.c: coordinations' life and answers. An answer (ct_coord_answer*)
 * packs into c->sb, calls the client's fn and frees co; ct_coord_drop frees
 * one that answers nobody (CK_WATCH). ct_coord_defer queues co for
 * defer_cb, which runs from the loop. */
coord *ct_coord_new_or_die(cart *c, coord_kind kind, uint32_t msgid, const char *order_id,
                           int64_t deadline_ms, cart_reply_fn fn, void *ctx);
void ct_coord_unlink(cart *c, coord *co);
void ct_coord_answer(cart *c, coord *co);
void ct_coord_answer_err(cart *c, coord *co, eng_err err, const char *msg);
void ct_coord_answer_part_err(cart *c, coord *co, const cart_part *p);
void ct_coord_answer_merged(cart *c, coord *co);
void ct_coord_drop(cart *c, coord *co);
void ct_coord_defer(cart *c, coord *co);
void ct_coord_defer_err(cart *c, coord *co, eng_err err, const char *msg);
/* store_find_order_lines' callback of order calls and watches. */
void ct_lines_cb(const char *order_id, int result, const store_line_ref *lines, void *arg);

/* cart_coord.c: the phases. ct_parts_call sends method to every part sel
 * accepts (false: none); ct_start_decide asks store_cart_decide for want. */
bool ct_sel_all(const cart_part *p);
bool ct_parts_call(cart *c, coord *co, const char *method, bool (*sel)(const cart_part *p));
void ct_start_decide(cart *c, coord *co, store_decision want);

/* cart_owner.c: listeners (CK_WATCH) and, at cart_free, the orphaning of
 * cascades and settles. */
void ct_watch_start(cart *c, coord *co);
void ct_watch_finish(cart *c, coord *co);
void ct_owner_orphan(cart *c);

#endif
