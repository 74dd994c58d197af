/* store.h -- durable storage for the stream model (store/stream.h), behind
 * one small interface so the engine can change: the embedded engine is one
 * SQLite database (store/sqlite.c); a Redis engine can implement the same
 * calls later (every call below is a stream-model mutation Redis Streams has
 * a command for).
 *
 * Threads: the event loop thread owns the model and calls everything here.
 * Writes never touch the disk on the loop: each call appends a record to the
 * current batch in memory. At the end of every loop iteration (an ev_prepare
 * watcher, before the loop blocks) a non-empty batch is closed and handed to
 * the writer thread, which applies every batch it has in ONE transaction
 * (group commit) and reports back through an ev_async: `committed(seq)` on
 * the loop thread once the transaction holding batch `seq` is durable, in
 * seq order. Cold reads (entries no longer in the model's memory) run on a
 * reader thread with its own read-only connection (WAL lets it read while the
 * writer writes); their results come back through the same ev_async.
 *
 * Failure: if a transaction fails (disk full, I/O error, the database locked
 * or corrupt), none of its batches is applied, nor any batch queued after
 * them: `failed(first_seq, last_seq, why)` is called for that range on the
 * loop thread, the store refuses new batches (store_ok() is 0, with the
 * reason in store_error()) and retries a probe transaction every second;
 * when one succeeds, `recovered()` is called: the model reloads itself from
 * the database (store_load), which is the truth. Nothing reported committed
 * was ever rolled back.
 *
 * Integrity: every entry row carries a checksum of its envelope (stream id,
 * entry id, fields) computed here; a row whose checksum does not match when
 * read is reported (`corrupt` set on the row, a log line, the corrupt-entries
 * counter) and its fields are never handed out as if they were good.
 *
 * Sequence numbers: batch seqs start at 1 and grow by one per closed batch;
 * store_seq() is the seq the current (open) batch will carry. A reply that
 * acknowledges durability is released once committed(seq) has reached the
 * store_seq() read when the reply was made. committed(seq) means every batch
 * up to seq is committed: one call per transaction (or fewer, when the loop
 * was busy), not one per batch. When the open batch is still empty,
 * store_seq() is the last closed batch's seq (0 before any), so a reply
 * made by a command that wrote nothing never waits for a batch that may
 * never be closed.
 *
 * Memory: a batch that grows past STORE_BATCH_MAX_BYTES is closed at once,
 * mid-iteration, so the writer works on it while the loop goes on (a
 * command's records may then span two batches; both commit or the later
 * one fails, and the model reloads from the database on recovery). The
 * bytes written and not yet committed are store_backlog_bytes(); the store
 * itself never refuses a record for it: the model refuses writes with an
 * error while it is above STORE_BACKLOG_LIMIT (the writer fell behind). */
#ifndef LUAHUB_STORE_H
#define LUAHUB_STORE_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store;

/* A stream entry id, ms-seq. */
typedef struct streamid {
    uint64_t ms, seq;
} streamid;

enum store_durability {
    STORE_DURABILITY_FSYNC = 1, /* a commit survives power loss (fsync on every commit) */
    STORE_DURABILITY_OS = 2,    /* a commit survives a crash or kill -9 of the hub */
};

typedef struct store_callbacks {
    void (*committed)(void *ctx, uint64_t seq);
    void (*failed)(void *ctx, uint64_t first_seq, uint64_t last_seq, const char *why);
    void (*recovered)(void *ctx);
    void *ctx;
} store_callbacks;

/* Opens (creating if needed) <dir>/luahub.db: makes dir if it does not
 * exist, sets WAL mode, creates or migrates the schema (PRAGMA user_version),
 * starts the writer and reader threads and the loop watchers. Returns NULL
 * with a malloc'd *err naming the path and the cause. */
store *store_open(struct ev_loop *loop, const char *dir, int durability, const store_callbacks *cb, char **err);

/* Closes the current batch, waits for every queued batch to commit (or
 * fail), stops the threads and closes the database. The last committed /
 * failed callbacks and the results of reads already done are delivered
 * from inside this call. NULL is allowed. */
void store_close(store *s);

/* 1 while writes are accepted; 0 after a failure until it recovers. */
int store_ok(const store *s);
/* The last failure's reason ("disk full: ...", "I/O error: ..."), or NULL. */
const char *store_error(const store *s);
/* The seq of the current batch, and the highest committed one. */
uint64_t store_seq(const store *s);
uint64_t store_committed(const store *s);

#define STORE_BATCH_MAX_BYTES (1u << 20)
#define STORE_BACKLOG_LIMIT (64u << 20)
/* Bytes of records written and not yet committed or failed (the open batch,
 * the queue and the transaction in flight). */
size_t store_backlog_bytes(const store *s);

/*---- Stream metadata ------------------------------------------------------------------*/

/* What the model keeps per stream besides its entries and groups (XINFO
 * STREAM's fields, and the hub's capture definition). `capture` is an opaque
 * blob the model encodes (patterns, MAXLEN, MAXAGE, DUPWINDOW), or NULL. */
typedef struct store_stream_meta {
    streamid last_id;          /* XADD's last generated id */
    streamid max_deleted_id;   /* largest id removed by XDEL/XTRIM (Redis 7.0) */
    streamid first_id;         /* smallest stored id (0-0 when empty) */
    uint64_t entries_added;    /* Redis 7.0's entries-added */
    uint64_t length;           /* entries stored */
    const char *capture;       /* may contain NULs */
    size_t capture_len;
} store_stream_meta;

/* Streams are known to the store by a number the model chooses (unique for
 * the database's life; never reused) and by their key. */
void store_stream_put(store *s, uint64_t sid, const char *key, size_t klen, const store_stream_meta *m);
void store_stream_del(store *s, uint64_t sid); /* with its entries, groups, consumers, pending, dedup */

/*---- Entries --------------------------------------------------------------------------*/

/* `fields` is the model's encoding of the field/value pairs (opaque here). */
void store_entry_add(store *s, uint64_t sid, streamid id, const char *fields, size_t flen);
void store_entry_del(store *s, uint64_t sid, streamid id);
/* Deletes every entry with id < below (XTRIM MINID, MAXLEN by the model's
 * computed first kept id, MAXAGE). */
void store_entry_trim(store *s, uint64_t sid, streamid below);

/*---- Consumer groups ------------------------------------------------------------------*/

void store_group_put(store *s, uint64_t sid, const char *group, size_t glen, streamid last_delivered,
                     int64_t entries_read);
void store_group_del(store *s, uint64_t sid, const char *group, size_t glen); /* with its consumers and PEL */
void store_consumer_put(store *s, uint64_t sid, const char *group, size_t glen, const char *consumer, size_t clen,
                        int64_t seen_time_ms, int64_t active_time_ms);
void store_consumer_del(store *s, uint64_t sid, const char *group, size_t glen, const char *consumer,
                        size_t clen); /* with its pending entries */
/* One pending entry of a group: owner, delivery count, last delivery time. */
void store_pending_put(store *s, uint64_t sid, const char *group, size_t glen, streamid id, const char *consumer,
                       size_t clen, uint64_t deliveries, int64_t delivery_time_ms);
void store_pending_del(store *s, uint64_t sid, const char *group, size_t glen, streamid id);

/*---- De-duplication (HUB.PUBLISH ... MSGID) ----------------------------------------------*/

void store_dedup_put(store *s, uint64_t sid, const char *msgid, size_t mlen, streamid id, int64_t time_ms);
/* Forgets the message ids recorded before time_ms (the DUPWINDOW). */
void store_dedup_expire(store *s, uint64_t sid, int64_t before_ms);

/*---- Loading (at start and after recovery; synchronous, before serving) ------------------*/

typedef struct store_row {
    streamid id;
    const char *fields; /* NULL when corrupt */
    size_t flen;
    int corrupt;        /* the checksum did not match: reported, never served */
} store_row;

/* Called once per stored object, in this order: every stream, then for each
 * stream its groups, consumers, pending entries and dedup records, then its
 * most recent entries (ascending ids) while their fields fit in the
 * remaining tail_budget bytes (the model's hot window). The budget is
 * shared fairly: each stream gets what is still unused divided by the
 * number of streams still to load, so early streams cannot starve later
 * ones; a stream whose newest entry does not fit gets no tail. Pointers are valid
 * only during the call. A callback returning non-zero stops the load with an
 * error. */
typedef struct store_loader {
    int (*stream)(void *ctx, uint64_t sid, const char *key, size_t klen, const store_stream_meta *m);
    int (*group)(void *ctx, uint64_t sid, const char *group, size_t glen, streamid last_delivered,
                 int64_t entries_read);
    int (*consumer)(void *ctx, uint64_t sid, const char *group, size_t glen, const char *consumer, size_t clen,
                    int64_t seen_time_ms, int64_t active_time_ms);
    int (*pending)(void *ctx, uint64_t sid, const char *group, size_t glen, streamid id, const char *consumer,
                   size_t clen, uint64_t deliveries, int64_t delivery_time_ms);
    int (*dedup)(void *ctx, uint64_t sid, const char *msgid, size_t mlen, streamid id, int64_t time_ms);
    int (*entry)(void *ctx, uint64_t sid, const store_row *row);
    void *ctx;
} store_loader;

/* Reads the whole database through the loader. Returns 0, or -1 with a
 * malloc'd *err. Waits for the writer to be idle first. */
int store_load(store *s, const store_loader *l, size_t tail_budget, char **err);

/*---- Cold reads ----------------------------------------------------------------------------*/

/* Called on the loop thread with the rows read (ascending ids, or descending
 * when rev), or with err set (then rows is NULL). */
typedef void (*store_read_fn)(void *ctx, const store_row *rows, size_t n, const char *err);

/* Reads up to count entries (0 = no limit) of stream sid with start <= id
 * <= end, ascending (or descending from end when rev), on the reader
 * thread. done is called later, on the loop thread, never inside this call.
 * Returns a request handle (> 0) for store_read_cancel, or 0 if out of
 * memory. */
uint64_t store_read(store *s, uint64_t sid, streamid start, streamid end, size_t count, int rev, store_read_fn done,
                    void *ctx);
/* The caller is gone: done will not be called for this request. */
void store_read_cancel(store *s, uint64_t req);

/*---- Counters (INFO) --------------------------------------------------------------------------*/

typedef struct store_stats {
    uint64_t commits;          /* transactions committed */
    uint64_t batches;          /* batches committed (>= commits: group commit) */
    uint64_t records;          /* records written */
    uint64_t failures;         /* transactions that failed */
    uint64_t corrupt_entries;  /* rows whose checksum did not match, as read */
    uint64_t reads;            /* cold reads done */
    double last_commit_ms;     /* duration of the last commit */
    uint64_t db_bytes;         /* database + WAL size on disk */
    int synchronous;           /* PRAGMA synchronous read back from the writer's connection: 2 FULL, 1 NORMAL */
} store_stats;

void store_get_stats(const store *s, store_stats *out);

#endif
