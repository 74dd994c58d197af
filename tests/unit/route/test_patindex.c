/* test_patindex.c -- the pattern index agrees with a plain loop of glob_match
 * over every pattern, keeps its bookkeeping straight, and survives callbacks
 * that change it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route/glob.h"
#include "route/patindex.h"
#include "unit.h"

#define S(lit) lit, sizeof(lit) - 1

/* A small deterministic PRNG (xorshift64*), so failures reproduce. */
static uint64_t rng_state = 88172645463325252ULL;

/* Returns a pseudo-random number in [0, n). */
static size_t rnd(size_t n) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (size_t)((rng_state * 2685821657736338717ULL) >> 33) % n;
}

/* --- the reference: every pattern, tested one by one ----------------------- */

#define MAXPAT 12
#define MAXNAME 14

typedef struct refpat {
    char pat[MAXPAT];
    size_t plen;
    int present;
    int seen; /* times reported by the current match/foreach */
} refpat;

typedef struct model {
    refpat *p;
    size_t n;
    size_t reports; /* callback calls in the current walk */
    int bad;        /* a callback got bytes that do not belong to its udata */
} model;

/* Records one reported pattern (udata is its refpat); never stops. */
static int record_cb(void *udata, const char *pat, size_t plen, void *ctx) {
    model *m = ctx;
    refpat *r = udata;
    if (r->plen != plen || memcmp(r->pat, pat, plen) != 0) m->bad = 1;
    r->seen++;
    m->reports++;
    return 0;
}

/* Resets every refpat's report count before a walk. */
static void clear_seen(model *m) {
    for (size_t i = 0; i < m->n; i++) m->p[i].seen = 0;
    m->reports = 0;
    m->bad = 0;
}

/* Fills buf with a random pattern over letters, '.' and every metacharacter,
 * biased so that prefixes, suffixes and neither all occur; returns its length. */
static size_t random_pattern(char *buf) {
    static const char alpha[] = "ab..*?[]^-\\";
    size_t len = rnd(MAXPAT + 1);
    for (size_t i = 0; i < len; i++) buf[i] = alpha[rnd(sizeof alpha - 1)];
    if (len > 2 && rnd(3) == 0) buf[0] = 'a'; /* more literal prefixes */
    if (len > 2 && rnd(3) == 0) buf[0] = '*'; /* more wildcard starts */
    return len;
}

/* Fills buf with a random name, mostly over bytes the patterns use, sometimes
 * derived from a pattern so that matches are common; returns its length. */
static size_t random_name(char *buf, const model *m) {
    static const char alpha[] = "ab.ab.]^-\\*?[";
    if (m->n && rnd(2) == 0) { /* a pattern with its metacharacters swapped out */
        const refpat *r = &m->p[rnd(m->n)];
        size_t len = 0;
        for (size_t i = 0; i < r->plen && len < MAXNAME; i++) {
            char c = r->pat[i];
            if (c == '*') {
                size_t k = rnd(3);
                while (k-- && len < MAXNAME) buf[len++] = "ab."[rnd(3)];
            } else if (c == '?' || c == '[' || c == ']' || c == '\\') {
                buf[len++] = "ab.]"[rnd(4)];
            } else {
                buf[len++] = c;
            }
        }
        return len;
    }
    size_t len = rnd(MAXNAME + 1);
    for (size_t i = 0; i < len; i++) buf[i] = alpha[rnd(sizeof alpha - 1)];
    return len;
}

/* Checks that patindex_match reports exactly the present patterns that
 * glob_match accepts, each once; returns the number of mismatching names. */
static int check_agreement(patindex *ix, model *m, size_t nnames) {
    int failures = 0;
    for (size_t t = 0; t < nnames; t++) {
        char name[MAXNAME];
        size_t nlen = random_name(name, m);
        clear_seen(m);
        size_t got = patindex_match(ix, name, nlen, record_cb, m);
        size_t want = 0;
        int ok = !m->bad && got == m->reports;
        for (size_t i = 0; i < m->n; i++) {
            refpat *r = &m->p[i];
            int match = r->present && glob_match(r->pat, r->plen, name, nlen);
            want += (size_t)match;
            if (r->seen != match) {
                ok = 0;
                if (failures < 5)
                    fprintf(stderr, "    name '%.*s' pattern '%.*s': reported %d times, glob_match %d\n", (int)nlen,
                            name, (int)r->plen, r->pat, r->seen, match);
            }
        }
        if (got != want) ok = 0;
        failures += !ok;
    }
    return failures;
}

/* Builds a model of up to n distinct random patterns, all added to ix. */
static void build_model(patindex *ix, model *m, size_t n) {
    m->p = calloc(n, sizeof *m->p);
    m->n = 0;
    for (size_t t = 0; t < n * 4 && m->n < n; t++) {
        refpat *r = &m->p[m->n];
        r->plen = random_pattern(r->pat);
        int dup = 0;
        for (size_t i = 0; i < m->n && !dup; i++)
            dup = m->p[i].plen == r->plen && memcmp(m->p[i].pat, r->pat, r->plen) == 0;
        int rc = patindex_add(ix, r->pat, r->plen, r);
        if (dup) {
            if (rc != 0) fprintf(stderr, "    duplicate '%.*s' added again\n", (int)r->plen, r->pat);
            continue;
        }
        if (rc != 1) fprintf(stderr, "    '%.*s' not added (%d)\n", (int)r->plen, r->pat, rc);
        r->present = 1;
        m->n++;
    }
}

/* Number of present patterns in the model. */
static size_t present_count(const model *m) {
    size_t c = 0;
    for (size_t i = 0; i < m->n; i++) c += (size_t)m->p[i].present;
    return c;
}

TEST(random_agreement_with_plain_loop) {
    patindex *ix = patindex_new();
    model m;
    build_model(ix, &m, 3000);
    CHECK(m.n > 2000);
    CHECK(patindex_count(ix) == m.n);
    CHECKF(check_agreement(ix, &m, 3000) == 0, "after adding %zu patterns", m.n);

    /* Remove a random half, check; put some back, check; remove all. */
    for (size_t i = 0; i < m.n; i++) {
        if (rnd(2)) continue;
        refpat *r = &m.p[i];
        CHECK(patindex_remove(ix, r->pat, r->plen) == r);
        CHECK(patindex_remove(ix, r->pat, r->plen) == NULL);
        r->present = 0;
    }
    CHECK(patindex_count(ix) == present_count(&m));
    CHECKF(check_agreement(ix, &m, 3000) == 0, "after removals");
    for (size_t i = 0; i < m.n; i++) {
        refpat *r = &m.p[i];
        if (r->present || rnd(3)) continue;
        CHECK(patindex_add(ix, r->pat, r->plen, r) == 1);
        r->present = 1;
    }
    CHECK(patindex_count(ix) == present_count(&m));
    CHECKF(check_agreement(ix, &m, 3000) == 0, "after re-adding");
    for (size_t i = 0; i < m.n; i++) {
        refpat *r = &m.p[i];
        CHECK(patindex_get(ix, r->pat, r->plen) == (r->present ? r : NULL));
        if (r->present) CHECK(patindex_remove(ix, r->pat, r->plen) == r);
        r->present = 0;
    }
    CHECK(patindex_count(ix) == 0);
    CHECKF(check_agreement(ix, &m, 200) == 0, "when empty");
    patindex_free(ix);
    free(m.p);
}

TEST(foreach_visits_each_pattern_once) {
    patindex *ix = patindex_new();
    model m;
    build_model(ix, &m, 1000);
    clear_seen(&m);
    patindex_foreach(ix, record_cb, &m);
    CHECK(!m.bad);
    CHECK(m.reports == m.n);
    for (size_t i = 0; i < m.n; i++) CHECKF(m.p[i].seen == 1, "'%.*s'", (int)m.p[i].plen, m.p[i].pat);
    patindex_free(ix);
    free(m.p);
}

/* Counts calls in ctx[0] (a size_t[2]); stops when the count reaches ctx[1]. */
static int count_cb(void *udata, const char *pat, size_t plen, void *ctx) {
    (void)udata, (void)pat, (void)plen;
    size_t *calls = ctx;
    return ++calls[0] == calls[1];
}

TEST(duplicates_get_remove_count) {
    patindex *ix = patindex_new();
    int a, b, c, d;
    CHECK(patindex_count(ix) == 0);
    CHECK(patindex_add(ix, S("news.*"), &a) == 1);
    CHECK(patindex_add(ix, S("news.*"), &b) == 0); /* stored once, udata kept */
    CHECK(patindex_get(ix, S("news.*")) == &a);
    CHECK(patindex_add(ix, S("*.news"), &b) == 1);
    CHECK(patindex_add(ix, S("a\0*"), &c) == 1); /* binary, NUL included */
    CHECK(patindex_add(ix, S("a\0b*"), &d) == 1);
    CHECK(patindex_add(ix, S("a\0*"), &d) == 0);
    CHECK(patindex_count(ix) == 4);
    CHECK(patindex_get(ix, S("a\0*")) == &c);
    CHECK(patindex_get(ix, S("a")) == NULL);
    CHECK(patindex_get(ix, S("news.")) == NULL);
    CHECK(patindex_remove(ix, S("news.")) == NULL);
    CHECK(patindex_remove(ix, S("news.*")) == &a);
    CHECK(patindex_remove(ix, S("news.*")) == NULL);
    CHECK(patindex_get(ix, S("news.*")) == NULL);
    CHECK(patindex_count(ix) == 3);
    CHECK(patindex_add(ix, S("news.*"), &d) == 1);
    CHECK(patindex_get(ix, S("news.*")) == &d);
    size_t calls[2] = {0, 0};
    CHECK(patindex_match(ix, S("a\0bc"), count_cb, calls) == 2);
    CHECK(patindex_match(ix, S("a"), count_cb, calls) == 0);
    patindex_free(ix);
}

TEST(match_kinds_and_early_stop) {
    patindex *ix = patindex_new();
    int u;
    static const char *pats[] = {"orders.*",  "orders.*.v1", "*.v1", "*",     "*.*",    "?rders.created.v1",
                                 "[o]rders*", "orders.created.v1", "\\orders*", "o*1", "orders.created.v2"};
    size_t npats = sizeof pats / sizeof pats[0];
    for (size_t i = 0; i < npats; i++) CHECK(patindex_add(ix, pats[i], strlen(pats[i]), &u) == 1);
    size_t calls[2] = {0, 0};
    CHECK(patindex_match(ix, S("orders.created.v1"), count_cb, calls) == npats - 1);
    CHECK(calls[0] == npats - 1);
    calls[0] = 0, calls[1] = 3;
    CHECK(patindex_match(ix, S("orders.created.v1"), count_cb, calls) == 3);
    CHECK(calls[0] == 3);
    calls[0] = 0, calls[1] = 1;
    CHECK(patindex_match(ix, S("orders.created.v1"), count_cb, calls) == 1);
    calls[0] = 0, calls[1] = 5;
    patindex_foreach(ix, count_cb, calls);
    CHECK(calls[0] == 5);
    calls[0] = 0, calls[1] = 0;
    CHECK(patindex_match(ix, S(""), count_cb, calls) == 0); /* Redis: `*` does not match "" */
    CHECK(patindex_add(ix, S(""), &u) == 1);
    CHECK(patindex_match(ix, S(""), count_cb, calls) == 1);
    CHECK(patindex_match(ix, S("x"), count_cb, calls) == 1); /* just `*` */

    /* Malformed classes: the trailing `c` is inside the class, not a suffix. */
    CHECK(patindex_add(ix, S("*[a\\]c"), &u) == 1);
    CHECK(patindex_add(ix, S("*[a-]c"), &u) == 1);
    CHECK(patindex_add(ix, S("*[a-]]c"), &u) == 1); /* this one's `c` is */
    calls[0] = 0, calls[1] = 0;
    CHECK(patindex_match(ix, S("xa"), count_cb, calls) == 3); /* *, *[a\]c, *[a-]c */
    CHECK(patindex_match(ix, S("xa]c"), count_cb, calls) == 4); /* and *[a-]]c */
    patindex_free(ix);
}

TEST(many_key_lengths_come_and_go) {
    /* 60 prefix lengths and 60 suffix lengths, then all removed. */
    patindex *ix = patindex_new();
    char pat[70], name[70];
    int u;
    for (int round = 0; round < 2; round++) {
        for (size_t k = 1; k <= 60; k++) {
            memset(pat, 'x', k);
            pat[k] = '*';
            CHECK(patindex_add(ix, pat, k + 1, &u) == 1);
            pat[0] = '*';
            memset(pat + 1, 'y', k);
            CHECK(patindex_add(ix, pat, k + 1, &u) == 1);
        }
        CHECK(patindex_count(ix) == 120);
        size_t calls[2] = {0, 0};
        memset(name, 'x', 30);
        CHECK(patindex_match(ix, name, 30, count_cb, calls) == 30);
        memset(name, 'y', 45);
        CHECK(patindex_match(ix, name, 45, count_cb, calls) == 45);
        for (size_t k = 60; k >= 1; k--) {
            memset(pat, 'x', k);
            pat[k] = '*';
            CHECK(patindex_remove(ix, pat, k + 1) == &u);
            pat[0] = '*';
            memset(pat + 1, 'y', k);
            CHECK(patindex_remove(ix, pat, k + 1) == &u);
        }
        CHECK(patindex_count(ix) == 0);
        CHECK(patindex_match(ix, name, 45, count_cb, calls) == 0);
    }
    patindex_free(ix);
}

/* --- callbacks that change the index ---------------------------------------- */

typedef struct mutate_ctx {
    patindex *ix;
    size_t calls;
    size_t nested;
    int dup; /* a pattern was reported twice */
    char seen[64][16];
    size_t nseen;
} mutate_ctx;

/* Records pat in c->seen, flagging a second report of the same pattern. */
static void note_seen(mutate_ctx *c, const char *pat, size_t plen) {
    for (size_t i = 0; i < c->nseen; i++)
        if (strlen(c->seen[i]) == plen && memcmp(c->seen[i], pat, plen) == 0) c->dup = 1;
    if (c->nseen < 64 && plen < 16) {
        memcpy(c->seen[c->nseen], pat, plen);
        c->seen[c->nseen++][plen] = '\0';
    }
}

/* Removes every pattern it is shown plus some others in the same buckets. */
static int remove_cb(void *udata, const char *pat, size_t plen, void *ctx) {
    (void)udata;
    mutate_ctx *c = ctx;
    c->calls++;
    note_seen(c, pat, plen);
    char copy[16];
    memcpy(copy, pat, plen);
    CHECK(patindex_remove(c->ix, copy, plen) != NULL);
    CHECK(patindex_get(c->ix, copy, plen) == NULL);
    patindex_remove(c->ix, S("ab*"));
    patindex_remove(c->ix, S("ab?"));
    patindex_remove(c->ix, S("*bc"));
    patindex_remove(c->ix, S("*"));
    return 0;
}

/* Adds patterns with new key lengths (and one that matches), and runs a
 * nested match on the same index. */
static int add_cb(void *udata, const char *pat, size_t plen, void *ctx) {
    mutate_ctx *c = ctx;
    c->calls++;
    note_seen(c, pat, plen);
    static const char *more[] = {"a*", "abcd*", "abcdefgh*", "q*", "*c", "*zbc", "z*", "abc"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) patindex_add(c->ix, more[i], strlen(more[i]), udata);
    if (c->nested++ < 2) {
        size_t calls[2] = {0, 0};
        CHECK(patindex_match(c->ix, S("abc"), count_cb, calls) >= 1);
    }
    return 0;
}

TEST(callbacks_may_add_and_remove) {
    static const char *pats[] = {"ab*", "ab?", "abc", "a?c", "*bc", "*", "[a]bc", "*c", "abx*", "zz*", "*zz"};
    size_t npats = sizeof pats / sizeof pats[0];
    int u;

    patindex *ix = patindex_new();
    for (size_t i = 0; i < npats; i++) CHECK(patindex_add(ix, pats[i], strlen(pats[i]), &u) == 1);
    mutate_ctx c = {.ix = ix};
    size_t n = patindex_match(ix, S("abc"), remove_cb, &c);
    CHECK(!c.dup);
    CHECK(n == c.calls);
    CHECK(n >= 1 && n <= 8);
    CHECK(patindex_count(ix) == 3); /* abx*, zz*, *zz */
    CHECK(patindex_get(ix, S("abx*")) == &u);
    size_t calls[2] = {0, 0};
    CHECK(patindex_match(ix, S("abc"), count_cb, calls) == 0);
    CHECK(patindex_match(ix, S("abxc"), count_cb, calls) == 1);
    patindex_free(ix);

    ix = patindex_new();
    for (size_t i = 0; i < npats; i++) CHECK(patindex_add(ix, pats[i], strlen(pats[i]), &u) == 1);
    mutate_ctx c2 = {.ix = ix};
    n = patindex_match(ix, S("abc"), add_cb, &c2);
    CHECK(!c2.dup);
    CHECK(n == c2.calls);
    CHECK(n >= 8); /* the 8 original matches, maybe some new ones */
    CHECK(patindex_get(ix, S("abcdefgh*")) == &u);
    CHECK(patindex_count(ix) == npats + 6); /* `abc` and `*c` were there already */
    calls[0] = 0;
    CHECK(patindex_match(ix, S("abc"), count_cb, calls) == 9); /* the 8 and `a*` */
    patindex_free(ix);
}

/* Adds patterns with shorter prefixes and suffixes than the one being
 * reported (new key lengths sorted before the current one). */
static int add_shorter_cb(void *udata, const char *pat, size_t plen, void *ctx) {
    mutate_ctx *c = ctx;
    c->calls++;
    note_seen(c, pat, plen);
    static const char *more[] = {"a*", "ab*", "*c", "*bc", "?"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) patindex_add(c->ix, more[i], strlen(more[i]), udata);
    return 0;
}

TEST(callback_adding_shorter_keys_reports_nothing_twice) {
    int u;
    patindex *ix = patindex_new();
    CHECK(patindex_add(ix, S("abcd*"), &u) == 1);
    CHECK(patindex_add(ix, S("*abcd"), &u) == 1);
    mutate_ctx c = {.ix = ix};
    size_t n = patindex_match(ix, S("abcd"), add_shorter_cb, &c);
    CHECK(!c.dup);
    CHECK(n == c.calls);
    CHECK(n >= 2);
    CHECK(patindex_count(ix) == 7);
    size_t calls[2] = {0, 0};
    CHECK(patindex_match(ix, S("abcd"), count_cb, calls) == 4); /* a*, ab*, abcd*, *abcd */
    CHECK(patindex_match(ix, S("abc"), count_cb, calls) == 4);  /* a*, ab*, *c, *bc */
    patindex_free(ix);
}

/* Removes the pattern it is shown (as router_free-like teardown might). */
static int remove_all_cb(void *udata, const char *pat, size_t plen, void *ctx) {
    patindex *ix = ctx;
    char copy[MAXPAT];
    memcpy(copy, pat, plen);
    CHECK(patindex_remove(ix, copy, plen) == udata);
    return 0;
}

TEST(foreach_callback_may_remove) {
    patindex *ix = patindex_new();
    model m;
    build_model(ix, &m, 500);
    patindex_foreach(ix, remove_all_cb, ix);
    CHECK(patindex_count(ix) == 0);
    size_t calls[2] = {0, 0};
    patindex_foreach(ix, count_cb, calls);
    CHECK(calls[0] == 0);
    patindex_free(ix);
    free(m.p);
}

TEST(many_idle_patterns_skip_by_prefix) {
    /* The performance scenario of DESIGN.md decision 4, as a correctness test. */
    patindex *ix = patindex_new();
    char pat[32];
    int u;
    for (int i = 0; i < 10000; i++) {
        int len = snprintf(pat, sizeof pat, "idle.%d.*", i);
        CHECK(patindex_add(ix, pat, (size_t)len, &u) == 1);
    }
    CHECK(patindex_add(ix, S("orders.*"), &u) == 1);
    size_t calls[2] = {0, 0};
    CHECK(patindex_match(ix, S("orders.created.v1.eu"), count_cb, calls) == 1);
    CHECK(patindex_match(ix, S("idle.42.x"), count_cb, calls) == 1);
    CHECK(patindex_match(ix, S("idle.42"), count_cb, calls) == 0);
    patindex_free(ix);
}

UNIT_MAIN()
