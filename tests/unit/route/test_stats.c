/* test_stats.c -- the per-event-name statistics: exact counters, the LRU
 * bound and its eviction order, the one-minute rate window, glob filtering
 * and name order. */
#include "route/stats.h"

#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define T0 1700000000000.0 /* a fixed "now" in ms */

typedef struct collected {
    char names[16][32];
    stats_view v[16];
    int n;
} collected;

static void collect(const stats_view *v, void *ctx) {
    collected *c = ctx;
    if (c->n >= 16) return;
    memcpy(c->names[c->n], v->name, v->len);
    c->names[c->n][v->len] = '\0';
    c->v[c->n] = *v;
    c->v[c->n].name = c->names[c->n];
    c->n++;
}

static collected all(stats *st, const char *pat, double now) {
    collected c = {0};
    stats_foreach(st, pat, pat ? strlen(pat) : 0, now, collect, &c);
    return c;
}

static void pub(stats *st, const char *name, size_t delivered, double now) {
    stats_published(st, name, strlen(name), stats_hash(name, strlen(name)), delivered, now);
}

TEST(counters_are_exact) {
    stats *st = stats_new(10);
    for (int i = 0; i < 5; i++) pub(st, "a", 3, T0 + i);
    stats_called(st, "a", 1);
    collected c = all(st, NULL, T0 + 10);
    CHECK(c.n == 1);
    CHECK(c.v[0].published == 5);
    CHECK(c.v[0].delivered == 15);
    CHECK(c.v[0].called == 1);
    CHECK(stats_total(st) == 6);
    stats_free(st);
}

TEST(bound_evicts_least_recently_seen) {
    stats *st = stats_new(3);
    pub(st, "a", 0, T0);
    pub(st, "b", 0, T0);
    pub(st, "c", 0, T0);
    pub(st, "a", 0, T0); /* b is now the least recently seen */
    pub(st, "d", 0, T0);
    CHECK(stats_count(st) == 3);
    CHECK(stats_evicted(st) == 1);
    collected c = all(st, NULL, T0);
    CHECK(c.n == 3);
    CHECK(strcmp(c.names[0], "a") == 0 && strcmp(c.names[1], "c") == 0 && strcmp(c.names[2], "d") == 0);
    for (int i = 0; i < 1000; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        pub(st, name, 0, T0);
        CHECK(stats_count(st) <= 3);
    }
    CHECK(stats_evicted(st) == 1001);
    stats_free(st);
}

TEST(lowering_the_bound_evicts_at_once) {
    stats *st = stats_new(100);
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        pub(st, name, 0, T0);
    }
    stats_set_max_names(st, 4);
    CHECK(stats_count(st) == 4);
    CHECK(stats_evicted(st) == 6);
    collected c = all(st, NULL, T0);
    CHECK(c.n == 4 && strcmp(c.names[0], "n6") == 0 && strcmp(c.names[3], "n9") == 0);
    stats_free(st);
}

TEST(rate_window_is_the_last_sixty_seconds) {
    stats *st = stats_new(10);
    for (int i = 0; i < 120; i++) pub(st, "a", 0, T0 + 1000.0 * i); /* one a second for 2 minutes */
    collected c = all(st, NULL, T0 + 1000.0 * 119);
    CHECK(c.v[0].last_minute == 60);
    CHECK(c.v[0].rate == 1.0);
    c = all(st, NULL, T0 + 1000.0 * 149); /* 30 quiet seconds later */
    CHECK(c.v[0].last_minute == 30);
    c = all(st, NULL, T0 + 1000.0 * 200); /* a quiet minute later */
    CHECK(c.v[0].last_minute == 0 && c.v[0].rate == 0.0);
    CHECK(c.v[0].published == 120);
    CHECK(c.v[0].last_seen_ms == T0 + 1000.0 * 119);
    pub(st, "a", 0, T0 + 1000.0 * 500); /* a long gap clears the window */
    c = all(st, NULL, T0 + 1000.0 * 500);
    CHECK(c.v[0].last_minute == 1);
    stats_free(st);
}

TEST(glob_filter_and_bytewise_order) {
    stats *st = stats_new(10);
    pub(st, "orders.paid.v1", 0, T0);
    pub(st, "users.new.v1", 0, T0);
    pub(st, "orders.created.v2", 0, T0);
    pub(st, "orders.created.v1", 0, T0);
    collected c = all(st, "orders.*.v1", T0);
    CHECK(c.n == 2);
    CHECK(strcmp(c.names[0], "orders.created.v1") == 0 && strcmp(c.names[1], "orders.paid.v1") == 0);
    c = all(st, NULL, T0);
    CHECK(c.n == 4 && strcmp(c.names[3], "users.new.v1") == 0);
    stats_free(st);
}

UNIT_MAIN()
