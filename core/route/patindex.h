/* patindex.h -- an index of glob patterns, so that finding the patterns that
 * match a name costs time in the patterns that could match it, not in every
 * pattern subscribed.
 *
 * Each pattern carries an opaque `void *` (the router's per-pattern entry).
 * patindex_match calls back once per stored pattern that matches the name,
 * in no particular order. Adding, removing and matching never scan patterns
 * that are ruled out by the index (see patindex.c's top comment for the
 * scheme and its worst case). The index copies pattern bytes; it never
 * frees the udata pointers. */
#ifndef LUAHUB_PATINDEX_H
#define LUAHUB_PATINDEX_H

#include <stddef.h>

typedef struct patindex patindex;

/* Called for each matching pattern; return non-zero to stop early. */
typedef int (*patindex_cb)(void *udata, const char *pat, size_t plen, void *ctx);

patindex *patindex_new(void);
void patindex_free(patindex *ix);

/* Adds pattern -> udata. Returns 1 if added, 0 if the pattern was already
 * present (udata unchanged), -1 on allocation failure. */
int patindex_add(patindex *ix, const char *pat, size_t plen, void *udata);

/* The udata stored for exactly this pattern, or NULL. */
void *patindex_get(patindex *ix, const char *pat, size_t plen);

/* Removes the pattern. Returns its udata, or NULL if it was not present. */
void *patindex_remove(patindex *ix, const char *pat, size_t plen);

size_t patindex_count(const patindex *ix);

/* Calls cb for every pattern that matches name. Returns how many matched
 * (up to the one that stopped the walk). */
size_t patindex_match(patindex *ix, const char *name, size_t nlen, patindex_cb cb, void *ctx);

/* Calls cb for every pattern (used by PUBSUB-style listings); order unspecified. */
void patindex_foreach(patindex *ix, patindex_cb cb, void *ctx);

#endif
