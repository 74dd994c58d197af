/* test_glob.c -- glob_match against Redis's stringmatchlen semantics.
 *
 * Every row of the case table was checked against a real redis-server 7.0.15
 * (PSUBSCRIBE the pattern, PUBLISH the name, see whether it is delivered), so
 * the expected column is what Redis does, quirks included. glob.c was also
 * fuzzed against that server (about 3.7 million random pattern/name pairs over
 * metacharacters and binary bytes) with no disagreement. */
#include <stdlib.h>
#include <string.h>

#include "route/glob.h"
#include "unit.h"

/* A string literal with its length (so literals may hold NUL bytes). */
#define S(lit) lit, sizeof(lit) - 1

struct gcase {
    const char *pat;
    size_t plen;
    const char *name;
    size_t nlen;
    int want;
};

/* pattern, name, does Redis deliver? */
static const struct gcase cases[] = {
    {S("hello"), S("hello"), 1},
    {S("hello"), S("hell"), 0},
    {S("hell"), S("hello"), 0},
    {S("hello"), S("Hello"), 0},
    {S(""), S(""), 1},
    {S(""), S("a"), 0},
    {S("a"), S(""), 0},
    {S("a]b"), S("a]b"), 1},
    {S("a^b"), S("a^b"), 1},
    {S("a-b"), S("a-b"), 1},
    {S("*"), S(""), 0},
    {S("**"), S(""), 0},
    {S("*"), S("anything"), 1},
    {S("*"), S("*"), 1},
    {S("a*"), S("a"), 1},
    {S("a*"), S("ab"), 1},
    {S("a*"), S(""), 0},
    {S("*a"), S("a"), 1},
    {S("*a"), S("ba"), 1},
    {S("*a"), S("ab"), 0},
    {S("a*b"), S("ab"), 1},
    {S("a*b"), S("axxb"), 1},
    {S("a*b"), S("axxbc"), 0},
    {S("a*b*c"), S("abc"), 1},
    {S("a*b*c"), S("axbxxc"), 1},
    {S("a*b*c"), S("acb"), 0},
    {S("a**b"), S("ab"), 1},
    {S("a**"), S("a"), 1},
    {S("*.*"), S("a.b"), 1},
    {S("*.*"), S("ab"), 0},
    {S("news.*"), S("news."), 1},
    {S("news.*"), S("news"), 0},
    {S("news.*"), S("news.art.figurative"), 1},
    {S("*b*"), S("abc"), 1},
    {S("*b*"), S("b"), 1},
    {S("*b*"), S("ac"), 0},
    {S("a*a"), S("a"), 0},
    {S("a*a"), S("aa"), 1},
    {S("*ab"), S("aab"), 1},
    {S("*aab"), S("ab"), 0},
    {S("?"), S("a"), 1},
    {S("?"), S(""), 0},
    {S("?"), S("ab"), 0},
    {S("a?c"), S("abc"), 1},
    {S("a?c"), S("ac"), 0},
    {S("?\?"), S("ab"), 1},
    {S("?\?"), S("a"), 0},
    {S("*?"), S("a"), 1},
    {S("?*"), S(""), 0},
    {S("?*"), S("a"), 1},
    {S("*?*"), S("x"), 1},
    {S("[abc]"), S("a"), 1},
    {S("[abc]"), S("c"), 1},
    {S("[abc]"), S("d"), 0},
    {S("[abc]"), S(""), 0},
    {S("[abc]"), S("ab"), 0},
    {S("x[ab]y"), S("xay"), 1},
    {S("x[ab]y"), S("xcy"), 0},
    {S("[^abc]"), S("d"), 1},
    {S("[^abc]"), S("a"), 0},
    {S("[^abc]"), S(""), 0},
    {S("[a-c]"), S("b"), 1},
    {S("[a-c]"), S("a"), 1},
    {S("[a-c]"), S("c"), 1},
    {S("[a-c]"), S("d"), 0},
    {S("[c-a]"), S("b"), 1},
    {S("[c-a]"), S("d"), 0},
    {S("[^a-c]"), S("d"), 1},
    {S("[^a-c]"), S("b"), 0},
    {S("[^c-a]"), S("b"), 0},
    {S("[a-cx]"), S("x"), 1},
    {S("[xa-c]"), S("b"), 1},
    {S("[a-c-e]"), S("-"), 1},
    {S("[a-c-e]"), S("d"), 0},
    {S("[a-c-e]"), S("e"), 1},
    {S("[-a]"), S("-"), 1},
    {S("[a-]"), S("a"), 1},
    {S("[a-]"), S("]"), 1},
    {S("[a-]"), S("^"), 1},
    {S("[a-]"), S("b"), 0},
    {S("[a-]"), S("-"), 0},
    {S("[a-]b"), S("b"), 1},
    {S("[a-]]"), S("a"), 1},
    {S("[a-]]"), S("a]"), 0},
    {S("[]"), S("]"), 0},
    {S("[]"), S(""), 0},
    {S("[]a]"), S("]"), 0},
    {S("[]a]"), S("a]"), 0},
    {S("[]a]"), S("a"), 0},
    {S("[^]"), S("x"), 1},
    {S("[^]"), S(""), 0},
    {S("[^]a"), S("xa"), 1},
    {S("[^]]"), S("]"), 0},
    {S("[^]]"), S("x]"), 1},
    {S("[\\]]"), S("]"), 1},
    {S("[\\]]"), S("\\"), 0},
    {S("[\\^a]"), S("^"), 1},
    {S("[^^]"), S("^"), 0},
    {S("[^^]"), S("a"), 1},
    {S("[a\\-z]"), S("-"), 1},
    {S("[a\\-z]"), S("b"), 0},
    {S("[a\\-z]"), S("z"), 1},
    {S("[*]"), S("*"), 1},
    {S("[*]"), S("a"), 0},
    {S("[?]"), S("?"), 1},
    {S("[?]"), S("a"), 0},
    {S("[[]"), S("["), 1},
    {S("[[]"), S("a"), 0},
    {S("[\\\\]"), S("\\"), 1},
    {S("\\*"), S("*"), 1},
    {S("\\*"), S("a"), 0},
    {S("\\?"), S("?"), 1},
    {S("\\?"), S("a"), 0},
    {S("\\[a]"), S("[a]"), 1},
    {S("\\[a]"), S("a"), 0},
    {S("a\\\\b"), S("a\\b"), 1},
    {S("\\a"), S("a"), 1},
    {S("\\a"), S("\\a"), 0},
    {S("\\\\"), S("\\"), 1},
    {S("["), S("["), 0},
    {S("["), S("a"), 0},
    {S("["), S(""), 0},
    {S("a["), S("a["), 0},
    {S("a["), S("a"), 0},
    {S("[^"), S("x"), 1},
    {S("[^"), S("^"), 1},
    {S("[^"), S(""), 0},
    {S("[^"), S("xy"), 0},
    {S("[abc"), S("a"), 1},
    {S("[abc"), S("c"), 1},
    {S("[abc"), S("d"), 0},
    {S("[abc"), S("[abc"), 0},
    {S("[abc"), S("ab"), 0},
    {S("[^abc"), S("d"), 1},
    {S("[^abc"), S("a"), 0},
    {S("[a-c"), S("b"), 1},
    {S("[a-"), S("a"), 1},
    {S("[a-"), S("-"), 1},
    {S("[a-"), S("b"), 0},
    {S("\\"), S("\\"), 1},
    {S("\\"), S("a"), 0},
    {S("\\"), S(""), 0},
    {S("a\\"), S("a\\"), 1},
    {S("a\\"), S("a"), 0},
    {S("[\\"), S("\\"), 1},
    {S("[\\"), S("a"), 0},
    {S("[a\\"), S("\\"), 1},
    {S("[a\\"), S("a"), 1},
    {S("[\\]"), S("]"), 1},
    {S("[\\]"), S("\\"), 0},
    {S("*["), S("a"), 0},
    {S("*["), S("a["), 0},
    {S("*\\"), S("a\\"), 1},
    {S("*\\"), S("a"), 0},
    {S("x["), S("x"), 0},
    {S("[a-\300]"), S("b"), 0},
    {S("[a-\300]"), S("\001"), 1},
    {S("[a-\300]"), S("\300"), 1},
    {S("[a-\300]"), S("\377"), 1},
    {S("[a-\300]"), S("\277"), 0},
    {S("[\200-\377]"), S("\220"), 1},
    {S("[\200-\377]"), S("a"), 0},
    {S("[\001-\377]"), S("a"), 0},
    {S("[\001-\377]"), S("\000"), 1},
    {S("[\001-\377]"), S("\377"), 1},
    {S("[\001-\177]"), S("a"), 1},
    {S("[\001-\177]"), S("\200"), 0},
    {S("a\000b"), S("a\000b"), 1},
    {S("a\000b"), S("a"), 0},
    {S("a\000b"), S("a\000c"), 0},
    {S("a?b"), S("a\000b"), 1},
    {S("*\000"), S("xyz\000"), 1},
    {S("*\000"), S("xyz"), 0},
    {S("[\000]"), S("\000"), 1},
    {S("[\000]"), S("0"), 0},
    {S("[^\000]"), S("\000"), 0},
    {S("\000*"), S("\000abc"), 1},
    {S("a*"), S("a\000"), 1},
    {S("\377*"), S("\377\376"), 1},
    {S("\377*"), S("\376"), 0},
    {S("[\376\377]"), S("\377"), 1},
    {S("\\\000"), S("\000"), 1},
    {S("[a-c]\000"), S("b\000"), 1},
    /* a `]` or `c` inside a malformed class is no literal suffix */
    {S("*[a\\]c"), S("xa"), 1},
    {S("*[a\\]c"), S("x]"), 1},
    {S("*[a\\]c"), S("xb"), 0},
    {S("*[a-]c"), S("xa"), 1},
    {S("*[a-]c"), S("xc"), 1},
    {S("*[a-]]c"), S("xa"), 0},
    {S("*[a-]]c"), S("xa]c"), 1},
};

TEST(redis_verified_table) {
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        const struct gcase *c = &cases[i];
        int got = glob_match(c->pat, c->plen, c->name, c->nlen);
        CHECKF(got == c->want, "row %zu: pattern '%.*s' name '%.*s': got %d, want %d", i, (int)c->plen, c->pat,
               (int)c->nlen, c->name, got, c->want);
        CHECKF(glob_match_backtrack(c->pat, c->plen, c->name, c->nlen) == c->want, "row %zu (backtrack)", i);
        CHECKF(glob_match_nfa(c->pat, c->plen, c->name, c->nlen) == c->want, "row %zu (automaton)", i);
    }
}

/* Fills buf with n copies of unit (ulen bytes) followed by tail; returns the length. */
static size_t repeat(char *buf, const char *unit, size_t ulen, size_t n, const char *tail) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++, len += ulen) memcpy(buf + len, unit, ulen);
    memcpy(buf + len, tail, strlen(tail));
    return len + strlen(tail);
}

TEST(pathological_star_pattern_is_bounded) {
    /* Exponential for naive recursion; must answer promptly here. */
    char name[100];
    memset(name, 'a', sizeof name);
    CHECK(!glob_match(S("a*a*a*a*a*a*a*a*a*a*a*a*b"), name, sizeof name));
    CHECK(glob_match(S("a*a*a*a*a*a*a*a*a*a*a*a*a"), name, sizeof name));
    CHECK(glob_match(S("a*a*a*a*a*a*a*a*a*a*a*a*"), name, sizeof name));
    CHECK(!glob_match(S("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"), name, sizeof name));

    char big[20000];
    memset(big, 'a', sizeof big);
    char pat[4000];
    size_t plen = repeat(pat, "*a", 2, 999, "*b"); /* 1000 star groups */
    CHECK(!glob_match(pat, plen, big, sizeof big));
    big[sizeof big - 1] = 'b';
    CHECK(glob_match(pat, plen, big, sizeof big));
}

TEST(redis_star_nesting_limit) {
    /* Redis gives up past 1000 nested stars (checked on 7.0.15): a pattern
     * with 1001 star groups followed by something never matches; a 1001st
     * group that ends the pattern is fine. */
    char pat[4000], name[2000];
    memset(name, 'a', sizeof name);
    size_t plen = repeat(pat, "*a", 2, 1000, "");
    CHECK(glob_match(pat, plen, name, 1000));
    plen = repeat(pat, "*a", 2, 1001, "");
    CHECK(!glob_match(pat, plen, name, 1001));
    CHECK(!glob_match(pat, plen, name, 1500));
    plen = repeat(pat, "*a", 2, 1000, "*");
    CHECK(glob_match(pat, plen, name, 1000));
    plen = repeat(pat, "*", 1, 3000, "a"); /* one group, however many stars */
    CHECK(glob_match(pat, plen, name, 5));
    /* the automaton applies the same guard */
    plen = repeat(pat, "*a", 2, 1000, "");
    CHECK(glob_match_nfa(pat, plen, name, 1000));
    plen = repeat(pat, "*a", 2, 1001, "");
    CHECK(!glob_match_nfa(pat, plen, name, 1500));
    plen = repeat(pat, "*a", 2, 1000, "*");
    CHECK(glob_match_nfa(pat, plen, name, 1000));
}

/* The automaton and the backtracking pass agree on random patterns and
 * names (metacharacters, binary bytes, malformed classes and escapes), and
 * glob_match, which switches between them, agrees with both. */
TEST(automaton_agrees_with_backtracking) {
    static const char palpha[] = "ab*?[]^-\\x\x00\xc0\xff";
    static const char nalpha[] = "ab]^-\\x\x00\xc0\xff*?[";
    srand(11);
    for (int t = 0; t < 300000; t++) {
        char pat[24], name[40];
        size_t plen = (size_t)(rand() % 24), nlen = (size_t)(rand() % 40);
        for (size_t i = 0; i < plen; i++) pat[i] = palpha[rand() % (sizeof palpha - 1)];
        for (size_t i = 0; i < nlen; i++) name[i] = nalpha[rand() % (sizeof nalpha - 1)];
        int want = glob_match_backtrack(pat, plen, name, nlen);
        int nfa = glob_match_nfa(pat, plen, name, nlen), got = glob_match(pat, plen, name, nlen);
        CHECKF(nfa == want && got == want, "'%.*s' '%.*s': backtrack %d automaton %d glob_match %d", (int)plen, pat,
               (int)nlen, name, want, nfa, got);
        if (nfa != want) break;
    }
    /* long patterns (more than 64 states: the carry between words) */
    for (int t = 0; t < 3000; t++) {
        char pat[300], name[400];
        size_t plen = 60 + (size_t)(rand() % 240), nlen = (size_t)(rand() % 400);
        for (size_t i = 0; i < plen; i++) pat[i] = "ab?*"[rand() % (t % 2 ? 3 : 4)];
        for (size_t i = 0; i < nlen; i++) name[i] = "ab"[rand() % 2];
        if (t % 3 == 0 && nlen >= plen) /* a name that surely matches a star-less pattern */
            for (size_t i = 0; i < plen; i++) name[i] = pat[i] == '?' || pat[i] == '*' ? 'a' : pat[i];
        int want = glob_match_backtrack(pat, plen, name, nlen);
        CHECKF(glob_match_nfa(pat, plen, name, nlen) == want, "long pattern %d (plen %zu, nlen %zu)", t, plen, nlen);
    }
}

/* The pattern that stalled the backtracking pass for seconds is linear here:
 * `*` a^250 `b?` against a 4 MB name of `a`, many times. */
TEST(long_star_pattern_against_long_name_is_linear) {
    size_t nlen = 4u << 20;
    char *name = malloc(nlen + 2);
    char pat[300];
    CHECK(name != NULL);
    if (!name) return;
    memset(name, 'a', nlen);
    size_t plen = repeat(pat, "*", 1, 1, "");
    plen += repeat(pat + plen, "a", 1, 250, "b?");
    CHECK(!glob_match(pat, plen, name, nlen));
    name[nlen] = 'b';
    name[nlen + 1] = 'z';
    CHECK(glob_match(pat, plen, name, nlen + 2));
    free(name);
}

TEST(every_byte_value) {
    /* ? and * take any byte; a literal byte matches only itself; \x escapes
     * any byte; [x] holds it. */
    for (int b = 0; b < 256; b++) {
        char c = (char)b, pat[3] = {'\\', c, 0}, cls[3] = {'[', c, ']'};
        char two[2] = {c, c};
        CHECKF(glob_match("?", 1, &c, 1), "byte %d", b);
        CHECKF(glob_match("*", 1, two, 2), "byte %d", b);
        if (c != '[') CHECKF(glob_match(&c, 1, &c, 1), "byte %d", b); /* a lone `[` never matches */
        CHECKF(glob_match(pat, 2, &c, 1), "byte %d", b);
        if (c != '^' && c != ']' && c != '\\') CHECKF(glob_match(cls, 3, &c, 1), "byte %d", b);
        char other = (char)(b ^ 1);
        if (c != '*' && c != '?' && c != '[' && c != '\\') CHECKF(!glob_match(&c, 1, &other, 1), "byte %d", b);
    }
}

TEST(literal_prefix) {
    CHECK(glob_literal_prefix(S("news.*")) == 5);
    CHECK(glob_literal_prefix(S("news.sport")) == 10);
    CHECK(glob_literal_prefix(S("*.x")) == 0);
    CHECK(glob_literal_prefix(S("a?b")) == 1);
    CHECK(glob_literal_prefix(S("ab[c]")) == 2);
    CHECK(glob_literal_prefix(S("ab\\*")) == 2);
    CHECK(glob_literal_prefix(S("a]b^c-d")) == 7);
    CHECK(glob_literal_prefix(S("a\0b*")) == 3);
    CHECK(glob_literal_prefix(S("")) == 0);
}

/* The literal prefix really is a prefix of every matching name (random check). */
TEST(literal_prefix_is_sound) {
    static const char alpha[] = "ab.*?[]^-\\";
    srand(7);
    for (int t = 0; t < 20000; t++) {
        char pat[8], name[8];
        size_t plen = (size_t)(rand() % 8), nlen = (size_t)(rand() % 8);
        for (size_t i = 0; i < plen; i++) pat[i] = alpha[rand() % (sizeof alpha - 1)];
        for (size_t i = 0; i < nlen; i++) name[i] = "ab.]-^"[rand() % 6];
        size_t l = glob_literal_prefix(pat, plen);
        if (glob_match(pat, plen, name, nlen))
            CHECKF(l <= nlen && memcmp(pat, name, l) == 0, "'%.*s' '%.*s'", (int)plen, pat, (int)nlen, name);
    }
}

UNIT_MAIN()
