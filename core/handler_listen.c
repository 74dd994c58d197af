/* handler_listen.c -- the unicast name registry (see handler_listen.h): a
 * uthash keyed by the name's bytes. */
#include "handler_listen.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

typedef struct lentry {
    UT_hash_handle hh;
    listener who;
    size_t len;
    char name[];
} lentry;

struct listen_registry {
    lentry *names;
};

listen_registry *listen_new(void) { return calloc(1, sizeof(listen_registry)); }

void listen_free(listen_registry *r) {
    if (!r) return;
    lentry *e, *tmp;
    HASH_ITER(hh, r->names, e, tmp) {
        HASH_DEL(r->names, e);
        free(e);
    }
    free(r);
}

static lentry *find(const listen_registry *r, const char *name, size_t len) {
    lentry *e;
    HASH_FIND(hh, r->names, name, len, e);
    return e;
}

int listen_add(listen_registry *r, const char *name, size_t len, listener_kind kind, void *owner,
               listener *holder) {
    lentry *e = find(r, name, len);
    if (e) {
        if (e->who.owner == owner) return 0;
        if (holder) *holder = e->who;
        return -1;
    }
    e = calloc(1, sizeof *e + len + 1);
    if (!e) return -2;
    memcpy(e->name, name, len);
    e->len = len;
    e->who.kind = kind;
    e->who.owner = owner;
    HASH_ADD_KEYPTR(hh, r->names, e->name, e->len, e);
    return 1;
}

int listen_remove(listen_registry *r, const char *name, size_t len, const void *owner) {
    lentry *e = find(r, name, len);
    if (!e || e->who.owner != owner) return 0;
    HASH_DEL(r->names, e);
    free(e);
    return 1;
}

size_t listen_remove_owner(listen_registry *r, const void *owner) {
    size_t n = 0;
    lentry *e, *tmp;
    HASH_ITER(hh, r->names, e, tmp) {
        // cppcheck-suppress uninitvar ; uthash's iteration macro confuses it
        if (e->who.owner != owner) continue;
        HASH_DEL(r->names, e);
        free(e);
        n++;
    }
    return n;
}

const listener *listen_find(const listen_registry *r, const char *name, size_t len) {
    lentry *e = find(r, name, len);
    return e ? &e->who : NULL;
}

size_t listen_count(const listen_registry *r) { return HASH_COUNT(r->names); }
