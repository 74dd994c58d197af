/* fuzz_glob.c -- libFuzzer target for route/glob.c: glob_match never
 * crashes, and it, the backtracking pass and the automaton all agree with a
 * plain port of Redis's stringmatchlen (src/util.c, nocase 0, with the
 * CVE-2022-36021 skipLongerMatches cut-off and the CVE-2024-31228 nesting
 * guard). Input: 2 bytes of pattern length, the pattern, then the name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route/glob.h"

/* Redis's matcher, recursion and all. pattern must be NUL-terminated past
 * patternLen (Redis's strings are sds), as it reads one byte ahead. */
static int redis_match(const char *pattern, int patternLen, const char *string, int stringLen, int *skip,
                       int nesting) {
    if (nesting > 1000) return 0;
    while (patternLen && stringLen) {
        switch (pattern[0]) {
        case '*':
            while (patternLen && pattern[1] == '*') {
                pattern++;
                patternLen--;
            }
            if (patternLen == 1) return 1;
            while (stringLen) {
                if (redis_match(pattern + 1, patternLen - 1, string, stringLen, skip, nesting + 1)) return 1;
                if (*skip) return 0;
                string++;
                stringLen--;
            }
            *skip = 1;
            return 0;
        case '?':
            string++;
            stringLen--;
            break;
        case '[': {
            int not, match = 0;
            pattern++;
            patternLen--;
            not = pattern[0] == '^';
            if (not) {
                pattern++;
                patternLen--;
            }
            for (;;) {
                if (pattern[0] == '\\' && patternLen >= 2) {
                    pattern++;
                    patternLen--;
                    if (pattern[0] == string[0]) match = 1;
                } else if (pattern[0] == ']') {
                    break;
                } else if (patternLen == 0) {
                    pattern--;
                    patternLen++;
                    break;
                } else if (patternLen >= 3 && pattern[1] == '-') {
                    int start = (signed char)pattern[0], end = (signed char)pattern[2], c = (signed char)string[0];
                    if (start > end) {
                        int t = start;
                        start = end;
                        end = t;
                    }
                    pattern += 2;
                    patternLen -= 2;
                    if (c >= start && c <= end) match = 1;
                } else if (pattern[0] == string[0]) {
                    match = 1;
                }
                pattern++;
                patternLen--;
            }
            if (not) match = !match;
            if (!match) return 0;
            string++;
            stringLen--;
            break;
        }
        case '\\':
            if (patternLen >= 2) {
                pattern++;
                patternLen--;
            }
            /* fall through */
        default:
            if (pattern[0] != string[0]) return 0;
            string++;
            stringLen--;
            break;
        }
        pattern++;
        patternLen--;
        if (stringLen == 0) {
            while (*pattern == '*') {
                pattern++;
                patternLen--;
            }
            break;
        }
    }
    return patternLen == 0 && stringLen == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t plen = ((size_t)data[0] << 8 | data[1]) % (size - 1);
    const char *name = (const char *)data + 2 + plen;
    size_t nlen = size - 2 - plen;
    char *pat = malloc(plen + 2);
    if (!pat) return 0;
    memcpy(pat, data + 2, plen);
    pat[plen] = pat[plen + 1] = '\0';
    int skip = 0;
    int want = redis_match(pat, (int)plen, name, (int)nlen, &skip, 0);
    int got = glob_match(pat, plen, name, nlen);
    int bt = glob_match_backtrack(pat, plen, name, nlen);
    int nfa = glob_match_nfa(pat, plen, name, nlen);
    if (got != want || bt != want || nfa != want) abort();
    /* a match implies the literal prefix really is one */
    size_t l = glob_literal_prefix(pat, plen);
    if (want && (l > nlen || memcmp(pat, name, l) != 0)) abort();
    free(pat);
    return 0;
}
