/* test_stats.c — `stats` and /metrics render the same snapshot: a counter
 * set in the snapshot shows in both, the `stats` map keeps its 15 top-level
 * keys in their order, /metrics stays valid exposition lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <msgpack.h>

#include "stockd/stats.h"

static hist h_lat, h_ops, h_commit;

static stats_snapshot *snap(void)
{
    stats_snapshot *s = calloc(1, sizeof *s);
    s->node = "n1";
    s->uptime_ms = 1234;
    s->listening = s->store_up = s->ring_settled = true;
    s->n_methods = 1;
    s->n_results = 1;
    s->result_names[0] = "ok";
    s->methods[0].name = "reserve";
    s->methods[0].results[0] = 42;
    s->methods[0].latency_us = &h_lat;
    hist_record(&h_lat, 150);
    s->batch_ops = &h_ops;
    s->commit_us = &h_commit;
    s->conns.current = 7;
    s->engine.batches = 3;
    s->outcome_unknown = 5;
    s->n_trust = 1;
    strcpy(s->trust[0].supplier_id, "sup-1");
    s->trust[0].effective = 0.5;
    return s;
}

static void test_stats_map(void **state)
{
    (void)state;
    stats_snapshot *s = snap();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    stats_pack(s, &pk);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, sb.size);
    const msgpack_object *m = &u.data;
    assert_int_equal(m->type, MSGPACK_OBJECT_MAP);
    static const char *const want[] = {"node", "uptime_ms", "cluster", "connections", "requests",
                                       "latency_us", "queue", "batches", "commits", "read_path",
                                       "supplier", "alerts", "notify", "state", "lines"};
    assert_int_equal(m->via.map.size, 15);
    for (uint32_t i = 0; i < 15; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        assert_int_equal(k->via.str.size, strlen(want[i]));
        assert_memory_equal(k->via.str.ptr, want[i], k->via.str.size);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    free(s);
}

static void test_metrics_text(void **state)
{
    (void)state;
    stats_snapshot *s = snap();
    struct evbuffer *b = evbuffer_new();
    stats_metrics(s, b);
    size_t n = evbuffer_get_length(b);
    char *t = malloc(n + 1);
    evbuffer_remove(b, t, n);
    t[n] = '\0';
    assert_non_null(strstr(t, "stockd_requests_total{method=\"reserve\",result=\"ok\"} 42\n"));
    assert_non_null(strstr(t, "stockd_connections 7\n"));
    assert_non_null(strstr(t, "stockd_batches_total 3\n"));
    assert_non_null(strstr(t, "stockd_outcome_unknown_total 5\n"));
    /* every line a comment or "name[{labels}] value" */
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n"))
        assert_true(line[0] == '#' || strchr(line, ' ') != NULL);
    free(t);
    evbuffer_free(b);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_map),
        cmocka_unit_test(test_metrics_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
