/* test_router.c -- the router's competing-consumer groups and the receiver
 * count: one delivery per group, round robin among members, refusing
 * members and the publisher skipped, groups freed with their last member. */
#include "route/router.h"

#include <stdlib.h>
#include <string.h>

#include "route/stats.h"
#include "unit.h"

typedef struct fake {
    subscriber sub;
    int got, plain;
    int refuse;
    char last_group[16];
} fake;

static int fake_gdeliver(subscriber *s, const delivery *d, const char *group, size_t glen) {
    (void)d;
    fake *f = s->udata;
    if (f->refuse) return 0;
    f->got++;
    memcpy(f->last_group, group, glen < 15 ? glen : 15);
    f->last_group[glen < 15 ? glen : 15] = '\0';
    return 1;
}

static void fake_deliver(subscriber *s, const delivery *d) {
    (void)d;
    ((fake *)s->udata)->plain++;
}

static void fake_init(fake *f) {
    memset(f, 0, sizeof *f);
    f->sub.deliver = fake_deliver;
    f->sub.gdeliver = fake_gdeliver;
    f->sub.udata = f;
}

static size_t pub(router *r, subscriber *origin, const char *chan) {
    return router_publish_from(r, origin, chan, strlen(chan), "m", 1);
}

static int gsub(router *r, fake *f, const char *g, const char *p) {
    return router_gsubscribe(r, &f->sub, g, strlen(g), p, strlen(p));
}

TEST(one_delivery_per_group_round_robin) {
    router *r = router_new();
    fake f[3];
    for (int i = 0; i < 3; i++) {
        fake_init(&f[i]);
        CHECK(gsub(r, &f[i], "g", "jobs.*") == 1);
    }
    CHECK(gsub(r, &f[0], "g", "jobs.*") == 0);
    CHECK(router_group_count(r) == 1);
    for (int i = 0; i < 300; i++) CHECK(pub(r, NULL, "jobs.x") == 1);
    CHECK(f[0].got == 100 && f[1].got == 100 && f[2].got == 100);
    CHECK(f[0].plain == 0);
    CHECK(strcmp(f[0].last_group, "g") == 0);
    CHECK(router_receivers(r, "jobs.x", 6) == 1);
    for (int i = 0; i < 3; i++) router_unsubscribe_all(r, &f[i].sub);
    CHECK(router_group_count(r) == 0);
    CHECK(router_pattern_count(r) == 0);
    CHECK(pub(r, NULL, "jobs.x") == 0);
    router_free(r);
}

TEST(refusing_members_and_the_publisher_are_skipped) {
    router *r = router_new();
    fake a, b;
    fake_init(&a);
    fake_init(&b);
    gsub(r, &a, "g", "e");
    gsub(r, &b, "g", "e");
    a.refuse = 1;
    for (int i = 0; i < 10; i++) CHECK(pub(r, NULL, "e") == 1);
    CHECK(a.got == 0 && b.got == 10);
    CHECK(router_group_misses(r) == 0);
    for (int i = 0; i < 10; i++) CHECK(pub(r, &b.sub, "e") == 0); /* only b could, and b published */
    CHECK(b.got == 10);
    CHECK(router_group_misses(r) == 10 && router_deliveries(r) == 10);
    router_unsubscribe_all(r, &a.sub);
    router_unsubscribe_all(r, &b.sub);
    router_free(r);
}

TEST(groups_are_per_name_and_pattern) {
    router *r = router_new();
    fake a, b, c;
    fake_init(&a);
    fake_init(&b);
    fake_init(&c);
    gsub(r, &a, "g1", "x.*");
    gsub(r, &b, "g2", "x.*");
    gsub(r, &c, "g1", "x.y");
    CHECK(router_group_count(r) == 3);
    CHECK(pub(r, NULL, "x.y") == 3);
    CHECK(a.got == 1 && b.got == 1 && c.got == 1);
    CHECK(router_gunsubscribe(r, &a.sub, "g1", 2, "x.*", 3) == 1);
    CHECK(router_gunsubscribe(r, &a.sub, "g1", 2, "x.*", 3) == 0);
    CHECK(router_group_count(r) == 2);
    CHECK(a.sub.ngroups == 0);
    CHECK(pub(r, NULL, "x.z") == 1);
    router_unsubscribe_all(r, &b.sub);
    router_free(r); /* frees the remaining group and its member */
    CHECK(c.sub.ngroups == 0 && c.sub.groups == NULL);
}

TEST(every_publish_is_counted_in_stats) {
    router *r = router_new();
    fake a;
    fake_init(&a);
    router_subscribe(r, &a.sub, "c", 1);
    pub(r, NULL, "c");
    pub(r, NULL, "d");
    CHECK(stats_count(router_stats(r)) == 2);
    CHECK(stats_total(router_stats(r)) == 2);
    router_unsubscribe_all(r, &a.sub);
    router_free(r);
}

UNIT_MAIN()
