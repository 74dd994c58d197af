/* router.c -- channel and pattern subscriptions and event delivery
 * (see router.h).
 *
 * Data layout: a channel (or pattern) entry holds a dense array of the
 * subscriptions to it; a subscription (subref) is also kept in its
 * subscriber's own hash table, keyed by the entry pointer, and remembers its
 * index in the entry's array, so subscribe, unsubscribe and delivery are all
 * O(1) per subscription. Pattern entries live in a patindex, so a publish
 * only visits patterns that can match its channel.
 *
 * A competing-consumer group (router.h) is a `group` record that embeds its
 * own subscriber, pattern-subscribed like any other, whose deliver callback
 * picks one member. Members are kept like subscriptions: a dense array in
 * the group plus a gmember in the member's own hash table. With no groups
 * the publish path is untouched. Every publish is also counted in the
 * per-name statistics (stats.h): one more hash lookup. */
#include "router.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "base/clock.h"
#include "glob.h"
#include "patindex.h"
#include "stats.h"

#define STATS_DEFAULT_MAX_NAMES 10000

/* A channel or a pattern with its subscriptions. */
typedef struct entry {
    UT_hash_handle hh;      /* in router->channels (channels only) */
    struct subref **subs;
    size_t n, cap;
    int is_pattern;
    size_t len;
    char name[];
} entry;

typedef struct subref {
    UT_hash_handle hh;      /* in the subscriber's channels/patterns, key: e */
    entry *e;
    subscriber *s;
    size_t idx;             /* position in e->subs */
} subref;

typedef struct group {
    UT_hash_handle hh;      /* in router->groups, key: all of key[] (see GROUP_KEY_LEN) */
    subscriber gs;          /* the group as one pattern subscriber */
    struct gmember **members;
    size_t n, cap, next;    /* next: round-robin cursor */
    size_t glen, plen, klen;
    char key[];             /* group name, '\0', pattern, '\0', glen's bytes */
} group;

/* Bytes of a group's key. Names and patterns may hold NUL bytes, so the name's
 * length ends the key: without it group "a\0b" pattern "c" and group "a"
 * pattern "b\0c" would share one key, and one group. */
#define GROUP_KEY_LEN(glen, plen) ((glen) + (plen) + 2 + sizeof(size_t))

typedef struct gmember {
    UT_hash_handle hh;      /* in the member's groups, key: g */
    group *g;
    subscriber *s;
    size_t idx;             /* position in g->members */
} gmember;

static void member_leave(router *r, gmember *m);

struct router {
    entry *channels;        /* uthash by name */
    patindex *patterns;     /* pattern -> entry */
    group *groups;          /* uthash by key */
    stats *stats;
    double (*clock)(void *ctx);
    void *clock_ctx;
    router_hook_fn hook;
    void *hook_ctx;
    uint64_t next_id;
    uint64_t published;
    uint64_t deliveries;
    uint64_t group_misses;  /* events a matching group had no member to take */
    size_t refused;         /* deliveries of the publish in progress a subscriber dropped */
};

/* Creates an empty router; returns NULL if out of memory. */
router *router_new(void) {
    router *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->patterns = patindex_new();
    r->stats = stats_new(STATS_DEFAULT_MAX_NAMES);
    if (!r->patterns || !r->stats) {
        patindex_free(r->patterns);
        stats_free(r->stats);
        free(r);
        return NULL;
    }
    return r;
}

/* Frees a pattern entry's memory from within patindex_foreach. */
static int free_pattern_cb(void *udata, const char *pat, size_t plen, void *ctx) {
    (void)pat, (void)plen, (void)ctx;
    entry *e = udata;
    for (size_t i = 0; i < e->n; i++) free(e->subs[i]);
    free(e->subs);
    free(e);
    return 0;
}

/* Frees the router and every subscription it still holds. Subscribers must
 * not be used with it afterwards. */
void router_free(router *r) {
    if (!r) return;
    group *g, *gtmp;
    HASH_ITER(hh, r->groups, g, gtmp) {
        HASH_DEL(r->groups, g);
        for (size_t i = 0; i < g->n; i++) {
            subscriber *s = g->members[i]->s;
            HASH_CLEAR(hh, s->groups); /* drops the member's whole table, once */
            s->ngroups = 0;
            free(g->members[i]);
        }
        HASH_CLEAR(hh, g->gs.patterns); /* its subref goes with the pattern entries */
        free(g->members);
        free(g);
    }
    entry *e, *tmp;
    HASH_ITER(hh, r->channels, e, tmp) {
        HASH_DEL(r->channels, e);
        for (size_t i = 0; i < e->n; i++) free(e->subs[i]);
        free(e->subs);
        free(e);
    }
    patindex_foreach(r->patterns, free_pattern_cb, NULL);
    patindex_free(r->patterns);
    stats_free(r->stats);
    free(r);
}

/* Allocates an entry for name; NULL if out of memory. */
static entry *entry_new(const char *name, size_t len, int is_pattern) {
    entry *e = calloc(1, sizeof *e + len + 1);
    if (!e) return NULL;
    memcpy(e->name, name, len);
    e->len = len;
    e->is_pattern = is_pattern;
    return e;
}

/* Links subscriber s to entry e (not yet linked). Returns 1, or -1 if out of
 * memory. */
static int link_sub(entry *e, subscriber *s) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 4;
        subref **subs = realloc(e->subs, cap * sizeof *subs);
        if (!subs) return -1;
        e->subs = subs;
        e->cap = cap;
    }
    subref *ref = calloc(1, sizeof *ref);
    if (!ref) return -1;
    ref->e = e;
    ref->s = s;
    ref->idx = e->n;
    e->subs[e->n++] = ref;
    if (e->is_pattern) {
        HASH_ADD_PTR(s->patterns, e, ref);
        s->npatterns++;
    } else {
        HASH_ADD_PTR(s->channels, e, ref);
        s->nchannels++;
    }
    return 1;
}

/* Unlinks ref from its entry and subscriber and frees it. Returns 1 if the
 * entry has no subscribers left. */
static int unlink_sub(subref *ref) {
    entry *e = ref->e;
    subscriber *s = ref->s;
    e->subs[ref->idx] = e->subs[--e->n];
    e->subs[ref->idx]->idx = ref->idx;
    if (e->is_pattern) {
        HASH_DEL(s->patterns, ref);
        s->npatterns--;
    } else {
        HASH_DEL(s->channels, ref);
        s->nchannels--;
    }
    free(ref);
    return e->n == 0;
}

/* Frees a channel entry that has no subscribers left. */
static void drop_channel(router *r, entry *e) {
    HASH_DEL(r->channels, e);
    free(e->subs);
    free(e);
}

/* Frees a pattern entry that has no subscribers left. */
static void drop_pattern(router *r, entry *e) {
    patindex_remove(r->patterns, e->name, e->len);
    free(e->subs);
    free(e);
}

int router_subscribe(router *r, subscriber *s, const char *chan, size_t len) {
    entry *e;
    HASH_FIND(hh, r->channels, chan, len, e);
    if (e) {
        subref *ref;
        HASH_FIND_PTR(s->channels, &e, ref);
        if (ref) return 0;
    } else {
        if (!(e = entry_new(chan, len, 0))) return -1;
        HASH_ADD_KEYPTR(hh, r->channels, e->name, e->len, e);
    }
    if (link_sub(e, s) < 0) {
        if (e->n == 0) drop_channel(r, e);
        return -1;
    }
    return 1;
}

int router_psubscribe(router *r, subscriber *s, const char *pat, size_t len) {
    entry *e = patindex_get(r->patterns, pat, len);
    if (e) {
        subref *ref;
        HASH_FIND_PTR(s->patterns, &e, ref);
        if (ref) return 0;
    } else {
        if (!(e = entry_new(pat, len, 1))) return -1;
        if (patindex_add(r->patterns, e->name, e->len, e) < 0) {
            free(e);
            return -1;
        }
    }
    if (link_sub(e, s) < 0) {
        if (e->n == 0) drop_pattern(r, e);
        return -1;
    }
    return 1;
}

int router_unsubscribe(router *r, subscriber *s, const char *chan, size_t len) {
    entry *e;
    HASH_FIND(hh, r->channels, chan, len, e);
    if (!e) return 0;
    subref *ref;
    HASH_FIND_PTR(s->channels, &e, ref);
    if (!ref) return 0;
    if (unlink_sub(ref)) drop_channel(r, e);
    return 1;
}

int router_punsubscribe(router *r, subscriber *s, const char *pat, size_t len) {
    entry *e = patindex_get(r->patterns, pat, len);
    if (!e) return 0;
    subref *ref;
    HASH_FIND_PTR(s->patterns, &e, ref);
    if (!ref) return 0;
    if (unlink_sub(ref)) drop_pattern(r, e);
    return 1;
}

/* Iterates a subscriber's table; safe against fn removing the current item. */
static void foreach_of(subref *table, router_name_fn fn, void *ctx) {
    subref *ref, *tmp;
    HASH_ITER(hh, table, ref, tmp) fn(ref->e->name, ref->e->len, ctx);
}

void router_foreach_channel_of(router *r, subscriber *s, router_name_fn fn, void *ctx) {
    (void)r;
    foreach_of(s->channels, fn, ctx);
}

void router_foreach_pattern_of(router *r, subscriber *s, router_name_fn fn, void *ctx) {
    (void)r;
    foreach_of(s->patterns, fn, ctx);
}

void router_unsubscribe_all(router *r, subscriber *s) {
    gmember *m, *mtmp;
    HASH_ITER(hh, s->groups, m, mtmp) member_leave(r, m);
    subref *ref, *tmp;
    HASH_ITER(hh, s->channels, ref, tmp) {
        entry *e = ref->e;
        if (unlink_sub(ref)) drop_channel(r, e);
    }
    HASH_ITER(hh, s->patterns, ref, tmp) {
        entry *e = ref->e;
        if (unlink_sub(ref)) drop_pattern(r, e);
    }
}

/* d must stay the first member: a group's deliver callback gets &pc->d and
 * recovers the publish (origin, missed) from it. */
typedef struct publish_ctx {
    delivery d;
    subscriber *origin;
    size_t receivers;
    size_t missed;          /* groups that found no member to take the event */
} publish_ctx;

/* Delivers to every subscription of entry e except the origin's; returns the
 * number of deliveries. */
static size_t deliver_entry(entry *e, publish_ctx *pc) {
    size_t n = 0;
    for (size_t i = 0; i < e->n; i++) {
        subscriber *s = e->subs[i]->s;
        if (s == pc->origin) continue;
        s->deliver(s, &pc->d);
        n++;
    }
    return n;
}

/* Delivers to every subscriber of one matching pattern entry. */
static int deliver_pattern_cb(void *udata, const char *pat, size_t plen, void *ctx) {
    publish_ctx *pc = ctx;
    pc->d.pattern = pat;
    pc->d.plen = plen;
    pc->receivers += deliver_entry(udata, pc);
    return 0;
}

size_t router_publish_ex(router *r, subscriber *origin, const char *chan, size_t clen, const char *msg, size_t mlen,
                         const char *msgid, size_t idlen, void *arg) {
    publish_ctx pc = {.d = {NULL, 0, chan, clen, msg, mlen, ++r->next_id, 0}, .origin = origin};
    pc.d.time_ms = r->clock ? r->clock(r->clock_ctx) : clock_wall_ms();
    if (r->hook && r->hook(r->hook_ctx, &pc.d, msgid, idlen, arg)) return 0;
    unsigned hashv = stats_hash(chan, clen); /* once, for both lookups */
    entry *e;
    HASH_FIND_BYHASHVALUE(hh, r->channels, chan, clen, hashv, e);
    if (e) pc.receivers += deliver_entry(e, &pc);
    if (patindex_count(r->patterns)) patindex_match(r->patterns, chan, clen, deliver_pattern_cb, &pc);
    pc.receivers -= pc.missed;
    pc.receivers -= r->refused < pc.receivers ? r->refused : pc.receivers;
    r->refused = 0;
    r->group_misses += pc.missed;
    r->published++;
    r->deliveries += pc.receivers;
    stats_published(r->stats, chan, clen, hashv, pc.receivers, pc.d.time_ms);
    return pc.receivers;
}

size_t router_publish_from(router *r, subscriber *origin, const char *chan, size_t clen, const char *msg,
                           size_t mlen) {
    return router_publish_ex(r, origin, chan, clen, msg, mlen, NULL, 0, NULL);
}

void router_set_hook(router *r, router_hook_fn fn, void *ctx) {
    r->hook = fn;
    r->hook_ctx = ctx;
}

void router_refused(router *r) { r->refused++; }

size_t router_publish(router *r, const char *chan, size_t clen, const char *msg, size_t mlen) {
    return router_publish_from(r, NULL, chan, clen, msg, mlen);
}

size_t router_channel_count(const router *r) { return HASH_COUNT(r->channels); }
size_t router_pattern_count(const router *r) { return patindex_count(r->patterns); }

size_t router_numsub(router *r, const char *chan, size_t len) {
    entry *e;
    HASH_FIND(hh, r->channels, chan, len, e);
    return e ? e->n : 0;
}

void router_foreach_channel(router *r, const char *pat, size_t plen, router_name_fn fn, void *ctx) {
    entry *e, *tmp;
    HASH_ITER(hh, r->channels, e, tmp) {
        if (!pat || glob_match(pat, plen, e->name, e->len)) fn(e->name, e->len, ctx);
    }
}

/* Adds one matching pattern entry's subscriptions to a count. */
static int count_pattern_cb(void *udata, const char *pat, size_t plen, void *ctx) {
    (void)pat, (void)plen;
    *(size_t *)ctx += ((entry *)udata)->n;
    return 0;
}

size_t router_receivers(router *r, const char *chan, size_t len) {
    size_t n = router_numsub(r, chan, len);
    if (patindex_count(r->patterns)) patindex_match(r->patterns, chan, len, count_pattern_cb, &n);
    return n;
}

stats *router_stats(router *r) { return r->stats; }

/*---- Competing consumers -------------------------------------------------*/

/* A group's router callback: offers the event to its members in round-robin
 * order, starting after the last one that took an event, until one takes
 * it. The publisher itself is skipped, as for plain subscriptions. */
static void group_deliver(subscriber *gs, const delivery *d) {
    group *g = gs->udata;
    publish_ctx *pc = (publish_ctx *)d;
    size_t start = g->n ? g->next % g->n : 0;
    for (size_t i = 0; i < g->n; i++) {
        size_t k = (start + i) % g->n;
        subscriber *s = g->members[k]->s;
        if (s == pc->origin || !s->gdeliver) continue;
        if (s->gdeliver(s, d, g->key, g->glen)) {
            g->next = k + 1;
            return;
        }
    }
    pc->missed++;
}

/* The group (name, pattern), or NULL. key must have room for the key. */
static group *group_find(router *r, const char *name, size_t glen, const char *pat, size_t plen, char *key) {
    memcpy(key, name, glen);
    key[glen] = '\0';
    memcpy(key + glen + 1, pat, plen);
    key[glen + 1 + plen] = '\0';
    memcpy(key + glen + plen + 2, &glen, sizeof glen);
    group *g;
    HASH_FIND(hh, r->groups, key, GROUP_KEY_LEN(glen, plen), g);
    return g;
}

/* Frees a group with no members left, dropping its pattern subscription. */
static void group_drop(router *r, group *g) {
    router_punsubscribe(r, &g->gs, g->key + g->glen + 1, g->plen);
    HASH_DEL(r->groups, g);
    free(g->members);
    free(g);
}

int router_gsubscribe(router *r, subscriber *s, const char *name, size_t glen, const char *pat, size_t plen) {
    size_t klen = GROUP_KEY_LEN(glen, plen);
    char *key = malloc(klen);
    if (!key) return -1;
    group *g = group_find(r, name, glen, pat, plen, key);
    if (!g) {
        if (!(g = calloc(1, sizeof *g + klen))) {
            free(key);
            return -1;
        }
        memcpy(g->key, key, klen);
        g->glen = glen;
        g->plen = plen;
        g->klen = klen;
        g->gs.deliver = group_deliver;
        g->gs.udata = g;
        if (router_psubscribe(r, &g->gs, g->key + glen + 1, plen) < 0) {
            free(g);
            free(key);
            return -1;
        }
        HASH_ADD_KEYPTR(hh, r->groups, g->key, g->klen, g);
    }
    free(key);
    gmember *m;
    HASH_FIND_PTR(s->groups, &g, m);
    if (m) return 0;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 4;
        gmember **v = realloc(g->members, cap * sizeof *v);
        if (!v || !(m = calloc(1, sizeof *m))) {
            if (v) g->members = v, g->cap = cap;
            if (g->n == 0) group_drop(r, g);
            return -1;
        }
        g->members = v;
        g->cap = cap;
    } else if (!(m = calloc(1, sizeof *m))) {
        return -1;
    }
    m->g = g;
    m->s = s;
    m->idx = g->n;
    g->members[g->n++] = m;
    HASH_ADD_PTR(s->groups, g, m);
    s->ngroups++;
    return 1;
}

/* Removes member m from its group (and frees the group if it was the last). */
static void member_leave(router *r, gmember *m) {
    group *g = m->g;
    subscriber *s = m->s;
    g->members[m->idx] = g->members[--g->n];
    g->members[m->idx]->idx = m->idx;
    HASH_DEL(s->groups, m);
    s->ngroups--;
    free(m);
    if (g->n == 0) group_drop(r, g);
}

int router_gunsubscribe(router *r, subscriber *s, const char *name, size_t glen, const char *pat, size_t plen) {
    char *key = malloc(GROUP_KEY_LEN(glen, plen));
    if (!key) return 0;
    group *g = group_find(r, name, glen, pat, plen, key);
    free(key);
    if (!g) return 0;
    gmember *m;
    HASH_FIND_PTR(s->groups, &g, m);
    if (!m) return 0;
    member_leave(r, m);
    return 1;
}

void router_foreach_group_of(router *r, subscriber *s, const char *name, size_t glen, router_name_fn fn,
                             void *ctx) {
    (void)r;
    gmember *m, *tmp;
    HASH_ITER(hh, s->groups, m, tmp) {
        group *g = m->g;
        if (g->glen == glen && memcmp(g->key, name, glen) == 0) fn(g->key + glen + 1, g->plen, ctx);
    }
}

size_t router_group_count(const router *r) { return HASH_COUNT(r->groups); }

uint64_t router_events_published(const router *r) { return r->published; }
uint64_t router_deliveries(const router *r) { return r->deliveries; }
uint64_t router_group_misses(const router *r) { return r->group_misses; }

void router_set_clock(router *r, double (*clock)(void *ctx), void *ctx) {
    r->clock = clock;
    r->clock_ctx = ctx;
}
