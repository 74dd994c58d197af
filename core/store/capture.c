/* capture.c -- capture definitions, their pattern index, the publish hook
 * that appends captured events, de-duplication by message id and the
 * MAXLEN / MAXAGE retention (see capture.h).
 *
 * The blob a definition is persisted as (the stream's opaque `capture`):
 * "LHC1", then maxlen, maxage, dupwindow, dupmax as int64 and the pattern
 * count as uint32, then per pattern a uint32 length and its bytes (host
 * byte order: the database is local to the hub). */
#include "capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "route/patindex.h"
#include "route/router.h"

#define BLOB_MAGIC "LHC1"
#define BLOB_HDR (4 + 4 * 8 + 4)

/* One stream's parsed definition (stream->cap). */
typedef struct capdef {
    struct capture *cp;
    stream *s;
    capture_opts o;
    char *blob; /* a copy of the blob; pats point into it */
    sstr *pats;
    size_t npats;
    uint64_t mark;     /* the publish it was last collected for */
    uint64_t read_req; /* a cold read for a trim in flight, or 0 */
    uint64_t read_version;
    streamid read_first, read_limit;
    size_t read_count;
    int read_maxage; /* the read is for MAXAGE (else MAXLEN) */
    int wake_queued;
    struct capdef *prev, *next;
} capdef;

/* A pattern's capturing streams (the patindex udata). */
typedef struct cappat {
    capdef **defs;
    size_t n, cap;
} cappat;

struct capture {
    struct ev_loop *loop;
    streams *m;
    router *r;
    patindex *ix;
    capdef *defs;
    size_t ndefs;
    capdef **hits; /* the publish in progress: matching definitions */
    size_t nhits, hcap;
    uint64_t pubid;
    uint64_t *wake_sids; /* streams that got entries, woken from wake_w */
    size_t nwake, wcap;
    void (*wake)(const char *key, size_t klen);
    ev_timer tick_w;
    ev_idle wake_w;
    char errbuf[256];
    uint64_t stored, duplicates, not_stored;
};

/*---- Definitions ----------------------------------------------------------------------*/

/* Encodes pats and o as a blob; NULL if out of memory. */
static char *blob_encode(const sstr *pats, size_t npats, const capture_opts *o, size_t *len) {
    size_t n = BLOB_HDR;
    for (size_t i = 0; i < npats; i++) n += 4 + pats[i].len;
    char *b = malloc(n);
    if (!b) return NULL;
    char *p = b;
    memcpy(p, BLOB_MAGIC, 4), p += 4;
    const long long v[4] = {o->maxlen, o->maxage, o->dupwindow, o->dupmax};
    for (int i = 0; i < 4; i++) {
        int64_t x = v[i];
        memcpy(p, &x, 8), p += 8;
    }
    uint32_t np = (uint32_t)npats;
    memcpy(p, &np, 4), p += 4;
    for (size_t i = 0; i < npats; i++) {
        uint32_t l = (uint32_t)pats[i].len;
        memcpy(p, &l, 4), p += 4;
        memcpy(p, pats[i].p, pats[i].len), p += pats[i].len;
    }
    *len = n;
    return b;
}

/* Parses a blob into def (which takes a copy). Returns 0, or -1 if it is
 * malformed or memory is short. */
static int blob_decode(capdef *def, const char *blob, size_t len) {
    if (len < BLOB_HDR || memcmp(blob, BLOB_MAGIC, 4) != 0) return -1;
    if (!(def->blob = malloc(len))) return -1;
    memcpy(def->blob, blob, len);
    const char *p = def->blob + 4, *end = def->blob + len;
    int64_t v[4];
    for (int i = 0; i < 4; i++) memcpy(&v[i], p, 8), p += 8;
    def->o = (capture_opts){v[0], v[1], v[2], v[3]};
    uint32_t np;
    memcpy(&np, p, 4), p += 4;
    if (np > (size_t)(end - p) / 4) return -1;
    if (!(def->pats = calloc(np ? np : 1, sizeof *def->pats))) return -1;
    for (uint32_t i = 0; i < np; i++) {
        uint32_t l;
        if (end - p < 4) return -1;
        memcpy(&l, p, 4), p += 4;
        if ((size_t)(end - p) < l) return -1;
        def->pats[i] = (sstr){p, l};
        p += l;
    }
    def->npats = np;
    return 0;
}

/* Removes def from one pattern's list, dropping the pattern when empty. */
static void unindex(capture *cp, const sstr *pat, capdef *def) {
    cappat *c = patindex_get(cp->ix, pat->p, pat->len);
    if (!c) return;
    for (size_t i = 0; i < c->n; i++)
        if (c->defs[i] == def) {
            c->defs[i] = c->defs[--c->n];
            break;
        }
    if (c->n == 0) {
        patindex_remove(cp->ix, pat->p, pat->len);
        free(c->defs);
        free(c);
    }
}

/* Adds def to one pattern's list. Returns 0, or -1 if out of memory. */
static int index_pat(capture *cp, const sstr *pat, capdef *def) {
    cappat *c = patindex_get(cp->ix, pat->p, pat->len);
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return -1;
        if (patindex_add(cp->ix, pat->p, pat->len, c) < 0) {
            free(c);
            return -1;
        }
    }
    for (size_t i = 0; i < c->n; i++)
        if (c->defs[i] == def) return 0; /* the same pattern twice in one definition */
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 2;
        capdef **v = realloc(c->defs, ncap * sizeof *v);
        if (!v) {
            if (c->n == 0) unindex(cp, pat, def);
            return -1;
        }
        c->defs = v;
        c->cap = ncap;
    }
    c->defs[c->n++] = def;
    return 0;
}

/* Unindexes and frees a definition (memory only; the blob stays). */
static void def_free(capture *cp, capdef *def) {
    for (size_t i = 0; i < def->npats; i++) unindex(cp, &def->pats[i], def);
    if (def->read_req) store_read_cancel(streams_store(cp->m), def->read_req);
    if (def->prev)
        def->prev->next = def->next;
    else
        cp->defs = def->next;
    if (def->next) def->next->prev = def->prev;
    cp->ndefs--;
    def->s->cap = NULL;
    free(def->pats);
    free(def->blob);
    free(def);
}

/* Parses s's blob and indexes its patterns. Returns 0, or -1 (malformed,
 * out of memory: s does not capture). */
static int def_load(capture *cp, stream *s) {
    capdef *def = calloc(1, sizeof *def);
    if (!def) return -1;
    def->cp = cp;
    def->s = s;
    s->cap = def;
    def->next = cp->defs;
    if (cp->defs) cp->defs->prev = def;
    cp->defs = def;
    cp->ndefs++;
    if (blob_decode(def, s->capture, s->meta.capture_len) < 0) {
        def_free(cp, def);
        return -1;
    }
    for (size_t i = 0; i < def->npats; i++)
        if (index_pat(cp, &def->pats[i], def) < 0) {
            def_free(cp, def);
            return -1;
        }
    return 0;
}

/* The model frees a stream: its definition goes first. */
static void on_stream_free(void *ctx, stream *s) {
    if (s->cap) def_free(ctx, s->cap);
}

void capture_rebuild(capture *cp) {
    if (!cp) return;
    for (stream *s = streams_first(cp->m); s; s = streams_next(s)) {
        if (s->cap) def_free(cp, s->cap);
        if (s->capture && s->meta.capture_len && def_load(cp, s) < 0)
            log_warning("Stream '%.*s': its capture definition is unreadable; it captures nothing",
                        (int)(s->klen > 64 ? 64 : s->klen), s->key);
    }
}

/*---- Retention ------------------------------------------------------------------------*/

static void retention(capture *cp, capdef *def, int64_t now);

/* The ids of the oldest entries were read for a trim: apply it if the
 * stream's old end has not changed meanwhile, then look again. */
static void cold_trim_done(void *ctx, const store_row *rows, size_t n, const char *err) {
    capdef *def = ctx;
    capture *cp = def->cp;
    stream *s = def->s;
    def->read_req = 0;
    if (err || !store_ok(streams_store(cp->m))) return; /* tried again at the next append or tick */
    if (s->cold_version != def->read_version || streamid_cmp(s->meta.first_id, def->read_first) != 0) return;
    uint64_t k;
    streamid below = {0, 0};
    if (def->read_maxage) {
        /* every row read is older than the cut; all of them when fewer came than asked */
        k = n;
        below = n == def->read_count ? rows[n - 1].id : def->read_limit;
        streamid_incr(&below);
        if (!n && s->meta.length != s->hot) s->meta.first_id = below; /* nothing older: a better lower bound */
    } else {
        uint64_t drop = def->o.maxlen >= 0 && s->meta.length > (uint64_t)def->o.maxlen
                            ? s->meta.length - (uint64_t)def->o.maxlen
                            : 0;
        k = drop < n ? drop : n;
        if (k < n) {
            below = rows[k].id;
        } else if (n) {
            below = rows[n - 1].id;
            streamid_incr(&below);
        }
    }
    if (k)
        stream_trim_below(cp->m, s, below, k);
    else if (n)
        s->meta.first_id = rows[0].id;
    retention(cp, def, (int64_t)(ev_now(cp->loop) * 1000.0));
}

/* Reads up to count of the oldest entries of s in [first, last] so a trim
 * can name its first kept id. */
static void cold_trim_start(capture *cp, capdef *def, streamid last, size_t count, int maxage) {
    stream *s = def->s;
    if (count > STREAM_COLD_MAX) count = STREAM_COLD_MAX;
    def->read_version = s->cold_version;
    def->read_first = s->meta.first_id;
    def->read_limit = last;
    def->read_count = count;
    def->read_maxage = maxage;
    def->read_req = store_read(streams_store(cp->m), s->sid, s->meta.first_id, last, count, 0, cold_trim_done, def);
}

/* Trims s to def's MAXLEN and MAXAGE: at once for what is in memory (or
 * wholly on disk), through a cold read of the ids otherwise. */
static void retention(capture *cp, capdef *def, int64_t now) {
    stream *s = def->s;
    if (def->read_req) return;
    if (def->o.maxlen >= 0 && s->meta.length > (uint64_t)def->o.maxlen) {
        uint64_t drop = s->meta.length - (uint64_t)def->o.maxlen, cold = s->meta.length - s->hot;
        if (drop > cold) {
            uint64_t k = 0, want = drop - cold;
            size_t i = s->whead;
            for (; i < s->wlen; i++)
                if (s->win[i].e && ++k > want) break;
            streamid below = s->meta.last_id;
            if (i < s->wlen)
                below = s->win[i].id;
            else
                streamid_incr(&below);
            stream_trim_below(cp->m, s, below, drop);
        } else if (drop == cold) {
            stream_trim_below(cp->m, s, s->cold_below, drop);
        } else {
            streamid last = s->cold_below;
            streamid_decr(&last);
            cold_trim_start(cp, def, last, (size_t)drop + 1, 0);
            return;
        }
    }
    if (def->o.maxage >= 0 && s->meta.length) {
        int64_t cut_ms = now - def->o.maxage * 1000;
        streamid cut = {cut_ms > 0 ? (uint64_t)cut_ms : 0, 0};
        if (streamid_cmp(s->meta.first_id, cut) >= 0) return;
        uint64_t cold = s->meta.length - s->hot;
        if (cold && streamid_cmp(cut, s->cold_below) < 0) {
            streamid last = cut;
            streamid_decr(&last);
            cold_trim_start(cp, def, last, STREAM_COLD_MAX, 1);
            return;
        }
        uint64_t k = cold;
        for (size_t i = s->whead; i < s->wlen && streamid_cmp(s->win[i].id, cut) < 0; i++)
            if (s->win[i].e) k++;
        if (k) stream_trim_below(cp->m, s, cut, k);
    }
}

/*---- The publish hook -------------------------------------------------------------------*/

/* Collects the definitions of one matching pattern, each once per publish. */
static int collect_cb(void *udata, const char *pat, size_t plen, void *ctx) {
    (void)pat, (void)plen;
    capture *cp = ctx;
    cappat *c = udata;
    for (size_t i = 0; i < c->n; i++) {
        capdef *def = c->defs[i];
        if (def->mark == cp->pubid) continue;
        if (cp->nhits == cp->hcap) {
            size_t ncap = cp->hcap ? cp->hcap * 2 : 8;
            capdef **v = realloc(cp->hits, ncap * sizeof *v);
            if (!v) return 1; /* out of memory: the streams collected so far only */
            cp->hits = v;
            cp->hcap = ncap;
        }
        def->mark = cp->pubid;
        cp->hits[cp->nhits++] = def;
    }
    return 0;
}

/* Queues s's blocked readers to be woken once the publish is over. */
static void queue_wake(capture *cp, capdef *def) {
    if (def->wake_queued || !cp->wake) return;
    if (cp->nwake == cp->wcap) {
        size_t ncap = cp->wcap ? cp->wcap * 2 : 8;
        uint64_t *v = realloc(cp->wake_sids, ncap * sizeof *v);
        if (!v) return;
        cp->wake_sids = v;
        cp->wcap = ncap;
    }
    def->wake_queued = 1;
    cp->wake_sids[cp->nwake++] = def->s->sid;
    ev_idle_start(cp->loop, &cp->wake_w);
}

/* Wakes the readers of the streams that got entries (outside any publish:
 * a woken reader runs its command again, and its connection's next ones). */
static void wake_cb(struct ev_loop *loop, ev_idle *w, int revents) {
    (void)revents;
    capture *cp = w->data;
    ev_idle_stop(loop, w);
    for (size_t i = 0; i < cp->nwake; i++) {
        stream *s = streams_from_sid(cp->m, cp->wake_sids[i]);
        if (!s || s->sid != cp->wake_sids[i]) continue;
        if (s->cap) ((capdef *)s->cap)->wake_queued = 0;
        cp->wake(s->key, s->klen);
    }
    cp->nwake = 0;
}

/* Appends one captured event to def's stream, records its msgid, trims. */
static void append(capture *cp, capdef *def, const delivery *d, const char *msgid, size_t idlen, int64_t now) {
    stream *s = def->s;
    streamid id;
    if (stream_next_id(s, NULL, 0, (uint64_t)now, &id) < 0) {
        cp->not_stored++;
        return;
    }
    const sstr fv[6] = {{"name", 4}, {d->chan, d->clen}, {"data", 4}, {d->msg, d->mlen}, {"msgid", 5}, {msgid, idlen}};
    if (stream_append(cp->m, s, id, fv, msgid ? 3 : 2) < 0) {
        cp->not_stored++;
        return;
    }
    cp->stored++;
    if (msgid && def->o.dupwindow > 0) stream_dedup_put(cp->m, s, msgid, idlen, id, now, (size_t)def->o.dupmax);
    retention(cp, def, now);
    queue_wake(cp, def);
}

/* 1 if msgid is recorded in def's stream within its DUPWINDOW. */
static int is_duplicate(const capdef *def, const char *msgid, size_t idlen, int64_t now) {
    if (def->o.dupwindow <= 0) return 0;
    const sdedup *r = stream_dedup_find(def->s, msgid, idlen);
    return r && r->time_ms >= now - def->o.dupwindow * 1000;
}

/* The router's hook: see router.h and capture.h. A duplicate (any matching
 * stream has the msgid within its window) is stored nowhere and withheld
 * from subscribers: a publisher's retry creates no second event. */
static int capture_hook(void *ctx, const delivery *d, const char *msgid, size_t idlen, void *arg) {
    capture *cp = ctx;
    capture_result *res = arg;
    if (!cp->ndefs) return 0;
    cp->nhits = 0;
    cp->pubid = d->id;
    patindex_match(cp->ix, d->chan, d->clen, collect_cb, cp);
    if (!cp->nhits) return 0;
    if (res) res->matched = cp->nhits;
    int64_t now = (int64_t)d->time_ms;
    if (msgid)
        for (size_t i = 0; i < cp->nhits; i++)
            if (is_duplicate(cp->hits[i], msgid, idlen, now)) {
                cp->duplicates++;
                if (res) res->duplicate = 1;
                return 1;
            }
    store *st = streams_store(cp->m);
    if (!store_ok(st) || store_backlog_bytes(st) > STORE_BACKLOG_LIMIT) {
        if (!store_ok(st))
            snprintf(cp->errbuf, sizeof cp->errbuf, "ERR store unavailable: %s",
                     store_error(st) ? store_error(st) : "unknown error");
        else
            snprintf(cp->errbuf, sizeof cp->errbuf, "ERR store busy: the writer is behind, retry later");
        cp->not_stored++;
        if (res) res->err = cp->errbuf;
        return 0;
    }
    uint64_t before = cp->stored;
    for (size_t i = 0; i < cp->nhits; i++) append(cp, cp->hits[i], d, msgid, idlen, now);
    if (res) res->stored = (size_t)(cp->stored - before);
    return 0;
}

/*---- Life -----------------------------------------------------------------------------------*/

/* Once a second: MAXAGE and DUPWINDOW expire with time, not only on append. */
static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    capture *cp = w->data;
    store *st = streams_store(cp->m);
    if (!store_ok(st) || store_backlog_bytes(st) > STORE_BACKLOG_LIMIT) return;
    int64_t now = (int64_t)(ev_now(loop) * 1000.0);
    for (capdef *def = cp->defs; def; def = def->next) {
        if (def->o.dupwindow > 0) stream_dedup_expire(cp->m, def->s, now - def->o.dupwindow * 1000);
        retention(cp, def, now);
    }
}

capture *capture_new(struct ev_loop *loop, streams *m, router *r, void (*wake)(const char *key, size_t klen)) {
    capture *cp = calloc(1, sizeof *cp);
    if (!cp) return NULL;
    if (!(cp->ix = patindex_new())) {
        free(cp);
        return NULL;
    }
    cp->loop = loop;
    cp->m = m;
    cp->r = r;
    cp->wake = wake;
    ev_timer_init(&cp->tick_w, tick_cb, 1.0, 1.0);
    cp->tick_w.data = cp;
    ev_timer_start(loop, &cp->tick_w);
    ev_idle_init(&cp->wake_w, wake_cb);
    cp->wake_w.data = cp;
    streams_set_free_hook(m, on_stream_free, cp);
    router_set_hook(r, capture_hook, cp);
    return cp;
}

void capture_free(capture *cp) {
    if (!cp) return;
    router_set_hook(cp->r, NULL, NULL);
    streams_set_free_hook(cp->m, NULL, NULL);
    while (cp->defs) def_free(cp, cp->defs);
    ev_timer_stop(cp->loop, &cp->tick_w);
    ev_idle_stop(cp->loop, &cp->wake_w);
    patindex_free(cp->ix);
    free(cp->hits);
    free(cp->wake_sids);
    free(cp);
}

int capture_define(capture *cp, stream *s, const sstr *pats, size_t npats, const capture_opts *o) {
    size_t len;
    char *blob = blob_encode(pats, npats, o, &len);
    if (!blob) return -1;
    if (s->cap) def_free(cp, s->cap);
    int rc = stream_set_capture(cp->m, s, blob, len);
    free(blob);
    if (rc < 0 || def_load(cp, s) < 0) return -1;
    int64_t now = (int64_t)(ev_now(cp->loop) * 1000.0);
    if (o->dupwindow > 0) stream_dedup_expire(cp->m, s, now - o->dupwindow * 1000);
    retention(cp, s->cap, now);
    return 0;
}

int capture_get(const stream *s, capture_opts *o) {
    if (!s->cap) return 0;
    *o = ((const capdef *)s->cap)->o;
    return 1;
}

void capture_foreach_pattern(const stream *s, void (*fn)(void *ctx, const char *p, size_t n), void *ctx) {
    const capdef *def = s->cap;
    if (!def) return;
    for (size_t i = 0; i < def->npats; i++) fn(ctx, def->pats[i].p, def->pats[i].len);
}

size_t capture_npatterns(const stream *s) {
    return s->cap ? ((const capdef *)s->cap)->npats : 0;
}

void capture_get_stats(const capture *cp, capture_stats *out) {
    memset(out, 0, sizeof *out);
    for (const capdef *def = cp->defs; def; def = def->next) {
        out->streams++;
        if (def->o.maxlen < 0 && def->o.maxage < 0) out->unbounded++;
    }
    out->stored = cp->stored;
    out->duplicates = cp->duplicates;
    out->not_stored = cp->not_stored;
}
