/* stream.c -- the in-memory stream model and its persistence calls (see
 * stream.h). */
#include "stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

/* A finished or running cold read for one waiter. */
/* What identifies a cold read: who asked, for what, against which version
 * of the stream's cold part (all bytes set: it is a hash key). A commit
 * waiter (no read yet) has only `waiter` set and rev = -1. */
typedef struct cold_key {
    void *waiter;
    uint64_t sid, version;
    streamid a, b, cold_below;
    uint64_t count;
    int64_t rev;
} cold_key;

typedef struct cold_req {
    struct cold_req *next;
    UT_hash_handle hh; /* streams.cold_idx, by key */
    cold_key key;
    streams *m;
    void *waiter;
    uint64_t sid, req;
    streamid a, b, cold_below;
    size_t count;
    int rev, done;
    uint64_t version;
    uint64_t wait_seq; /* no read yet: waits for this batch to commit */
    store_row *rows;
    size_t n;
    char *err;
} cold_req;

struct streams {
    store *st;
    stream *by_key, *by_sid;
    uint64_t next_sid;
    size_t cache_bytes, max_pending, wbytes;
    uint64_t committed;
    stream_wake_fn wake;
    cold_req *cold;     /* every cold read and commit waiter, newest first */
    cold_req *cold_idx; /* the same, by key: a re-run finds its rows in O(1) */
    uint64_t evicted, cold_reads;
    uint64_t writes; /* records asked of the store: a command that changed it gates its reply */
    void (*free_hook)(void *ctx, stream *s);
    void *free_ctx;
};

#define PAIR_HDR 4
#define NODE_ENTRIES 100 /* Redis's stream-node-max-entries: the unit ~ trims */

/*---- Ids ------------------------------------------------------------------*/

int streamid_cmp(streamid a, streamid b) {
    if (a.ms != b.ms) return a.ms < b.ms ? -1 : 1;
    if (a.seq != b.seq) return a.seq < b.seq ? -1 : 1;
    return 0;
}

int streamid_incr(streamid *a) {
    if (a->seq == UINT64_MAX) {
        if (a->ms == UINT64_MAX) return -1;
        a->ms++;
        a->seq = 0;
    } else {
        a->seq++;
    }
    return 0;
}

int streamid_decr(streamid *a) {
    if (a->seq == 0) {
        if (a->ms == 0) return -1;
        a->ms--;
        a->seq = UINT64_MAX;
    } else {
        a->seq--;
    }
    return 0;
}

/* Redis's string2ull: a strict long long that is not negative, or else what
 * strtoull takes whole. */
static int parse_ull(const char *s, uint64_t *out) {
    if (!*s) return -1;
    char *end;
    int strict = 1;
    size_t n = strlen(s);
    if (n > 20 || (s[0] == '0' && n > 1) || s[0] == '-') strict = 0;
    for (size_t i = 0; strict && i < n; i++)
        if (s[i] < '0' || s[i] > '9') strict = 0;
    if (strict && n < 19) {
        *out = strtoull(s, NULL, 10);
        return 0;
    }
    if (s[0] == '-' && s[1] >= '1' && s[1] <= '9') {
        /* a strict negative long long is refused; a longer one falls to strtoull */
        int digits = 1;
        for (size_t i = 1; i < n; i++) digits &= s[i] >= '0' && s[i] <= '9';
        if (digits && n <= 20) {
            errno = 0;
            long long v = strtoll(s, &end, 10);
            if (errno == 0 && v < 0) return -1;
        }
    }
    errno = 0;
    *out = strtoull(s, &end, 10);
    if (errno == EINVAL || errno == ERANGE || *end != '\0') return -1;
    return 0;
}

int streamid_parse(const char *p, size_t n, uint64_t missing_seq, int strict, int *seq_given, streamid *out) {
    char buf[128];
    if (n > sizeof buf - 1) return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (strict && (buf[0] == '-' || buf[0] == '+') && buf[1] == '\0') return -1;
    if (seq_given) *seq_given = 1;
    if (buf[0] == '-' && buf[1] == '\0') {
        out->ms = out->seq = 0;
        return 0;
    }
    if (buf[0] == '+' && buf[1] == '\0') {
        out->ms = out->seq = UINT64_MAX;
        return 0;
    }
    uint64_t ms, seq;
    char *dot = strchr(buf, '-');
    if (dot) *dot = '\0';
    if (parse_ull(buf, &ms) < 0) return -1;
    if (dot) {
        if (seq_given && dot[1] == '*' && dot[2] == '\0') {
            seq = 0;
            *seq_given = 0;
        } else if (parse_ull(dot + 1, &seq) < 0) {
            return -1;
        }
    } else {
        seq = missing_seq;
    }
    out->ms = ms;
    out->seq = seq;
    return 0;
}

size_t streamid_fmt(streamid id, char *buf) {
    return (size_t)sprintf(buf, "%llu-%llu", (unsigned long long)id.ms, (unsigned long long)id.seq);
}

/*---- Streams --------------------------------------------------------------*/

streams *streams_new(store *st, size_t cache_bytes, size_t max_pending, stream_wake_fn wake) {
    streams *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->st = st;
    m->cache_bytes = cache_bytes;
    m->max_pending = max_pending;
    m->wake = wake;
    m->next_sid = 1;
    return m;
}

store *streams_store(streams *m) {
    return m->st;
}
uint64_t streams_writes(const streams *m) {
    return m->writes;
}
size_t streams_max_pending(const streams *m) {
    return m->max_pending;
}
size_t streams_count(const streams *m) {
    return HASH_CNT(hh, m->by_key);
}

/* Frees a group with its consumers and PEL (memory only). */
static void group_free(sgroup *g) {
    sconsumer *c, *tmp;
    HASH_ITER(hh, g->consumers, c, tmp) {
        HASH_DEL(g->consumers, c);
        free(c->name);
        free(c);
    }
    for (size_t i = g->pel_head; i < g->pel_len; i++) free(g->pel[i].n);
    free(g->pel);
    free(g->name);
    free(g);
}

/* Frees a stream's memory and unlinks it (no store call). */
static void stream_free(streams *m, stream *s) {
    if (m->free_hook) m->free_hook(m->free_ctx, s);
    sdedup *d, *dtmp;
    HASH_ITER(hh, s->dedup, d, dtmp) {
        HASH_DEL(s->dedup, d);
        free(d);
    }
    HASH_DELETE(hh, m->by_key, s);
    HASH_DELETE(hs, m->by_sid, s);
    sgroup *g, *tmp;
    HASH_ITER(hh, s->groups, g, tmp) {
        HASH_DEL(s->groups, g);
        group_free(g);
    }
    for (size_t i = s->whead; i < s->wlen; i++) free(s->win[i].e);
    m->wbytes -= s->wbytes;
    free(s->win);
    free(s->capture);
    free(s->key);
    free(s);
}

/* Frees a record already taken off m->cold (and off the index). */
static void cold_free(cold_req *r) {
    HASH_DEL(r->m->cold_idx, r);
    free(r->rows);
    free(r->err);
    free(r);
}

void streams_free(streams *m) {
    if (!m) return;
    stream *s, *tmp;
    HASH_ITER(hh, m->by_key, s, tmp) stream_free(m, s);
    while (m->cold) {
        cold_req *r = m->cold;
        m->cold = r->next;
        if (!r->done && r->req) store_read_cancel(m->st, r->req);
        cold_free(r);
    }
    free(m);
}

stream *streams_find(streams *m, const char *key, size_t klen) {
    stream *s;
    HASH_FIND(hh, m->by_key, key, klen, s);
    return s;
}

stream *streams_first(streams *m) {
    return m->by_key;
}
stream *streams_next(stream *s) {
    return s->hh.next;
}

stream *streams_from_sid(streams *m, uint64_t sid) {
    stream *s;
    HASH_FIND(hs, m->by_sid, &sid, sizeof sid, s);
    if (s) return s;
    for (s = m->by_key; s; s = s->hh.next)
        if (s->sid >= sid) return s;
    return NULL;
}

/* Links a new stream object with key and sid (no store call). */
static stream *stream_link(streams *m, uint64_t sid, const char *key, size_t klen) {
    stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->key = malloc(klen ? klen : 1);
    if (!s->key) {
        free(s);
        return NULL;
    }
    memcpy(s->key, key, klen);
    s->klen = klen;
    s->sid = sid;
    HASH_ADD_KEYPTR(hh, m->by_key, s->key, s->klen, s);
    HASH_ADD(hs, m->by_sid, sid, sizeof s->sid, s);
    if (sid >= m->next_sid) m->next_sid = sid + 1;
    return s;
}

void stream_put_meta(streams *m, stream *s) {
    m->writes++;
    store_stream_put(m->st, s->sid, s->key, s->klen, &s->meta);
}

stream *streams_create(streams *m, const char *key, size_t klen) {
    stream *s = stream_link(m, m->next_sid, key, klen);
    if (s) stream_put_meta(m, s);
    return s;
}

void streams_delete(streams *m, stream *s) {
    m->writes++;
    store_stream_del(m->st, s->sid);
    stream_free(m, s);
}

/*---- The hot window --------------------------------------------------------------*/

size_t stream_win_lower(const stream *s, streamid a) {
    size_t lo = s->whead, hi = s->wlen;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (streamid_cmp(s->win[mid].id, a) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

sentry *stream_hot_get(const stream *s, streamid id) {
    size_t i = stream_win_lower(s, id);
    if (i < s->wlen && streamid_cmp(s->win[i].id, id) == 0) return s->win[i].e;
    return NULL;
}

int stream_range_cold(const stream *s, streamid a, streamid b) {
    if (s->meta.length <= s->hot) return 0;
    (void)b;
    return streamid_cmp(a, s->cold_below) < 0 && streamid_cmp(s->meta.first_id, s->cold_below) < 0;
}

/* Drops tombstones at the window's head, and compacts it when more than
 * half of it is dead. */
static void win_compact(stream *s) {
    while (s->whead < s->wlen && !s->win[s->whead].e) s->whead++;
    if (s->whead == s->wlen) {
        s->whead = s->wlen = 0;
        return;
    }
    size_t used = s->wlen - s->whead;
    if (s->whead > 1024 && s->whead > used) {
        memmove(s->win, s->win + s->whead, used * sizeof *s->win);
        s->wlen = used;
        s->whead = 0;
    }
    if (used - s->hot > 1024 && used - s->hot > s->hot) {
        size_t j = 0;
        for (size_t i = s->whead; i < s->wlen; i++)
            if (s->win[i].e) s->win[j++] = s->win[i];
        s->whead = 0;
        s->wlen = j;
    }
}

static size_t entry_size(const sentry *e) {
    return sizeof *e + e->flen + sizeof(wslot);
}

/* Frees window slot i's entry (memory only). */
static void win_drop(streams *m, stream *s, size_t i) {
    sentry *e = s->win[i].e;
    if (!e) return;
    size_t sz = entry_size(e);
    s->wbytes -= sz;
    m->wbytes -= sz;
    s->hot--;
    free(e);
    s->win[i].e = NULL;
}

/* Moves the oldest committed entries of the streams with the most window
 * bytes out of memory until all windows fit in cache_bytes (with 1/16 of
 * slack, so the scan for the biggest runs rarely). */
static void evict(streams *m) {
    if (m->wbytes <= m->cache_bytes) return;
    size_t target = m->cache_bytes - m->cache_bytes / 16;
    while (m->wbytes > target) {
        stream *big = NULL;
        for (stream *s = m->by_key; s; s = s->hh.next)
            if (s->hot && s->win[s->whead].e && s->win[s->whead].e->seq <= m->committed &&
                (!big || s->wbytes > big->wbytes))
                big = s;
        if (!big) return; /* nothing committed yet: the writer is behind */
        size_t goal = big->wbytes / 2 > m->wbytes - target ? big->wbytes - (m->wbytes - target) : big->wbytes / 2;
        while (big->hot && big->wbytes > goal) {
            wslot *w = &big->win[big->whead];
            if (w->e && w->e->seq > m->committed) break;
            streamid id = w->id;
            if (w->e) m->evicted++;
            win_drop(m, big, big->whead);
            big->whead++;
            if (streamid_incr(&id) == 0 && streamid_cmp(id, big->cold_below) > 0) big->cold_below = id;
            win_compact(big);
        }
    }
}

/* Wakes the waiters of cold reads that waited for a commit (all of them
 * when `all`), dropping their records. */
static void wake_commit_waiters(streams *m, int all) {
    cold_req **pp = &m->cold;
    while (*pp) {
        cold_req *r = *pp;
        if (!r->req && !r->done && (all || r->wait_seq <= m->committed)) {
            *pp = r->next;
            void *w = r->waiter;
            cold_free(r);
            m->wake(w);
        } else {
            pp = &r->next;
        }
    }
}

void streams_committed(streams *m, uint64_t seq) {
    m->committed = seq;
    wake_commit_waiters(m, 0);
    evict(m);
}

/* Encodes 2*npairs strings into a new entry. */
static sentry *entry_new(const sstr *fv, size_t npairs) {
    size_t n = PAIR_HDR;
    for (size_t i = 0; i < 2 * npairs; i++) n += 4 + fv[i].len;
    if (n > UINT32_MAX) return NULL;
    sentry *e = malloc(sizeof *e + n);
    if (!e) return NULL;
    e->npairs = (uint32_t)npairs;
    e->flen = (uint32_t)n;
    char *p = e->f;
    uint32_t v = (uint32_t)npairs;
    memcpy(p, &v, 4);
    p += 4;
    for (size_t i = 0; i < 2 * npairs; i++) {
        v = (uint32_t)fv[i].len;
        memcpy(p, &v, 4);
        memcpy(p + 4, fv[i].p, fv[i].len);
        p += 4 + fv[i].len;
    }
    return e;
}

int stream_fields_each(const char *f, size_t flen, void (*fn)(void *ctx, const char *p, size_t n, size_t npairs),
                       void *ctx) {
    uint32_t np, len;
    if (flen < 4) return -1;
    memcpy(&np, f, 4);
    size_t off = 4;
    for (size_t i = 0; i < 2 * (size_t)np; i++) {
        if (flen - off < 4) return -1;
        memcpy(&len, f + off, 4);
        off += 4;
        if (flen - off < len) return -1;
        if (fn) fn(ctx, f + off, len, np);
        off += len;
    }
    return off == flen ? 0 : -1;
}

/* Adds an entry at the window's end (memory only). */
static int win_push(streams *m, stream *s, streamid id, sentry *e) {
    if (s->wlen == s->wcap) {
        win_compact(s);
        if (s->wlen == s->wcap) {
            size_t cap = s->wcap ? s->wcap * 2 : 8;
            wslot *w = realloc(s->win, cap * sizeof *w);
            if (!w) return -1;
            s->win = w;
            s->wcap = cap;
        }
    }
    s->win[s->wlen].id = id;
    s->win[s->wlen].e = e;
    s->wlen++;
    s->hot++;
    size_t sz = entry_size(e);
    s->wbytes += sz;
    m->wbytes += sz;
    return 0;
}

int stream_next_id(const stream *s, const streamid *want, int seq_given, uint64_t now_ms, streamid *out) {
    const streamid last = s->meta.last_id;
    if (last.ms == UINT64_MAX && last.seq == UINT64_MAX) return -2;
    streamid id;
    if (want) {
        id = *want;
        if (!seq_given && last.ms == want->ms) {
            if (last.seq == UINT64_MAX) return -1;
            id = last;
            id.seq++;
        }
    } else if (now_ms > last.ms) {
        id.ms = now_ms;
        id.seq = 0;
    } else {
        id = last;
        if (streamid_incr(&id) < 0) return -2;
    }
    if (streamid_cmp(id, last) <= 0) return -1;
    *out = id;
    return 0;
}

int stream_append(streams *m, stream *s, streamid id, const sstr *fv, size_t npairs) {
    sentry *e = entry_new(fv, npairs);
    if (!e) return -1;
    e->seq = store_seq(m->st);
    if (win_push(m, s, id, e) < 0) {
        free(e);
        return -1;
    }
    if (s->meta.length == 0) s->meta.first_id = id;
    s->meta.last_id = id;
    s->meta.length++;
    s->meta.entries_added++;
    m->writes++;
    store_entry_add(m->st, s->sid, id, e->f, e->flen);
    stream_put_meta(m, s);
    s->wseq = store_seq(m->st);
    evict(m);
    return 0;
}

/* After removals: the first id is the window's first live entry when
 * nothing is cold, 0-0 when empty; otherwise the caller knows it. */
static void fix_first(stream *s) {
    if (s->meta.length == 0) {
        s->meta.first_id.ms = s->meta.first_id.seq = 0;
        return;
    }
    if (s->meta.length == s->hot) {
        win_compact(s);
        s->meta.first_id = s->win[s->whead].id;
    }
}

void stream_delete_entry(streams *m, stream *s, streamid id, int hot) {
    if (hot) {
        size_t i = stream_win_lower(s, id);
        if (i < s->wlen && streamid_cmp(s->win[i].id, id) == 0) win_drop(m, s, i);
        win_compact(s);
    } else {
        s->cold_version++;
    }
    s->meta.length--;
    if (streamid_cmp(id, s->meta.max_deleted_id) > 0) s->meta.max_deleted_id = id;
    if (s->meta.length && streamid_cmp(id, s->meta.first_id) == 0) {
        if (s->meta.length == s->hot) {
            fix_first(s);
        } else {
            /* the new first id is cold and unknown: keep a lower bound (ranges still find it) */
            streamid f = id;
            streamid_incr(&f);
            s->meta.first_id = f;
        }
    }
    fix_first(s);
    m->writes++;
    store_entry_del(m->st, s->sid, id);
    stream_put_meta(m, s);
    s->wseq = store_seq(m->st);
}

void stream_trim_below(streams *m, stream *s, streamid below, uint64_t n) {
    if (!n) return;
    size_t end = stream_win_lower(s, below);
    for (size_t i = s->whead; i < end; i++) win_drop(m, s, i);
    if (end > s->whead) s->whead = end;
    if (streamid_cmp(below, s->cold_below) > 0) s->cold_below = below;
    s->cold_version++;
    s->meta.length -= n;
    win_compact(s);
    if (s->meta.length == s->hot)
        fix_first(s);
    else
        s->meta.first_id = below;
    m->writes++;
    store_entry_trim(m->st, s->sid, below);
    stream_put_meta(m, s);
    s->wseq = store_seq(m->st);
}

uint64_t stream_trim_approx(streams *m, stream *s, uint64_t maxlen, uint64_t limit) {
    /* Only whole nodes of the window go; the cold part is left alone (~
     * allows keeping more than asked). Nodes are NODE_ENTRIES entries,
     * counted from the stream's first entry ever added (entries_added). */
    if (s->meta.length <= maxlen || s->meta.length != s->hot) return 0;
    uint64_t removed = 0;
    win_compact(s);
    while (s->hot && s->meta.length - removed > maxlen) {
        /* the node of the first entry: entries that remain of its 100 */
        uint64_t idx_first = s->meta.entries_added - s->meta.length + removed; /* estimate */
        uint64_t node_left = NODE_ENTRIES - idx_first % NODE_ENTRIES;
        if (node_left > s->meta.length - removed) node_left = s->meta.length - removed;
        if (s->meta.length - removed - node_left < maxlen) break;
        if (limit && removed + node_left > limit) break;
        removed += node_left;
    }
    if (!removed) return 0;
    size_t i = s->whead;
    uint64_t k = 0;
    for (; i < s->wlen && k < removed; i++)
        if (s->win[i].e) k++;
    streamid below = i < s->wlen ? s->win[i].id : s->meta.last_id;
    if (i >= s->wlen) streamid_incr(&below);
    stream_trim_below(m, s, below, removed);
    return removed;
}

/*---- Cold reads ------------------------------------------------------------------------*/

/* The reader thread's answer, on the loop thread: keep the rows for the
 * waiter's re-run and wake it. */
static void cold_done(void *ctx, const store_row *rows, size_t n, const char *err) {
    cold_req *r = ctx;
    streams *m = r->m;
    r->done = 1;
    m->cold_reads++;
    if (err) {
        r->err = strdup(err);
    } else if (n) {
        size_t bytes = 0;
        for (size_t i = 0; i < n; i++) bytes += rows[i].fields ? rows[i].flen : 0;
        r->rows = malloc(n * sizeof *r->rows + bytes);
        if (!r->rows) {
            r->err = strdup("ERR out of memory reading stored entries");
        } else {
            char *p = (char *)(r->rows + n);
            for (size_t i = 0; i < n; i++) {
                r->rows[i] = rows[i];
                if (rows[i].fields) {
                    memcpy(p, rows[i].fields, rows[i].flen);
                    r->rows[i].fields = p;
                    p += rows[i].flen;
                }
            }
            r->n = n;
        }
    }
    m->wake(r->waiter);
}

/* Adds r (its key set) to m's list and index. */
static void cold_link(streams *m, cold_req *r) {
    r->m = m;
    r->next = m->cold;
    m->cold = r;
    HASH_ADD(hh, m->cold_idx, key, sizeof(cold_key), r);
}

int stream_cold(streams *m, stream *s, streamid a, streamid b, size_t count, int rev, void *waiter, cold_rows *out) {
    memset(out, 0, sizeof *out);
    cold_key k;
    memset(&k, 0, sizeof k);
    k.waiter = waiter;
    k.sid = s->sid;
    k.version = s->cold_version;
    k.a = a;
    k.b = b;
    k.cold_below = s->cold_below;
    k.count = count;
    k.rev = rev;
    cold_req *r;
    HASH_FIND(hh, m->cold_idx, &k, sizeof k, r);
    if (r) {
        if (!r->done) return 0;
        out->rows = r->rows;
        out->n = r->n;
        out->err = r->err;
        if (!out->err && r->n == STREAM_COLD_MAX + 1)
            out->err = "ERR the range holds too many stored entries for one reply: use COUNT";
        return 1;
    }
    if (s->wseq > store_committed(m->st)) {
        /* what the reader would see is not committed yet: wait for it
         * (streams_committed wakes the waiter, which asks again), once */
        cold_key w;
        memset(&w, 0, sizeof w);
        w.waiter = waiter;
        w.rev = -1;
        HASH_FIND(hh, m->cold_idx, &w, sizeof w, r);
        if (r) {
            if (r->wait_seq < s->wseq) r->wait_seq = s->wseq;
            return 0;
        }
        if (!(r = calloc(1, sizeof *r))) {
            out->err = "ERR out of memory reading stored entries";
            return 1;
        }
        r->key = w;
        r->waiter = waiter;
        r->wait_seq = s->wseq;
        cold_link(m, r);
        return 0;
    }
    if (!(r = calloc(1, sizeof *r))) {
        out->err = "ERR out of memory reading stored entries";
        return 1;
    }
    r->key = k;
    r->waiter = waiter;
    r->sid = s->sid;
    r->a = a;
    r->b = b;
    r->count = count;
    r->rev = rev;
    r->cold_below = s->cold_below;
    r->version = s->cold_version;
    size_t ask = count && count <= STREAM_COLD_MAX ? count : STREAM_COLD_MAX + 1;
    r->m = m;
    r->req = store_read(m->st, s->sid, a, b, ask, rev, cold_done, r);
    if (!r->req) {
        free(r);
        out->err = "ERR out of memory reading stored entries";
        return 1;
    }
    cold_link(m, r);
    return 0;
}

void stream_cold_release(streams *m, void *waiter) {
    cold_req **pp = &m->cold;
    while (*pp) {
        cold_req *r = *pp;
        if (r->waiter == waiter) {
            *pp = r->next;
            if (!r->done && r->req) store_read_cancel(m->st, r->req);
            cold_free(r);
        } else {
            pp = &r->next;
        }
    }
}

/*---- Groups and consumers ------------------------------------------------------------------*/

/* Name order as Redis's rax: bytes, then the shorter first. */
static int name_cmp(const char *a, size_t al, const char *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : al > bl;
}
static int group_order(const sgroup *a, const sgroup *b) {
    return name_cmp(a->name, a->nlen, b->name, b->nlen);
}
static int consumer_order(const sconsumer *a, const sconsumer *b) {
    return name_cmp(a->name, a->nlen, b->name, b->nlen);
}

sgroup *stream_group_find(stream *s, const char *name, size_t nlen) {
    sgroup *g;
    HASH_FIND(hh, s->groups, name, nlen, g);
    return g;
}

/* Links a new group (memory only). */
static sgroup *group_link(stream *s, const char *name, size_t nlen, streamid last, int64_t entries_read) {
    sgroup *g = calloc(1, sizeof *g);
    if (!g || !(g->name = malloc(nlen ? nlen : 1))) {
        free(g);
        return NULL;
    }
    memcpy(g->name, name, nlen);
    g->nlen = nlen;
    g->last_id = last;
    g->entries_read = entries_read;
    HASH_ADD_KEYPTR_INORDER(hh, s->groups, g->name, g->nlen, g, group_order);
    s->ngroups++;
    return g;
}

void stream_group_put(streams *m, stream *s, sgroup *g) {
    m->writes++;
    store_group_put(m->st, s->sid, g->name, g->nlen, g->last_id, g->entries_read);
}

sgroup *stream_group_create(streams *m, stream *s, const char *name, size_t nlen, streamid last, int64_t entries_read) {
    sgroup *g = group_link(s, name, nlen, last, entries_read);
    if (g) stream_group_put(m, s, g);
    return g;
}

void stream_group_destroy(streams *m, stream *s, sgroup *g) {
    m->writes++;
    store_group_del(m->st, s->sid, g->name, g->nlen);
    HASH_DEL(s->groups, g);
    s->ngroups--;
    group_free(g);
}

sconsumer *stream_consumer_find(sgroup *g, const char *name, size_t nlen) {
    sconsumer *c;
    HASH_FIND(hh, g->consumers, name, nlen, c);
    return c;
}

/* Links a new consumer (memory only). */
static sconsumer *consumer_link(sgroup *g, const char *name, size_t nlen, int64_t seen, int64_t active) {
    sconsumer *c = calloc(1, sizeof *c);
    if (!c || !(c->name = malloc(nlen ? nlen : 1))) {
        free(c);
        return NULL;
    }
    memcpy(c->name, name, nlen);
    c->nlen = nlen;
    c->seen_ms = seen;
    c->active_ms = active;
    HASH_ADD_KEYPTR_INORDER(hh, g->consumers, c->name, c->nlen, c, consumer_order);
    return c;
}

sconsumer *stream_consumer_get(streams *m, stream *s, sgroup *g, const char *name, size_t nlen, int64_t now_ms,
                               int *created) {
    sconsumer *c = stream_consumer_find(g, name, nlen);
    if (created) *created = 0;
    if (c) return c;
    c = consumer_link(g, name, nlen, now_ms, -1);
    if (!c) return NULL;
    if (created) *created = 1;
    m->writes++;
    store_consumer_put(m->st, s->sid, g->name, g->nlen, c->name, c->nlen, c->seen_ms, c->active_ms);
    return c;
}

void stream_consumer_touch(streams *m, stream *s, sgroup *g, sconsumer *c, int64_t now_ms, int active) {
    c->seen_ms = now_ms;
    if (active) c->active_ms = now_ms;
    m->writes++;
    store_consumer_put(m->st, s->sid, g->name, g->nlen, c->name, c->nlen, c->seen_ms, c->active_ms);
}

size_t stream_pel_lower(const sgroup *g, streamid a) {
    size_t lo = g->pel_head, hi = g->pel_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (streamid_cmp(g->pel[mid].id, a) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

snack *stream_pel_find(sgroup *g, streamid id) {
    size_t i = stream_pel_lower(g, id);
    if (i < g->pel_len && streamid_cmp(g->pel[i].id, id) == 0) return g->pel[i].n;
    return NULL;
}

/* Drops acknowledged slots at the head; compacts when half is dead. */
static void pel_compact(sgroup *g) {
    while (g->pel_head < g->pel_len && !g->pel[g->pel_head].n) g->pel_head++;
    if (g->pel_head == g->pel_len) {
        g->pel_head = g->pel_len = 0;
        return;
    }
    size_t used = g->pel_len - g->pel_head;
    if (used - g->pending > 1024 && used - g->pending > g->pending) {
        size_t j = 0;
        for (size_t i = g->pel_head; i < g->pel_len; i++)
            if (g->pel[i].n) g->pel[j++] = g->pel[i];
        g->pel_head = 0;
        g->pel_len = j;
    } else if (g->pel_head > 1024 && g->pel_head > used) {
        memmove(g->pel, g->pel + g->pel_head, used * sizeof *g->pel);
        g->pel_len = used;
        g->pel_head = 0;
    }
}

/* Inserts (memory only) a pending entry; returns it or NULL. */
static snack *pel_insert(sgroup *g, streamid id, sconsumer *owner, uint64_t deliveries, int64_t time_ms) {
    size_t i = stream_pel_lower(g, id);
    snack *n;
    if (i < g->pel_len && streamid_cmp(g->pel[i].id, id) == 0 && g->pel[i].n) {
        n = g->pel[i].n;
        n->owner->pending--;
    } else {
        n = malloc(sizeof *n);
        if (!n) return NULL;
        if (i < g->pel_len && streamid_cmp(g->pel[i].id, id) == 0) {
            g->pel[i].n = n; /* a dead slot comes back */
        } else {
            if (g->pel_len == g->pel_cap) {
                size_t cap = g->pel_cap ? g->pel_cap * 2 : 8;
                pslot *p = realloc(g->pel, cap * sizeof *p);
                if (!p) {
                    free(n);
                    return NULL;
                }
                g->pel = p;
                g->pel_cap = cap;
            }
            memmove(g->pel + i + 1, g->pel + i, (g->pel_len - i) * sizeof *g->pel);
            g->pel_len++;
            g->pel[i].id = id;
            g->pel[i].n = n;
        }
        g->pending++;
    }
    n->id = id;
    n->owner = owner;
    n->deliveries = deliveries;
    n->time_ms = time_ms;
    owner->pending++;
    return n;
}

snack *stream_pel_put(streams *m, stream *s, sgroup *g, streamid id, sconsumer *owner, uint64_t deliveries,
                      int64_t time_ms) {
    snack *n = pel_insert(g, id, owner, deliveries, time_ms);
    if (n) {
        m->writes++;
        store_pending_put(m->st, s->sid, g->name, g->nlen, id, owner->name, owner->nlen, deliveries, time_ms);
    }
    return n;
}

/* Removes a pending entry from memory. */
static void pel_remove(sgroup *g, snack *n) {
    size_t i = stream_pel_lower(g, n->id);
    if (i < g->pel_len && g->pel[i].n == n) g->pel[i].n = NULL;
    n->owner->pending--;
    g->pending--;
    free(n);
    pel_compact(g);
}

void stream_pel_del(streams *m, stream *s, sgroup *g, snack *n) {
    m->writes++;
    store_pending_del(m->st, s->sid, g->name, g->nlen, n->id);
    pel_remove(g, n);
}

size_t stream_consumer_delete(streams *m, stream *s, sgroup *g, sconsumer *c) {
    size_t had = c->pending;
    if (had)
        for (size_t i = g->pel_head; i < g->pel_len; i++)
            if (g->pel[i].n && g->pel[i].n->owner == c) {
                snack *n = g->pel[i].n;
                g->pel[i].n = NULL;
                g->pending--;
                free(n);
            }
    pel_compact(g);
    m->writes++;
    store_consumer_del(m->st, s->sid, g->name, g->nlen, c->name, c->nlen);
    HASH_DEL(g->consumers, c);
    free(c->name);
    free(c);
    return had;
}

/*---- Lag -------------------------------------------------------------------------------------*/

long long stream_estimate_entries_read(const stream *s, streamid id) {
    const store_stream_meta *mt = &s->meta;
    if (!mt->entries_added) return 0;
    if (!mt->length && streamid_cmp(id, mt->last_id) < 1) return (long long)mt->entries_added;
    int cmp_last = streamid_cmp(id, mt->last_id);
    if (cmp_last == 0) return (long long)mt->entries_added;
    if (cmp_last > 0) return -1;
    int cmp_first = streamid_cmp(id, mt->first_id);
    int zero = mt->max_deleted_id.ms == 0 && mt->max_deleted_id.seq == 0;
    if (zero || streamid_cmp(mt->max_deleted_id, mt->first_id) < 0) {
        if (cmp_first < 0) return (long long)(mt->entries_added - mt->length);
        if (cmp_first == 0) return (long long)(mt->entries_added - mt->length + 1);
    }
    return -1;
}

/* Redis's streamRangeHasTombstones(s, start, NULL). */
static int has_tombstones_from(const stream *s, streamid start) {
    const store_stream_meta *mt = &s->meta;
    if (!mt->length || (mt->max_deleted_id.ms == 0 && mt->max_deleted_id.seq == 0)) return 0;
    if (streamid_cmp(mt->first_id, mt->max_deleted_id) > 0) return 0;
    return streamid_cmp(start, mt->max_deleted_id) <= 0;
}

long long stream_group_lag(const stream *s, const sgroup *g) {
    if (!s->meta.entries_added) return 0;
    if (g->entries_read != -1 && !has_tombstones_from(s, g->last_id))
        return (long long)s->meta.entries_added - g->entries_read;
    long long er = stream_estimate_entries_read(s, g->last_id);
    if (er != -1) return (long long)s->meta.entries_added - er;
    return -1;
}

/*---- Loading -------------------------------------------------------------------------------*/

static int load_stream(void *ctx, uint64_t sid, const char *key, size_t klen, const store_stream_meta *mt) {
    streams *m = ctx;
    stream *s = stream_link(m, sid, key, klen);
    if (!s) return -1;
    s->meta = *mt;
    s->meta.capture = NULL;
    s->meta.capture_len = 0;
    if (mt->capture && mt->capture_len) {
        if (!(s->capture = malloc(mt->capture_len))) return -1;
        memcpy(s->capture, mt->capture, mt->capture_len);
        s->meta.capture = s->capture;
        s->meta.capture_len = mt->capture_len;
    }
    /* nothing is in memory yet: everything is cold until entries arrive */
    s->cold_below = mt->last_id;
    streamid_incr(&s->cold_below);
    return 0;
}

static stream *by_sid(streams *m, uint64_t sid) {
    stream *s;
    HASH_FIND(hs, m->by_sid, &sid, sizeof sid, s);
    return s;
}

static int load_group(void *ctx, uint64_t sid, const char *name, size_t nlen, streamid last, int64_t er) {
    stream *s = by_sid(ctx, sid);
    return s && group_link(s, name, nlen, last, er) ? 0 : -1;
}

static int load_consumer(void *ctx, uint64_t sid, const char *gn, size_t glen, const char *cn, size_t clen,
                         int64_t seen, int64_t active) {
    stream *s = by_sid(ctx, sid);
    sgroup *g = s ? stream_group_find(s, gn, glen) : NULL;
    return g && consumer_link(g, cn, clen, seen, active) ? 0 : -1;
}

static int load_pending(void *ctx, uint64_t sid, const char *gn, size_t glen, streamid id, const char *cn, size_t clen,
                        uint64_t deliveries, int64_t time_ms) {
    stream *s = by_sid(ctx, sid);
    sgroup *g = s ? stream_group_find(s, gn, glen) : NULL;
    if (!g) return -1;
    sconsumer *c = stream_consumer_find(g, cn, clen);
    if (!c && !(c = consumer_link(g, cn, clen, time_ms, -1))) return -1;
    return pel_insert(g, id, c, deliveries, time_ms) ? 0 : -1;
}

/* Links a de-duplication record (no store call). */
static sdedup *dedup_link(stream *s, const char *msgid, size_t mlen, streamid id, int64_t time_ms) {
    sdedup *d = malloc(sizeof *d + (mlen ? mlen : 1));
    if (!d) return NULL;
    memcpy(d->msgid, msgid, mlen);
    d->mlen = mlen;
    d->id = id;
    d->time_ms = time_ms;
    HASH_ADD_KEYPTR(hh, s->dedup, d->msgid, d->mlen, d);
    s->ndedup++;
    return d;
}

static void dedup_unlink(stream *s, sdedup *d) {
    HASH_DEL(s->dedup, d);
    s->ndedup--;
    free(d);
}

static int load_dedup(void *ctx, uint64_t sid, const char *msgid, size_t mlen, streamid id, int64_t time_ms) {
    stream *s = by_sid(ctx, sid);
    if (!s) return -1;
    sdedup *d = stream_dedup_find(s, msgid, mlen);
    if (d) dedup_unlink(s, d);
    return dedup_link(s, msgid, mlen, id, time_ms) ? 0 : -1;
}

/* Loaded records come in msgid order: time order makes expiry O(1). */
static int dedup_order(const sdedup *a, const sdedup *b) {
    return a->time_ms < b->time_ms ? -1 : a->time_ms > b->time_ms;
}

static int load_entry(void *ctx, uint64_t sid, const store_row *row) {
    streams *m = ctx;
    stream *s = by_sid(m, sid);
    if (!s) return -1;
    if (row->corrupt || !row->fields || stream_fields_each(row->fields, row->flen, NULL, NULL) < 0) {
        /* never served as good: it stays on disk, and reads of it go cold (and get the error);
         * the window must start after it, or a range over it would skip it silently */
        for (size_t i = s->whead; i < s->wlen; i++) win_drop(m, s, i);
        s->whead = s->wlen = 0;
        s->cold_below = row->id;
        streamid_incr(&s->cold_below);
        return 0;
    }
    if (s->hot && streamid_cmp(row->id, s->win[s->wlen - 1].id) <= 0) return 0;
    if (s->hot == 0) s->cold_below = row->id;
    sentry *e = malloc(sizeof *e + row->flen);
    if (!e) return -1;
    memcpy(e->f, row->fields, row->flen);
    e->flen = (uint32_t)row->flen;
    memcpy(&e->npairs, row->fields, 4);
    e->seq = 0;
    if (win_push(m, s, row->id, e) < 0) {
        free(e);
        return -1;
    }
    return 0;
}

/* Sorts streams by sid, so creation order (SCAN's cursor) is sid order. */
static int sid_order(const stream *a, const stream *b) {
    return a->sid < b->sid ? -1 : a->sid > b->sid;
}

int streams_load(streams *m, char **err) {
    stream *s, *tmp;
    /* every reader runs its command again against the reloaded model */
    while (m->cold) {
        cold_req *r = m->cold;
        m->cold = r->next;
        if (!r->done && r->req) store_read_cancel(m->st, r->req);
        void *w = r->waiter;
        cold_free(r);
        m->wake(w);
    }
    HASH_ITER(hh, m->by_key, s, tmp) stream_free(m, s);
    m->wbytes = 0;
    store_loader l = {load_stream, load_group, load_consumer, load_pending, load_dedup, load_entry, m};
    if (store_load(m->st, &l, m->cache_bytes, err) < 0) return -1;
    HASH_SRT(hh, m->by_key, sid_order);
    for (s = m->by_key; s; s = s->hh.next) {
        HASH_SRT(hh, s->dedup, dedup_order);
        /* a window that ends below the last id (the last entries were
         * deleted) is still contiguous: nothing is cold above it */
        if (s->meta.length == s->hot) s->cold_below = s->meta.first_id;
        if (s->meta.length == 0) s->cold_below.ms = s->cold_below.seq = 0;
    }
    m->committed = store_committed(m->st);
    return 0;
}

void streams_get_info(const streams *m, streams_info *out) {
    memset(out, 0, sizeof *out);
    for (const stream *s = m->by_key; s; s = s->hh.next) {
        out->streams++;
        out->groups += s->ngroups;
        out->entries_memory += s->hot;
        out->entries_stored += s->meta.length;
        for (const sgroup *g = s->groups; g; g = g->hh.next) out->pending += g->pending;
    }
    for (const stream *s = m->by_key; s; s = s->hh.next) out->dedup_records += s->ndedup;
    out->window_bytes = m->wbytes;
    out->window_limit = m->cache_bytes;
    out->evicted = m->evicted;
    out->cold_reads = m->cold_reads;
}

/*---- Capture definitions and de-duplication -----------------------------------------*/

void streams_set_free_hook(streams *m, void (*fn)(void *ctx, stream *s), void *ctx) {
    m->free_hook = fn;
    m->free_ctx = ctx;
}

int stream_set_capture(streams *m, stream *s, const char *blob, size_t len) {
    char *copy = NULL;
    if (blob) {
        if (!(copy = malloc(len ? len : 1))) return -1;
        memcpy(copy, blob, len);
    }
    free(s->capture);
    s->capture = copy;
    s->meta.capture = copy;
    s->meta.capture_len = blob ? len : 0;
    stream_put_meta(m, s);
    return 0;
}

sdedup *stream_dedup_find(stream *s, const char *msgid, size_t mlen) {
    sdedup *d;
    HASH_FIND(hh, s->dedup, msgid, mlen, d);
    return d;
}

int stream_dedup_put(streams *m, stream *s, const char *msgid, size_t mlen, streamid id, int64_t time_ms, size_t max) {
    sdedup *old = stream_dedup_find(s, msgid, mlen);
    if (old) dedup_unlink(s, old);
    /* time order is what expiry relies on: a clock step back keeps the last time */
    if (s->dedup) {
        const sdedup *last = ELMT_FROM_HH(s->dedup->hh.tbl, s->dedup->hh.tbl->tail);
        if (time_ms < last->time_ms) time_ms = last->time_ms;
    }
    if (!dedup_link(s, msgid, mlen, id, time_ms)) return -1;
    m->writes++;
    store_dedup_put(m->st, s->sid, msgid, mlen, id, time_ms);
    if (max && s->ndedup > max) {
        /* the cap: the oldest go, in memory and (by time) on disk */
        while (s->ndedup > max) dedup_unlink(s, s->dedup);
        m->writes++;
        store_dedup_expire(m->st, s->sid, s->dedup->time_ms);
    }
    return 0;
}

void stream_dedup_expire(streams *m, stream *s, int64_t before_ms) {
    if (!s->dedup || s->dedup->time_ms >= before_ms) return;
    while (s->dedup && s->dedup->time_ms < before_ms) dedup_unlink(s, s->dedup);
    m->writes++;
    store_dedup_expire(m->st, s->sid, before_ms);
}
