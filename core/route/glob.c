/* glob.c -- Redis's glob matching (see glob.h), without its exponential
 * worst case.
 *
 * Semantics are those of stringmatchlen() in Redis 7.0 (src/util.c, with
 * nocase = 0, as PUBLISH uses it), checked against a real redis-server 7.0.15:
 *
 *   - `*` matches any run of bytes, `?` any one byte, `\x` the byte x, any
 *     other byte itself (so `]`, `^` and `-` are literals outside a class).
 *   - `[...]`: an optional leading `^` negates; `\x` is the literal x; `a-z`
 *     is a range, either order; a `]` right after `[` (or `[^`) closes an
 *     empty class. A range end is taken verbatim, so `[a-]` is the range
 *     `]`..`a` and the class carries on. Range bounds compare as *signed*
 *     chars, as Redis does on x86-64: `[a-\xc0]` covers 0xc0..0xff and
 *     0x00..'a'.
 *   - Malformed patterns: an unterminated `[` acts as if closed at the end of
 *     the pattern (so a lone trailing `[` never matches and a trailing `[^`
 *     matches any byte); a trailing `\` matches a literal `\`, also inside an
 *     unterminated class.
 *   - Quirks of Redis's loop kept here: an empty name matches only the empty
 *     pattern (not even `*`), and a pattern with more than 1000 `*` groups
 *     that are followed by something (Redis's recursion-depth guard) never
 *     matches.
 *
 * Redis recurses at every `*` (exponential without its skipLongerMatches
 * cut-off; CVE-2024-31228 then capped that recursion at 1000 levels, the
 * guard kept above). Two matchers here, same answers:
 *
 *   - glob_match_backtrack: a single pass remembers only the last `*` seen
 *     and, on a mismatch, lets that star swallow one more byte and retries:
 *     the classic wildcard algorithm, exact because every other element
 *     consumes exactly one byte. O(plen + nlen) typically, but O(plen * nlen)
 *     for `*aaaa...ab?` against `aaaa...`.
 *   - glob_match_nfa: the pattern as a shift-and automaton over its m
 *     single-byte elements (state j: the first j matched; a `*` before
 *     element j+1 is a self-loop on state j), all states advanced at once as
 *     a bitset: O(m/64 + 1) word operations per name byte, plus O(plen) per
 *     distinct byte of the name to build that byte's mask. Linear in the name.
 *
 * glob_match runs the backtracking pass under a budget of a few steps per
 * byte and hands the pattern to the automaton when it runs out, so common
 * patterns keep the cheap path and no pattern costs more than
 * O(plen + nlen * (plen / 64 + 1)). */
#include "glob.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Redis's range bounds are plain (signed on x86-64) chars: the byte b as a
 * signed char, without relying on implementation-defined conversion. */
static int as_signed(unsigned char b) { return b < 128 ? (int)b : (int)b - 256; }

/* Tests byte c against the class whose body starts at p[i] (just after `[`).
 * Sets *matched and returns the index just past the class (for a malformed,
 * unterminated class: plen). Which bytes the class spans never depends on c. */
static size_t class_match(const unsigned char *p, size_t plen, size_t i, unsigned char c, int *matched) {
    int neg = 0, m = 0;
    if (i < plen && p[i] == '^') {
        neg = 1;
        i++;
    }
    for (;;) {
        if (plen - i >= 2 && p[i] == '\\') { /* escaped member */
            i++;
            if (p[i] == c) m = 1;
        } else if (i < plen && p[i] == ']') {
            break;
        } else if (i >= plen) { /* unterminated: ends with the pattern */
            i--;
            break;
        } else if (plen - i >= 3 && p[i + 1] == '-') { /* range, either order */
            int lo = as_signed(p[i]), hi = as_signed(p[i + 2]), x = as_signed(c);
            if (lo > hi) {
                int t = lo;
                lo = hi;
                hi = t;
            }
            i += 2;
            if (x >= lo && x <= hi) m = 1;
        } else if (p[i] == c) {
            m = 1;
        }
        i++;
    }
    *matched = neg ? !m : m;
    return i + 1;
}

/* Tests the single-byte element at p[i] (anything but `*`) against c. Sets
 * *next to the index past the element; returns 1 if c matches it. */
static int element_match(const unsigned char *p, size_t plen, size_t i, unsigned char c, size_t *next) {
    int m;
    switch (p[i]) {
    case '?':
        *next = i + 1;
        return 1;
    case '[':
        *next = class_match(p, plen, i + 1, c, &m);
        return m;
    case '\\':
        if (plen - i >= 2) {
            *next = i + 2;
            return p[i + 1] == c;
        }
        *next = i + 1; /* trailing backslash: a literal `\` */
        return c == '\\';
    default:
        *next = i + 1;
        return p[i] == c;
    }
}

/* The backtracking pass: 1 if name matches pat, 0 if not, -1 if it took more
 * than budget steps (budget SIZE_MAX: no limit). */
static int match_backtrack(const unsigned char *p, size_t plen, const unsigned char *s, size_t nlen, size_t budget) {
    size_t pi = 0, si = 0;
    size_t star_pi = SIZE_MAX, star_si = 0; /* resume point after the last `*` */
    unsigned groups = 0;

    if (nlen == 0) return plen == 0; /* Redis never enters its loop */
    while (si < nlen) {
        if (budget-- == 0) return -1;
        if (pi < plen && p[pi] == '*') {
            while (pi < plen && p[pi] == '*') pi++;
            if (pi == plen) return 1; /* a final star takes the rest */
            if (++groups > 1000) return 0; /* Redis's nesting guard */
            star_pi = pi;
            star_si = si;
            continue;
        }
        if (pi < plen) {
            size_t next;
            if (element_match(p, plen, pi, s[si], &next)) {
                pi = next;
                si++;
                continue;
            }
        }
        if (star_pi == SIZE_MAX) return 0;
        pi = star_pi; /* the last star takes one more byte */
        si = ++star_si;
    }
    while (pi < plen && p[pi] == '*') pi++;
    return pi == plen;
}

/* 1 if name matches pat (the backtracking pass, unbounded): the reference
 * the automaton is tested against. */
int glob_match_backtrack(const char *pat, size_t plen, const char *name, size_t nlen) {
    return match_backtrack((const unsigned char *)pat, plen, (const unsigned char *)name, nlen, SIZE_MAX);
}

/* The automaton: 1 if name matches pat, 0 if not, -1 out of memory. */
static int match_nfa(const unsigned char *p, size_t plen, const unsigned char *s, size_t nlen) {
    if (nlen == 0) return plen == 0;
    size_t m = 0, groups = 0;
    for (size_t i = 0; i < plen;) { /* count elements and non-final star groups */
        if (p[i] == '*') {
            while (i < plen && p[i] == '*') i++;
            if (i < plen) groups++;
            continue;
        }
        element_match(p, plen, i, 0, &i);
        m++;
    }
    if (groups > 1000) return 0; /* Redis's nesting guard: the match never gets past it */

    size_t words = m / 64 + 1; /* states 0..m */
    size_t *elem = malloc(m * sizeof *elem + 1);
    uint64_t *mem = calloc((256 + 3) * words, sizeof *mem);
    unsigned char *built = calloc(256, 1);
    if (!elem || !mem || !built) {
        free(elem);
        free(mem);
        free(built);
        return -1;
    }
    uint64_t *loop = mem, *d = mem + words, *t = mem + 2 * words, *masks = mem + 3 * words;
    size_t j = 0;
    for (size_t i = 0; i < plen;) { /* element starts; self-loops where stars stand */
        if (p[i] == '*') {
            while (i < plen && p[i] == '*') i++;
            loop[j / 64] |= 1ULL << (j % 64);
            continue;
        }
        elem[j++] = i;
        element_match(p, plen, i, 0, &i);
    }

    int result = 0;
    d[0] = 1;
    for (size_t si = 0; si < nlen; si++) {
        unsigned char c = s[si];
        uint64_t *b = masks + (size_t)c * words;
        if (!built[c]) { /* bit j: element j accepts c */
            for (size_t k = 0; k < m; k++) {
                size_t next;
                if (element_match(p, plen, elem[k], c, &next)) b[k / 64] |= 1ULL << (k % 64);
            }
            built[c] = 1;
        }
        uint64_t carry = 0, any = 0;
        for (size_t w = 0; w < words; w++) {
            uint64_t x = d[w] & b[w];
            t[w] = (x << 1) | carry | (d[w] & loop[w]);
            carry = x >> 63;
            any |= t[w];
        }
        uint64_t *swap = d;
        d = t;
        t = swap;
        if (!any) goto done;
        if ((d[m / 64] & loop[m / 64]) >> (m % 64) & 1) { /* at the final star: the rest matches */
            result = 1;
            goto done;
        }
    }
    result = (int)(d[m / 64] >> (m % 64) & 1);
done:
    free(elem);
    free(mem);
    free(built);
    return result;
}

/* 1 if name matches pat (the automaton; the backtracking pass if memory for
 * the automaton cannot be had). */
int glob_match_nfa(const char *pat, size_t plen, const char *name, size_t nlen) {
    int r = match_nfa((const unsigned char *)pat, plen, (const unsigned char *)name, nlen);
    return r >= 0 ? r : glob_match_backtrack(pat, plen, name, nlen);
}

/* 1 if name matches pat under Redis's rules (see the top of this file),
 * else 0: the cheap pass first, the automaton when that gets expensive. */
int glob_match(const char *pat, size_t plen, const char *name, size_t nlen) {
    const unsigned char *p = (const unsigned char *)pat, *s = (const unsigned char *)name;
    /* a pattern without special bytes (a handler subscribing to one name)
     * matches only itself: one comparison instead of a pass per byte */
    size_t i = 0;
    while (i < plen && p[i] != '*' && p[i] != '?' && p[i] != '[' && p[i] != '\\') i++;
    if (i == plen) return plen == nlen && memcmp(p, s, plen) == 0;
    int r = match_backtrack(p, plen, s, nlen, 2 * (plen + nlen) + 64);
    return r >= 0 ? r : glob_match_nfa(pat, plen, name, nlen);
}

/* Returns the number of leading bytes of pat before the first `*`, `?`, `[`
 * or `\`; every name pat matches starts with them. */
size_t glob_literal_prefix(const char *pat, size_t plen) {
    size_t i = 0;
    while (i < plen && pat[i] != '*' && pat[i] != '?' && pat[i] != '[' && pat[i] != '\\') i++;
    return i;
}
