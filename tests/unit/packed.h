/* packed.h — for unit tests that check what a packer wrote: a buffer with
 * its packer, unpacked again as exactly one object (nothing before it is
 * left over, nothing after). Include after <cmocka.h> and <msgpack.h>. */
#ifndef STOCKD_TEST_PACKED_H
#define STOCKD_TEST_PACKED_H

#include <stdio.h>
#include <string.h>

typedef struct packed {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
} packed;

static inline void start(packed *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
    msgpack_unpacked_init(&p->u);
}

/* The one object packed: the whole buffer, or the test fails. */
static inline const msgpack_object *done(packed *p)
{
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&p->u, p->sb.data, p->sb.size, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, p->sb.size);
    return &p->u.data;
}

static inline void finish(packed *p)
{
    msgpack_unpacked_destroy(&p->u);
    msgpack_sbuffer_destroy(&p->sb);
}

/* The keys of a map, joined with ',' */
static inline void keys(const msgpack_object *m, char *out, size_t cap)
{
    assert_int_equal(m->type, MSGPACK_OBJECT_MAP);
    out[0] = '\0';
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        assert_int_equal(k->type, MSGPACK_OBJECT_STR);
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%.*s", i ? "," : "", (int)k->via.str.size, k->via.str.ptr);
    }
}

#endif
