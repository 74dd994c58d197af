/* handler_reload.c -- where a reload happens: loading a handler file into a
 * new version, handing the old version's state over, and switching between
 * two events; plus the directory rescan (SIGHUP, HUB.RELOAD).
 *
 * A reload (decision 5): the new version is built in a fresh lua_State while
 * the old one keeps serving. Only when the file has loaded, its table is
 * valid, its listen names are free and its on_reload(copy of old snapshot())
 * has succeeded does the switch happen: subscriptions and listen names are
 * brought in line with the new version, `cur` changes, the old version's
 * timers stop and its state closes -- or, if coroutines of it are waiting in
 * hub.call, it is retired instead (handler_retire): it takes no new work,
 * its waiters finish in it, and the last one to finish closes it. This all runs inside one callback (a
 * command or a signal), so it falls between two events; the queue belongs
 * to the handler, so events queued before the switch run on the new version,
 * exactly once and in order. Any failure leaves the old version serving.
 *
 * Whether a file changed is decided by content (length and 64-bit FNV-1a of
 * the handler file and of every lib file it required), never by mtime. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "handler_consume.h"
#include "handler_runtime.h"
#include "net/unicast.h"
#include "base/log.h"
#include "sandbox.h"

/*---- Files ----------------------------------------------------------------------*/

/* 1 if a lib file differs from when it was required (or is gone). */
static int dep_changed(const hdep *d) {
    size_t len;
    char *src = sandbox_read_file(d->path, &len);
    if (!src) return 1;
    int changed = len != d->len || hhash(src, len) != d->hash;
    free(src);
    return changed;
}

/* Remembers the files of this attempt: the handler file and the version's
 * lib files (moved out of v). */
static void set_fingerprint(handler *h, const char *src, size_t len, hversion *v) {
    for (size_t i = 0; i < h->ndeps; i++) free(h->deps[i].path);
    free(h->deps);
    h->deps = NULL;
    h->ndeps = 0;
    h->fp_valid = 1;
    h->src_hash = hhash(src, len);
    h->src_len = len;
    if (!v || !v->ndeps) return;
    hdep *deps = malloc(v->ndeps * sizeof *deps);
    size_t n = 0;
    for (; deps && n < v->ndeps; n++) {
        char *path = strdup(v->deps[n].path);
        if (!path) break;
        deps[n] = (hdep){path, v->deps[n].hash, v->deps[n].len};
    }
    h->deps = deps;
    h->ndeps = n;
    if (!deps || n < v->ndeps) h->fp_valid = 0; /* cannot tell next time: reload then */
}

static int unchanged(const handler *h, const char *src, size_t len) {
    if (!h->fp_valid || len != h->src_len || hhash(src, len) != h->src_hash) return 0;
    for (size_t i = 0; i < h->ndeps; i++)
        if (dep_changed(&h->deps[i])) return 0;
    return 1;
}

/*---- The switch -------------------------------------------------------------------*/

/* A sorted view of a list of strings, for membership tests in O(log n):
 * a switch compares two versions' lists, which may hold many thousands of
 * names, in n log n rather than n * m. */
typedef struct strset {
    const hstrv **v;
    size_t n;
} strset;

static int hstrv_cmp(const hstrv *a, const hstrv *b) {
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return memcmp(a->p, b->p, a->len);
}

static int strset_cmp(const void *a, const void *b) {
    return hstrv_cmp(*(const hstrv *const *)a, *(const hstrv *const *)b);
}

/* Builds the set of list[0..n); returns 0, or -1 if out of memory. */
static int strset_init(strset *s, const hstrv *list, size_t n) {
    s->n = 0;
    s->v = NULL;
    if (!n) return 0;
    if (!(s->v = malloc(n * sizeof *s->v))) return -1;
    for (size_t i = 0; i < n; i++) s->v[i] = &list[i];
    qsort(s->v, n, sizeof *s->v, strset_cmp);
    s->n = n;
    return 0;
}

static void strset_free(strset *s) { free(s->v); }

static int strset_has(const strset *s, const hstrv *x) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = hstrv_cmp(s->v[mid], x);
        if (c == 0) return 1;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* The sets a switch between old (may be NULL) and nv compares. */
typedef struct switch_sets {
    strset old_sub, old_listen, nv_sub, nv_listen;
    int same_group; /* both in the same group, or both in none */
} switch_sets;

static void sets_free(switch_sets *ss) {
    strset_free(&ss->old_sub);
    strset_free(&ss->old_listen);
    strset_free(&ss->nv_sub);
    strset_free(&ss->nv_listen);
}

static int sets_init(switch_sets *ss, const hversion *old, const hversion *nv) {
    memset(ss, 0, sizeof *ss);
    ss->same_group = old && old->group.len == nv->group.len &&
                     (!old->group.p || memcmp(old->group.p, nv->group.p, nv->group.len) == 0);
    if (strset_init(&ss->nv_sub, nv->subscribe, nv->nsubscribe) < 0 ||
        strset_init(&ss->nv_listen, nv->listen, nv->nlisten) < 0 ||
        (old && (strset_init(&ss->old_sub, old->subscribe, old->nsubscribe) < 0 ||
                 strset_init(&ss->old_listen, old->listen, old->nlisten) < 0))) {
        sets_free(ss);
        return -1;
    }
    return 0;
}

/* Finds a listen name of nv registered by another handler than h (two
 * handlers never share a name; a client's name is taken over). Returns an
 * error message (malloc'd) or NULL. */
static char *listen_conflict(handler *h, hversion *nv) {
    for (size_t i = 0; i < nv->nlisten; i++) {
        const listener *l =
            listen_find_other(h->rt->listeners, nv->listen[i].p, nv->listen[i].len, LISTENER_HANDLER, h);
        if (!l) continue; /* free, or held by clients: the newest registration takes over */
        char buf[600];
        snprintf(buf, sizeof buf, "listen name '%.200s' is already taken by handler '%.200s'", nv->listen[i].p,
                 ((handler *)l->owner)->name);
        return strdup(buf);
    }
    return NULL;
}

/* Finds a pattern of nv longer than pattern-max-len (the cap PSUBSCRIBE
 * applies too, so no pattern's matching cost escapes it). Returns an error
 * message (malloc'd) or NULL. */
static char *pattern_too_long(handler *h, const hversion *nv) {
    long long max = h->rt->hub->cfg.pattern_max_len;
    for (size_t i = 0; i < nv->nsubscribe; i++) {
        if ((long long)nv->subscribe[i].len <= max) continue;
        char buf[200];
        snprintf(buf, sizeof buf, "subscribe pattern %zu is %zu bytes, longer than pattern-max-len (%lld bytes)",
                 i + 1, nv->subscribe[i].len, max);
        return strdup(buf);
    }
    return NULL;
}

/* A version's subscriptions are its patterns, joined as members of its
 * group when it has one (router.h, "Competing consumers"). */
static int sub_add(handler *h, const hversion *v, const hstrv *pat) {
    router *r = h->rt->hub->router;
    if (v->group.p) return router_gsubscribe(r, &h->sub, v->group.p, v->group.len, pat->p, pat->len);
    return router_psubscribe(r, &h->sub, pat->p, pat->len);
}

static void sub_remove(handler *h, const hversion *v, const hstrv *pat) {
    router *r = h->rt->hub->router;
    if (v->group.p) router_gunsubscribe(r, &h->sub, v->group.p, v->group.len, pat->p, pat->len);
    else router_punsubscribe(r, &h->sub, pat->p, pat->len);
}

/* Undoes the subscriptions and names nv added that old does not have. */
static void switch_rollback(handler *h, hversion *nv, const switch_sets *ss) {
    for (size_t i = 0; i < nv->nsubscribe; i++)
        if (!ss->same_group || !strset_has(&ss->old_sub, &nv->subscribe[i])) sub_remove(h, nv, &nv->subscribe[i]);
    for (size_t i = 0; i < nv->nlisten; i++)
        if (!strset_has(&ss->old_listen, &nv->listen[i]))
            listen_remove(h->rt->listeners, nv->listen[i].p, nv->listen[i].len, h);
}

/* Makes nv the serving version of h: first adds what nv needs (so no event
 * matching both versions can slip through), then removes what only the old
 * version had, then swaps and closes the old. Fails only when out of
 * memory, with nothing changed. */
static int switch_to(handler *h, hversion *nv) {
    hversion *old = h->cur;
    switch_sets ss;
    if (sets_init(&ss, old, nv) < 0) return -1;
    for (size_t i = 0; i < nv->nsubscribe; i++)
        if (sub_add(h, nv, &nv->subscribe[i]) < 0) goto oom;
    for (size_t i = 0; i < nv->nlisten; i++) {
        listener prev;
        int rc = listen_add(h->rt->listeners, nv->listen[i].p, nv->listen[i].len, LISTENER_HANDLER, h, &prev);
        if (rc < 0) goto oom;
        if (rc == 2) {
            listener me = {LISTENER_HANDLER, h};
            unicast_replaced(h->rt->hub, &prev, nv->listen[i].p, nv->listen[i].len, &me);
        }
    }
    if (old) {
        for (size_t i = 0; i < old->nsubscribe; i++)
            if (!ss.same_group || !strset_has(&ss.nv_sub, &old->subscribe[i])) sub_remove(h, old, &old->subscribe[i]);
        for (size_t i = 0; i < old->nlisten; i++)
            if (!strset_has(&ss.nv_listen, &old->listen[i]))
                listen_remove(h->rt->listeners, old->listen[i].p, old->listen[i].len, h);
    }
    sets_free(&ss);
    h->cur = nv;
    h->version = nv->number;
    h->state = HSTATE_RUNNING;
    h->loaded_at = clock_wall_ms();
    /* the same stream and group keep their consumer: an entry the old
     * version is still running finishes there, the next waits for it */
    if (consume_switch(h, nv) < 0) log_warning("Handler %s: out of memory: it does not consume until reloaded", h->name);
    handler_retire(h, old);
    return 0;
oom:
    switch_rollback(h, nv, &ss);
    sets_free(&ss);
    return -1;
}

/*---- One handler --------------------------------------------------------------------*/

/* Tries to make the text src the serving version of h. Returns 0, or -1
 * with *err (the old version, if any, keeps serving). */
static int load_version(handler *h, const char *src, size_t len, char **err) {
    const config *cfg = &h->rt->hub->cfg;
    hversion *nv = hversion_new(h, h->version + 1, (size_t)cfg->handler_memory_limit,
                                cfg->handler_instruction_limit, h->rt->lib_path, err);
    if (!nv) {
        set_fingerprint(h, src, len, NULL);
        return -1;
    }
    int rc = hversion_load(nv, h->path, src, len, err), conflict = 0;
    if (rc == 0 && (*err = pattern_too_long(h, nv))) rc = -1;
    if (rc == 0 && (*err = listen_conflict(h, nv))) rc = conflict = -1;
    if (rc == 0 && h->cur) rc = hversion_handover(nv, h->cur, err);
    if (rc == 0 && switch_to(h, nv) < 0) {
        *err = strdup("out of memory while switching versions");
        rc = -1;
    }
    set_fingerprint(h, src, len, nv);
    /* Retried by the next rescan even if the files stay the same: a name
     * taken by another handler may be free by then, and a handler that
     * nothing serves must not stay offline as "unchanged" (README, "Hot
     * reload"). */
    if (conflict || (rc && !h->cur)) h->fp_valid = 0;
    if (rc) hversion_close(nv);
    return rc;
}

static void report(hreload_report_fn fn, void *ctx, const char *name, hreload_outcome o, int version,
                   const char *error) {
    if (fn) fn(ctx, name, o, version, error);
}

/* Removes handler h (its file is gone). Its queued events and due timers
 * are dropped: counted in INFO's handler_dropped and logged. */
static void unload(handler *h, hreload_report_fn fn, void *ctx) {
    char name[256];
    snprintf(name, sizeof name, "%s", h->name);
    int version = h->version;
    handlers *rt = h->rt;
    size_t queued = h->queue.count, waiting = 0;
    for (const hversion *d = h->draining; d; d = d->retired_next) waiting += d->nwaits;
    if (h->cur) waiting += h->cur->nwaits;
    if (queued || waiting)
        log_warning("Handler %s: unloaded with %zu queued event(s) and %zu callback(s) waiting in hub.call, dropped",
                    name, queued, waiting);
    rt->dropped_gone += h->dropped + queued + waiting;
    handler_destroy(h);
    handlers_publish_lifecycle(rt, "hub.handler.unloaded", name, version, NULL);
    report(fn, ctx, name, HR_UNLOADED, 0, NULL);
}

/* Brings handler `name` (h if it exists) in line with its file at path.
 * Returns 0, or -2 if there is no such file and no such handler. */
static int sync_one(handlers *rt, const char *name, handler *h, int force, hreload_report_fn fn, void *ctx) {
    char path[1100];
    snprintf(path, sizeof path, "%s/%s.lua", rt->dir, name);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (!h) return -2;
        unload(h, fn, ctx);
        return 0;
    }
    int is_new = h == NULL;
    if (!h && !(h = handler_create(rt, name))) {
        log_warning("Handler %s: out of memory", name);
        return 0;
    }
    size_t len = 0;
    char *src = sandbox_read_file(path, &len);
    char *err = NULL;
    int rc;
    if (!src) {
        char buf[1200];
        snprintf(buf, sizeof buf, "cannot read %s: %s", path, strerror(errno ? errno : EIO));
        err = strdup(buf);
        rc = -1;
    } else if (!force && !is_new && unchanged(h, src, len)) {
        free(src);
        report(fn, ctx, name, HR_UNCHANGED, h->version, NULL);
        return 0;
    } else {
        rc = load_version(h, src, len, &err);
    }
    free(src);
    if (rc == 0) {
        handlers_publish_lifecycle(rt, h->version == 1 ? "hub.handler.loaded" : "hub.handler.reloaded", name,
                                   h->version, NULL);
        report(fn, ctx, name, h->version == 1 ? HR_LOADED : HR_RELOADED, h->version, NULL);
        return 0;
    }
    if (!err) err = strdup("out of memory"); /* the error text itself could not be allocated */
    handler_error(h, h->cur ? "reload" : "load", err ? err : "out of memory");
    h->state = h->cur ? HSTATE_RELOAD_FAILED : HSTATE_FAILED;
    if (err) err[herr_msglen(err)] = '\0';
    handlers_publish_lifecycle(rt, "hub.handler.failed", name, h->version, err ? err : "out of memory");
    report(fn, ctx, name, HR_FAILED, h->version, err ? err : "out of memory");
    free(err);
    return 0;
}

/*---- Directory --------------------------------------------------------------------*/

/* 1 if name can be a handler name (a file's base name in the directory). */
static int valid_name(const char *name, size_t len) {
    if (len == 0 || len > 200 || name[0] == '.') return 0;
    if (len == 1 && name[0] == '*') return 0;
    for (size_t i = 0; i < len; i++)
        if (name[i] == '/' || name[i] == '\0') return 0;
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The handler names in the directory, sorted. Returns the count, or -1. */
static long list_dir(const char *dir, char ***out) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len <= 4 || strcmp(de->d_name + len - 4, ".lua") != 0 || !valid_name(de->d_name, len - 4)) continue;
        char path[1100];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn) break;
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strndup(de->d_name, len - 4))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    return (long)n;
}

int handlers_reload_all(handlers *rt, int force, hreload_report_fn fn, void *ctx) {
    char **names = NULL;
    long n = list_dir(rt->dir, &names);
    if (n < 0) return -1;
    /* handlers whose file is gone first, so that a renamed file can take
     * the listen names its old name held */
    handler *h = rt->by_name, *next;
    for (; h; h = next) {
        next = h->hh.next;
        const char *key = h->name;
        if (!n || !bsearch(&key, names, (size_t)n, sizeof *names, cmp_str)) unload(h, fn, ctx);
    }
    for (long i = 0; i < n; i++) sync_one(rt, names[i], handlers_find(rt, names[i], strlen(names[i])), force, fn, ctx);
    for (long i = 0; i < n; i++) free(names[i]);
    free(names);
    return 0;
}

int handlers_reload_name(handlers *rt, const char *name, size_t len, int force, hreload_report_fn fn, void *ctx) {
    if (!valid_name(name, len)) return -1;
    char buf[256];
    memcpy(buf, name, len);
    buf[len] = '\0';
    return sync_one(rt, buf, handlers_find(rt, buf, len), force, fn, ctx);
}

void handlers_log_report(void *ctx, const char *name, hreload_outcome o, int version, const char *error) {
    (void)ctx;
    switch (o) {
    case HR_LOADED: log_notice("Handler %s loaded (version %d)", name, version); break;
    case HR_RELOADED: log_notice("Handler %s reloaded (version %d)", name, version); break;
    case HR_UNCHANGED: log_debug("Handler %s unchanged (version %d)", name, version); break;
    case HR_UNLOADED: log_notice("Handler %s unloaded (its file is gone)", name); break;
    case HR_FAILED: /* the error itself was logged by handler_error */
        if (version) log_warning("Handler %s: version %d keeps serving", name, version);
        else log_warning("Handler %s: not running", name);
        (void)error;
        break;
    }
}
