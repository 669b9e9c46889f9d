/* test_stockctl.c — stockctl's pure parts, linked from stockctl_lib: the
 * command line (flags, values, positionals, the per-command checks, the
 * exit codes and the message a bad one prints), the --supplier and CSV
 * splitters, and the rendering of maps as aligned text and as JSON, and of
 * a stats map as the `top` view. One test runs ctl_main whole against a
 * peer this test plays on a thread (one canned error reply), to see a
 * server error become exit 1 and one JSON object on stdout.
 *
 * Method: stdout and stderr are sent to temporary files around each call
 * and read back, so the assertions see exactly what an operator would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stockd/codec.h"
#include "../../src/stockctl_internal.h"

/* ------------------------------------------------------------ capture */

typedef struct capture {
    int fd, saved;
    FILE *tmp;
    char text[8192];
} capture;

static void cap_begin(capture *c, int fd)
{
    fflush(fd == 1 ? stdout : stderr);
    c->fd = fd;
    c->saved = dup(fd);
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    dup2(fileno(c->tmp), fd);
}

static const char *cap_end(capture *c)
{
    fflush(c->fd == 1 ? stdout : stderr);
    dup2(c->saved, c->fd);
    close(c->saved);
    rewind(c->tmp);
    size_t n = fread(c->text, 1, sizeof c->text - 1, c->tmp);
    c->text[n] = '\0';
    fclose(c->tmp);
    return c->text;
}

/* Runs ctl_main on the arguments; its exit code, stdout and stderr. */
typedef struct run {
    int code;
    capture out, err;
} run;

static void run_main(run *r, int argc, const char **argv)
{
    cap_begin(&r->out, 1);
    cap_begin(&r->err, 2);
    r->code = ctl_main(argc, (char **)argv);
    cap_end(&r->err);
    cap_end(&r->out);
}

#define RUN(r, ...)                                                                 \
    do {                                                                            \
        const char *argv_[] = {"stockctl", __VA_ARGS__};                            \
        run_main((r), (int)(sizeof argv_ / sizeof argv_[0]), argv_);                \
    } while (0)

/* Parses argv into o; the result, and what went to stderr in err. */
static int parse(ctl_opts *o, capture *err, int argc, const char **argv)
{
    memset(o, 0, sizeof *o);
    cap_begin(err, 2);
    int r = ctl_parse_args(argc, (char **)argv, o);
    cap_end(err);
    return r;
}

#define ARGV(...) ((const char *[]){"stockctl", __VA_ARGS__})
#define ARGC(...) ((int)(sizeof ARGV(__VA_ARGS__) / sizeof(const char *)))
#define PARSE(o, err, ...) parse((o), (err), ARGC(__VA_ARGS__), ARGV(__VA_ARGS__))

/* ------------------------------------------------------- command line */

static void test_args_parsed(void **state)
{
    (void)state;
    ctl_opts o;
    capture err;
    assert_int_equal(PARSE(&o, &err, "--json", "--addr=h:1", "reserve", "o1", "s", "-5",
                           "--hold", "250", "--timeout=900"),
                     -1);
    assert_true(o.json);
    assert_string_equal(o.addr, "h:1");
    assert_int_equal(o.npos, 4);
    assert_string_equal(o.pos[3], "-5");   /* a negative number is a positional */
    assert_true(o.has_hold);
    assert_int_equal(o.hold_ms, 250);
    assert_int_equal(o.timeout_ms, 900);
    assert_string_equal(err.text, "");
    /* after --, what looks like a flag is a positional */
    assert_int_equal(PARSE(&o, &err, "get", "--", "--odd-sku"), -1);
    assert_int_equal(o.npos, 2);
    assert_string_equal(o.pos[1], "--odd-sku");
    assert_int_equal(PARSE(&o, &err, "reserve", "o", "--line", "a:1", "--line=b:c:2"), -1);
    assert_int_equal(o.n_lines, 2);
    assert_string_equal(o.line_args[1], "b:c:2");
    assert_int_equal(PARSE(&o, &err, "supplier-put", "s", "--trust", "0.5", "--event", "on"), -1);
    assert_true(o.has_trust);
    assert_true(o.trust == 0.5);
    assert_true(o.has_event);
    assert_true(o.event_on);
}

/* Each bad flag: exit code 2 and a message naming it. */
static void test_args_refused(void **state)
{
    (void)state;
    static const struct {
        const char *argv[4];
        const char *says;
    } cases[] = {
        {{"--timeout", "0", "ping"}, "stockctl: bad --timeout '0' (1..3600000 ms)\n"},
        {{"--nope", "x", "ping"}, "stockctl: unknown option --nope\n"},
        {{"ping", "--hold"}, "stockctl: --hold needs a value\n"},
        {{"--trust", "1.5", "supplier-put"}, "stockctl: bad --trust '1.5' (0..1)\n"},
        {{"--event", "maybe", "x"}, "stockctl: bad --event 'maybe' (on or off)\n"},
        {{"--limit", "1001", "alerts"}, "stockctl: bad --limit '1001' (1..1000)\n"},
        {{"--own", "12abc", "sku-put"}, "stockctl: bad --own '12abc'\n"},
        {{"--interval", "99", "top"}, "stockctl: bad --interval '99' (100..60000 ms)\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[5] = {"stockctl"};
        int argc = 1;
        while (argc < 5 && cases[i].argv[argc - 1])
            argv[argc] = cases[i].argv[argc - 1], argc++;
        ctl_opts o;
        capture err;
        assert_int_equal(parse(&o, &err, argc, argv), EXIT_USAGE);
        assert_non_null(strstr(err.text, cases[i].says));
        assert_non_null(strstr(err.text, "(try stockctl --help)"));
    }
    ctl_opts o;
    capture err;
    assert_int_equal(PARSE(&o, &err, "a", "b", "c", "d", "e", "f", "g", "h", "i"), EXIT_USAGE);
    assert_non_null(strstr(err.text, "too many arguments"));
}

static void test_args_help(void **state)
{
    (void)state;
    run r;
    RUN(&r, "--help");
    assert_int_equal(r.code, 0);
    assert_true(strncmp(r.out.text, "usage: stockctl [--addr HOST:PORT]", 34) == 0);
    assert_non_null(strstr(r.out.text, "exit status: 0 ok, 1 server error, 2 usage"));
    assert_string_equal(r.err.text, "");
}

/* ctl_main refuses before it connects: no command, an unknown one, the
 * wrong number of positionals, an option of another command. */
static void test_main_usage(void **state)
{
    (void)state;
    run r;
    RUN(&r, "--json");
    assert_int_equal(r.code, EXIT_USAGE);
    assert_non_null(strstr(r.err.text, "stockctl: no command given"));
    RUN(&r, "frobnicate");
    assert_int_equal(r.code, EXIT_USAGE);
    assert_non_null(strstr(r.err.text, "unknown command 'frobnicate'"));
    RUN(&r, "get");
    assert_int_equal(r.code, EXIT_USAGE);
    assert_non_null(strstr(r.err.text, "usage: stockctl get SKU"));
    RUN(&r, "reserve", "o", "--line", "a:1", "extra");
    assert_int_equal(r.code, EXIT_USAGE);
    assert_non_null(strstr(r.err.text, "ORDER --line SKU:QTY [--line SKU:QTY ...]"));
    RUN(&r, "--hold", "5", "get", "x");
    assert_int_equal(r.code, EXIT_USAGE);
    assert_non_null(strstr(r.err.text, "--hold and --deadline only apply to reserve"));
    RUN(&r, "--count", "3", "stats");
    assert_int_equal(r.code, EXIT_USAGE);
    assert_non_null(strstr(r.err.text, "--count only applies to top and watch"));
    assert_string_equal(r.out.text, "");
}

/* Nobody listens: a transport failure, exit 3, said on stderr. */
static void test_main_transport(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t sl = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &sl);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(a.sin_port));   /* bound, not listening */
    run r;
    RUN(&r, "--addr", addr, "--timeout", "500", "ping");
    close(fd);
    assert_int_equal(r.code, EXIT_TRANSPORT);
    assert_non_null(strstr(r.err.text, "stockctl: transport: connect 127.0.0.1:"));
    RUN(&r, "--json", "--addr", "no-port", "ping");
    assert_int_equal(r.code, EXIT_USAGE);   /* the client refuses the address itself */
    assert_non_null(strstr(r.err.text, "bad address 'no-port'"));
}

static void test_parse_supplier(void **state)
{
    (void)state;
    char buf[64];
    stockd_sku_put_req req = {0};
    strcpy(buf, "sup:123:spec-a:9");
    assert_true(ctl_parse_supplier(buf, &req));
    assert_string_equal(req.supplier_id, "sup");
    assert_int_equal(req.offer_id, 123);
    assert_string_equal(req.spec_id, "spec-a");
    assert_true(req.has_sku_id);
    assert_int_equal(req.sku_id, 9);
    const char *bad[] = {"sup:x:spec", "sup:1", ":1:spec", "sup:1:", "sup:-1:s", "sup:1:s:x",
                         "a:1:b:2:c", "a:1:b:2:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&req, 0, sizeof req);
        strcpy(buf, bad[i]);
        assert_false(ctl_parse_supplier(buf, &req));
    }
    int64_t v;
    assert_true(ctl_parse_i64("-7", -10, 10, &v));
    assert_int_equal(v, -7);
    assert_false(ctl_parse_i64("11", -10, 10, &v));
    assert_false(ctl_parse_i64(" 1", -10, 10, &v));
    assert_false(ctl_parse_i64("1 ", -10, 10, &v));
    assert_false(ctl_parse_i64("", -10, 10, &v));
}

static void test_csv_split(void **state)
{
    (void)state;
    char line[128];
    char *f[4];
    strcpy(line, " a , \"b,c\" ,\"d\"\"e\",");
    assert_int_equal(ctl_csv_split(line, f, 4), 4);
    assert_string_equal(f[0], "a");
    assert_string_equal(f[1], "b,c");
    assert_string_equal(f[2], "d\"e");
    assert_string_equal(f[3], "");
    strcpy(line, "\"open,2");
    assert_int_equal(ctl_csv_split(line, f, 4), -1);
    strcpy(line, "\"q\"x,2");
    assert_int_equal(ctl_csv_split(line, f, 4), -1);
    strcpy(line, "1,2,3,4,5");
    assert_int_equal(ctl_csv_split(line, f, 4), -1);
}

/* ---------------------------------------------------------- rendering */

typedef struct packed {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
} packed;

static void pk_start(packed *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
    msgpack_unpacked_init(&p->u);
}

static const msgpack_object *pk_done(packed *p)
{
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&p->u, p->sb.data, p->sb.size, &off),
                     MSGPACK_UNPACK_SUCCESS);
    return &p->u.data;
}

static void pk_free(packed *p)
{
    msgpack_unpacked_destroy(&p->u);
    msgpack_sbuffer_destroy(&p->sb);
}

/* Renders with fn into a string. */
static char *render(void (*fn)(FILE *, const msgpack_object *, int), const msgpack_object *o,
                    int indent)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fn(f, o, indent);
    fclose(f);
    return buf;
}

static void json_fn(FILE *f, const msgpack_object *o, int indent)
{
    (void)indent;
    ctl_json_obj(f, o);
}

static void test_render_human_map(void **state)
{
    (void)state;
    packed p;
    pk_start(&p);
    msgpack_pack_map(&p.pk, 5);
    codec_pack_kv_str(&p.pk, "sku", "hoodie-m");
    codec_pack_kv_int(&p.pk, "available", -2);
    codec_pack_kv_int(&p.pk, "created_at", 1700000000123);
    codec_pack_cstr(&p.pk, "supplier");
    msgpack_pack_map(&p.pk, 1);
    codec_pack_kv_bool(&p.pk, "ok", true);
    codec_pack_cstr(&p.pk, "lines");
    msgpack_pack_array(&p.pk, 2);
    msgpack_pack_uint8(&p.pk, 1);
    msgpack_pack_nil(&p.pk);
    char *s = render(ctl_human_map, pk_done(&p), 2);
    assert_string_equal(s, "  sku                  hoodie-m\n"
                           "  available            -2\n"
                           "  created_at           1700000000123 (2023-11-14T22:13:20.123Z)\n"
                           "  supplier            \n"
                           "    ok                 true\n"
                           "  lines                [1,null]\n");
    free(s);
    pk_free(&p);
}

static void test_render_json(void **state)
{
    (void)state;
    packed p;
    pk_start(&p);
    msgpack_pack_map(&p.pk, 6);
    codec_pack_cstr(&p.pk, "s");
    codec_pack_str(&p.pk, "a\"\\\n\x01\xff\xc3\xa9", 8);   /* quote, escapes, bad and good UTF-8 */
    codec_pack_cstr(&p.pk, "nan");
    msgpack_pack_double(&p.pk, NAN);
    codec_pack_cstr(&p.pk, "half");
    msgpack_pack_double(&p.pk, 0.5);
    codec_pack_cstr(&p.pk, "bin");
    msgpack_pack_bin(&p.pk, 2);
    msgpack_pack_bin_body(&p.pk, "\x00\xab", 2);
    msgpack_pack_int64(&p.pk, -4);   /* a key that is not a string */
    msgpack_pack_true(&p.pk);
    codec_pack_cstr(&p.pk, "big");
    msgpack_pack_uint64(&p.pk, UINT64_MAX);
    char *s = render(json_fn, pk_done(&p), 0);
    assert_string_equal(s, "{\"s\":\"a\\\"\\\\\\n\\u0001\\ufffd\xc3\xa9\",\"nan\":null,"
                           "\"half\":0.5,\"bin\":\"00ab\",\"-4\":true,"
                           "\"big\":18446744073709551615}");
    free(s);
    pk_free(&p);
}

/* A stats map as `top` shows it: the fields taken, rates from two polls. */
static void pack_stats(msgpack_packer *pk, int64_t reserves_ok)
{
    msgpack_pack_map(pk, 7);
    codec_pack_kv_str(pk, "node", "n1");
    codec_pack_kv_int(pk, "uptime_ms", 3723000);
    codec_pack_cstr(pk, "requests");
    msgpack_pack_map(pk, 1);
    codec_pack_cstr(pk, "reserve");
    msgpack_pack_map(pk, 2);
    codec_pack_kv_int(pk, "ok", reserves_ok);
    codec_pack_kv_int(pk, "insufficient", 2);
    codec_pack_cstr(pk, "latency_us");
    msgpack_pack_map(pk, 1);
    codec_pack_cstr(pk, "reserve");
    msgpack_pack_map(pk, 2);
    codec_pack_kv_int(pk, "p50", 120);
    codec_pack_kv_int(pk, "p99", 950);
    codec_pack_cstr(pk, "queue");
    msgpack_pack_map(pk, 2);
    codec_pack_kv_int(pk, "queued", 4);
    codec_pack_kv_int(pk, "total_max", 100000);
    codec_pack_cstr(pk, "state");
    msgpack_pack_map(pk, 2);
    codec_pack_kv_bool(pk, "store_up", true);
    codec_pack_kv_int(pk, "skus", 12);
    codec_pack_cstr(pk, "read_path");
    msgpack_pack_map(pk, 1);
    codec_pack_cstr(pk, "cache");
    msgpack_pack_map(pk, 2);
    codec_pack_kv_bool(pk, "up", false);
    codec_pack_kv_int(pk, "dirty", 3);
}

static void test_render_top(void **state)
{
    (void)state;
    top_snap prev, cur;
    packed p;
    pk_start(&p);
    pack_stats(&p.pk, 10);
    ctl_top_take(pk_done(&p), &prev);
    pk_free(&p);
    pk_start(&p);
    pack_stats(&p.pk, 20);
    ctl_top_take(pk_done(&p), &cur);
    pk_free(&p);
    assert_string_equal(cur.node, "n1");
    assert_int_equal(cur.nm, 1);
    assert_string_equal(cur.m[0].name, "reserve");
    assert_int_equal(cur.m[0].total, 22);
    assert_int_equal(cur.m[0].ok, 20);
    assert_int_equal(cur.m[0].p99, 950);
    assert_true(cur.store_up);
    assert_true(cur.has_redis);
    assert_false(cur.redis_up);
    cur.t_ms = prev.t_ms + 2000;   /* 10 more requests in 2 s */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ctl_top_draw(f, &cur, &prev, "127.0.0.1:7400");
    fclose(f);
    assert_non_null(strstr(buf, "stockd top  127.0.0.1:7400  node n1  up 1h02m03s  conns 0  "
                                "store UP"));
    assert_non_null(strstr(buf, "reserve               5.0           22         2        120"
                                "        950\n"));
    assert_non_null(strstr(buf, "all                   5.0           22\n"));
    assert_non_null(strstr(buf, "QUEUE    waiting 4 of 100000"));
    assert_non_null(strstr(buf, "REDIS    DOWN, 3 SKUs waiting for a cache refresh"));
    assert_non_null(strstr(buf, "STATE    skus 12  orders 0"));
    free(buf);
    /* the first frame has no rates */
    f = open_memstream(&buf, &len);
    ctl_top_draw(f, &cur, NULL, "x");
    fclose(f);
    assert_non_null(strstr(buf, "reserve                 -           22"));
    assert_null(strstr(buf, "\nall "));
    free(buf);
}

/* ------------------------------------------- one call against a peer */

typedef struct peer {
    int lfd;
    pthread_t th;
} peer;

/* Accepts one connection, reads one request, answers it with
 * `insufficient` (available 1) and closes. */
static void *peer_main(void *arg)
{
    peer *p = arg;
    int fd = accept(p->lfd, NULL, NULL);
    uint8_t buf[1024];
    size_t n = 0, fl = 0;
    while (codec_frame_check(buf, n, sizeof buf, 32, &fl) != CODEC_FRAME_OK) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    codec_pack_response_err_head(&pk, (uint32_t)codec_request_msgid(buf, fl), "insufficient",
                                 "only 1 left", false, 1);
    codec_pack_kv_int(&pk, "available", 1);
    codec_pack_response_err_tail(&pk);
    ssize_t w = write(fd, sb.data, sb.size);
    (void)w;
    msgpack_sbuffer_destroy(&sb);
    close(fd);
    return NULL;
}

static void test_main_server_error_json(void **state)
{
    (void)state;
    peer p;
    p.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(p.lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(p.lfd, 1), 0);
    socklen_t sl = sizeof a;
    getsockname(p.lfd, (struct sockaddr *)&a, &sl);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(a.sin_port));
    assert_int_equal(pthread_create(&p.th, NULL, peer_main, &p), 0);
    run r;
    RUN(&r, "--json", "--addr", addr, "reserve", "o1", "hoodie", "2");
    pthread_join(p.th, NULL);
    close(p.lfd);
    assert_int_equal(r.code, EXIT_SERVER);
    assert_string_equal(r.out.text, "{\"error\":{\"code\":\"insufficient\",\"message\":"
                                    "\"only 1 left\",\"retryable\":false,\"available\":1}}\n");
    assert_string_equal(r.err.text, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_parsed),
        cmocka_unit_test(test_args_refused),
        cmocka_unit_test(test_args_help),
        cmocka_unit_test(test_main_usage),
        cmocka_unit_test(test_main_transport),
        cmocka_unit_test(test_parse_supplier),
        cmocka_unit_test(test_csv_split),
        cmocka_unit_test(test_render_human_map),
        cmocka_unit_test(test_render_json),
        cmocka_unit_test(test_render_top),
        cmocka_unit_test(test_main_server_error_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
