/* patindex.c -- an index of glob patterns (see patindex.h).
 *
 * Scheme:
 *   1. A pattern with a non-empty literal prefix (glob_literal_prefix) goes in
 *      the bucket for those prefix bytes, in the `pre` hash table. Matching a
 *      name looks up name[0..L) for each distinct prefix length L in use
 *      (L <= name length) and glob-tests only that bucket's patterns.
 *   2. A pattern with an empty prefix (it starts with `*`, `?`, `[` or `\`)
 *      goes by its literal suffix instead, in the `suf` table, looked up with
 *      name[nlen-L..nlen) the same way. The suffix is the trailing run of
 *      plain bytes after the pattern's last `*`, `?`, class or escape, found by
 *      walking the pattern with glob.c's class rules (so the `c` of the
 *      malformed `*[a\]c` or `*[a-]c`, still inside the class, is no suffix).
 *   3. A pattern with neither (`*`, `*a*`, `[ab]`, `*.x?`) goes in the `scan`
 *      list, which is glob-tested against every name.
 * Each table keeps a small sorted array of the key lengths in use (with the
 * number of buckets of that length), and the lookup hashes are computed
 * incrementally (FNV-1a over the name, forwards for prefixes, backwards for
 * suffixes, then a finalising mix), so a match costs
 *     O(min(nlen, longest key) + distinct key lengths + scan list + candidates)
 * hash steps, lookups and glob tests, independent of how many patterns sit in
 * buckets the name misses. 10,000 patterns `idle.<i>.*` use 4 prefix lengths:
 * a 20-byte name that matches none costs 4 failed lookups (about 20 ns).
 *
 * Worst case: patterns that start with a wildcard and end with a wildcard,
 * class or escape all sit in the scan list, and patterns sharing one key all
 * sit in one bucket (`user.*.<i>` for 10,000 i: every `user.` name tests them
 * all). Either way a match costs O(N) glob tests, as in Redis.
 *
 * Exact patterns are also kept in `byname` (hash of the whole pattern) for
 * de-duplication, get and remove; removal unlinks from a doubly-linked bucket
 * list in O(1), and an emptied bucket and an unused length are freed at once.
 *
 * Re-entrancy: callbacks of patindex_match/patindex_foreach may add and
 * remove patterns, and run nested matches on the same index. While any walk
 * is in progress, removed entries are unlinked from `byname` (get/count no
 * longer see them) but stay in their bucket flagged dead, and are freed when
 * the outermost walk ends; patterns added during a walk may or may not be
 * reported by it, and none is reported twice. Freeing the index from a
 * callback is not supported. */
#include "patindex.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1 /* a failed add leaves elt->hh.tbl == NULL */
#include <uthash.h>

#include "glob.h"

typedef struct bucket bucket;

/* One stored pattern. */
typedef struct pentry {
    UT_hash_handle hh;            /* in ix->byname, key: pat */
    struct pentry *next, *prev;   /* in b's list */
    struct pentry *grave_next;    /* in ix->graveyard, once dead */
    bucket *b;
    void *udata;
    int dead;                     /* removed during a walk, not yet freed */
    size_t plen;
    char pat[];
} pentry;

/* The patterns sharing one prefix (or suffix) key; the scan list too. */
struct bucket {
    UT_hash_handle hh;            /* in ix->pre or ix->suf, key: key */
    pentry *head;
    int kind;                     /* K_PRE, K_SUF or K_SCAN */
    size_t klen;
    char key[];
};

enum { K_PRE, K_SUF, K_SCAN };

/* The distinct key lengths of one table, ascending, with bucket counts. */
typedef struct lenset {
    struct lenref { size_t len, nbuckets; } *v;
    size_t n, cap;
} lenset;

struct patindex {
    pentry *byname;
    bucket *pre, *suf;
    bucket *scan;                 /* the scan list (allocated with ix) */
    lenset prelens, suflens;
    size_t count;                 /* live patterns */
    unsigned walking;             /* match/foreach calls in progress */
    unsigned long gen;            /* bumped whenever a lenset changes */
    pentry *graveyard;            /* dead entries awaiting the walk's end */
};

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/* Feeds byte c into the running FNV-1a state h; returns the new state. */
static inline uint64_t hstep(uint64_t h, unsigned char c) { return (h ^ c) * FNV_PRIME; }

/* Turns a running state into the uthash hash value (mixes high bits into the
 * low ones uthash uses to pick its bucket). */
static inline unsigned hfinal(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (unsigned)h;
}

/* Hash of s[0..n) read forwards (whole patterns, prefix keys). */
static unsigned hash_fwd(const char *s, size_t n) {
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < n; i++) h = hstep(h, (unsigned char)s[i]);
    return hfinal(h);
}

/* Hash of s[0..n) read backwards from its last byte (suffix keys). */
static unsigned hash_rev(const char *s, size_t n) {
    uint64_t h = FNV_OFFSET;
    while (n) h = hstep(h, (unsigned char)s[--n]);
    return hfinal(h);
}

/* Returns the index just past the class whose body starts at p[i] (right
 * after its `[`), following glob.c's (Redis's) rules, malformed ones too. */
static size_t class_end(const unsigned char *p, size_t plen, size_t i) {
    if (i < plen && p[i] == '^') i++;
    for (;;) {
        if (plen - i >= 2 && p[i] == '\\') i++;
        else if (i < plen && p[i] == ']') break;
        else if (i >= plen) return plen;
        else if (plen - i >= 3 && p[i + 1] == '-') i += 2;
        i++;
    }
    return i + 1;
}

/* Length of pat's literal suffix: the trailing run of plain bytes after its
 * last `*`, `?`, class or escape; every name pat matches ends with them.
 * 0 if pat ends with one of those. */
static size_t literal_suffix(const char *pat, size_t plen) {
    const unsigned char *p = (const unsigned char *)pat;
    size_t i = 0, run = 0;
    while (i < plen) {
        switch (p[i]) {
        case '*':
        case '?': i++; break;
        case '[': i = class_end(p, plen, i + 1); break;
        case '\\': i += plen - i >= 2 ? 2 : 1; break;
        default: i++; continue; /* a plain byte extends the run */
        }
        run = i;
    }
    return plen - run;
}

/* Position of len in ls, or the position where it would be inserted. */
static size_t lens_pos(const lenset *ls, size_t len) {
    size_t lo = 0, hi = ls->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ls->v[mid].len < len) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Counts one more bucket of key length len. Returns 0, or -1 if out of memory. */
static int lens_inc(patindex *ix, lenset *ls, size_t len) {
    size_t i = lens_pos(ls, len);
    if (i < ls->n && ls->v[i].len == len) {
        ls->v[i].nbuckets++;
        return 0;
    }
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 8;
        struct lenref *v = realloc(ls->v, cap * sizeof *v);
        if (!v) return -1;
        ls->v = v;
        ls->cap = cap;
    }
    memmove(ls->v + i + 1, ls->v + i, (ls->n - i) * sizeof *ls->v);
    ls->v[i].len = len;
    ls->v[i].nbuckets = 1;
    ls->n++;
    ix->gen++;
    return 0;
}

/* Counts one bucket of key length len less, dropping the length (and
 * shrinking the array) when no bucket uses it any more. */
static void lens_dec(patindex *ix, lenset *ls, size_t len) {
    size_t i = lens_pos(ls, len);
    if (i == ls->n || ls->v[i].len != len || --ls->v[i].nbuckets) return;
    memmove(ls->v + i, ls->v + i + 1, (ls->n - i - 1) * sizeof *ls->v);
    ls->n--;
    ix->gen++;
    if (ls->n == 0) {
        free(ls->v);
        ls->v = NULL;
        ls->cap = 0;
    } else if (ls->cap > 8 && ls->n < ls->cap / 4) {
        struct lenref *v = realloc(ls->v, ls->cap / 2 * sizeof *v);
        if (v) {
            ls->v = v;
            ls->cap /= 2;
        }
    }
}

/* Frees bucket b if it holds no pattern (the scan list is never freed). */
static void bucket_release_if_empty(patindex *ix, bucket *b) {
    if (b->head || b->kind == K_SCAN) return;
    if (b->kind == K_PRE) {
        HASH_DELETE(hh, ix->pre, b);
        lens_dec(ix, &ix->prelens, b->klen);
    } else {
        HASH_DELETE(hh, ix->suf, b);
        lens_dec(ix, &ix->suflens, b->klen);
    }
    free(b);
}

/* Finds or creates the bucket pat belongs in. Returns it, or NULL if out of
 * memory (nothing changed then). */
static bucket *bucket_for(patindex *ix, const char *pat, size_t plen) {
    size_t klen = glob_literal_prefix(pat, plen);
    int kind = K_PRE;
    const char *key = pat;
    if (klen == 0) {
        klen = literal_suffix(pat, plen);
        if (klen == 0) return ix->scan;
        kind = K_SUF;
        key = pat + plen - klen;
    }
    bucket **table = kind == K_PRE ? &ix->pre : &ix->suf;
    unsigned hv = kind == K_PRE ? hash_fwd(key, klen) : hash_rev(key, klen);
    bucket *b;
    HASH_FIND_BYHASHVALUE(hh, *table, key, klen, hv, b);
    if (b) return b;

    if (!(b = malloc(sizeof *b + klen))) return NULL;
    memcpy(b->key, key, klen);
    b->klen = klen;
    b->kind = kind;
    b->head = NULL;
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, *table, b->key, klen, hv, b);
    if (!b->hh.tbl) {
        free(b);
        return NULL;
    }
    if (lens_inc(ix, kind == K_PRE ? &ix->prelens : &ix->suflens, klen) < 0) {
        HASH_DELETE(hh, *table, b);
        free(b);
        return NULL;
    }
    return b;
}

/* Unlinks entry e from its bucket (freeing the bucket if emptied) and frees e. */
static void entry_unlink_free(patindex *ix, pentry *e) {
    bucket *b = e->b;
    if (e->prev) e->prev->next = e->next;
    else b->head = e->next;
    if (e->next) e->next->prev = e->prev;
    free(e);
    bucket_release_if_empty(ix, b);
}

/* Frees the entries removed while walks were in progress. */
static void purge(patindex *ix) {
    while (ix->graveyard) {
        pentry *e = ix->graveyard;
        ix->graveyard = e->grave_next;
        entry_unlink_free(ix, e);
    }
}

/* Returns the live entry for exactly pat, or NULL. */
static pentry *find_entry(patindex *ix, const char *pat, size_t plen) {
    pentry *e;
    HASH_FIND_BYHASHVALUE(hh, ix->byname, pat, plen, hash_fwd(pat, plen), e);
    return e;
}

/* Creates an empty index; NULL if out of memory. */
patindex *patindex_new(void) {
    patindex *ix = calloc(1, sizeof *ix);
    if (!ix) return NULL;
    if (!(ix->scan = calloc(1, sizeof *ix->scan))) {
        free(ix);
        return NULL;
    }
    ix->scan->kind = K_SCAN;
    return ix;
}

/* Frees the index, its buckets and pattern copies (not the udata). */
void patindex_free(patindex *ix) {
    if (!ix) return;
    pentry *e, *etmp;
    HASH_ITER(hh, ix->byname, e, etmp) {
        HASH_DELETE(hh, ix->byname, e);
        free(e);
    }
    while (ix->graveyard) { /* only if freed from inside a walk */
        e = ix->graveyard;
        ix->graveyard = e->grave_next;
        free(e);
    }
    bucket *b, *btmp;
    HASH_ITER(hh, ix->pre, b, btmp) {
        HASH_DELETE(hh, ix->pre, b);
        free(b);
    }
    HASH_ITER(hh, ix->suf, b, btmp) {
        HASH_DELETE(hh, ix->suf, b);
        free(b);
    }
    free(ix->scan);
    free(ix->prelens.v);
    free(ix->suflens.v);
    free(ix);
}

/* Adds pat -> udata. Returns 1 if added, 0 if pat was already present
 * (udata unchanged), -1 if out of memory (index unchanged). */
int patindex_add(patindex *ix, const char *pat, size_t plen, void *udata) {
    if (!pat) pat = "";
    unsigned hv = hash_fwd(pat, plen);
    pentry *e;
    HASH_FIND_BYHASHVALUE(hh, ix->byname, pat, plen, hv, e);
    if (e) return 0;

    if (!(e = malloc(sizeof *e + plen + 1))) return -1;
    memcpy(e->pat, pat, plen);
    e->pat[plen] = '\0';
    e->plen = plen;
    e->udata = udata;
    e->dead = 0;
    e->grave_next = NULL;
    bucket *b = bucket_for(ix, e->pat, plen);
    if (!b) {
        free(e);
        return -1;
    }
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, ix->byname, e->pat, plen, hv, e);
    if (!e->hh.tbl) {
        free(e);
        bucket_release_if_empty(ix, b);
        return -1;
    }
    e->b = b;
    e->prev = NULL;
    e->next = b->head;
    if (b->head) b->head->prev = e;
    b->head = e;
    ix->count++;
    return 1;
}

/* Returns the udata stored for exactly pat, or NULL. */
void *patindex_get(patindex *ix, const char *pat, size_t plen) {
    pentry *e = find_entry(ix, pat ? pat : "", plen);
    return e ? e->udata : NULL;
}

/* Removes pat; returns its udata, or NULL if it was not present. O(1) plus
 * the hash lookups; the entry is freed later if a walk is in progress. */
void *patindex_remove(patindex *ix, const char *pat, size_t plen) {
    pentry *e = find_entry(ix, pat ? pat : "", plen);
    if (!e) return NULL;
    void *udata = e->udata;
    HASH_DELETE(hh, ix->byname, e);
    ix->count--;
    if (ix->walking) {
        e->dead = 1;
        e->grave_next = ix->graveyard;
        ix->graveyard = e;
    } else {
        entry_unlink_free(ix, e);
    }
    return udata;
}

/* Returns the number of patterns stored. */
size_t patindex_count(const patindex *ix) { return ix->count; }

/* Glob-tests name against every live pattern of bucket b, calling cb for
 * each match. Returns the matches reported; sets *stop if cb asked to stop. */
static size_t match_bucket(const bucket *b, const char *name, size_t nlen, patindex_cb cb, void *ctx,
                           int *stop) {
    size_t n = 0;
    for (const pentry *e = b->head; e; e = e->next) {
        if (e->dead || !glob_match(e->pat, e->plen, name, nlen)) continue;
        n++;
        if (cb(e->udata, e->pat, e->plen, ctx)) {
            *stop = 1;
            break;
        }
    }
    return n;
}

/* Looks up every key length of table `kind` against name's head (K_PRE) or
 * tail (K_SUF), hashing the name incrementally, and matches the buckets
 * found. Returns the matches reported; sets *stop if cb asked to stop. */
static size_t match_table(patindex *ix, int kind, const char *name, size_t nlen, patindex_cb cb, void *ctx,
                          int *stop) {
    const lenset *ls = kind == K_PRE ? &ix->prelens : &ix->suflens;
    const unsigned char *s = (const unsigned char *)name;
    uint64_t h = FNV_OFFSET;
    size_t hashed = 0, n = 0;
    unsigned long gen = ix->gen;
    for (size_t i = 0; i < ls->n && !*stop; i++) {
        size_t len = ls->v[i].len;
        if (len > nlen) break;
        if (kind == K_PRE)
            while (hashed < len) h = hstep(h, s[hashed++]);
        else
            while (hashed < len) h = hstep(h, s[nlen - ++hashed]);
        const char *key = kind == K_PRE ? name : name + nlen - len;
        bucket *b;
        HASH_FIND_BYHASHVALUE(hh, kind == K_PRE ? ix->pre : ix->suf, key, len, hfinal(h), b);
        if (!b) continue;
        n += match_bucket(b, name, nlen, cb, ctx, stop);
        if (ix->gen != gen) { /* a callback added a length: find ours again */
            gen = ix->gen;
            i = lens_pos(ls, len);
        }
    }
    return n;
}

/* Calls cb for every pattern matching name (see the top comment for the
 * cost). Returns how many matched, up to the one whose cb stopped the walk. */
size_t patindex_match(patindex *ix, const char *name, size_t nlen, patindex_cb cb, void *ctx) {
    size_t n = 0;
    int stop = 0;
    if (!name) name = "";
    ix->walking++;
    if (ix->scan->head) n += match_bucket(ix->scan, name, nlen, cb, ctx, &stop);
    if (!stop && ix->pre) n += match_table(ix, K_PRE, name, nlen, cb, ctx, &stop);
    if (!stop && ix->suf) n += match_table(ix, K_SUF, name, nlen, cb, ctx, &stop);
    if (--ix->walking == 0) purge(ix);
    return n;
}

/* Calls cb for each live pattern of bucket b; returns 1 if cb asked to stop. */
static int foreach_bucket(const bucket *b, patindex_cb cb, void *ctx) {
    for (const pentry *e = b->head; e; e = e->next)
        if (!e->dead && cb(e->udata, e->pat, e->plen, ctx)) return 1;
    return 0;
}

/* Calls cb once for every stored pattern, in no particular order, until cb
 * returns non-zero. */
void patindex_foreach(patindex *ix, patindex_cb cb, void *ctx) {
    bucket *b, *tmp;
    int stop;
    ix->walking++;
    stop = foreach_bucket(ix->scan, cb, ctx);
    if (!stop) HASH_ITER(hh, ix->pre, b, tmp) if ((stop = foreach_bucket(b, cb, ctx))) break;
    if (!stop) HASH_ITER(hh, ix->suf, b, tmp) if (foreach_bucket(b, cb, ctx)) break;
    if (--ix->walking == 0) purge(ix);
}
