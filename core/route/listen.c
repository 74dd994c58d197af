/* listen.c -- the unicast name registry (see listen.h): a
 * uthash keyed by the name's bytes; each entry holds its registrations as a
 * small array used as a stack (the last one is the holder). */
#include "listen.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

typedef struct lentry {
    UT_hash_handle hh;
    listener *stack; /* oldest first; stack[n - 1] holds the name */
    size_t n, cap;
    size_t len;
    char name[];
} lentry;

struct listen_registry {
    lentry *names;
};

listen_registry *listen_new(void) { return calloc(1, sizeof(listen_registry)); }

static void entry_free(listen_registry *r, lentry *e) {
    HASH_DEL(r->names, e);
    free(e->stack);
    free(e);
}

void listen_free(listen_registry *r) {
    if (!r) return;
    lentry *e, *tmp;
    HASH_ITER(hh, r->names, e, tmp) entry_free(r, e);
    free(r);
}

static lentry *find(const listen_registry *r, const char *name, size_t len) {
    lentry *e;
    HASH_FIND(hh, r->names, name, len, e);
    return e;
}

/* Index of owner in e's stack, or -1. */
static long index_of(const lentry *e, const void *owner) {
    for (size_t i = 0; i < e->n; i++)
        if (e->stack[i].owner == owner) return (long)i;
    return -1;
}

int listen_add(listen_registry *r, const char *name, size_t len, listener_kind kind, void *owner, listener *prev) {
    lentry *e = find(r, name, len);
    if (e && index_of(e, owner) >= 0) return 0;
    int fresh = !e;
    if (fresh) {
        e = calloc(1, sizeof *e + len + 1);
        if (!e) return -2;
        memcpy(e->name, name, len);
        e->len = len;
    }
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 2;
        listener *s = realloc(e->stack, cap * sizeof *s);
        if (!s) {
            if (fresh) free(e);
            return -2;
        }
        e->stack = s;
        e->cap = cap;
    }
    int took_over = e->n > 0;
    if (took_over && prev) *prev = e->stack[e->n - 1];
    e->stack[e->n].kind = kind;
    e->stack[e->n].owner = owner;
    e->n++;
    if (fresh) HASH_ADD_KEYPTR(hh, r->names, e->name, e->len, e);
    return took_over ? 2 : 1;
}

/* Drops stack slot i of e, and e itself once empty. */
static void drop_at(listen_registry *r, lentry *e, size_t i) {
    memmove(&e->stack[i], &e->stack[i + 1], (e->n - i - 1) * sizeof *e->stack);
    if (--e->n == 0) entry_free(r, e);
}

int listen_remove(listen_registry *r, const char *name, size_t len, const void *owner) {
    lentry *e = find(r, name, len);
    long i = e ? index_of(e, owner) : -1;
    if (i < 0) return 0;
    drop_at(r, e, (size_t)i);
    return 1;
}

size_t listen_remove_owner(listen_registry *r, const void *owner) {
    size_t n = 0;
    lentry *e, *tmp;
    HASH_ITER(hh, r->names, e, tmp) {
        // cppcheck-suppress uninitvar ; uthash's iteration macro confuses it
        long i = index_of(e, owner);
        if (i < 0) continue;
        drop_at(r, e, (size_t)i);
        n++;
    }
    return n;
}

const listener *listen_find(const listen_registry *r, const char *name, size_t len) {
    lentry *e = find(r, name, len);
    return e ? &e->stack[e->n - 1] : NULL;
}

const listener *listen_find_other(const listen_registry *r, const char *name, size_t len, listener_kind kind,
                                  const void *owner) {
    lentry *e = find(r, name, len);
    for (size_t i = 0; e && i < e->n; i++)
        if (e->stack[i].kind == kind && e->stack[i].owner != owner) return &e->stack[i];
    return NULL;
}

int listen_has(const listen_registry *r, const char *name, size_t len, const void *owner) {
    lentry *e = find(r, name, len);
    return e && index_of(e, owner) >= 0;
}

size_t listen_depth(const listen_registry *r, const char *name, size_t len) {
    lentry *e = find(r, name, len);
    return e ? e->n : 0;
}

size_t listen_count(const listen_registry *r) { return HASH_COUNT(r->names); }
