/* cmd_stream.c -- the Redis Streams commands (Redis 7.0's arguments, replies
 * and error texts) on the model of store/stream.h.
 *
 * Three rules every command here follows:
 * - A command that changes the model gates its reply on the store batch
 *   holding the change (conn_gate): the client sees the ack only once it is
 *   committed. While the store is down, writes answer
 *   "-ERR store unavailable: <why>" (reads still work).
 * - A command that must wait parks its connection (conn_park) and runs again
 *   from the start when woken: XREAD/XREADGROUP BLOCK wait for an append to
 *   one of their keys (woken in the order they blocked), and a command that
 *   needs entries no longer in memory waits for the reader thread
 *   (stream_cold). Every such decision is taken BEFORE anything changes, so
 *   running again never repeats a side effect.
 * - Replies are built by the reply helpers only. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "lua/handler_consume.h"
#include "net/reply.h"
#include "store/stream.h"

_Static_assert(sizeof(hstr) == sizeof(sstr) && offsetof(hstr, len) == offsetof(sstr, len), "hstr is sstr");

#define SYNTAX_ERR "ERR syntax error"
#define INT_ERR "ERR value is not an integer or out of range"
#define ID_ERR "ERR Invalid stream ID specified as stream command argument"

/*---- Helpers ---------------------------------------------------------------*/

static streams *model(conn *c) {
    return c->hub->streams;
}

static uint64_t now_ms(conn *c) {
    return (uint64_t)(ev_now(c->hub->loop) * 1000.0);
}

/* 1 if the store takes writes; else replies the error and returns 0. */
static int writable(conn *c) {
    store *st = streams_store(model(c));
    if (!store_ok(st)) {
        reply_errorf(c, "ERR store unavailable: %s", store_error(st) ? store_error(st) : "unknown error");
        return 0;
    }
    if (store_backlog_bytes(st) > STORE_BACKLOG_LIMIT) {
        reply_error(c, "ERR store busy: the writer is behind, retry later");
        return 0;
    }
    return 1;
}

/* Gates c's reply on the current batch if the command wrote anything. */
static void gate_if_written(conn *c, uint64_t seq_before, uint64_t recs_before);

static void reply_id(conn *c, streamid id) {
    char buf[48];
    reply_bulk(c, buf, streamid_fmt(id, buf));
}

static void emit_field(void *ctx, const char *p, size_t n, size_t npairs) {
    (void)npairs;
    reply_bulk(ctx, p, n);
}

/* [id, [f1, v1, ...]] */
static void reply_entry(conn *c, streamid id, const char *f, size_t flen) {
    uint32_t np;
    memcpy(&np, f, 4);
    reply_array(c, 2);
    reply_id(c, id);
    reply_array(c, (long)np * 2);
    stream_fields_each(f, flen, emit_field, c);
}

static int parse_id(conn *c, const hstr *a, uint64_t missing, streamid *out) {
    if (streamid_parse(a->p, a->len, missing, 0, NULL, out) < 0) {
        reply_error(c, ID_ERR);
        return -1;
    }
    return 0;
}
static int parse_strict_id(conn *c, const hstr *a, uint64_t missing, streamid *out) {
    if (streamid_parse(a->p, a->len, missing, 1, NULL, out) < 0) {
        if (c) reply_error(c, ID_ERR);
        return -1;
    }
    return 0;
}

/* Redis's streamParseIntervalIdOrReply with the ( exclusive form. */
static int parse_interval(conn *c, const hstr *a, uint64_t missing, int start, streamid *out) {
    int ex = a->len > 1 && a->p[0] == '(';
    if (ex) {
        hstr t = {a->p + 1, a->len - 1};
        if (parse_strict_id(c, &t, missing, out) < 0) return -1;
        if ((start ? streamid_incr(out) : streamid_decr(out)) < 0) {
            reply_error(c, start ? "ERR invalid start ID for the interval" : "ERR invalid end ID for the interval");
            return -1;
        }
        return 0;
    }
    return parse_id(c, a, missing, out);
}

static int get_ll(conn *c, const hstr *a, long long *out, const char *err) {
    if (hstr_to_ll(a, out) < 0) {
        reply_error(c, err ? err : INT_ERR);
        return -1;
    }
    return 0;
}

/* An error naming a key and group as Redis does ("%s" stops at a NUL). */
static int cstrlen(const hstr *a) {
    const char *z = memchr(a->p, 0, a->len);
    return (int)(z ? (size_t)(z - a->p) : (a->len > 1024 ? 1024 : a->len));
}

/*---- Blocked readers ---------------------------------------------------------*/

/* Readers blocked on a key, in the order they blocked; a reader blocked on
 * several keys has one node per key. */
typedef struct bnode {
    struct bnode *prev, *next; /* in the key's list */
    struct bnode *cnext;       /* the reader's other nodes */
    struct bkey *k;
    conn *c;
} bnode;

typedef struct bkey {
    char *key;
    size_t klen;
    bnode *head, *tail;
    UT_hash_handle hh;
} bkey;

typedef struct bclient {
    conn *c;
    bnode *nodes;
    UT_hash_handle hh;
} bclient;

static bkey *bkeys;
static bclient *bclients;
static size_t nblocked;

/* Registers c as blocked on key. Returns 0 or -1 (out of memory). */
static int block_on(conn *c, const hstr *key) {
    bclient *bc;
    HASH_FIND_PTR(bclients, &c, bc);
    if (!bc) {
        if (!(bc = calloc(1, sizeof *bc))) return -1;
        bc->c = c;
        HASH_ADD_PTR(bclients, c, bc);
        nblocked++;
    }
    bkey *k;
    HASH_FIND(hh, bkeys, key->p, key->len, k);
    if (!k) {
        if (!(k = calloc(1, sizeof *k)) || !(k->key = malloc(key->len ? key->len : 1))) {
            free(k);
            return -1;
        }
        memcpy(k->key, key->p, key->len);
        k->klen = key->len;
        HASH_ADD_KEYPTR(hh, bkeys, k->key, k->klen, k);
    }
    bnode *n = calloc(1, sizeof *n);
    if (!n) return -1;
    n->k = k;
    n->c = c;
    n->prev = k->tail;
    if (k->tail)
        k->tail->next = n;
    else
        k->head = n;
    k->tail = n;
    n->cnext = bc->nodes;
    bc->nodes = n;
    return 0;
}

/* Drops every registration of c (its park ended or it is closing). */
static void unblock(conn *c) {
    bclient *bc;
    HASH_FIND_PTR(bclients, &c, bc);
    if (!bc) return;
    for (bnode *n = bc->nodes, *next; n; n = next) {
        next = n->cnext;
        bkey *k = n->k;
        if (n->prev)
            n->prev->next = n->next;
        else
            k->head = n->next;
        if (n->next)
            n->next->prev = n->prev;
        else
            k->tail = n->prev;
        free(n);
        if (!k->head) {
            HASH_DEL(bkeys, k);
            free(k->key);
            free(k);
        }
    }
    HASH_DEL(bclients, bc);
    free(bc);
    nblocked--;
}

/* Wakes the readers blocked on key, in the order they blocked. */
static void signal_key(const char *key, size_t klen) {
    bkey *k;
    HASH_FIND(hh, bkeys, key, klen, k);
    while (k && k->head) {
        conn *c = k->head->c;
        HASH_FIND(hh, bkeys, key, klen, k); /* conn_unpark frees nodes (and maybe k) */
        conn_unpark(c);
        HASH_FIND(hh, bkeys, key, klen, k);
        if (k && k->head && k->head->c == c) unblock(c); /* not parked any more: drop it */
    }
}

size_t streams_blocked_readers(void) {
    return nblocked;
}

void cmd_stream_key_deleted(const char *key, size_t klen) {
    signal_key(key, klen);
}

void cmd_stream_key_appended(const char *key, size_t klen) {
    signal_key(key, klen);
}

/* The park callbacks: a blocked read that times out answers null. */
static void release_cb(conn *c, int closing) {
    unblock(c);
    if (closing && c->hub->streams) stream_cold_release(c->hub->streams, c);
}
static void timeout_null_cb(conn *c) {
    if (c->hub->streams) stream_cold_release(c->hub->streams, c);
    reply_null_array(c);
}

/* The model's wake callback: a cold read for a client (or a Lua consumer)
 * is done. */
void cmd_stream_wake(void *waiter) {
    if (consume_cold_wake(waiter)) return;
    conn_unpark(waiter);
}

/* Parks c until a cold read is done (its results wait in the model).
 * Returns 0; on failure replies and returns -1 (nothing changed). */
static int park_cold(conn *c, int argc, const hstr *argv) {
    if (conn_park(c, argc, argv, 0, NULL, release_cb) < 0) {
        reply_error(c, "ERR out of memory");
        return -1;
    }
    return 0;
}

/* The command is over (it did not park): its cold results go. */
static void done(conn *c) {
    if (c->hub->streams) stream_cold_release(c->hub->streams, c);
}

/*---- Reading entries (hot and cold) -----------------------------------------------*/

/* One entry found by lookup_entry: its fields, or none (deleted). */
typedef struct found {
    const char *f;
    size_t flen;
} found;

/* Finds entry id of s: 1 found (*out), 0 absent, -1 not known yet (c is
 * parked for a cold read: return at once), -2 error replied. A corrupt
 * stored entry is an error, or found with out->f NULL if corrupt_ok (XDEL
 * must be able to remove it). */
static int lookup_entry_ex(conn *c, int argc, const hstr *argv, stream *s, streamid id, found *out, int corrupt_ok) {
    sentry *e = stream_hot_get(s, id);
    if (e) {
        out->f = e->f;
        out->flen = e->flen;
        return 1;
    }
    if (!stream_range_cold(s, id, id)) return 0;
    cold_rows r;
    if (!stream_cold(model(c), s, id, id, 1, 0, c, &r)) return park_cold(c, argc, argv) < 0 ? -2 : -1;
    if (r.err) {
        reply_error(c, r.err);
        return -2;
    }
    if (r.n == 1 && streamid_cmp(r.rows[0].id, id) == 0) {
        if ((r.rows[0].corrupt || !r.rows[0].fields) && corrupt_ok) {
            out->f = NULL;
            out->flen = 0;
            return 1;
        }
        if (r.rows[0].corrupt || !r.rows[0].fields) {
            char b[48];
            streamid_fmt(id, b);
            reply_errorf(c, "ERR stored entry %s is corrupt (checksum mismatch)", b);
            return -2;
        }
        out->f = r.rows[0].fields;
        out->flen = r.rows[0].flen;
        return 1;
    }
    return 0;
}

static int lookup_entry(conn *c, int argc, const hstr *argv, stream *s, streamid id, found *out) {
    return lookup_entry_ex(c, argc, argv, s, id, out, 0);
}

/* Asks for entry id of s from the store unless it is in memory, known
 * absent, or already read for c: 1 if c must wait for it. Commands that look
 * up many ids ask for all of them in one pass and park once (lookup_entry
 * parks at the first one it lacks), so n cold ids cost one wait, not n. */
static int cold_pending(conn *c, stream *s, streamid id) {
    cold_rows r;
    return !stream_hot_get(s, id) && stream_range_cold(s, id, id) && !stream_cold(model(c), s, id, id, 1, 0, c, &r);
}

/* A range of entries as one list: the cold rows (if any) and the hot part. */
typedef struct range {
    stream *s;
    streamid a, b;
    int rev;
    const store_row *cold;
    size_t ncold;
    size_t nhot; /* hot entries taken */
} range;

/* Collects [a, b] of s (count 0 = all, rev = descending). Returns 1 when
 * ready, -1 if c was parked (return at once), -2 after an error reply. */
static int range_collect(conn *c, int argc, const hstr *argv, stream *s, streamid a, streamid b, size_t count, int rev,
                         range *r) {
    memset(r, 0, sizeof *r);
    r->s = s;
    r->a = a;
    r->b = b;
    r->rev = rev;
    if (streamid_cmp(a, b) > 0) return 1;
    /* the hot part */
    streamid ha = a;
    if (s->meta.length > s->hot && streamid_cmp(ha, s->cold_below) < 0) ha = s->cold_below;
    size_t nh = 0;
    if (streamid_cmp(ha, b) <= 0) {
        if (!rev) {
            for (size_t i = stream_win_lower(s, ha); i < s->wlen && streamid_cmp(s->win[i].id, b) <= 0; i++)
                if (s->win[i].e && (!count || nh < count)) nh++;
        } else {
            streamid bb = b;
            size_t end = streamid_incr(&bb) < 0 ? s->wlen : stream_win_lower(s, bb);
            for (size_t i = end; i > s->whead && streamid_cmp(s->win[i - 1].id, ha) >= 0; i--)
                if (s->win[i - 1].e && (!count || nh < count)) nh++;
        }
    }
    r->nhot = nh;
    if (!stream_range_cold(s, a, b) || (count && nh >= count && rev)) return 1;
    if (count && nh >= count && !rev) {
        /* the hot part is enough only if the cold part comes after it: never (ascending) */
    }
    streamid cb = s->cold_below;
    streamid_decr(&cb);
    if (streamid_cmp(cb, b) > 0) cb = b;
    size_t want = count ? (rev ? count - nh : count) : 0;
    cold_rows cr;
    if (!stream_cold(model(c), s, a, cb, want, rev, c, &cr)) return park_cold(c, argc, argv) < 0 ? -2 : -1;
    if (cr.err) {
        reply_error(c, cr.err);
        return -2;
    }
    for (size_t i = 0; i < cr.n; i++)
        if (cr.rows[i].corrupt || !cr.rows[i].fields) {
            char buf[48];
            streamid_fmt(cr.rows[i].id, buf);
            reply_errorf(c, "ERR stored entry %s is corrupt (checksum mismatch)", buf);
            return -2;
        }
    r->cold = cr.rows;
    r->ncold = cr.n;
    if (!rev && count && r->ncold + r->nhot > count) r->nhot = count - r->ncold;
    return 1;
}

static size_t range_len(const range *r) {
    return r->ncold + r->nhot;
}

/* Calls fn for each entry of the range, in order. */
typedef void (*range_fn)(conn *c, void *ctx, streamid id, const char *f, size_t flen);
static void range_each(conn *c, const range *r, range_fn fn, void *ctx) {
    stream *s = r->s;
    streamid ha = r->a;
    if (s->meta.length > s->hot && streamid_cmp(ha, s->cold_below) < 0) ha = s->cold_below;
    if (!r->rev) {
        for (size_t i = 0; i < r->ncold; i++) fn(c, ctx, r->cold[i].id, r->cold[i].fields, r->cold[i].flen);
        size_t k = 0;
        for (size_t i = stream_win_lower(s, ha); i < s->wlen && k < r->nhot; i++)
            if (s->win[i].e) {
                fn(c, ctx, s->win[i].id, s->win[i].e->f, s->win[i].e->flen);
                k++;
            }
    } else {
        streamid bb = r->b;
        size_t end = streamid_incr(&bb) < 0 ? s->wlen : stream_win_lower(s, bb);
        size_t k = 0;
        for (size_t i = end; i > s->whead && k < r->nhot; i--)
            if (s->win[i - 1].e) {
                fn(c, ctx, s->win[i - 1].id, s->win[i - 1].e->f, s->win[i - 1].e->flen);
                k++;
            }
        for (size_t i = 0; i < r->ncold; i++) fn(c, ctx, r->cold[i].id, r->cold[i].fields, r->cold[i].flen);
    }
}

static void emit_entry(conn *c, void *ctx, streamid id, const char *f, size_t flen) {
    (void)ctx;
    reply_entry(c, id, f, flen);
}

/*---- Write bookkeeping -------------------------------------------------------------------*/

static void gate_if_written(conn *c, uint64_t seq_before, uint64_t recs_before) {
    (void)seq_before;
    store *st = streams_store(model(c));
    if (streams_writes(model(c)) != recs_before) conn_gate(c, store_seq(st));
}

/*---- XADD, XTRIM ---------------------------------------------------------------------------*/

enum { TRIM_NONE, TRIM_MAXLEN, TRIM_MINID };

typedef struct trim_args {
    int strategy, approx, no_mkstream, id_given, seq_given;
    long long maxlen, limit;
    streamid minid, id;
} trim_args;

/* Redis's streamParseAddOrTrimArgsOrReply. Returns the index of the id
 * (XADD) or argc, or -1 after an error reply. */
static int parse_trim(conn *c, int argc, const hstr *argv, int xadd, trim_args *t) {
    memset(t, 0, sizeof *t);
    int i = 2, limit_given = 0;
    for (; i < argc; i++) {
        int more = argc - 1 - i;
        const hstr *o = &argv[i];
        if (xadd && o->len == 1 && o->p[0] == '*') {
            break;
        } else if ((hstr_is(o, "maxlen") || hstr_is(o, "minid")) && more) {
            int maxlen = hstr_is(o, "maxlen");
            if (t->strategy != TRIM_NONE) {
                reply_error(c, "ERR syntax error, MAXLEN and MINID options at the same time are not compatible");
                return -1;
            }
            t->approx = 0;
            const hstr *nx = &argv[i + 1];
            if (more >= 2 && nx->len == 1 && nx->p[0] == '~') {
                t->approx = 1;
                i++;
            } else if (more >= 2 && nx->len == 1 && nx->p[0] == '=') {
                i++;
            }
            if (maxlen) {
                if (get_ll(c, &argv[i + 1], &t->maxlen, NULL) < 0) return -1;
                if (t->maxlen < 0) {
                    reply_error(c, "ERR The MAXLEN argument must be >= 0.");
                    return -1;
                }
                t->strategy = TRIM_MAXLEN;
            } else {
                if (parse_strict_id(c, &argv[i + 1], 0, &t->minid) < 0) return -1;
                t->strategy = TRIM_MINID;
            }
            i++;
        } else if (hstr_is(o, "limit") && more) {
            if (get_ll(c, &argv[i + 1], &t->limit, NULL) < 0) return -1;
            if (t->limit < 0) {
                reply_error(c, "ERR The LIMIT argument must be >= 0.");
                return -1;
            }
            limit_given = 1;
            i++;
        } else if (xadd && hstr_is(o, "nomkstream")) {
            t->no_mkstream = 1;
        } else if (xadd) {
            if (streamid_parse(o->p, o->len, 0, 1, &t->seq_given, &t->id) < 0) {
                reply_error(c, ID_ERR);
                return -1;
            }
            t->id_given = 1;
            break;
        } else {
            reply_error(c, SYNTAX_ERR);
            return -1;
        }
    }
    if (t->limit && t->strategy == TRIM_NONE) {
        reply_error(c, "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy");
        return -1;
    }
    if (!xadd && t->strategy == TRIM_NONE) {
        reply_error(c, "ERR syntax error, XTRIM must be called with a trimming strategy");
        return -1;
    }
    if (limit_given) {
        if (!t->approx) {
            reply_error(c, "ERR syntax error, LIMIT cannot be used without the special ~ option");
            return -1;
        }
    } else {
        t->limit = t->approx ? 100 * 100 : 0;
    }
    return i;
}

/* What an exact trim of s (with `extra` entries about to be added) removes:
 * *below (first kept id) and *n. Returns 1 when known, -1 if c was parked
 * for a cold read, -2 after an error reply. */
static int trim_plan(conn *c, int argc, const hstr *argv, stream *s, const trim_args *t, int extra, streamid *below,
                     uint64_t *n) {
    *n = 0;
    uint64_t len = s->meta.length;
    uint64_t cold = len - s->hot;
    if (t->strategy == TRIM_MAXLEN) {
        if (len + (uint64_t)extra <= (uint64_t)t->maxlen) return 1;
        uint64_t drop = len + (uint64_t)extra - (uint64_t)t->maxlen;
        if (drop > len) {
            /* everything stored goes; the entry about to be added may go too (handled by the caller) */
            drop = len;
        }
        if (drop > cold) {
            uint64_t k = 0, want = drop - cold;
            size_t i = s->whead;
            for (; i < s->wlen; i++)
                if (s->win[i].e && ++k > want) break;
            if (i < s->wlen) {
                *below = s->win[i].id;
            } else {
                *below = s->meta.last_id;
                streamid_incr(below);
            }
            *n = drop;
            return 1;
        }
        if (drop == cold && cold) {
            *below = s->cold_below;
            *n = drop;
            return 1;
        }
        if (!drop) return 1;
        if (t->approx) return 1; /* ~: keeping more is allowed; the cold part stays whole */
        cold_rows r;
        streamid hi = s->cold_below;
        streamid_decr(&hi);
        if (!stream_cold(model(c), s, s->meta.first_id, hi, (size_t)drop + 1, 0, c, &r))
            return park_cold(c, argc, argv) < 0 ? -2 : -1;
        if (r.err) {
            reply_error(c, r.err);
            return -2;
        }
        if (r.n < drop + 1) {
            *below = s->cold_below;
            *n = cold;
        } else {
            *below = r.rows[drop].id;
            *n = drop;
        }
        return 1;
    }
    /* MINID */
    streamid m = t->minid;
    uint64_t k = 0;
    for (size_t i = s->whead; i < s->wlen && streamid_cmp(s->win[i].id, m) < 0; i++)
        if (s->win[i].e) k++;
    if (cold && streamid_cmp(s->meta.first_id, m) < 0) {
        if (streamid_cmp(m, s->cold_below) >= 0) {
            k += cold;
        } else if (t->approx) {
            k = 0; /* ~: the cold part stays whole */
            m = s->meta.first_id;
        } else {
            cold_rows r;
            streamid hi = m;
            streamid_decr(&hi);
            if (!stream_cold(model(c), s, s->meta.first_id, hi, 0, 0, c, &r))
                return park_cold(c, argc, argv) < 0 ? -2 : -1;
            if (r.err) {
                reply_error(c, r.err);
                return -2;
            }
            k += r.n;
        }
    }
    *below = m;
    *n = k;
    return 1;
}

/* Applies a planned trim; approximate trims use the model's node rule. */
static uint64_t trim_apply(stream *s, const trim_args *t, streamid below, uint64_t n, streams *m) {
    if (t->approx && t->strategy == TRIM_MAXLEN && s->meta.length == s->hot)
        return stream_trim_approx(m, s, (uint64_t)t->maxlen, (uint64_t)t->limit);
    if (t->approx && t->limit && n > (uint64_t)t->limit) return 0;
    if (!n) return 0;
    stream_trim_below(m, s, below, n);
    return n;
}

void cmd_xadd(conn *c, int argc, const hstr *argv) {
    trim_args t;
    int pos = parse_trim(c, argc, argv, 1, &t);
    if (pos < 0) return;
    int fpos = pos + 1;
    if (argc - fpos < 2 || (argc - fpos) % 2 == 1) {
        reply_error(c, "ERR wrong number of arguments for 'xadd' command");
        return;
    }
    if (t.id_given && t.seq_given && t.id.ms == 0 && t.id.seq == 0) {
        reply_error(c, "ERR The ID specified in XADD must be greater than 0-0");
        return;
    }
    streams *m = model(c);
    stream *s = streams_find(m, argv[1].p, argv[1].len);
    if (!s && t.no_mkstream) {
        reply_null(c);
        return;
    }
    if (!writable(c)) return;
    streamid id;
    if (s) {
        int rc = stream_next_id(s, t.id_given ? &t.id : NULL, t.seq_given, now_ms(c), &id);
        if (rc == -2) {
            reply_error(c, "ERR The stream has exhausted the last possible ID, unable to add more items");
            return;
        }
        if (rc == -1) {
            reply_error(c, "ERR The ID specified in XADD is equal or smaller than the target stream top item");
            return;
        }
    }
    streamid below = {0, 0};
    uint64_t ntrim = 0;
    if (s && t.strategy != TRIM_NONE) {
        int rc = trim_plan(c, argc, argv, s, &t, 1, &below, &ntrim);
        if (rc < 0) return;
    }
    uint64_t w0 = streams_writes(m);
    if (!s) {
        if (!(s = streams_create(m, argv[1].p, argv[1].len))) {
            reply_error(c, "ERR out of memory");
            return;
        }
        stream_next_id(s, t.id_given ? &t.id : NULL, t.seq_given, now_ms(c), &id);
    }
    if (stream_append(m, s, id, (const sstr *)(argv + fpos), (size_t)(argc - fpos) / 2) < 0) {
        reply_error(c, "ERR out of memory");
        done(c);
        return;
    }
    reply_id(c, id);
    if (t.strategy != TRIM_NONE) {
        if (t.strategy == TRIM_MAXLEN && !t.approx && (uint64_t)t.maxlen < s->meta.length) {
            /* recompute over the stream with the new entry (it is hot) */
            streamid b2;
            uint64_t n2;
            trim_args t2 = t;
            if (trim_plan(c, argc, argv, s, &t2, 0, &b2, &n2) == 1) trim_apply(s, &t, b2, n2, m);
        } else if (t.strategy == TRIM_MINID || t.approx) {
            streamid b2;
            uint64_t n2;
            if (trim_plan(c, argc, argv, s, &t, 0, &b2, &n2) == 1) trim_apply(s, &t, b2, n2, m);
        }
    }
    (void)below, (void)ntrim;
    done(c);
    gate_if_written(c, 0, w0);
    signal_key(argv[1].p, argv[1].len);
}

void cmd_xtrim(conn *c, int argc, const hstr *argv) {
    trim_args t;
    if (parse_trim(c, argc, argv, 0, &t) < 0) return;
    /* XTRIM takes no id: parse_trim stops only at the end */
    streams *m = model(c);
    stream *s = streams_find(m, argv[1].p, argv[1].len);
    if (!s) {
        reply_int(c, 0);
        return;
    }
    if (!writable(c)) return;
    streamid below;
    uint64_t n;
    int rc = trim_plan(c, argc, argv, s, &t, 0, &below, &n);
    if (rc < 0) return;
    uint64_t w0 = streams_writes(m);
    uint64_t removed = trim_apply(s, &t, below, n, m);
    reply_int(c, (long long)removed);
    done(c);
    gate_if_written(c, 0, w0);
}

/*---- XLEN, XRANGE, XREVRANGE, XDEL ---------------------------------------------------------*/

void cmd_xlen(conn *c, int argc, const hstr *argv) {
    (void)argc;
    stream *s = streams_find(model(c), argv[1].p, argv[1].len);
    reply_int(c, s ? (long long)s->meta.length : 0);
}

/* XRANGE key start end [COUNT n] / XREVRANGE key end start [COUNT n] */
static void xrange(conn *c, int argc, const hstr *argv, int rev) {
    streamid a, b;
    const hstr *sa = rev ? &argv[3] : &argv[2], *sb = rev ? &argv[2] : &argv[3];
    if (parse_interval(c, sa, 0, 1, &a) < 0 || parse_interval(c, sb, UINT64_MAX, 0, &b) < 0) return;
    long long count = -1;
    for (int j = 4; j < argc; j++) {
        if (hstr_is(&argv[j], "count") && argc - j - 1 >= 1) {
            if (get_ll(c, &argv[j + 1], &count, NULL) < 0) return;
            if (count < 0) count = 0;
            j++;
        } else {
            reply_error(c, SYNTAX_ERR);
            return;
        }
    }
    if (count == 0) {
        reply_null_array(c);
        return;
    }
    stream *s = streams_find(model(c), argv[1].p, argv[1].len);
    if (!s) {
        reply_array(c, 0);
        return;
    }
    range r;
    int rc = range_collect(c, argc, argv, s, a, b, count < 0 ? 0 : (size_t)count, rev, &r);
    if (rc < 0) {
        if (rc == -2) done(c);
        return;
    }
    reply_array(c, (long)range_len(&r));
    range_each(c, &r, emit_entry, NULL);
    done(c);
}

void cmd_xrange(conn *c, int argc, const hstr *argv) {
    xrange(c, argc, argv, 0);
}
void cmd_xrevrange(conn *c, int argc, const hstr *argv) {
    xrange(c, argc, argv, 1);
}

static int id_order(const void *a, const void *b) {
    return streamid_cmp(*(const streamid *)a, *(const streamid *)b);
}

void cmd_xdel(conn *c, int argc, const hstr *argv) {
    streams *m = model(c);
    stream *s = streams_find(m, argv[1].p, argv[1].len);
    if (!s) {
        reply_int(c, 0);
        return;
    }
    int n = argc - 2;
    streamid *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) {
        reply_error(c, "ERR out of memory");
        return;
    }
    for (int j = 0; j < n; j++)
        if (parse_strict_id(c, &argv[j + 2], 0, &ids[j]) < 0) goto out;
    if (!writable(c)) goto out;
    /* an id given twice is deleted once */
    qsort(ids, (size_t)n, sizeof *ids, id_order);
    size_t u = 0;
    for (int j = 0; j < n; j++)
        if (!u || streamid_cmp(ids[u - 1], ids[j])) ids[u++] = ids[j];
    n = (int)u;
    /* first learn which exist: every cold lookup is asked for in one pass
     * and the command parks once until they are all answered (nothing is
     * deleted before, since a delete starts a new cold version), then delete */
    int asked = 0;
    for (int j = 0; j < n; j++) asked |= cold_pending(c, s, ids[j]);
    if (asked) {
        park_cold(c, argc, argv);
        goto out;
    }
    char *exists = calloc(u, 1);
    if (!exists) {
        reply_error(c, "ERR out of memory");
        goto out;
    }
    for (int j = 0; j < n; j++) {
        found f;
        exists[j] = stream_hot_get(s, ids[j]) ? 2 : lookup_entry_ex(c, argc, argv, s, ids[j], &f, 1) == 1;
    }
    uint64_t w0 = streams_writes(m);
    long long deleted = 0;
    for (int j = 0; j < n; j++) {
        int hot = stream_hot_get(s, ids[j]) != NULL;
        if (hot || exists[j] == 1) {
            stream_delete_entry(m, s, ids[j], hot);
            deleted++;
        }
    }
    free(exists);
    reply_int(c, deleted);
    done(c);
    gate_if_written(c, 0, w0);
out:
    free(ids);
}

/*---- XREAD, XREADGROUP ----------------------------------------------------------------------*/

typedef struct xread_args {
    long long block, count;
    int streams_arg, nstreams, noack;
    const hstr *group, *consumer;
} xread_args;

/* XREADGROUP's delivery of one range entry: PEL, group last id, reply. */
typedef struct deliver_ctx {
    stream *s;
    sgroup *g;
    sconsumer *cons;
    int noack;
    int64_t now;
} deliver_ctx;

static void deliver_entry(conn *c, void *ctx, streamid id, const char *f, size_t flen) {
    deliver_ctx *d = ctx;
    streams *m = model(c);
    sgroup *g = d->g;
    if (streamid_cmp(id, g->last_id) > 0) {
        if (g->entries_read != -1 && !(d->s->meta.max_deleted_id.ms || d->s->meta.max_deleted_id.seq
                                           ? streamid_cmp(d->s->meta.first_id, d->s->meta.max_deleted_id) <= 0 &&
                                                 streamid_cmp(id, d->s->meta.max_deleted_id) <= 0
                                           : 0))
            g->entries_read++;
        else if (d->s->meta.entries_added)
            g->entries_read = stream_estimate_entries_read(d->s, id);
        g->last_id = id;
    }
    if (!d->noack) stream_pel_put(m, d->s, g, id, d->cons, 1, d->now);
    reply_entry(c, id, f, flen);
}

/* Parses XREAD/XREADGROUP options. Returns 0 or -1 after an error reply. */
static int parse_xread(conn *c, int argc, const hstr *argv, int group, xread_args *x) {
    memset(x, 0, sizeof *x);
    x->block = -1;
    for (int i = 1; i < argc; i++) {
        int more = argc - i - 1;
        const hstr *o = &argv[i];
        if (hstr_is(o, "block") && more) {
            i++;
            long long v;
            if (hstr_to_ll(&argv[i], &v) < 0) {
                reply_error(c, "ERR timeout is not an integer or out of range");
                return -1;
            }
            if (v < 0) {
                reply_error(c, "ERR timeout is negative");
                return -1;
            }
            x->block = v;
        } else if (hstr_is(o, "count") && more) {
            i++;
            if (get_ll(c, &argv[i], &x->count, NULL) < 0) return -1;
            if (x->count < 0) x->count = 0;
        } else if (hstr_is(o, "streams") && more) {
            x->streams_arg = i + 1;
            x->nstreams = argc - x->streams_arg;
            if (x->nstreams % 2) {
                reply_error(c, "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be "
                               "specified.");
                return -1;
            }
            x->nstreams /= 2;
            break;
        } else if (hstr_is(o, "group") && more >= 2) {
            if (!group) {
                reply_error(c, "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.");
                return -1;
            }
            x->group = &argv[i + 1];
            x->consumer = &argv[i + 2];
            i += 2;
        } else if (hstr_is(o, "noack")) {
            if (!group) {
                reply_error(c, "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.");
                return -1;
            }
            x->noack = 1;
        } else {
            reply_error(c, SYNTAX_ERR);
            return -1;
        }
    }
    if (!x->streams_arg) {
        reply_error(c, SYNTAX_ERR);
        return -1;
    }
    if (group && !x->group) {
        reply_error(c, "ERR Missing GROUP option for XREADGROUP");
        return -1;
    }
    return 0;
}

#define MAX_XREAD_STACK 16

static void xread(conn *c, int argc, const hstr *argv, int isgroup) {
    xread_args x;
    if (parse_xread(c, argc, argv, isgroup, &x) < 0) return;
    streams *m = model(c);
    int n = x.nstreams;
    streamid ids_stack[MAX_XREAD_STACK], *ids = n <= MAX_XREAD_STACK ? ids_stack : malloc((size_t)n * sizeof *ids);
    sgroup *gs_stack[MAX_XREAD_STACK], **gs = n <= MAX_XREAD_STACK ? gs_stack : calloc((size_t)n, sizeof *gs);
    range *rs = calloc((size_t)n ? (size_t)n : 1, sizeof *rs);
    char *serve = calloc((size_t)n ? (size_t)n : 1, 1);
    hstr *pargv = NULL;
    char *idbuf = NULL;
    if (!ids || !gs || !rs || !serve) {
        reply_error(c, "ERR out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const hstr *key = &argv[x.streams_arg + i], *ida = &argv[x.streams_arg + n + i];
        stream *s = streams_find(m, key->p, key->len);
        gs[i] = NULL;
        if (x.group) {
            if (conn_rerunning(c) && !s) {
                reply_error(c, "UNBLOCKED the stream key no longer exists");
                goto out;
            }
            if (conn_rerunning(c) && !stream_group_find(s, x.group->p, x.group->len)) {
                reply_error(c, "NOGROUP the consumer group this client was blocked on no longer exists");
                goto out;
            }
            if (!s || !(gs[i] = stream_group_find(s, x.group->p, x.group->len))) {
                reply_errorf(c, "NOGROUP No such key '%.*s' or consumer group '%.*s' in XREADGROUP with GROUP option",
                             cstrlen(key), key->p, cstrlen(x.group), x.group->p);
                goto out;
            }
        }
        if (ida->len == 1 && ida->p[0] == '$') {
            if (isgroup) {
                reply_error(c, "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the "
                               "history of this consumer by specifying a proper ID, or use the > ID to get new "
                               "messages. The $ ID would just return an empty result set.");
                goto out;
            }
            ids[i] = s ? s->meta.last_id : (streamid){0, 0};
            continue;
        }
        if (ida->len == 1 && ida->p[0] == '>') {
            if (!isgroup) {
                reply_error(c, "ERR The > ID can be specified only when calling XREADGROUP using the GROUP "
                               "<group> <consumer> option.");
                goto out;
            }
            ids[i].ms = ids[i].seq = UINT64_MAX;
            continue;
        }
        if (parse_strict_id(c, ida, 0, &ids[i]) < 0) goto out;
    }
    if (isgroup && !x.noack) {
        for (int i = 0; i < n; i++)
            if (gs[i]->pending >= streams_max_pending(m)) {
                reply_errorf(c,
                             "ERR the consumer group's pending entries list is full (stream-max-pending %zu): "
                             "acknowledge entries (XACK) or read with NOACK",
                             streams_max_pending(m));
                goto out;
            }
    }
    if (isgroup && !writable(c)) goto out;
    /* Pass 1: what each stream serves, with its cold rows (may park). */
    int nserve = 0;
    for (int i = 0; i < n; i++) {
        const hstr *key = &argv[x.streams_arg + i];
        stream *s = streams_find(m, key->p, key->len);
        if (!s) continue;
        size_t count = (size_t)x.count;
        if (gs[i] && !x.noack) {
            size_t room = streams_max_pending(m) - gs[i]->pending;
            if (!count || count > room) count = room;
        }
        if (gs[i] && (ids[i].ms != UINT64_MAX || ids[i].seq != UINT64_MAX)) {
            /* history: the consumer's pending entries after the id */
            if (streamid_incr(&ids[i]) < 0) ids[i] = (streamid){UINT64_MAX, UINT64_MAX};
            serve[i] = 2;
            nserve++;
            continue;
        }
        streamid gt = gs[i] ? gs[i]->last_id : ids[i];
        if (!s->meta.length || streamid_cmp(s->meta.last_id, gt) <= 0) continue;
        streamid start = gt;
        if (streamid_incr(&start) < 0) continue;
        int rc = range_collect(c, argc, argv, s, start, (streamid){UINT64_MAX, UINT64_MAX}, count, 0, &rs[i]);
        if (rc == -1) goto out;
        if (rc == -2) {
            done(c);
            goto out;
        }
        serve[i] = 1;
        nserve++;
    }
    /* history entries of the consumer: look them up first (may park) */
    for (int i = 0; i < n; i++) {
        if (serve[i] != 2) continue;
        stream *s = streams_find(m, argv[x.streams_arg + i].p, argv[x.streams_arg + i].len);
        sconsumer *cons = stream_consumer_find(gs[i], x.consumer->p, x.consumer->len);
        if (!cons) continue;
        size_t k = 0;
        streamid from = ids[i];
        for (size_t j = stream_pel_lower(gs[i], from); j < gs[i]->pel_len && (!x.count || k < (size_t)x.count); j++) {
            snack *nk = gs[i]->pel[j].n;
            if (!nk || nk->owner != cons) continue;
            found f;
            int rc = lookup_entry(c, argc, argv, s, nk->id, &f);
            if (rc == -1) goto out;
            if (rc == -2) {
                done(c);
                goto out;
            }
            k++;
        }
    }
    if (!nserve) {
        if (x.block < 0) {
            reply_null_array(c);
            done(c);
            goto out;
        }
        /* Block: park with $ resolved, so running again waits for entries after it. */
        if (!conn_rerunning(c)) {
            pargv = malloc((size_t)argc * sizeof *pargv);
            idbuf = malloc((size_t)n * 48);
            if (!pargv || !idbuf) {
                reply_error(c, "ERR out of memory");
                goto out;
            }
            memcpy(pargv, argv, (size_t)argc * sizeof *pargv);
            for (int i = 0; i < n; i++) {
                hstr *a = &pargv[x.streams_arg + n + i];
                if (a->len == 1 && a->p[0] == '$') {
                    a->p = idbuf + 48 * i;
                    a->len = streamid_fmt(ids[i], idbuf + 48 * i);
                }
            }
        }
        if (conn_park(c, argc, pargv ? pargv : argv, x.block, timeout_null_cb, release_cb) < 0) {
            reply_error(c, "ERR out of memory");
            goto out;
        }
        for (int i = 0; i < n; i++)
            if (block_on(c, &argv[x.streams_arg + i]) < 0) {
                conn_close(c, "out of memory blocking a reader");
                goto out;
            }
        goto out;
    }
    /* Pass 2: reply and deliver. */
    uint64_t w0 = streams_writes(m);
    if (c->proto == 2)
        reply_array(c, nserve);
    else
        reply_map(c, nserve);
    int64_t now = (int64_t)now_ms(c);
    for (int i = 0; i < n; i++) {
        if (!serve[i]) continue;
        const hstr *key = &argv[x.streams_arg + i];
        stream *s = streams_find(m, key->p, key->len);
        if (c->proto == 2) reply_array(c, 2);
        reply_bulk(c, key->p, key->len);
        if (!gs[i]) {
            reply_array(c, (long)range_len(&rs[i]));
            range_each(c, &rs[i], emit_entry, NULL);
            continue;
        }
        sconsumer *cons = stream_consumer_get(m, s, gs[i], x.consumer->p, x.consumer->len, now, NULL);
        if (!cons) {
            reply_array(c, 0);
            continue;
        }
        stream_consumer_touch(m, s, gs[i], cons, now, serve[i] == 1 && range_len(&rs[i]) > 0);
        if (serve[i] == 1) {
            deliver_ctx d = {s, gs[i], cons, x.noack, now};
            reply_array(c, (long)range_len(&rs[i]));
            range_each(c, &rs[i], deliver_entry, &d);
            stream_group_put(m, s, gs[i]);
            continue;
        }
        /* history: the consumer's pending entries from the id on */
        size_t total = 0;
        for (size_t j = stream_pel_lower(gs[i], ids[i]); j < gs[i]->pel_len && (!x.count || total < (size_t)x.count);
             j++)
            if (gs[i]->pel[j].n && gs[i]->pel[j].n->owner == cons) total++;
        reply_array(c, (long)total);
        size_t k = 0;
        for (size_t j = stream_pel_lower(gs[i], ids[i]); j < gs[i]->pel_len && k < total; j++) {
            snack *nk = gs[i]->pel[j].n;
            if (!nk || nk->owner != cons) continue;
            k++;
            found f;
            if (lookup_entry(c, argc, argv, s, nk->id, &f) == 1) {
                reply_entry(c, nk->id, f.f, f.flen);
                stream_pel_put(m, s, gs[i], nk->id, cons, nk->deliveries + 1, now);
            } else {
                reply_array(c, 2);
                reply_id(c, nk->id);
                reply_null_array(c);
            }
        }
    }
    done(c);
    gate_if_written(c, 0, w0);
out:
    if (ids != ids_stack) free(ids);
    if (gs != gs_stack) free(gs);
    free(rs);
    free(serve);
    free(pargv);
    free(idbuf);
}

void cmd_xread(conn *c, int argc, const hstr *argv) {
    xread(c, argc, argv, 0);
}
void cmd_xreadgroup(conn *c, int argc, const hstr *argv) {
    xread(c, argc, argv, 1);
}

/*---- XGROUP -------------------------------------------------------------------------------------*/

static void subcommand_syntax(conn *c, const hstr *sub, const char *parent) {
    reply_errorf(c, "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try %s HELP.", cstrlen(sub),
                 sub->p, parent);
}

static void nogroup(conn *c, const hstr *key, const hstr *group) {
    reply_errorf(c, "NOGROUP No such key '%.*s' or consumer group '%.*s'", cstrlen(key), key->p, cstrlen(group),
                 group->p);
}

void cmd_xgroup(conn *c, int argc, const hstr *argv) {
    const hstr *sub = &argv[1];
    if (hstr_is(sub, "help")) {
        static const char *help[] = {
            "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CREATE <key> <groupname> <id|$> [option]",
            "    Create a new consumer group. Options are:",
            "    * MKSTREAM",
            "      Create the empty stream if it does not exist.",
            "    * ENTRIESREAD entries_read",
            "      Set the group's entries_read counter (internal use).",
            "CREATECONSUMER <key> <groupname> <consumer>",
            "    Create a new consumer in the specified group.",
            "DELCONSUMER <key> <groupname> <consumer>",
            "    Remove the specified consumer.",
            "DESTROY <key> <groupname>",
            "    Remove the specified group.",
            "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
            "    Set the current group ID and entries_read counter.",
            "HELP",
            "    Print this help.",
        };
        reply_array(c, sizeof help / sizeof help[0]);
        for (size_t i = 0; i < sizeof help / sizeof help[0]; i++) reply_status(c, help[i]);
        return;
    }
    int create = hstr_is(sub, "create"), setid = hstr_is(sub, "setid");
    int mkstream = 0;
    long long entries_read = -1;
    if (create || setid) {
        for (int i = 5; i < argc;) {
            if (create && hstr_is(&argv[i], "mkstream")) {
                mkstream = 1;
                i++;
            } else if (hstr_is(&argv[i], "entriesread") && i + 1 < argc) {
                if (get_ll(c, &argv[i + 1], &entries_read, NULL) < 0) return;
                if (entries_read < 0 && entries_read != -1) {
                    reply_error(c, "ERR value for ENTRIESREAD must be positive or -1");
                    return;
                }
                i += 2;
            } else {
                subcommand_syntax(c, sub, "XGROUP");
                return;
            }
        }
    }
    streams *m = model(c);
    stream *s = streams_find(m, argv[2].p, argv[2].len);
    if (!s && !(create && mkstream)) {
        reply_error(c, "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to "
                       "use the MKSTREAM option to create an empty stream automatically.");
        return;
    }
    sgroup *g = s ? stream_group_find(s, argv[3].p, argv[3].len) : NULL;
    if (!g && !create && !hstr_is(sub, "destroy")) {
        reply_errorf(c, "NOGROUP No such consumer group '%.*s' for key name '%.*s'", cstrlen(&argv[3]), argv[3].p,
                     cstrlen(&argv[2]), argv[2].p);
        return;
    }
    uint64_t w0 = streams_writes(m);
    if (create) {
        streamid id;
        if (argv[4].len == 1 && argv[4].p[0] == '$')
            id = s ? s->meta.last_id : (streamid){0, 0};
        else if (parse_strict_id(c, &argv[4], 0, &id) < 0)
            return;
        if (g) {
            reply_error(c, "BUSYGROUP Consumer Group name already exists");
            return;
        }
        if (!writable(c)) return;
        if (!s && !(s = streams_create(m, argv[2].p, argv[2].len))) {
            reply_error(c, "ERR out of memory");
            return;
        }
        if (!stream_group_create(m, s, argv[3].p, argv[3].len, id, entries_read)) {
            reply_error(c, "ERR out of memory");
            return;
        }
        reply_ok(c);
    } else if (setid) {
        streamid id;
        if (argc != 5 && argc != 7) {
            subcommand_syntax(c, sub, "XGROUP");
            return;
        }
        if (argv[4].len == 1 && argv[4].p[0] == '$')
            id = s->meta.last_id;
        else if (parse_id(c, &argv[4], 0, &id) < 0)
            return;
        if (!writable(c)) return;
        g->last_id = id;
        g->entries_read = entries_read;
        stream_group_put(m, s, g);
        reply_ok(c);
    } else if (hstr_is(sub, "destroy")) {
        if (!g) {
            reply_int(c, 0);
            return;
        }
        if (!writable(c)) return;
        stream_group_destroy(m, s, g);
        reply_int(c, 1);
        signal_key(argv[2].p, argv[2].len);
    } else if (hstr_is(sub, "createconsumer")) {
        if (!writable(c)) return;
        int created;
        if (!stream_consumer_get(m, s, g, argv[4].p, argv[4].len, (int64_t)now_ms(c), &created)) {
            reply_error(c, "ERR out of memory");
            return;
        }
        reply_int(c, created);
    } else if (hstr_is(sub, "delconsumer")) {
        sconsumer *k = stream_consumer_find(g, argv[4].p, argv[4].len);
        if (!k) {
            reply_int(c, 0);
            return;
        }
        if (!writable(c)) return;
        reply_int(c, (long long)stream_consumer_delete(m, s, g, k));
    } else {
        subcommand_syntax(c, sub, "XGROUP");
        return;
    }
    gate_if_written(c, 0, w0);
}

/*---- XACK, XPENDING, XCLAIM, XAUTOCLAIM ----------------------------------------------------------*/

void cmd_xack(conn *c, int argc, const hstr *argv) {
    streams *m = model(c);
    stream *s = streams_find(m, argv[1].p, argv[1].len);
    sgroup *g = s ? stream_group_find(s, argv[2].p, argv[2].len) : NULL;
    if (!g) {
        reply_int(c, 0);
        return;
    }
    for (int j = 3; j < argc; j++) {
        streamid id;
        if (parse_strict_id(c, &argv[j], 0, &id) < 0) return;
    }
    if (!writable(c)) return;
    uint64_t w0 = streams_writes(m);
    long long acked = 0;
    for (int j = 3; j < argc; j++) {
        streamid id;
        streamid_parse(argv[j].p, argv[j].len, 0, 1, NULL, &id);
        snack *n = stream_pel_find(g, id);
        if (n) {
            stream_pel_del(m, s, g, n);
            acked++;
        }
    }
    reply_int(c, acked);
    gate_if_written(c, 0, w0);
}

void cmd_xpending(conn *c, int argc, const hstr *argv) {
    int justinfo = argc == 3;
    if (argc != 3 && (argc < 6 || argc > 9)) {
        reply_error(c, SYNTAX_ERR);
        return;
    }
    long long minidle = 0, count = 0;
    streamid a = {0, 0}, b = {UINT64_MAX, UINT64_MAX};
    const hstr *consname = NULL;
    if (argc >= 6) {
        int si = 3;
        if (hstr_is(&argv[3], "idle")) {
            if (get_ll(c, &argv[4], &minidle, NULL) < 0) return;
            if (argc < 8) {
                reply_error(c, SYNTAX_ERR);
                return;
            }
            si += 2;
        }
        if (get_ll(c, &argv[si + 2], &count, NULL) < 0) return;
        if (count < 0) count = 0;
        if (parse_interval(c, &argv[si], 0, 1, &a) < 0 || parse_interval(c, &argv[si + 1], UINT64_MAX, 0, &b) < 0)
            return;
        if (si + 3 < argc) consname = &argv[si + 3];
    }
    stream *s = streams_find(model(c), argv[1].p, argv[1].len);
    sgroup *g = s ? stream_group_find(s, argv[2].p, argv[2].len) : NULL;
    if (!g) {
        nogroup(c, &argv[1], &argv[2]);
        return;
    }
    int64_t now = (int64_t)now_ms(c);
    if (justinfo) {
        reply_array(c, 4);
        reply_int(c, (long long)g->pending);
        if (!g->pending) {
            reply_null(c);
            reply_null(c);
            reply_null_array(c);
            return;
        }
        streamid first = {0, 0}, last = {0, 0};
        for (size_t i = g->pel_head; i < g->pel_len; i++)
            if (g->pel[i].n) {
                first = g->pel[i].id;
                break;
            }
        for (size_t i = g->pel_len; i > g->pel_head; i--)
            if (g->pel[i - 1].n) {
                last = g->pel[i - 1].id;
                break;
            }
        reply_id(c, first);
        reply_id(c, last);
        long nc = 0;
        for (sconsumer *k = g->consumers; k; k = k->hh.next) nc += k->pending > 0;
        reply_array(c, nc);
        for (sconsumer *k = g->consumers; k; k = k->hh.next) {
            if (!k->pending) continue;
            char num[32];
            reply_array(c, 2);
            reply_bulk(c, k->name, k->nlen);
            reply_bulk(c, num, (size_t)snprintf(num, sizeof num, "%zu", k->pending));
        }
        return;
    }
    sconsumer *owner = NULL;
    if (consname && !(owner = stream_consumer_find(g, consname->p, consname->len))) {
        reply_array(c, 0);
        return;
    }
    /* count first, then reply */
    long n = 0;
    long long left = count;
    for (size_t i = stream_pel_lower(g, a); left && i < g->pel_len && streamid_cmp(g->pel[i].id, b) <= 0; i++) {
        snack *k = g->pel[i].n;
        if (!k || (owner && k->owner != owner)) continue;
        if (minidle && now - k->time_ms < minidle) continue;
        n++;
        left--;
    }
    reply_array(c, n);
    long sent = 0;
    for (size_t i = stream_pel_lower(g, a); sent < n && i < g->pel_len; i++) {
        snack *k = g->pel[i].n;
        if (!k || (owner && k->owner != owner)) continue;
        if (minidle && now - k->time_ms < minidle) continue;
        sent++;
        reply_array(c, 4);
        reply_id(c, k->id);
        reply_bulk(c, k->owner->name, k->owner->nlen);
        reply_int(c, now - k->time_ms < 0 ? 0 : now - k->time_ms);
        reply_int(c, (long long)k->deliveries);
    }
}

void cmd_xclaim(conn *c, int argc, const hstr *argv) {
    streams *m = model(c);
    stream *s = streams_find(m, argv[1].p, argv[1].len);
    sgroup *g = s ? stream_group_find(s, argv[2].p, argv[2].len) : NULL;
    if (!g) {
        nogroup(c, &argv[1], &argv[2]);
        return;
    }
    long long minidle, retrycount = -1, deliverytime = -1;
    int force = 0, justid = 0;
    if (get_ll(c, &argv[4], &minidle, "ERR Invalid min-idle-time argument for XCLAIM") < 0) return;
    if (minidle < 0) minidle = 0;
    int j = 5;
    streamid tmp;
    for (; j < argc; j++)
        if (streamid_parse(argv[j].p, argv[j].len, 0, 1, NULL, &tmp) < 0) break;
    int last_id_arg = j - 1;
    int64_t now = (int64_t)now_ms(c);
    streamid lastid = {0, 0};
    for (; j < argc; j++) {
        int more = argc - 1 - j;
        const hstr *o = &argv[j];
        if (hstr_is(o, "force")) {
            force = 1;
        } else if (hstr_is(o, "justid")) {
            justid = 1;
        } else if (hstr_is(o, "idle") && more) {
            j++;
            if (get_ll(c, &argv[j], &deliverytime, "ERR Invalid IDLE option argument for XCLAIM") < 0) return;
            deliverytime = now - deliverytime;
        } else if (hstr_is(o, "time") && more) {
            j++;
            if (get_ll(c, &argv[j], &deliverytime, "ERR Invalid TIME option argument for XCLAIM") < 0) return;
        } else if (hstr_is(o, "retrycount") && more) {
            j++;
            if (get_ll(c, &argv[j], &retrycount, "ERR Invalid RETRYCOUNT option argument for XCLAIM") < 0) return;
        } else if (hstr_is(o, "lastid") && more) {
            j++;
            if (parse_strict_id(c, &argv[j], 0, &lastid) < 0) return;
        } else {
            reply_errorf(c, "ERR Unrecognized XCLAIM option '%.*s'", cstrlen(o), o->p);
            return;
        }
    }
    if (!writable(c)) return;
    /* learn which entries exist (may park, once for all) before changing anything */
    int asked = 0;
    for (j = 5; j <= last_id_arg; j++) {
        streamid id;
        streamid_parse(argv[j].p, argv[j].len, 0, 1, NULL, &id);
        if (stream_pel_find(g, id) || force) asked |= cold_pending(c, s, id);
    }
    if (asked) {
        park_cold(c, argc, argv);
        return;
    }
    for (j = 5; j <= last_id_arg; j++) {
        streamid id;
        streamid_parse(argv[j].p, argv[j].len, 0, 1, NULL, &id);
        found f;
        if (stream_pel_find(g, id) || force) {
            int rc = lookup_entry(c, argc, argv, s, id, &f);
            if (rc == -1) return;
            if (rc == -2) {
                done(c);
                return;
            }
        }
    }
    uint64_t w0 = streams_writes(m);
    if (streamid_cmp(lastid, g->last_id) > 0) {
        g->last_id = lastid;
        stream_group_put(m, s, g);
    }
    if (deliverytime != -1) {
        if (deliverytime < 0 || deliverytime > now) deliverytime = now;
    } else {
        deliverytime = now;
    }
    sconsumer *cons = NULL;
    /* count the reply first: the same decisions as below, without changes */
    long n = 0;
    for (j = 5; j <= last_id_arg; j++) {
        streamid id;
        streamid_parse(argv[j].p, argv[j].len, 0, 1, NULL, &id);
        snack *nk = stream_pel_find(g, id);
        found f;
        if ((!nk && !force) || lookup_entry(c, argc, argv, s, id, &f) != 1) continue;
        if (nk && minidle && now - nk->time_ms < minidle) continue;
        n++;
    }
    reply_array(c, n);
    for (j = 5; j <= last_id_arg; j++) {
        streamid id;
        streamid_parse(argv[j].p, argv[j].len, 0, 1, NULL, &id);
        snack *nk = stream_pel_find(g, id);
        found f;
        if (!nk && !force) continue;
        if (lookup_entry(c, argc, argv, s, id, &f) != 1) {
            if (nk) stream_pel_del(m, s, g, nk);
            continue;
        }
        if (nk && minidle && now - nk->time_ms < minidle) continue;
        if (!cons && !(cons = stream_consumer_get(m, s, g, argv[3].p, argv[3].len, now, NULL))) continue;
        uint64_t deliveries = nk ? nk->deliveries : 1; /* FORCE makes it with one delivery, as Redis */
        if (retrycount >= 0)
            deliveries = (uint64_t)retrycount;
        else if (!justid)
            deliveries++;
        stream_pel_put(m, s, g, id, cons, deliveries, deliverytime);
        if (justid)
            reply_id(c, id);
        else
            reply_entry(c, id, f.f, f.flen);
    }
    if (cons) stream_consumer_touch(m, s, g, cons, now, 1);
    done(c);
    gate_if_written(c, 0, w0);
}

void cmd_xautoclaim(conn *c, int argc, const hstr *argv) {
    long long minidle, count = 100;
    const long long attempts_factor = 10;
    streamid start;
    int justid = 0;
    if (get_ll(c, &argv[4], &minidle, "ERR Invalid min-idle-time argument for XAUTOCLAIM") < 0) return;
    if (minidle < 0) minidle = 0;
    if (parse_interval(c, &argv[5], 0, 1, &start) < 0) return;
    for (int j = 6; j < argc; j++) {
        int more = argc - 1 - j;
        if (hstr_is(&argv[j], "count") && more) {
            long long maxc = LONG_MAX / (long long)(sizeof(streamid) > 10 ? sizeof(streamid) : 10);
            if (hstr_to_ll(&argv[j + 1], &count) < 0 || count < 1 || count > maxc) {
                reply_error(c, "ERR COUNT must be > 0");
                return;
            }
            j++;
        } else if (hstr_is(&argv[j], "justid")) {
            justid = 1;
        } else {
            reply_error(c, SYNTAX_ERR);
            return;
        }
    }
    streams *m = model(c);
    stream *s = streams_find(m, argv[1].p, argv[1].len);
    sgroup *g = s ? stream_group_find(s, argv[2].p, argv[2].len) : NULL;
    if (!g) {
        nogroup(c, &argv[1], &argv[2]);
        return;
    }
    if (!writable(c)) return;
    int64_t now = (int64_t)now_ms(c);
    /* Pass 1 (no changes): which PEL entries are visited, and do they exist. */
    long long attempts = count * attempts_factor, left = count;
    size_t i = stream_pel_lower(g, start);
    long nclaim = 0, ndel = 0;
    for (; attempts && left && i < g->pel_len; i++) {
        snack *nk = g->pel[i].n;
        if (!nk) continue;
        attempts--;
        found f;
        int rc = lookup_entry(c, argc, argv, s, nk->id, &f);
        if (rc == -1) return;
        if (rc == -2) {
            done(c);
            return;
        }
        if (rc == 0) {
            ndel++;
            left--;
            continue;
        }
        if (minidle && now - nk->time_ms < minidle) continue;
        nclaim++;
        left--;
    }
    /* the cursor: the next pending entry after the last visited */
    streamid cursor = {0, 0};
    for (; i < g->pel_len; i++)
        if (g->pel[i].n) {
            cursor = g->pel[i].id;
            break;
        }
    uint64_t w0 = streams_writes(m);
    streamid *deleted = ndel ? malloc((size_t)ndel * sizeof *deleted) : NULL;
    if (ndel && !deleted) {
        reply_error(c, "ERR out of memory");
        done(c);
        return;
    }
    reply_array(c, 3);
    reply_id(c, cursor);
    reply_array(c, nclaim);
    sconsumer *cons = NULL;
    long k = 0, d = 0;
    attempts = count * attempts_factor;
    left = count;
    for (i = stream_pel_lower(g, start); attempts && left && i < g->pel_len; i++) {
        snack *nk = g->pel[i].n;
        if (!nk) continue;
        attempts--;
        found f;
        if (lookup_entry(c, argc, argv, s, nk->id, &f) != 1) {
            deleted[d++] = nk->id;
            stream_pel_del(m, s, g, nk);
            left--;
            continue;
        }
        if (minidle && now - nk->time_ms < minidle) continue;
        if (!cons && !(cons = stream_consumer_get(m, s, g, argv[3].p, argv[3].len, now, NULL))) break;
        streamid id = nk->id;
        stream_pel_put(m, s, g, id, cons, justid ? nk->deliveries : nk->deliveries + 1, now);
        if (justid)
            reply_id(c, id);
        else
            reply_entry(c, id, f.f, f.flen);
        k++;
        left--;
    }
    while (k < nclaim) { /* only if out of memory above: keep the reply well formed */
        reply_null(c);
        k++;
    }
    reply_array(c, d);
    for (long x = 0; x < d; x++) reply_id(c, deleted[x]);
    free(deleted);
    if (cons) stream_consumer_touch(m, s, g, cons, now, 1);
    done(c);
    gate_if_written(c, 0, w0);
}

/*---- XINFO ------------------------------------------------------------------------------------------*/

static void reply_kv_int(conn *c, const char *k, long long v) {
    reply_cstr(c, k);
    reply_int(c, v);
}
static void reply_kv_id(conn *c, const char *k, streamid id) {
    reply_cstr(c, k);
    reply_id(c, id);
}
static void reply_lag(conn *c, const stream *s, const sgroup *g) {
    long long lag = stream_group_lag(s, g);
    reply_cstr(c, "lag");
    if (lag < 0)
        reply_null(c);
    else
        reply_int(c, lag);
}
static void reply_entries_read(conn *c, const sgroup *g) {
    reply_cstr(c, "entries-read");
    if (g->entries_read < 0)
        reply_null(c);
    else
        reply_int(c, g->entries_read);
}

static void xinfo_stream(conn *c, int argc, const hstr *argv, stream *s) {
    int full = 0;
    long long count = 10;
    if (argc > 3) {
        if (!hstr_is(&argv[3], "full") || (argc != 4 && argc != 6)) {
            subcommand_syntax(c, &argv[1], "XINFO");
            return;
        }
        full = 1;
        if (argc == 6) {
            if (!hstr_is(&argv[4], "count")) {
                subcommand_syntax(c, &argv[1], "XINFO");
                return;
            }
            if (get_ll(c, &argv[5], &count, NULL) < 0) return;
            if (count < 0) count = 10;
        }
    }
    streamid all_a = {0, 0}, all_b = {UINT64_MAX, UINT64_MAX};
    range first, last, ents;
    int rc;
    if (!full) {
        if ((rc = range_collect(c, argc, argv, s, all_a, all_b, 1, 0, &first)) < 0 ||
            (rc = range_collect(c, argc, argv, s, all_a, all_b, 1, 1, &last)) < 0) {
            if (rc == -2) done(c);
            return;
        }
    } else if ((rc = range_collect(c, argc, argv, s, all_a, all_b, (size_t)count, 0, &ents)) < 0) {
        if (rc == -2) done(c);
        return;
    }
    uint64_t nodes = (s->meta.length + 99) / 100;
    reply_map(c, full ? 9 : 10);
    reply_kv_int(c, "length", (long long)s->meta.length);
    reply_kv_int(c, "radix-tree-keys", (long long)nodes);
    reply_kv_int(c, "radix-tree-nodes", (long long)(nodes ? nodes + 1 : 1));
    reply_kv_id(c, "last-generated-id", s->meta.last_id);
    reply_kv_id(c, "max-deleted-entry-id", s->meta.max_deleted_id);
    reply_kv_int(c, "entries-added", (long long)s->meta.entries_added);
    reply_kv_id(c, "recorded-first-entry-id", s->meta.first_id);
    int64_t now = (int64_t)now_ms(c);
    if (!full) {
        reply_kv_int(c, "groups", (long long)s->ngroups);
        reply_cstr(c, "first-entry");
        if (range_len(&first))
            range_each(c, &first, emit_entry, NULL);
        else
            reply_null(c);
        reply_cstr(c, "last-entry");
        if (range_len(&last))
            range_each(c, &last, emit_entry, NULL);
        else
            reply_null(c);
        done(c);
        return;
    }
    reply_cstr(c, "entries");
    reply_array(c, (long)range_len(&ents));
    range_each(c, &ents, emit_entry, NULL);
    reply_cstr(c, "groups");
    reply_array(c, (long)s->ngroups);
    for (sgroup *g = s->groups; g; g = g->hh.next) {
        reply_map(c, 7);
        reply_cstr(c, "name");
        reply_bulk(c, g->name, g->nlen);
        reply_kv_id(c, "last-delivered-id", g->last_id);
        reply_entries_read(c, g);
        reply_lag(c, s, g);
        reply_kv_int(c, "pel-count", (long long)g->pending);
        reply_cstr(c, "pending");
        long np = 0;
        for (size_t i = g->pel_head; i < g->pel_len && (!count || np < count); i++) np += g->pel[i].n != NULL;
        reply_array(c, np);
        long k = 0;
        for (size_t i = g->pel_head; i < g->pel_len && k < np; i++) {
            snack *n = g->pel[i].n;
            if (!n) continue;
            k++;
            reply_array(c, 4);
            reply_id(c, n->id);
            reply_bulk(c, n->owner->name, n->owner->nlen);
            reply_int(c, n->time_ms);
            reply_int(c, (long long)n->deliveries);
        }
        reply_cstr(c, "consumers");
        reply_array(c, (long)HASH_COUNT(g->consumers));
        for (sconsumer *cs = g->consumers; cs; cs = cs->hh.next) {
            reply_map(c, 4);
            reply_cstr(c, "name");
            reply_bulk(c, cs->name, cs->nlen);
            reply_kv_int(c, "seen-time", cs->seen_ms);
            reply_kv_int(c, "pel-count", (long long)cs->pending);
            reply_cstr(c, "pending");
            long cp = 0;
            for (size_t i = g->pel_head; i < g->pel_len && (!count || cp < count); i++)
                cp += g->pel[i].n && g->pel[i].n->owner == cs;
            reply_array(c, cp);
            long q = 0;
            for (size_t i = g->pel_head; i < g->pel_len && q < cp; i++) {
                snack *n = g->pel[i].n;
                if (!n || n->owner != cs) continue;
                q++;
                reply_array(c, 3);
                reply_id(c, n->id);
                reply_int(c, n->time_ms);
                reply_int(c, (long long)n->deliveries);
            }
        }
    }
    (void)now;
    done(c);
}

void cmd_xinfo(conn *c, int argc, const hstr *argv) {
    const hstr *sub = &argv[1];
    if (hstr_is(sub, "help")) {
        static const char *help[] = {
            "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CONSUMERS <key> <groupname>",
            "    Show consumers of <groupname>.",
            "GROUPS <key>",
            "    Show the stream consumer groups.",
            "STREAM <key> [FULL [COUNT <count>]",
            "    Show information about the stream.",
            "HELP",
            "    Print this help.",
        };
        reply_array(c, sizeof help / sizeof help[0]);
        for (size_t i = 0; i < sizeof help / sizeof help[0]; i++) reply_status(c, help[i]);
        return;
    }
    stream *s = streams_find(model(c), argv[2].p, argv[2].len);
    if (!s) {
        reply_error(c, "ERR no such key");
        return;
    }
    int64_t now = (int64_t)now_ms(c);
    if (hstr_is(sub, "consumers")) {
        sgroup *g = stream_group_find(s, argv[3].p, argv[3].len);
        if (!g) {
            reply_errorf(c, "NOGROUP No such consumer group '%.*s' for key name '%.*s'", cstrlen(&argv[3]), argv[3].p,
                         cstrlen(&argv[2]), argv[2].p);
            return;
        }
        reply_array(c, (long)HASH_COUNT(g->consumers));
        for (sconsumer *cs = g->consumers; cs; cs = cs->hh.next) {
            reply_map(c, 3);
            reply_cstr(c, "name");
            reply_bulk(c, cs->name, cs->nlen);
            reply_kv_int(c, "pending", (long long)cs->pending);
            reply_kv_int(c, "idle", now - cs->seen_ms < 0 ? 0 : now - cs->seen_ms);
        }
    } else if (hstr_is(sub, "groups")) {
        reply_array(c, (long)s->ngroups);
        for (sgroup *g = s->groups; g; g = g->hh.next) {
            reply_map(c, 6);
            reply_cstr(c, "name");
            reply_bulk(c, g->name, g->nlen);
            reply_kv_int(c, "consumers", (long long)HASH_COUNT(g->consumers));
            reply_kv_int(c, "pending", (long long)g->pending);
            reply_kv_id(c, "last-delivered-id", g->last_id);
            reply_entries_read(c, g);
            reply_lag(c, s, g);
        }
    } else if (hstr_is(sub, "stream")) {
        xinfo_stream(c, argc, argv, s);
    } else {
        subcommand_syntax(c, sub, "XINFO");
    }
}

/*---- INFO ---------------------------------------------------------------------------------------------*/

void info_streams_sections(hub *h, textbuf *b, int persistence, int streams_sec) {
    if (!h->streams) return;
    store *st = streams_store(h->streams);
    if (persistence) {
        store_stats ss;
        store_get_stats(st, &ss);
        textbuf_printf(b,
                       "# Persistence\r\nstore_engine:sqlite\r\nstore_dir:%s\r\nstore_durability:%s\r\n"
                       "store_ok:%d\r\nstore_error:%s\r\nstore_seq:%llu\r\nstore_committed_seq:%llu\r\n"
                       "store_commits:%llu\r\nstore_batches:%llu\r\nstore_records:%llu\r\nstore_failures:%llu\r\n"
                       "store_corrupt_entries:%llu\r\nstore_cold_reads:%llu\r\nstore_last_commit_ms:%.3f\r\n"
                       "store_db_bytes:%llu\r\n\r\n",
                       h->cfg.dir, h->cfg.durability, store_ok(st), store_error(st) ? store_error(st) : "",
                       (unsigned long long)store_seq(st), (unsigned long long)store_committed(st),
                       (unsigned long long)ss.commits, (unsigned long long)ss.batches, (unsigned long long)ss.records,
                       (unsigned long long)ss.failures, (unsigned long long)ss.corrupt_entries,
                       (unsigned long long)ss.reads, ss.last_commit_ms, (unsigned long long)ss.db_bytes);
    }
    if (streams_sec) {
        streams_info si;
        streams_get_info(h->streams, &si);
        textbuf_printf(b,
                       "# Streams\r\nstreams:%zu\r\nstream_groups:%zu\r\nstream_entries_in_memory:%llu\r\n"
                       "stream_entries_stored:%llu\r\nstream_window_bytes:%zu\r\nstream_cache_memory:%zu\r\n"
                       "stream_entries_evicted:%llu\r\nstream_cold_reads:%llu\r\nstream_pending:%llu\r\n"
                       "stream_blocked_readers:%zu\r\n\r\n",
                       si.streams, si.groups, (unsigned long long)si.entries_memory,
                       (unsigned long long)si.entries_stored, si.window_bytes, si.window_limit,
                       (unsigned long long)si.evicted, (unsigned long long)si.cold_reads,
                       (unsigned long long)si.pending, nblocked);
    }
}
