/* test_listen.c -- the unicast name registry: the newest
 * registration holds a name whatever its kind, removal falls back to the
 * most recent earlier one; removal by name and by owner. */
#include "route/listen.h"
#include "unit.h"

static int a, b; /* two owners */

TEST(add_find_and_owner_conflicts) {
    listen_registry *r = listen_new();
    listener holder = {0};
    CHECK(listen_add(r, "x", 1, LISTENER_HANDLER, &a, NULL) == 1);
    CHECK(listen_add(r, "x", 1, LISTENER_HANDLER, &a, NULL) == 0);
    CHECK(listen_add(r, "x", 1, LISTENER_CONN, &b, &holder) == 2);
    CHECK(holder.owner == &a && holder.kind == LISTENER_HANDLER);
    const listener *l = listen_find(r, "x", 1);
    CHECK(l && l->owner == &b && l->kind == LISTENER_CONN);
    CHECK(listen_add(r, "x", 1, LISTENER_HANDLER, &a, NULL) == 0); /* no take-back */
    CHECK(listen_find(r, "x", 1)->owner == &b);
    CHECK(listen_find_other(r, "x", 1, LISTENER_HANDLER, &b)->owner == &a);
    CHECK(listen_find_other(r, "x", 1, LISTENER_HANDLER, &a) == NULL);
    CHECK(listen_has(r, "x", 1, &a) && listen_has(r, "x", 1, &b));
    CHECK(listen_find(r, "y", 1) == NULL);
    CHECK(listen_count(r) == 1);
    listen_free(r);
}

TEST(names_are_binary_safe) {
    listen_registry *r = listen_new();
    CHECK(listen_add(r, "a\0b", 3, LISTENER_HANDLER, &a, NULL) == 1);
    CHECK(listen_add(r, "a\0c", 3, LISTENER_HANDLER, &b, NULL) == 1);
    CHECK(listen_find(r, "a", 1) == NULL);
    CHECK(listen_find(r, "a\0c", 3)->owner == &b);
    listen_free(r);
}

TEST(remove_only_by_the_owner) {
    listen_registry *r = listen_new();
    listen_add(r, "x", 1, LISTENER_HANDLER, &a, NULL);
    CHECK(listen_remove(r, "x", 1, &b) == 0);
    CHECK(listen_remove(r, "x", 1, &a) == 1);
    CHECK(listen_remove(r, "x", 1, &a) == 0);
    CHECK(listen_add(r, "x", 1, LISTENER_CONN, &b, NULL) == 1);
    listen_free(r);
}

TEST(fallback_to_the_most_recent_earlier_registration) {
    listen_registry *r = listen_new();
    static int c3;
    listen_add(r, "x", 1, LISTENER_HANDLER, &a, NULL);
    listen_add(r, "x", 1, LISTENER_CONN, &b, NULL);
    listen_add(r, "x", 1, LISTENER_CONN, &c3, NULL);
    CHECK(listen_depth(r, "x", 1) == 3 && listen_depth(r, "y", 1) == 0);
    CHECK(listen_remove(r, "x", 1, &b) == 1); /* not the holder: holder unchanged */
    CHECK(listen_find(r, "x", 1)->owner == &c3);
    CHECK(listen_depth(r, "x", 1) == 2);
    CHECK(listen_remove_owner(r, &c3) == 1);
    CHECK(listen_find(r, "x", 1)->owner == &a);
    CHECK(listen_remove(r, "x", 1, &a) == 1);
    CHECK(listen_find(r, "x", 1) == NULL && listen_count(r) == 0);
    listen_free(r);
}

TEST(remove_owner_removes_all_its_names) {
    listen_registry *r = listen_new();
    char name[16];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(name, sizeof name, "n%d", i);
        listen_add(r, name, (size_t)n, LISTENER_HANDLER, i % 2 ? &a : &b, NULL);
    }
    CHECK(listen_remove_owner(r, &a) == 50);
    CHECK(listen_count(r) == 50);
    CHECK(listen_find(r, "n1", 2) == NULL);
    CHECK(listen_find(r, "n2", 2)->owner == &b);
    listen_free(r);
    listen_free(NULL);
}

UNIT_MAIN()
