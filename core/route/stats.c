/* stats.c -- per-event-name traffic statistics (see stats.h).
 *
 * Each tracked name is one record in a uthash keyed by the name and on a
 * doubly linked LRU list, most recently seen first; the list's tail is the
 * eviction victim. The rate window is a ring of per-second counts: `sec` is
 * the last second written, and moving to a later second clears the buckets
 * skipped over. */
#include "stats.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "base/clock.h"
#include "glob.h"

typedef struct record {
    UT_hash_handle hh;
    struct record *prev, *next; /* LRU list, head = most recent */
    uint64_t published, delivered, called;
    double last_seen_ms;
    uint64_t sec; /* second of the newest bucket written */
    uint32_t buckets[STATS_WINDOW_SECS];
    size_t len;
    char name[];
} record;

struct stats {
    record *names; /* uthash by name */
    record *head, *tail;
    size_t max_names;
    size_t max_name_len; /* longer names are counted in untracked, not copied */
    uint64_t evicted, total, untracked;
};

stats *stats_new(size_t max_names) {
    stats *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->max_names = max_names ? max_names : 1;
    st->max_name_len = STATS_DEFAULT_MAX_NAME_LEN;
    return st;
}

void stats_free(stats *st) {
    if (!st) return;
    record *r, *tmp;
    HASH_ITER(hh, st->names, r, tmp) {
        HASH_DEL(st->names, r);
        free(r);
    }
    free(st);
}

static void lru_unlink(stats *st, record *r) {
    if (r->prev)
        r->prev->next = r->next;
    else
        st->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        st->tail = r->prev;
    r->prev = r->next = NULL;
}

static void lru_push_front(stats *st, record *r) {
    r->next = st->head;
    r->prev = NULL;
    if (st->head) st->head->prev = r;
    st->head = r;
    if (!st->tail) st->tail = r;
}

/* Drops least recently seen names until at most `keep` remain. */
static void evict_to(stats *st, size_t keep) {
    while (HASH_COUNT(st->names) > keep && st->tail) {
        record *r = st->tail;
        lru_unlink(st, r);
        HASH_DEL(st->names, r);
        free(r);
        st->evicted++;
    }
}

void stats_set_max_names(stats *st, size_t max_names) {
    st->max_names = max_names ? max_names : 1;
    evict_to(st, st->max_names);
}

void stats_set_max_name_len(stats *st, size_t max_len) { st->max_name_len = max_len; }

unsigned stats_hash(const char *name, size_t len) {
    unsigned hashv;
    HASH_VALUE(name, len, hashv);
    return hashv;
}

/* The record for name (hash hashv), created (evicting if at the bound) and
 * moved to the front of the LRU list; NULL if out of memory. */
static record *touch(stats *st, const char *name, size_t len, unsigned hashv) {
    record *r;
    if (len > st->max_name_len) {
        st->untracked++;
        return NULL;
    }
    HASH_FIND_BYHASHVALUE(hh, st->names, name, len, hashv, r);
    if (r) {
        if (st->head != r) {
            lru_unlink(st, r);
            lru_push_front(st, r);
        }
        return r;
    }
    evict_to(st, st->max_names - 1);
    if (!(r = calloc(1, sizeof *r + len + 1))) return NULL;
    memcpy(r->name, name, len);
    r->len = len;
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, st->names, r->name, r->len, hashv, r);
    lru_push_front(st, r);
    return r;
}

/* Counts one event in the rate window at second `sec`. */
static void window_add(record *r, uint64_t sec) {
    if (sec > r->sec) {
        uint64_t gap = sec - r->sec;
        if (gap >= STATS_WINDOW_SECS)
            memset(r->buckets, 0, sizeof r->buckets);
        else
            for (uint64_t s = r->sec + 1; s <= sec; s++) r->buckets[s % STATS_WINDOW_SECS] = 0;
        r->sec = sec;
    }
    /* a clock step backwards lands in the newest bucket */
    r->buckets[r->sec % STATS_WINDOW_SECS]++;
}

/* Events in the window ending at second `now`. */
static uint64_t window_sum(const record *r, uint64_t now) {
    if (now >= r->sec + STATS_WINDOW_SECS) return 0;
    uint64_t from = now >= STATS_WINDOW_SECS - 1 ? now - (STATS_WINDOW_SECS - 1) : 0, sum = 0;
    for (uint64_t s = from; s <= r->sec; s++) {
        if (r->sec - s >= STATS_WINDOW_SECS) continue;
        sum += r->buckets[s % STATS_WINDOW_SECS];
    }
    return sum;
}

void stats_published(stats *st, const char *name, size_t len, unsigned hashv, size_t delivered, double now_ms) {
    record *r = touch(st, name, len, hashv);
    if (!r) return;
    r->published++;
    r->delivered += delivered;
    r->last_seen_ms = now_ms;
    window_add(r, (uint64_t)(now_ms / 1000.0));
    st->total++;
}

void stats_called(stats *st, const char *name, size_t len) {
    if (!st) return;
    record *r = touch(st, name, len, stats_hash(name, len));
    if (!r) return;
    double now_ms = clock_wall_ms();
    r->called++;
    r->last_seen_ms = now_ms;
    window_add(r, (uint64_t)(now_ms / 1000.0));
    st->total++;
}

size_t stats_count(const stats *st) {
    return HASH_COUNT(st->names);
}
uint64_t stats_evicted(const stats *st) {
    return st->evicted;
}
uint64_t stats_untracked(const stats *st) {
    return st->untracked;
}
uint64_t stats_total(const stats *st) {
    return st->total;
}

/* Bytewise name order, shorter first on a common prefix. */
static int by_name(const void *a, const void *b) {
    const record *x = *(record *const *)a, *y = *(record *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

void stats_foreach(stats *st, const char *pat, size_t plen, double now_ms, stats_fn fn, void *ctx) {
    size_t n = 0, cap = HASH_COUNT(st->names);
    if (!cap) return;
    record **v = malloc(cap * sizeof *v);
    if (!v) return;
    for (record *x = st->names; x; x = x->hh.next)
        if (!pat || glob_match(pat, plen, x->name, x->len)) v[n++] = x;
    qsort(v, n, sizeof *v, by_name);
    uint64_t now = (uint64_t)(now_ms / 1000.0);
    for (size_t i = 0; i < n; i++) {
        const record *r = v[i];
        stats_view sv = {r->name, r->len, r->published, r->delivered, r->called, 0, 0, r->last_seen_ms};
        sv.last_minute = window_sum(r, now);
        sv.rate = (double)sv.last_minute / STATS_WINDOW_SECS;
        fn(&sv, ctx);
    }
    free(v);
}
