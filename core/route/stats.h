/* stats.h -- per-event-name traffic statistics: for every name events are
 * published to (and every unicast name called), how many were published,
 * delivered and called, the rate over the last minute and when it was last
 * seen. Operators use it to watch an old versioned name (`orders.created.v1`)
 * trickle to zero before retiring it.
 *
 * Memory is bounded: at most max_names names are tracked; recording a new
 * name past the bound evicts the least recently seen one (an LRU list), and
 * evictions are counted. Recording costs one hash lookup and an O(1) list
 * move.
 *
 * The rate is exact over a sliding window of 60 one-second buckets: the
 * events of the last 60 whole seconds (the current one included), divided by
 * 60. */
#ifndef LUAHUB_STATS_H
#define LUAHUB_STATS_H

#include <stddef.h>
#include <stdint.h>

#define STATS_WINDOW_SECS 60

typedef struct stats stats;

/* A snapshot of one name's counters (stats_foreach). */
typedef struct stats_view {
    const char *name;
    size_t len;
    uint64_t published;   /* events published to the name */
    uint64_t delivered;   /* deliveries made (one per subscriber / group) */
    uint64_t called;      /* HUB.CALL requests to the name */
    uint64_t last_minute; /* events (published + called) in the window */
    double rate;          /* last_minute / 60, events per second */
    double last_seen_ms;  /* ms since the epoch */
} stats_view;

/* A tracker bounded to max_names (>= 1); NULL if out of memory. */
stats *stats_new(size_t max_names);
void stats_free(stats *st);
/* Changes the bound, evicting least recently seen names if now over it. */
void stats_set_max_names(stats *st, size_t max_names);
/* Names longer than max_len bytes are not tracked (only counted, see
 * stats_untracked), so the records hold at most max_names * max_len bytes of
 * names however long the names published are. */
#define STATS_DEFAULT_MAX_NAME_LEN 1024
void stats_set_max_name_len(stats *st, size_t max_len);

/* The hash of a name, as the hub's hash tables (uthash) compute it: the
 * router hashes a channel once for its own lookup and this one. */
unsigned stats_hash(const char *name, size_t len);

/* Records one publish to name (whose stats_hash is hashv) that made
 * `delivered` deliveries, at now_ms (ms since the epoch). Silently does
 * nothing if out of memory. */
void stats_published(stats *st, const char *name, size_t len, unsigned hashv, size_t delivered, double now_ms);
/* Records one unicast call to name (HUB.CALL, hub.call) at the current time. */
void stats_called(stats *st, const char *name, size_t len);

size_t stats_count(const stats *st);     /* names tracked now */
uint64_t stats_evicted(const stats *st); /* names evicted by the bound */
uint64_t stats_untracked(const stats *st); /* events whose name was too long to track */
uint64_t stats_total(const stats *st);   /* events recorded (publishes + calls) */

/* Calls fn for every tracked name matching the glob (all if pat is NULL),
 * sorted by name (bytewise), with counters as of now_ms. fn must not record. */
typedef void (*stats_fn)(const stats_view *v, void *ctx);
void stats_foreach(stats *st, const char *pat, size_t plen, double now_ms, stats_fn fn, void *ctx);

#endif
