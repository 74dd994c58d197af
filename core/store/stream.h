/* stream.h -- the in-memory model of the durable streams: streams by key,
 * entry ids, the hot window of recent entries, consumer groups, consumers
 * and each group's pending entries list (PEL), trimming. Every mutation goes
 * through a function here, which changes the model and records the same
 * change in the store's current batch (store.h): the model and the database
 * never disagree once the batch commits.
 *
 * What is in memory: per stream its metadata (the store's meta fields), its
 * groups with their consumers and PEL (each pending entry ~100 bytes, at most
 * `stream-max-pending` per group), and the hot window: its most recent
 * entries, contiguous up to the last id. All windows together are bounded by
 * `stream-cache-memory`; past it the oldest entries of the stream with the
 * most window bytes leave memory (only once committed, so the database has
 * them). Entries older than a stream's window ("cold": every id below
 * `cold_below` when `length > hot`) are read back through store_read on the
 * reader thread: stream_cold() either returns rows already read for the
 * asking client, or starts the read and returns 0 (the caller parks the
 * client and runs the command again when `wake` is called).
 *
 * Ids and ranges follow Redis 7.0 (t_stream.c); the functions here take
 * parsed values, the commands (cmd/cmd_stream.c) parse and reply. */
#ifndef LUAHUB_STREAM_H
#define LUAHUB_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "store.h"

#define STREAMID_MAX UINT64_MAX

/* One entry held in memory: its fields encoded as store.h's opaque `fields`
 * (u32 pair count, then per string u32 length + bytes). */
typedef struct sentry {
    uint64_t seq; /* the store batch that added it: evictable once committed */
    uint32_t npairs;
    uint32_t flen;
    char f[];
} sentry;

/* A window slot; e NULL once deleted (a tombstone, compacted later). */
typedef struct wslot {
    streamid id;
    sentry *e;
} wslot;

typedef struct sconsumer {
    char *name;
    size_t nlen;
    int64_t seen_ms, active_ms;
    size_t pending; /* entries of the group's PEL it owns */
    UT_hash_handle hh;
} sconsumer;

/* A pending entry: delivered to `owner`, not acknowledged yet. */
typedef struct snack {
    streamid id;
    sconsumer *owner;
    uint64_t deliveries;
    int64_t time_ms;
} snack;

/* A PEL slot; n NULL once acknowledged (compacted later). */
typedef struct pslot {
    streamid id;
    snack *n;
} pslot;

typedef struct sgroup {
    char *name;
    size_t nlen;
    streamid last_id;
    int64_t entries_read; /* -1: unknown (Redis's SCG_INVALID_ENTRIES_READ) */
    sconsumer *consumers; /* by name, kept in name order (XINFO) */
    pslot *pel;           /* ascending ids */
    size_t pel_head, pel_len, pel_cap, pending;
    UT_hash_handle hh;
} sgroup;

/* A de-duplication record (HUB.PUBLISH ... MSGID): the entry a message id
 * made, and when. Kept per stream in time order (uthash keeps insertion
 * order), so expiring the oldest is O(1) each. */
typedef struct sdedup {
    streamid id;
    int64_t time_ms;
    size_t mlen;
    UT_hash_handle hh;
    char msgid[];
} sdedup;

typedef struct stream {
    uint64_t sid;
    char *key;
    size_t klen;
    store_stream_meta meta; /* last_id, max_deleted_id, first_id, entries_added, length */
    char *capture;          /* meta.capture points here */
    void *cap;              /* the capture module's parsed definition (store/capture.h), or NULL */
    sdedup *dedup;          /* message ids recorded, oldest first */
    size_t ndedup;
    sgroup *groups;         /* by name, in name order */
    size_t ngroups;
    wslot *win; /* the hot window, ascending; win[whead..wlen) */
    size_t whead, wlen, wcap;
    size_t hot;          /* live entries in the window */
    size_t wbytes;       /* bytes the window's entries take */
    streamid cold_below; /* entries below this id may be on disk only */
    uint64_t wseq;       /* the last batch that changed its entries */
    uint64_t cold_version;
    UT_hash_handle hh, hs; /* by key; by sid */
} stream;

typedef struct streams streams;

/* Called when a cold read started for `waiter` has finished (the waiter runs
 * its command again). */
typedef void (*stream_wake_fn)(void *waiter);

streams *streams_new(store *st, size_t cache_bytes, size_t max_pending, stream_wake_fn wake);
/* Frees the model (not the store). NULL is allowed. */
void streams_free(streams *m);
store *streams_store(streams *m);
/* Records written to the store so far: a command compares it before and
 * after to know whether it must gate its reply. */
uint64_t streams_writes(const streams *m);
size_t streams_max_pending(const streams *m);
/* Loads everything from the store (at start, after a recovery): the model
 * is emptied first. Returns 0 or -1 with a malloc'd *err. */
int streams_load(streams *m, char **err);
/* The store committed up to seq: entries become evictable; called from the
 * store's committed callback. */
void streams_committed(streams *m, uint64_t seq);

/* Lookup by key; NULL if none. */
stream *streams_find(streams *m, const char *key, size_t klen);
/* Creates an empty stream (persisted). NULL if out of memory. */
stream *streams_create(streams *m, const char *key, size_t klen);
/* Deletes a stream with everything in it (persisted). */
void streams_delete(streams *m, stream *s);
/* Iteration in creation order (KEYS, SCAN: the cursor is a sid). */
stream *streams_first(streams *m);
stream *streams_next(stream *s);
/* The first stream whose sid >= sid, in creation order, or NULL. */
stream *streams_from_sid(streams *m, uint64_t sid);
size_t streams_count(const streams *m);

/*---- Ids ---------------------------------------------------------------------*/

int streamid_cmp(streamid a, streamid b);
/* a+1 / a-1; -1 on overflow / underflow. */
int streamid_incr(streamid *a);
int streamid_decr(streamid *a);
/* Redis's streamGenericParseIDOrReply: "-", "+" (unless strict), "ms",
 * "ms-seq", and with seq_given non-NULL "ms-*" (then *seq_given = 0).
 * missing_seq fills "ms". Returns 0 or -1 (invalid). */
int streamid_parse(const char *p, size_t n, uint64_t missing_seq, int strict, int *seq_given, streamid *out);
/* Formats "ms-seq" into buf (at least 44 bytes); returns the length. */
size_t streamid_fmt(streamid id, char *buf);

/*---- Entries -----------------------------------------------------------------*/

/* Generates the id XADD would use (`want` NULL: auto, else explicit with
 * seq_given) for now_ms. Returns 0, -1 for "equal or smaller than the top
 * item", -2 for an exhausted stream. */
int stream_next_id(const stream *s, const streamid *want, int seq_given, uint64_t now_ms, streamid *out);
/* Appends an entry with id (> last id) and npairs field/value pairs
 * (2*npairs strings). Returns 0, or -1 if out of memory. */
typedef struct sstr {
    const char *p;
    size_t len;
} sstr;
int stream_append(streams *m, stream *s, streamid id, const sstr *fv, size_t npairs);
/* Decodes a field encoding: calls fn for each string; -1 if malformed. */
int stream_fields_each(const char *f, size_t flen, void (*fn)(void *ctx, const char *p, size_t n, size_t npairs),
                       void *ctx);

/* The hot entry with id, or NULL (not in memory, or deleted). */
sentry *stream_hot_get(const stream *s, streamid id);
/* 1 if entries with ids in [a, b] may exist only on disk. */
int stream_range_cold(const stream *s, streamid a, streamid b);
/* Window iteration: index of the first slot with id >= a (asc) or the last
 * with id <= b (rev, -1 if none). */
size_t stream_win_lower(const stream *s, streamid a);

/* Deletes one entry known to exist (hot, or cold rows said so). */
void stream_delete_entry(streams *m, stream *s, streamid id, int hot);
/* Deletes every entry with id < below, `n` of them (n counts the cold ones
 * the caller determined); `hot` removes the window's part. */
void stream_trim_below(streams *m, stream *s, streamid below, uint64_t n);
/* Approximate (~) trimming to at least maxlen entries, removing at most
 * limit (0 = no limit) whole "nodes" of 100 hot entries as Redis's
 * listpacks. Returns the number removed. */
uint64_t stream_trim_approx(streams *m, stream *s, uint64_t maxlen, uint64_t limit);
/* Persists the metadata (after a change the caller made to s->meta). */
void stream_put_meta(streams *m, stream *s);

/*---- Cold reads --------------------------------------------------------------------*/

typedef struct cold_rows {
    const store_row *rows;
    size_t n;
    const char *err; /* the read failed: reply with it */
} cold_rows;

/* Rows of s in [a, b] (count 0 = all; rev = descending from b) for waiter.
 * Returns 1 with *out filled (valid until stream_cold_release(waiter)), or 0
 * after starting the read (wake(waiter) follows; the caller must park and
 * change nothing). A read of more than STREAM_COLD_MAX rows is refused
 * (out->err) rather than buffered. */
#define STREAM_COLD_MAX 100000
int stream_cold(streams *m, stream *s, streamid a, streamid b, size_t count, int rev, void *waiter, cold_rows *out);
/* Drops every result and cancels every read of waiter (its command is done,
 * or it is gone). */
void stream_cold_release(streams *m, void *waiter);

/*---- Groups, consumers, PEL -----------------------------------------------------------*/

sgroup *stream_group_find(stream *s, const char *name, size_t nlen);
sgroup *stream_group_create(streams *m, stream *s, const char *name, size_t nlen, streamid last, int64_t entries_read);
void stream_group_destroy(streams *m, stream *s, sgroup *g);
/* SETID / delivery: persist the group's last id and entries-read. */
void stream_group_put(streams *m, stream *s, sgroup *g);

sconsumer *stream_consumer_find(sgroup *g, const char *name, size_t nlen);
/* Creates (persisted) a consumer; *created says whether it was new. */
sconsumer *stream_consumer_get(streams *m, stream *s, sgroup *g, const char *name, size_t nlen, int64_t now_ms,
                               int *created);
/* Updates seen / active times (persisted). */
void stream_consumer_touch(streams *m, stream *s, sgroup *g, sconsumer *c, int64_t now_ms, int active);
/* Deletes a consumer and its pending entries; returns how many it had. */
size_t stream_consumer_delete(streams *m, stream *s, sgroup *g, sconsumer *c);

snack *stream_pel_find(sgroup *g, streamid id);
/* Adds or updates a pending entry (persisted). NULL if out of memory. */
snack *stream_pel_put(streams *m, stream *s, sgroup *g, streamid id, sconsumer *owner, uint64_t deliveries,
                      int64_t time_ms);
/* Removes one pending entry (persisted). */
void stream_pel_del(streams *m, stream *s, sgroup *g, snack *n);
/* PEL iteration: index of the first slot with id >= a; slots past pel_len
 * end it; skip slots whose n is NULL. */
size_t stream_pel_lower(const sgroup *g, streamid a);

/* Redis 7.0's lag of a group (-1 for null) and the entries-read estimate. */
long long stream_group_lag(const stream *s, const sgroup *g);
/* Redis's streamEstimateDistanceFromFirstEverEntry for id. */
long long stream_estimate_entries_read(const stream *s, streamid id);

/*---- Capture definitions and de-duplication -----------------------------------------*/

/* Called whenever a stream object is freed (DEL, a reload, the end), so the
 * capture module can drop its definition first (s->cap). */
void streams_set_free_hook(streams *m, void (*fn)(void *ctx, stream *s), void *ctx);
/* Sets (blob non-NULL) or clears the stream's opaque capture blob and
 * persists the metadata. Returns 0, or -1 if out of memory. */
int stream_set_capture(streams *m, stream *s, const char *blob, size_t len);

/* The record of msgid in s, or NULL. */
sdedup *stream_dedup_find(stream *s, const char *msgid, size_t mlen);
/* Records msgid -> id at time_ms (persisted); past `max` records the oldest
 * go. Returns 0, or -1 if out of memory. */
int stream_dedup_put(streams *m, stream *s, const char *msgid, size_t mlen, streamid id, int64_t time_ms,
                     size_t max);
/* Forgets the records older than before_ms (persisted when any goes). */
void stream_dedup_expire(streams *m, stream *s, int64_t before_ms);

/*---- INFO ------------------------------------------------------------------------------*/

typedef struct streams_info {
    size_t streams, groups;
    uint64_t entries_memory, entries_stored, pending;
    size_t window_bytes, window_limit;
    uint64_t evicted, cold_reads;
    uint64_t dedup_records;
} streams_info;
void streams_get_info(const streams *m, streams_info *out);

#endif
