/* contest.c — stockbench --cart-contest: one seeded arrival sequence of
 * carts on scarce stock, played on one instance and on a cluster, side by
 * side (bench/README.md, "Cart contest").
 *
 * Why a mode of its own: the closed loop measures throughput with stock
 * that never runs out; this asks what a cluster SELLS compared with one
 * instance when carts compete for the last units, which is where the
 * cross-shard coordinator could refuse carts one instance would confirm.
 *
 * One round: SKUs "<prefix>-<i>" are put with a stock drawn from the seed,
 * then every cart (2..5 distinct SKUs of 1 unit each, drawn from the same
 * seed) is sent at once: connection j sends carts j, j + conns, ... back
 * to back (blocking client, pipelined), then every connection reads its
 * answers. Counted: confirmed, refused (insufficient), other errors by
 * code, seconds from the first send to the last answer, SKUs sold out.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "stockd/client.h"

#define CONTEST_CARTS_MAX 100000
#define CONTEST_SKUS_MAX 10000
#define CONTEST_CONNS_MAX 256
#define CONTEST_LINES_MAX 5
#define CONTEST_CODES 8

typedef struct contest_opts {
    const char *cluster;          /* --target */
    const char *single;           /* --single-target */
    const char *token;
    uint64_t seed;
    uint32_t carts, skus, conns;
    int64_t stock_lo, stock_hi;
    int64_t deadline_ms;
} contest_opts;

typedef struct cart {
    char order_id[48];
    uint32_t n;
    uint32_t sku[CONTEST_LINES_MAX];
} cart;

typedef struct round_result {
    uint32_t confirmed, refused, answered, sold_out;
    char codes[CONTEST_CODES][32];
    uint32_t code_n[CONTEST_CODES];
    double seconds;
    int rc;                       /* 0 ran; else it could not */
} round_result;

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: the same draws for both targets from one seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static uint32_t rnd_in(uint32_t lo, uint32_t hi)
{
    return lo + (uint32_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void count_code(round_result *r, const char *code)
{
    for (int i = 0; i < CONTEST_CODES; i++) {
        if (r->codes[i][0] == '\0')
            snprintf(r->codes[i], sizeof r->codes[i], "%s", code);
        if (strcmp(r->codes[i], code) == 0) {
            r->code_n[i]++;
            return;
        }
    }
}

static stockd_client *connect_to(const contest_opts *o, const char *addr)
{
    stockd_client *c = stockd_client_new();
    if (c == NULL)
        return NULL;
    stockd_client_set_timeout(c, (int)(o->deadline_ms + 30000));
    stockd_client_set_max_inflight(c, CONTEST_CARTS_MAX);
    if ((o->token && stockd_client_set_token(c, o->token) != STOCKD_OK) ||
        stockd_client_connect(c, addr, 5000) != STOCKD_OK) {
        fprintf(stderr, "stockbench: contest: %s: %s\n", addr, stockd_client_errstr(c));
        stockd_client_free(c);
        return NULL;
    }
    return c;
}

/* Plays every cart against addr; SKUs and order ids carry prefix. */
static void play(const contest_opts *o, const char *addr, const char *prefix,
                 const int64_t *stock, const cart *carts, round_result *r)
{
    memset(r, 0, sizeof *r);
    r->rc = 1;
    char sku[64];
    stockd_client *admin = connect_to(o, addr);
    if (admin == NULL)
        return;
    for (uint32_t i = 0; i < o->skus; i++) {
        snprintf(sku, sizeof sku, "%s-%" PRIu32, prefix, i);
        stockd_sku_put_req put = {.sku = sku, .has_own_on_hand = true, .own_on_hand = stock[i]};
        stockd_stock st;
        if (stockd_sku_put(admin, &put, &st) != STOCKD_OK) {
            fprintf(stderr, "stockbench: contest: sku.put %s: %s\n", sku, stockd_client_errstr(admin));
            stockd_client_free(admin);
            return;
        }
    }
    stockd_client *conn[CONTEST_CONNS_MAX] = {0};
    uint32_t sent[CONTEST_CONNS_MAX] = {0};
    bool ok = true;
    for (uint32_t j = 0; j < o->conns && ok; j++)
        ok = (conn[j] = connect_to(o, addr)) != NULL;
    double t0 = now_s();
    for (uint32_t k = 0; k < o->carts && ok; k++) {
        const cart *ct = &carts[k];
        char names[CONTEST_LINES_MAX][64];
        stockd_line lines[CONTEST_LINES_MAX];
        for (uint32_t l = 0; l < ct->n; l++) {
            snprintf(names[l], sizeof names[l], "%s-%" PRIu32, prefix, ct->sku[l]);
            lines[l] = (stockd_line){.sku = names[l], .qty = 1};
        }
        char oid[64];
        snprintf(oid, sizeof oid, "%s-%s", prefix, ct->order_id);
        stockd_reserve_lines_req req = {.order_id = oid, .lines = lines, .n_lines = ct->n,
                                        .deadline_ms = o->deadline_ms};
        uint32_t msgid;
        stockd_client *c = conn[k % o->conns];
        if (stockd_send_reserve_lines(c, &req, &msgid) != STOCKD_OK) {
            fprintf(stderr, "stockbench: contest: send: %s\n", stockd_client_errstr(c));
            ok = false;
        }
        sent[k % o->conns]++;
    }
    for (uint32_t j = 0; j < o->conns && ok; j++)
        ok = stockd_flush(conn[j]) == STOCKD_OK;
    for (uint32_t j = 0; j < o->conns && ok; j++) {
        for (uint32_t n = 0; n < sent[j]; n++) {
            stockd_reply rep;
            stockd_rc rc = stockd_recv_any(conn[j], &rep);
            if (rc == STOCKD_OK) {
                stockd_order ord;
                if (stockd_reply_order(conn[j], &rep, &ord) == STOCKD_OK &&
                    strcmp(ord.status, "confirmed") == 0)
                    r->confirmed++;
                else
                    count_code(r, "not confirmed");
            } else if (rc == STOCKD_ERR_SERVER) {
                const stockd_error *e = stockd_client_error(conn[j]);
                if (strcmp(e->code, "insufficient") == 0)
                    r->refused++;
                else
                    count_code(r, e->code);
            } else {
                fprintf(stderr, "stockbench: contest: recv: %s\n", stockd_client_errstr(conn[j]));
                ok = false;
                break;
            }
            r->answered++;
        }
    }
    r->seconds = now_s() - t0;
    for (uint32_t j = 0; j < o->conns; j++)
        stockd_client_free(conn[j]);
    for (uint32_t i = 0; i < o->skus && ok; i++) {
        snprintf(sku, sizeof sku, "%s-%" PRIu32, prefix, i);
        stockd_stock st;
        if (stockd_stock_get(admin, sku, &st) != STOCKD_OK) {
            ok = false;
            break;
        }
        r->sold_out += st.available == 0;
    }
    stockd_client_free(admin);
    r->rc = ok ? 0 : 1;
}

static void print_round(const char *what, const char *addr, const contest_opts *o,
                        const round_result *r, double ratio)
{
    char other[256] = "";
    size_t n = 0;
    for (int i = 0; i < CONTEST_CODES && r->codes[i][0]; i++)
        n += (size_t)snprintf(other + n, sizeof other - n, "%s%s %" PRIu32, n ? ", " : "",
                              r->codes[i], r->code_n[i]);
    printf("| %s | %s | %" PRIu32 " | %" PRIu32 " | %" PRIu32 " | %s | %.2f | %.0f | %" PRIu32
           "/%" PRIu32 " | ",
           what, addr, o->carts, r->confirmed, r->refused, n ? other : "none", r->seconds,
           r->seconds > 0 ? r->answered / r->seconds : 0.0, r->sold_out, o->skus);
    if (ratio >= 0)
        printf("%.1f %% |\n", ratio * 100);
    else
        printf("100 %% |\n");
}

static int contest_usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "stockbench: --cart-contest: %s\n", msg);
    fprintf(stderr,
            "usage: stockbench --cart-contest --target HOST:PORT --single-target HOST:PORT\n"
            "         [--seed N] [--carts N (300)] [--skus N (20)] [--stock LO..HI (6..15)]\n"
            "         [--connections N (30)] [--deadline-ms MS (15000)] [--admin-token T]\n"
            "Plays one seeded sequence of carts (2..5 lines of 1 unit) on --single-target\n"
            "(one instance) and on --target (a cluster, e.g. HAProxy) and prints, for each,\n"
            "carts confirmed and refused, other errors, seconds, carts/s, SKUs sold out,\n"
            "and the cluster's confirmed carts as a share of the instance's.\n");
    return 2;
}

int contest_main(int argc, char **argv)
{
    contest_opts o = {.seed = 1, .carts = 300, .skus = 20, .conns = 30, .stock_lo = 6,
                      .stock_hi = 15, .deadline_ms = 15000};
    static const struct option longs[] = {
        {"cart-contest", no_argument, NULL, 'C'},
        {"target", required_argument, NULL, 't'},
        {"single-target", required_argument, NULL, 's'},
        {"seed", required_argument, NULL, 'S'},
        {"carts", required_argument, NULL, 'n'},
        {"skus", required_argument, NULL, 'k'},
        {"stock", required_argument, NULL, 'q'},
        {"connections", required_argument, NULL, 'c'},
        {"deadline-ms", required_argument, NULL, 'd'},
        {"admin-token", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = 0;
        if (ch != 'C' && ch != 't' && ch != 's' && ch != 'a' && ch != 'q' && ch != 'h') {
            v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end)
                return contest_usage("a number was expected");
        }
        switch (ch) {
        case 'C': break;
        case 't': o.cluster = optarg; break;
        case 's': o.single = optarg; break;
        case 'S': o.seed = v; break;
        case 'n':
            if (v < 1 || v > CONTEST_CARTS_MAX)
                return contest_usage("--carts: 1..100000");
            o.carts = (uint32_t)v;
            break;
        case 'k':
            if (v < CONTEST_LINES_MAX || v > CONTEST_SKUS_MAX)
                return contest_usage("--skus: 5..10000");
            o.skus = (uint32_t)v;
            break;
        case 'q':
            if (sscanf(optarg, "%" SCNd64 "..%" SCNd64, &o.stock_lo, &o.stock_hi) != 2 ||
                o.stock_lo < 0 || o.stock_hi < o.stock_lo || o.stock_hi > 1000000000)
                return contest_usage("--stock: LO..HI, 0 <= LO <= HI <= 1e9");
            break;
        case 'c':
            if (v < 1 || v > CONTEST_CONNS_MAX)
                return contest_usage("--connections: 1..256");
            o.conns = (uint32_t)v;
            break;
        case 'd':
            if (v < 1 || v > 600000)
                return contest_usage("--deadline-ms: 1..600000");
            o.deadline_ms = (int64_t)v;
            break;
        case 'a': o.token = optarg; break;
        case 'h': contest_usage(NULL); return 0;
        default: return contest_usage(NULL);
        }
    }
    if (optind < argc || o.cluster == NULL || o.single == NULL)
        return contest_usage("--target and --single-target are required");
    int64_t *stock = calloc(o.skus, sizeof *stock);
    cart *carts = calloc(o.carts, sizeof *carts);
    if (stock == NULL || carts == NULL) {
        fprintf(stderr, "stockbench: contest: out of memory\n");
        return 3;
    }
    rng_state = o.seed * UINT64_C(0x9E3779B97F4A7C15) + 1;
    for (uint32_t i = 0; i < o.skus; i++)
        stock[i] = o.stock_lo + (int64_t)(rnd() % (uint64_t)(o.stock_hi - o.stock_lo + 1));
    for (uint32_t k = 0; k < o.carts; k++) {
        cart *ct = &carts[k];
        snprintf(ct->order_id, sizeof ct->order_id, "c%" PRIu32, k);
        ct->n = rnd_in(2, CONTEST_LINES_MAX);
        for (uint32_t l = 0; l < ct->n; l++) {
            uint32_t s;
            bool dup;
            do {
                s = (uint32_t)(rnd() % o.skus);
                dup = false;
                for (uint32_t m = 0; m < l; m++)
                    dup = dup || ct->sku[m] == s;
            } while (dup);
            ct->sku[l] = s;
        }
    }
    /* A prefix per run and target: runs against long-lived servers never
     * meet each other's SKUs or orders. */
    char nonce[16], p1[32], p3[32];
    snprintf(nonce, sizeof nonce, "%lx", (unsigned long)((uint64_t)time(NULL) ^ (uint64_t)getpid() << 20) & 0xffffffUL);
    snprintf(p1, sizeof p1, "cc%s-one", nonce);
    snprintf(p3, sizeof p3, "cc%s-all", nonce);
    round_result one, all;
    play(&o, o.single, p1, stock, carts, &one);
    play(&o, o.cluster, p3, stock, carts, &all);
    printf("cart contest: seed %" PRIu64 ", %" PRIu32 " carts of 2..5 lines x 1 unit over %" PRIu32
           " SKUs of %" PRId64 "..%" PRId64 " units, %" PRIu32 " connections, all at once\n\n",
           o.seed, o.carts, o.skus, o.stock_lo, o.stock_hi, o.conns);
    printf("| target | address | carts | confirmed | refused | other errors | seconds | carts/s "
           "| sold out | confirmed vs one instance |\n|---|---|---|---|---|---|---|---|---|---|\n");
    print_round("one instance", o.single, &o, &one, -1);
    print_round("cluster", o.cluster, &o, &all,
                one.confirmed ? (double)all.confirmed / one.confirmed : 0.0);
    free(stock);
    free(carts);
    return one.rc || all.rc ? 3 : 0;
}
