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

/* 1 if `name` matches `pat`, else 0. Bounded work: never exponential. */
int glob_match(const char *pat, size_t plen, const char *name, size_t nlen);

/* Length of the literal prefix of `pat`: the bytes before the first `*`, `?`,
 * `[` or `\`. Every name the pattern matches starts with those bytes. */
size_t glob_literal_prefix(const char *pat, size_t plen);

#endif
