/* capture.h -- pub/sub fanned out into durable streams: HUB.STREAM CREATE
 * key CAPTURE pattern ... makes every publish whose name matches a pattern
 * an entry (fields name, data [, msgid]) of stream `key`, in publish order.
 *
 * The capture sits in the router's publish hook (route/router.h), set at
 * start: the patterns are in their own pattern index (route/patindex.h), so
 * a publish that no capture pattern can match costs one count check when
 * no capture exists and one index walk otherwise.
 *
 * A definition (patterns, MAXLEN, MAXAGE, DUPWINDOW, DUPMAX) lives in the
 * stream's opaque capture blob (store.h), persisted with the stream's
 * metadata; capture_rebuild re-reads every blob after each load of the
 * model. De-duplication records are the model's (stream_dedup_*).
 *
 * Retention: MAXLEN keeps the newest n entries, MAXAGE drops entries whose
 * id (ms) is older than the age; both run on every append and once a
 * second. When the entries to drop are only on disk, their ids are read
 * on the reader thread first and the trim follows when the read is back. */
#ifndef LUAHUB_CAPTURE_H
#define LUAHUB_CAPTURE_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "stream.h"

struct router;
typedef struct capture capture;

#define CAPTURE_MSGID_MAX 256         /* bytes of a HUB.PUBLISH message id */
#define CAPTURE_DUPMAX_DEFAULT 100000 /* de-duplication records kept per stream */
#define CAPTURE_DUPMAX_MAX 10000000
#define CAPTURE_SECONDS_MAX 3153600000LL /* 100 years: MAXAGE / DUPWINDOW bound */

/* One definition as HUB.STREAM CREATE gives it. -1 = no limit. */
typedef struct capture_opts {
    long long maxlen, maxage, dupwindow, dupmax; /* dupwindow 0 = no de-duplication */
} capture_opts;

/* What one publish did, for the command that made it (router_publish_ex's
 * arg). */
typedef struct capture_result {
    size_t matched;  /* capture streams whose patterns match the name */
    size_t stored;   /* entries appended */
    int duplicate;   /* a matching stream already had the msgid: nothing stored nor delivered */
    const char *err; /* not stored: the store is unavailable or busy (static text) */
} capture_result;

/* Creates the capture for model m and sets the router's publish hook and
 * the model's free hook; `wake(key)` is called (from an ev_idle, never
 * inside a publish) for each stream that got entries, to wake its blocked
 * readers. NULL if out of memory. */
capture *capture_new(struct ev_loop *loop, streams *m, struct router *r, void (*wake)(const char *key, size_t klen));
void capture_free(capture *cp);

/* Re-reads every stream's capture blob (after streams_load). */
void capture_rebuild(capture *cp);

/* Turns capture on for s (or replaces its definition) and persists it.
 * Returns 0, or -1 if out of memory. */
int capture_define(capture *cp, stream *s, const sstr *pats, size_t npats, const capture_opts *o);

/* 1 with *o filled if s captures, else 0. */
int capture_get(const stream *s, capture_opts *o);
/* Calls fn for each pattern of s's definition. */
void capture_foreach_pattern(const stream *s, void (*fn)(void *ctx, const char *p, size_t n), void *ctx);
size_t capture_npatterns(const stream *s);

typedef struct capture_stats {
    size_t streams, unbounded;               /* capture streams; those with neither MAXLEN nor MAXAGE */
    uint64_t stored, duplicates, not_stored; /* entries appended; publishes withheld; publishes not stored */
} capture_stats;
void capture_get_stats(const capture *cp, capture_stats *out);

#endif
