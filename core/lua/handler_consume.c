/* handler_consume.c -- Lua handlers as durable consumers (handler_consume.h):
 * a handler with `consume = {stream=, group=}` reads its group of the
 * stream as consumer <handler name>, one entry at a time, in id order.
 *
 * The group's pending entries list is the truth: an entry is added to it
 * (delivery count + 1, persisted) before on_event runs, and removed (XACK)
 * when on_event returns, in the store batch of that loop iteration. Nothing
 * else is remembered across a reload, a crash or a restart: the consumer
 * first re-delivers its own pending entries (oldest first), then reads new
 * ones. A failed entry blocks the ones behind it (order is kept) until it
 * is acknowledged or, past max_deliveries, moved to `<stream>:dead` and
 * acknowledged in the same batch.
 *
 * Entries come from the model's hot window, or from the store's reader
 * thread (stream_cold) when they are older: the consumer then waits (not
 * the loop) and the model's wake callback puts it back on the ready list.
 * New entries need no wake-up: the drain asks every consumer whether it
 * has work after each poll (consume_wake_ready), which is one hash lookup
 * and an id comparison per consuming handler. */
#include "handler_consume.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "handler_runtime.h"
#include "store/stream.h"

/* Entries one cold read fetches, and the longest back-off. */
#define COLD_BATCH 64
#define BACKOFF_CAP_MS 60000
/* Bytes of an error text kept for the dead letter. */
#define ERR_KEEP 1000

struct hconsume {
    handler *h;
    struct hconsume *next; /* every consumer (the cold reads' wake finds them here) */
    char *key, *group;
    size_t klen, glen;
    long long max_deliveries, retry_ms;
    uint64_t task;     /* the delivery in flight, 0 if none */
    streamid inflight; /* its entry */
    char *call_failed; /* a hub.call of it timed out: the delivery fails with this */
    int cold_wait;     /* a cold read runs for it */
    /* the last cold read's rows: entries of stream rsid at version rver in
     * [ra, rb], all of them if rall */
    store_row *rows;
    size_t nrows;
    uint64_t rsid, rver;
    streamid ra, rb;
    int rall;
    /* nothing to do until the stream's last id or the pending count moves */
    int idle;
    uint64_t idle_sid;
    streamid idle_last;
    size_t idle_pending;
    double retry_at; /* ev_time() before which the head entry waits (back-off) */
    ev_timer retry_w;
    char *last_err; /* the head entry's last failure (the dead letter's error) */
    uint64_t delivered, acked, failures, dead;
};

static hconsume *all;
static uint64_t task_seq;

static streams *model_of(const handler *h) {
    return h->rt->hub->streams;
}

static char *dup_n(const char *p, size_t n) {
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static void drop_rows(hconsume *c) {
    free(c->rows);
    c->rows = NULL;
    c->nrows = 0;
    c->rsid = 0;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    hconsume *c = w->data;
    handler_wake(c->h);
}

/*---- Life cycle -------------------------------------------------------------------*/

static void cons_free(hconsume *c) {
    if (!c) return;
    for (hconsume **p = &all; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    ev_timer_stop(c->h->rt->hub->loop, &c->retry_w);
    if (model_of(c->h)) stream_cold_release(model_of(c->h), c);
    drop_rows(c);
    free(c->key);
    free(c->group);
    free(c->call_failed);
    free(c->last_err);
    free(c);
}

int consume_switch(handler *h, hversion *nv) {
    hconsume *c = h->cons;
    if (!nv || !nv->cstream.p || !model_of(h)) {
        cons_free(c);
        h->cons = NULL;
        return 0;
    }
    if (c && c->klen == nv->cstream.len && memcmp(c->key, nv->cstream.p, c->klen) == 0 && c->glen == nv->cgroup.len &&
        memcmp(c->group, nv->cgroup.p, c->glen) == 0) {
        c->max_deliveries = nv->cmax_deliveries;
        c->retry_ms = nv->cretry_ms;
        return 0;
    }
    cons_free(c);
    h->cons = NULL;
    if (!(c = calloc(1, sizeof *c))) return -1;
    c->key = dup_n(nv->cstream.p, nv->cstream.len);
    c->group = dup_n(nv->cgroup.p, nv->cgroup.len);
    if (!c->key || !c->group) {
        free(c->key);
        free(c->group);
        free(c);
        return -1;
    }
    c->h = h;
    c->klen = nv->cstream.len;
    c->glen = nv->cgroup.len;
    c->max_deliveries = nv->cmax_deliveries;
    c->retry_ms = nv->cretry_ms;
    ev_timer_init(&c->retry_w, retry_cb, 0, 0);
    c->retry_w.data = c;
    c->next = all;
    all = c;
    h->cons = c;
    handler_wake(h);
    return 0;
}

void consume_free(handler *h) {
    cons_free(h->cons);
    h->cons = NULL;
}

/*---- Finding the stream, the group, the entries --------------------------------------------*/

/* Finds (creating when missing: MKSTREAM, a group starting at 0, the
 * consumer) what c reads. Returns 0, or -1 if out of memory. */
static int join(hconsume *c, stream **sp, sgroup **gp, sconsumer **mep) {
    streams *m = model_of(c->h);
    stream *s = streams_find(m, c->key, c->klen);
    if (!s && !(s = streams_create(m, c->key, c->klen))) return -1;
    sgroup *g = stream_group_find(s, c->group, c->glen);
    if (!g && !(g = stream_group_create(m, s, c->group, c->glen, (streamid){0, 0}, -1))) return -1;
    sconsumer *me = stream_consumer_get(m, s, g, c->h->name, strlen(c->h->name), (int64_t)clock_wall_ms(), NULL);
    if (!me) return -1;
    *sp = s, *gp = g, *mep = me;
    return 0;
}

/* The oldest pending entry of the group owned by me, or NULL. */
static snack *first_own(sgroup *g, const sconsumer *me) {
    for (size_t i = g->pel_head; i < g->pel_len; i++)
        if (g->pel[i].n && g->pel[i].n->owner == me) return g->pel[i].n;
    return NULL;
}

/* An entry found for delivery. */
typedef struct found {
    streamid id;
    const char *f; /* NULL if corrupt */
    size_t flen;
} found;

/* Copies cold rows into c's buffer. Returns 0 or -1 (out of memory). */
static int keep_rows(hconsume *c, const cold_rows *cr) {
    size_t bytes = 0;
    for (size_t i = 0; i < cr->n; i++) bytes += cr->rows[i].fields ? cr->rows[i].flen : 0;
    store_row *r = malloc(cr->n * sizeof *r + bytes + 1);
    if (!r) return -1;
    char *p = (char *)(r + cr->n);
    for (size_t i = 0; i < cr->n; i++) {
        r[i] = cr->rows[i];
        if (r[i].fields) {
            memcpy(p, cr->rows[i].fields, r[i].flen);
            r[i].fields = p;
            p += r[i].flen;
        }
    }
    c->rows = r;
    c->nrows = cr->n;
    return 0;
}

/* The first entry of s with id >= from: 1 with *out, 0 if there is none,
 * -1 if a cold read was started (c waits for it), -2 if reading failed
 * (logged; c backs off). */
static int find_from(hconsume *c, stream *s, streamid from, found *out) {
    streams *m = model_of(c->h);
    for (;;) {
        if (!stream_range_cold(s, from, (streamid){STREAMID_MAX, STREAMID_MAX})) {
            for (size_t i = stream_win_lower(s, from); i < s->wlen; i++)
                if (s->win[i].e) {
                    out->id = s->win[i].id;
                    out->f = s->win[i].e->f;
                    out->flen = s->win[i].e->flen;
                    return 1;
                }
            return 0;
        }
        if (c->rows && c->rsid == s->sid && c->rver == s->cold_version && streamid_cmp(c->ra, from) <= 0 &&
            streamid_cmp(from, c->rb) <= 0) {
            for (size_t i = 0; i < c->nrows; i++)
                if (streamid_cmp(c->rows[i].id, from) >= 0) {
                    out->id = c->rows[i].id;
                    out->f = c->rows[i].corrupt ? NULL : c->rows[i].fields;
                    out->flen = c->rows[i].flen;
                    return 1;
                }
            if (c->rall) { /* no stored entry in [from, rb]: look above it */
                from = c->rb;
                if (streamid_incr(&from) < 0) return 0;
                continue;
            }
        }
        drop_rows(c);
        streamid b = s->cold_below;
        if (streamid_decr(&b) < 0) return 0;
        cold_rows cr;
        if (!stream_cold(m, s, from, b, COLD_BATCH, 0, c, &cr)) {
            c->cold_wait = 1;
            return -1;
        }
        int bad = cr.err || keep_rows(c, &cr) < 0;
        if (bad)
            log_warning("Handler %s: reading stored entries of '%s' failed: %s", c->h->name, c->key,
                        cr.err ? cr.err : "out of memory");
        stream_cold_release(m, c);
        if (bad) return -2;
        c->rsid = s->sid;
        c->rver = s->cold_version;
        c->ra = from;
        c->rb = b;
        c->rall = c->nrows < COLD_BATCH;
    }
}

/*---- Delivery ---------------------------------------------------------------------*/

static int store_writable(const handler *h) {
    store *st = streams_store(model_of(h));
    return store_ok(st) && store_backlog_bytes(st) <= STORE_BACKLOG_LIMIT;
}

/* The head entry waits delay_ms before its next delivery. */
static void back_off(hconsume *c, double delay_ms) {
    struct ev_loop *loop = c->h->rt->hub->loop;
    ev_now_update(loop);
    c->retry_at = ev_now(loop) + delay_ms / 1000.0;
    ev_timer_stop(loop, &c->retry_w);
    ev_timer_set(&c->retry_w, delay_ms / 1000.0, 0);
    ev_timer_start(loop, &c->retry_w);
}

int consume_has_work(handler *h) {
    hconsume *c = h->cons;
    if (!c || c->task || c->cold_wait || !h->cur || !store_writable(h)) return 0;
    if (c->retry_at && ev_now(h->rt->hub->loop) < c->retry_at) return 0;
    stream *s = streams_find(model_of(h), c->key, c->klen);
    if (!s) return 1;
    sgroup *g = stream_group_find(s, c->group, c->glen);
    if (!g) return 1;
    sconsumer *me = stream_consumer_find(g, h->name, strlen(h->name));
    if (!me) return 1;
    if (c->idle && c->idle_sid == s->sid && streamid_cmp(c->idle_last, s->meta.last_id) == 0 &&
        c->idle_pending == me->pending)
        return 0;
    return me->pending > 0 || streamid_cmp(s->meta.last_id, g->last_id) > 0;
}

void consume_wake_ready(handlers *rt) {
    for (hconsume *c = all; c; c = c->next)
        if (c->h->rt == rt && !c->h->ready && consume_has_work(c->h)) handler_wake(c->h);
}

/* Decodes an entry's strings into an array (dead letters). */
typedef struct fv_ctx {
    sstr *fv;
    size_t n, cap;
    int oom;
} fv_ctx;

static void fv_add(void *ctx, const char *p, size_t n, size_t npairs) {
    fv_ctx *x = ctx;
    if (!x->fv && !x->oom) {
        x->cap = 2 * npairs + 8;
        if (!(x->fv = malloc(x->cap * sizeof *x->fv))) x->oom = 1;
    }
    if (x->fv && x->n + 8 < x->cap) x->fv[x->n++] = (sstr){p, n};
}

/* Moves entry e (pending as n) to `<stream>:dead` with the original fields
 * and error, deliveries, entry, group; acknowledges it. Both in this
 * iteration's batch. Returns 0, or -1 (out of memory, id space: logged,
 * the entry stays pending). */
static int dead_letter(hconsume *c, stream *s, sgroup *g, snack *n, const found *e, const char *why) {
    streams *m = model_of(c->h);
    size_t dlen = c->klen + 5;
    char *dkey = malloc(dlen + 1);
    if (!dkey) return -1;
    memcpy(dkey, c->key, c->klen);
    memcpy(dkey + c->klen, ":dead", 6);
    fv_ctx x = {0};
    if (e->f && stream_fields_each(e->f, e->flen, fv_add, &x) < 0) x.n = 0; /* malformed: the extra fields only */
    if (!x.fv && !x.oom && (x.cap = 8) && !(x.fv = malloc(8 * sizeof *x.fv))) x.oom = 1;
    if (x.oom) {
        free(x.fv);
        free(dkey);
        return -1;
    }
    char idbuf[48], dbuf[24];
    size_t il = streamid_fmt(n->id, idbuf);
    int dl = snprintf(dbuf, sizeof dbuf, "%llu", (unsigned long long)n->deliveries);
    size_t wl = strlen(why);
    sstr extra[] = {{"error", 5},       {why, wl > ERR_KEEP ? ERR_KEEP : wl},
                    {"deliveries", 10}, {dbuf, (size_t)dl},
                    {"entry", 5},       {idbuf, il},
                    {"group", 5},       {c->group, c->glen}};
    memcpy(x.fv + x.n, extra, sizeof extra);
    x.n += 8;
    stream *ds = streams_find(m, dkey, dlen);
    if (!ds) ds = streams_create(m, dkey, dlen);
    streamid id;
    int rc = -1;
    if (ds && stream_next_id(ds, NULL, 0, (uint64_t)clock_wall_ms(), &id) == 0 &&
        stream_append(m, ds, id, x.fv, x.n / 2) == 0) {
        stream_pel_del(m, s, g, n);
        c->dead++;
        rc = 0;
        if (c->h->rt->hub->up.stream_appended) c->h->rt->hub->up.stream_appended(dkey, dlen);
    } else {
        log_warning("Handler %s: cannot dead-letter entry %s of '%s' into '%s'", c->h->name, idbuf, c->key, dkey);
    }
    free(x.fv);
    free(dkey);
    return rc;
}

/* Runs on_event for entry e (its delivery already counted as `deliveries`). */
static void run(hconsume *c, const found *e, uint64_t deliveries) {
    handler *h = c->h;
    char idbuf[48];
    size_t il = streamid_fmt(e->id, idbuf);
    hcentry ce = {c->key, idbuf, c->klen, il, e->f, e->flen, deliveries, e->id.ms};
    uint64_t task = ++task_seq;
    c->task = task;
    c->inflight = e->id;
    c->delivered++;
    h->events++;
    char *err = NULL;
    int rc = hversion_consume(h->cur, &ce, task, &err);
    if (rc < 0) {
        handler_error(h, "on_event", err);
        consume_task_done(h, task, CONSUME_FAILED, err);
    } else if (rc == 0) {
        consume_task_done(h, task, CONSUME_RETURNED, NULL);
    }
    free(err);
}

/* Advances the group past id as XREADGROUP does (last id, entries read). */
static void advance(stream *s, sgroup *g, streamid id) {
    const store_stream_meta *mt = &s->meta;
    int deleted = mt->max_deleted_id.ms || mt->max_deleted_id.seq;
    if (g->entries_read != -1 &&
        !(deleted && streamid_cmp(mt->first_id, mt->max_deleted_id) <= 0 && streamid_cmp(id, mt->max_deleted_id) <= 0))
        g->entries_read++;
    else if (mt->entries_added)
        g->entries_read = stream_estimate_entries_read(s, id);
    g->last_id = id;
}

/* The head entry failed `why`: back off, or (past max_deliveries) let the
 * next step dead-letter it. */
static void failed(hconsume *c, uint64_t deliveries, const char *why) {
    c->failures++;
    size_t ml = herr_msglen(why);
    free(c->last_err);
    c->last_err = dup_n(why ? why : "out of memory", why ? (ml > ERR_KEEP ? ERR_KEEP : ml) : 13);
    if ((long long)deliveries >= c->max_deliveries) {
        c->retry_at = 0;
        handler_wake(c->h);
        return;
    }
    double delay = (double)c->retry_ms;
    for (uint64_t i = 1; i < deliveries && delay < BACKOFF_CAP_MS; i++) delay *= 2;
    if (delay > BACKOFF_CAP_MS && c->retry_ms <= BACKOFF_CAP_MS) delay = BACKOFF_CAP_MS;
    back_off(c, delay);
}

/* Re-delivers (or dead-letters) the consumer's own pending entry n. */
static int redeliver(hconsume *c, stream *s, sgroup *g, sconsumer *me, snack *n) {
    streams *m = model_of(c->h);
    found e;
    int rc = find_from(c, s, n->id, &e);
    if (rc == -1) return 1;
    if (rc == -2) {
        back_off(c, (double)(c->retry_ms ? c->retry_ms : 1000));
        return 1;
    }
    if (rc == 0 || streamid_cmp(e.id, n->id) != 0) { /* deleted while pending: nothing to deliver */
        stream_pel_del(m, s, g, n);
        return 1;
    }
    char why[160];
    const char *reason = c->last_err;
    if (!e.f) reason = "corrupt entry: its checksum does not match (never delivered)";
    if (!reason) {
        snprintf(why, sizeof why, "delivered %llu times without an acknowledgement", (unsigned long long)n->deliveries);
        reason = why;
    }
    if (!e.f || (long long)n->deliveries >= c->max_deliveries) {
        if (dead_letter(c, s, g, n, &e, reason) < 0)
            back_off(c, 1000);
        else
            c->retry_at = 0;
        free(c->last_err);
        c->last_err = NULL;
        return 1;
    }
    uint64_t d = n->deliveries + 1;
    int64_t now = (int64_t)clock_wall_ms();
    if (!stream_pel_put(m, s, g, n->id, me, d, now)) {
        back_off(c, 1000);
        return 1;
    }
    stream_consumer_touch(m, s, g, me, now, 1);
    run(c, &e, d);
    return 1;
}

int consume_step(handler *h) {
    if (!consume_has_work(h)) return 0;
    hconsume *c = h->cons;
    streams *m = model_of(h);
    stream *s;
    sgroup *g;
    sconsumer *me;
    c->idle = 0;
    if (join(c, &s, &g, &me) < 0) {
        log_warning("Handler %s: out of memory joining group '%s' of '%s'", h->name, c->group, c->key);
        back_off(c, 1000);
        return 0;
    }
    if (me->pending) {
        snack *n = first_own(g, me);
        if (n) return redeliver(c, s, g, me, n);
    }
    streamid next = g->last_id;
    found e;
    int rc = streamid_cmp(s->meta.last_id, g->last_id) > 0 && streamid_incr(&next) == 0 ? find_from(c, s, next, &e) : 0;
    if (rc == -1) return 1;
    if (rc == -2) {
        back_off(c, 1000);
        return 0;
    }
    if (rc == 0) {
        c->idle = 1;
        c->idle_sid = s->sid;
        c->idle_last = s->meta.last_id;
        c->idle_pending = me->pending;
        return 0;
    }
    int64_t now = (int64_t)clock_wall_ms();
    advance(s, g, e.id);
    stream_group_put(m, s, g);
    if (!stream_pel_put(m, s, g, e.id, me, 1, now)) {
        back_off(c, 1000);
        return 0;
    }
    stream_consumer_touch(m, s, g, me, now, 1);
    if (!e.f) return redeliver(c, s, g, me, stream_pel_find(g, e.id)); /* corrupt: dead-lettered */
    run(c, &e, 1);
    return 1;
}

/*---- Outcomes -------------------------------------------------------------------------*/

void consume_task_done(handler *h, uint64_t task, int how, const char *err) {
    hconsume *c = h ? h->cons : NULL;
    if (!c || c->task != task) return; /* a consumer dropped since (reload to another group, unload) */
    c->task = 0;
    char *timeout = c->call_failed;
    c->call_failed = NULL;
    handler_wake(h);
    stream *s = streams_find(model_of(h), c->key, c->klen);
    sgroup *g = s ? stream_group_find(s, c->group, c->glen) : NULL;
    sconsumer *me = g ? stream_consumer_find(g, h->name, strlen(h->name)) : NULL;
    snack *n = me ? stream_pel_find(g, c->inflight) : NULL;
    if (!n || n->owner != me) { /* claimed by someone else, or gone with a store reload */
        free(timeout);
        return;
    }
    if (how == CONSUME_DROPPED) { /* its version was closed while it waited: deliver it again */
        free(timeout);
        return;
    }
    if (how == CONSUME_RETURNED && !timeout) {
        stream_pel_del(model_of(h), s, g, n);
        c->acked++;
        c->retry_at = 0;
        free(c->last_err);
        c->last_err = NULL;
        return;
    }
    if (timeout) {
        handler_error(h, "on_event", timeout);
        failed(c, n->deliveries, timeout);
    } else {
        failed(c, n->deliveries, err);
    }
    free(timeout);
}

void consume_call_timeout(handler *h, uint64_t task, const char *msg, size_t n) {
    hconsume *c = h ? h->cons : NULL;
    if (!c || c->task != task || c->call_failed) return;
    c->call_failed = dup_n(msg, n > ERR_KEEP ? ERR_KEEP : n);
}

int consume_cold_wake(void *waiter) {
    for (hconsume *c = all; c; c = c->next)
        if (c == waiter) {
            c->cold_wait = 0;
            handler_wake(c->h);
            return 1;
        }
    return 0;
}

void consume_release_reads(void) {
    for (hconsume *c = all; c; c = c->next) {
        if (model_of(c->h)) stream_cold_release(model_of(c->h), c);
        c->cold_wait = 1; /* no more reads: the hub is stopping */
    }
}

int consume_get_info(handler *h, consume_info *out) {
    hconsume *c = h->cons;
    if (!c) return 0;
    memset(out, 0, sizeof *out);
    out->stream = c->key;
    out->group = c->group;
    stream *s = streams_find(model_of(h), c->key, c->klen);
    sgroup *g = s ? stream_group_find(s, c->group, c->glen) : NULL;
    sconsumer *me = g ? stream_consumer_find(g, h->name, strlen(h->name)) : NULL;
    out->pending = me ? me->pending : 0;
    out->delivered = c->delivered;
    out->acked = c->acked;
    out->failures = c->failures;
    out->dead = c->dead;
    out->state = c->task                                                 ? "running"
                 : c->cold_wait                                          ? "reading"
                 : c->retry_at && ev_now(h->rt->hub->loop) < c->retry_at ? "backoff"
                 : !store_writable(h)                                    ? "store-unavailable"
                                                                         : "ready";
    return 1;
}
