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
 * cut-off). Here a single pass remembers only the last `*` seen and, on a
 * mismatch, lets that star swallow one more byte and retries: the classic
 * wildcard algorithm, exact because every other element consumes exactly one
 * byte. Work is O(plen * nlen) in the worst case, O(plen + nlen) typically. */
#include "glob.h"

#include <stdint.h>

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

/* 1 if name matches pat under Redis's rules (see the top of this file),
 * else 0; O(plen * nlen) at worst. */
int glob_match(const char *pat, size_t plen, const char *name, size_t nlen) {
    const unsigned char *p = (const unsigned char *)pat, *s = (const unsigned char *)name;
    size_t pi = 0, si = 0;
    size_t star_pi = SIZE_MAX, star_si = 0; /* resume point after the last `*` */
    unsigned groups = 0;

    if (nlen == 0) return plen == 0; /* Redis never enters its loop */
    while (si < nlen) {
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

/* Returns the number of leading bytes of pat before the first `*`, `?`, `[`
 * or `\`; every name pat matches starts with them. */
size_t glob_literal_prefix(const char *pat, size_t plen) {
    size_t i = 0;
    while (i < plen && pat[i] != '*' && pat[i] != '?' && pat[i] != '[' && pat[i] != '\\') i++;
    return i;
}
