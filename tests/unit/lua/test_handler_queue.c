/* test_handler_queue.c -- the per-handler event FIFO: copies, order across
 * growth and wrap-around, tail replacement. */
#include <stdlib.h>

#include "lua/handler_queue.h"
#include "unit.h"

static hevent *ev(uint64_t id, const char *pat) {
    char msg[32];
    int n = snprintf(msg, sizeof msg, "m%llu", (unsigned long long)id);
    delivery d = {pat, pat ? strlen(pat) : 0, "chan", 4, msg, (size_t)n, id, 1.5};
    return hevent_new(&d);
}

TEST(event_is_a_full_copy) {
    char chan[] = "c\0h", msg[] = "pay\0load", pat[] = "c*";
    delivery d = {pat, 2, chan, 3, msg, 8, 7, 123.0};
    hevent *e = hevent_new(&d);
    chan[0] = msg[0] = pat[0] = 'X';
    CHECK(e->id == 7 && e->time_ms == 123.0);
    CHECK(e->clen == 3 && memcmp(e->chan, "c\0h", 3) == 0);
    CHECK(e->mlen == 8 && memcmp(e->msg, "pay\0load", 8) == 0);
    CHECK(e->plen == 2 && strcmp(e->pattern, "c*") == 0);
    free(e);
    delivery d2 = {NULL, 0, "c", 1, "", 0, 8, 0};
    e = hevent_new(&d2);
    CHECK(e->pattern == NULL && e->mlen == 0 && e->msg[0] == '\0');
    free(e);
}

TEST(fifo_order_through_growth_and_wraparound) {
    hqueue q;
    hqueue_init(&q);
    uint64_t next_in = 1, next_out = 1;
    int ok = 1;
    /* interleave pushes and pops so the ring wraps while it grows */
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < round % 37 + 1; i++) ok &= hqueue_push(&q, ev(next_in++, NULL)) == 0;
        for (int i = 0; i < round % 23; i++) {
            hevent *e = hqueue_pop(&q);
            if (!e) break;
            ok &= e->id == next_out++;
            free(e);
        }
        ok &= q.count == next_in - next_out;
    }
    CHECK(ok);
    hevent *e;
    while ((e = hqueue_pop(&q))) {
        CHECK(e->id == next_out++);
        free(e);
    }
    CHECK(next_out == next_in && q.count == 0);
    CHECK(hqueue_pop(&q) == NULL && hqueue_tail(&q) == NULL);
    hqueue_clear(&q);
}

TEST(tail_can_be_replaced) {
    hqueue q;
    hqueue_init(&q);
    hqueue_push(&q, ev(1, "a*"));
    hqueue_push(&q, ev(2, "b*"));
    CHECK(hqueue_tail(&q)->id == 2);
    free(hqueue_replace_tail(&q, ev(2, "*")));
    CHECK(strcmp(hqueue_tail(&q)->pattern, "*") == 0);
    hevent *e = hqueue_pop(&q);
    CHECK(e->id == 1);
    free(e);
    hqueue_clear(&q); /* frees what is left */
    CHECK(q.count == 0 && q.items == NULL);
}

TEST(a_drained_burst_gives_its_memory_back) {
    hqueue q;
    hqueue_init(&q);
    for (uint64_t i = 0; i < 10000; i++) hqueue_push(&q, ev(i, NULL));
    CHECK(q.cap >= 10000);
    hevent *e;
    while ((e = hqueue_pop(&q))) free(e);
    CHECK(q.cap == 0 && q.items == NULL);
    hqueue_clear(&q);
}

TEST(the_queue_counts_the_bytes_it_holds) {
    hqueue q;
    hqueue_init(&q);
    hevent *a = ev(1, "a*"), *b = ev(2, NULL);
    size_t sa = hevent_size(a), sb = hevent_size(b);
    CHECK(sa > sizeof(hevent) && sb > sizeof(hevent) && sa != sb);
    hqueue_push(&q, a);
    hqueue_push(&q, b);
    CHECK(q.bytes == sa + sb);
    hevent *c = ev(2, "long pattern*");
    free(hqueue_replace_tail(&q, c));
    CHECK(q.bytes == sa + hevent_size(c));
    hevent *e = hqueue_pop(&q);
    free(e);
    CHECK(q.bytes == hevent_size(c));
    hqueue_clear(&q);
    CHECK(q.bytes == 0);
}

UNIT_MAIN()
