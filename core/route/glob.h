/* glob.h -- Redis's glob matching (the semantics of PSUBSCRIBE patterns).
 *
 * `*` any run of bytes (including none), `?` any one byte, `[abc]` a set,
 * `[^a]` a negated set, `[a-z]` a range (either order), `\x` the literal x.
 * Matching is byte-wise and case-sensitive; names and patterns may contain any
 * byte, including NUL. These are exactly the rules of Redis's stringmatchlen,
 * including its handling of malformed patterns (an unterminated `[` or a
 * trailing `\`). */
#ifndef LUAHUB_GLOB_H
#define LUAHUB_GLOB_H

#include <stddef.h>

/* 1 if `name` matches `pat`, else 0. Work is linear in the name for a given
 * pattern: at most O(plen + nlen * (plen / 64 + 1)), never exponential. */
int glob_match(const char *pat, size_t plen, const char *name, size_t nlen);

/* The two matchers glob_match chooses between (same answers; for tests):
 * the backtracking pass, O(plen * nlen) at worst, and the bit-parallel
 * automaton, O(plen + nlen * (plen / 64 + 1)) always. */
int glob_match_backtrack(const char *pat, size_t plen, const char *name, size_t nlen);
int glob_match_nfa(const char *pat, size_t plen, const char *name, size_t nlen);

/* Length of the literal prefix of `pat`: the bytes before the first `*`, `?`,
 * `[` or `\`. Every name the pattern matches starts with those bytes. */
size_t glob_literal_prefix(const char *pat, size_t plen);

#endif
