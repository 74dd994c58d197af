/* test_store.c -- the SQLite store engine (store/store.h) on real database
 * files in a temporary directory, with a real ev_loop delivering the
 * callbacks: everything written loads back in the documented order within
 * the tail budget, commits are reported in seq order, batches queued while
 * the writer is busy share a transaction, the durability setting reaches
 * SQLite, failures (unwritable directory, file-size limit) are reported for
 * the right batches and recovered from, a row corrupted with the sqlite3
 * shell is reported corrupt, cold reads, and the schema's versions. */
#include "store/store.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

/*---- Fixtures ----------------------------------------------------------------------------*/

typedef struct events {
    uint64_t committed[4096];
    int ncommitted;
    uint64_t failed_first[64], failed_last[64];
    char why[256];
    int nfailed;
    int recovered;
} events;

static void on_committed(void *ctx, uint64_t seq) {
    events *e = ctx;
    if (e->ncommitted < 4096) e->committed[e->ncommitted++] = seq;
}

static void on_failed(void *ctx, uint64_t first, uint64_t last, const char *why) {
    events *e = ctx;
    if (e->nfailed < 64) {
        e->failed_first[e->nfailed] = first;
        e->failed_last[e->nfailed] = last;
        e->nfailed++;
    }
    snprintf(e->why, sizeof e->why, "%s", why);
}

static void on_recovered(void *ctx) {
    ((events *)ctx)->recovered++;
}

static store *open_in(struct ev_loop *loop, const char *dir, int durability, events *e) {
    store_callbacks cb = {on_committed, on_failed, on_recovered, e};
    char *err = NULL;
    store *s = store_open(loop, dir, durability, &cb, &err);
    if (!s) fprintf(stderr, "  store_open: %s\n", err ? err : "?");
    free(err);
    return s;
}

static char *tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char *d = NULL;
    if (asprintf(&d, "%s/luahub-store-XXXXXX", base && *base ? base : "/tmp") < 0) return NULL;
    return mkdtemp(d);
}

static void rmdir_all(char *d) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0) fprintf(stderr, "  cannot remove %s\n", d);
    free(d);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {}

/* Runs the loop until *flag reaches want or ms pass; returns 1 if it did. */
static int run_until(struct ev_loop *loop, const volatile uint64_t *value, uint64_t want, double ms) {
    ev_timer tick;
    ev_timer_init(&tick, tick_cb, 0.005, 0.005);
    ev_timer_start(loop, &tick);
    ev_tstamp end = ev_time() + ms / 1000;
    while (*value < want && ev_time() < end) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    return *value >= want;
}

/* Closes the open batch and waits until it is committed. */
static int flush(struct ev_loop *loop, store *s) {
    ev_run(loop, EVRUN_NOWAIT);
    uint64_t want = store_seq(s);
    ev_timer tick;
    ev_timer_init(&tick, tick_cb, 0.005, 0.005);
    ev_timer_start(loop, &tick);
    ev_tstamp end = ev_time() + 10;
    while (store_committed(s) < want && ev_time() < end) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    return store_committed(s) >= want;
}

static streamid sid_(uint64_t ms, uint64_t seq) {
    return (streamid){ms, seq};
}

static void put_stream(store *s, uint64_t sid, const char *key, const char *capture, size_t caplen) {
    store_stream_meta m = {sid_(sid * 100, 1), sid_(3, 0), sid_(1, 0), 42, 7, capture, caplen};
    store_stream_put(s, sid, key, strlen(key), &m);
}

static void add_entry(store *s, uint64_t sid, uint64_t ms, uint64_t seq, const char *fields) {
    store_entry_add(s, sid, sid_(ms, seq), fields, strlen(fields));
}

/* What a load saw, one line per callback. */
typedef struct loaded {
    char lines[512][96];
    int n;
    int corrupt;
    int stop_at; /* a callback returns non-zero at this line (0 = never) */
} loaded;

static int add_line(loaded *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static int add_line(loaded *l, const char *fmt, ...) {
    if (l->n >= 512) return 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->lines[l->n++], sizeof l->lines[0], fmt, ap);
    va_end(ap);
    return l->stop_at && l->n == l->stop_at;
}

static int ld_stream(void *ctx, uint64_t sid, const char *key, size_t klen, const store_stream_meta *m) {
    char cap[32] = "-";
    if (m->capture) {
        for (size_t i = 0; i < m->capture_len && i < 31; i++) cap[i] = m->capture[i] ? m->capture[i] : '0';
        cap[m->capture_len < 31 ? m->capture_len : 31] = '\0';
    }
    return add_line(ctx, "stream %llu %.*s last=%llu-%llu maxdel=%llu-%llu first=%llu-%llu added=%llu len=%llu cap=%s",
                    (unsigned long long)sid, (int)klen, key, (unsigned long long)m->last_id.ms,
                    (unsigned long long)m->last_id.seq, (unsigned long long)m->max_deleted_id.ms,
                    (unsigned long long)m->max_deleted_id.seq, (unsigned long long)m->first_id.ms,
                    (unsigned long long)m->first_id.seq, (unsigned long long)m->entries_added,
                    (unsigned long long)m->length, cap);
}

static int ld_group(void *ctx, uint64_t sid, const char *g, size_t glen, streamid last, int64_t read) {
    return add_line(ctx, "group %llu %.*s %llu-%llu %lld", (unsigned long long)sid, (int)glen, g,
                    (unsigned long long)last.ms, (unsigned long long)last.seq, (long long)read);
}

static int ld_consumer(void *ctx, uint64_t sid, const char *g, size_t glen, const char *c, size_t clen, int64_t seen,
                       int64_t active) {
    return add_line(ctx, "consumer %llu %.*s %.*s %lld %lld", (unsigned long long)sid, (int)glen, g, (int)clen, c,
                    (long long)seen, (long long)active);
}

static int ld_pending(void *ctx, uint64_t sid, const char *g, size_t glen, streamid id, const char *c, size_t clen,
                      uint64_t deliveries, int64_t t) {
    return add_line(ctx, "pending %llu %.*s %llu-%llu %.*s %llu %lld", (unsigned long long)sid, (int)glen, g,
                    (unsigned long long)id.ms, (unsigned long long)id.seq, (int)clen, c, (unsigned long long)deliveries,
                    (long long)t);
}

static int ld_dedup(void *ctx, uint64_t sid, const char *m, size_t mlen, streamid id, int64_t t) {
    return add_line(ctx, "dedup %llu %.*s %llu-%llu %lld", (unsigned long long)sid, (int)mlen, m,
                    (unsigned long long)id.ms, (unsigned long long)id.seq, (long long)t);
}

static int ld_entry(void *ctx, uint64_t sid, const store_row *r) {
    loaded *l = ctx;
    if (r->corrupt) {
        l->corrupt++;
        return add_line(l, "entry %llu %llu-%llu CORRUPT%s", (unsigned long long)sid, (unsigned long long)r->id.ms,
                        (unsigned long long)r->id.seq, r->fields ? " (fields!)" : "");
    }
    return add_line(l, "entry %llu %llu-%llu %.*s", (unsigned long long)sid, (unsigned long long)r->id.ms,
                    (unsigned long long)r->id.seq, (int)r->flen, r->fields);
}

static int load(store *s, loaded *l, size_t budget) {
    store_loader ld = {ld_stream, ld_group, ld_consumer, ld_pending, ld_dedup, ld_entry, l};
    char *err = NULL;
    int rc = store_load(s, &ld, budget, &err);
    if (rc != 0) fprintf(stderr, "  store_load: %s\n", err ? err : "?");
    free(err);
    return rc;
}

static int has_line(const loaded *l, const char *line) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->lines[i], line) == 0) return i + 1;
    return 0;
}

static void dump(const loaded *l) {
    for (int i = 0; i < l->n; i++) fprintf(stderr, "    %s\n", l->lines[i]);
}

static char *db_path(const char *dir) {
    static char p[512];
    snprintf(p, sizeof p, "%s/luahub.db", dir);
    return p;
}

/* Runs one SQL statement (or a script) on the database from outside. */
static int sql_exec(const char *dir, const char *sql) {
    sqlite3 *db;
    if (sqlite3_open(db_path(dir), &db) != SQLITE_OK) return -1;
    sqlite3_busy_timeout(db, 2000);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) fprintf(stderr, "  sql: %s\n", err ? err : "?");
    sqlite3_free(err);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static long long sql_int(const char *dir, const char *sql) {
    sqlite3 *db;
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_open(db_path(dir), &db) != SQLITE_OK) return -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

/* A small model written through every kind of record. */
static void write_model(store *s) {
    put_stream(s, 1, "orders", "p\0x", 3);
    put_stream(s, 2, "audit", NULL, 0);
    for (int i = 1; i <= 5; i++) {
        char f[32];
        snprintf(f, sizeof f, "f%d", i);
        add_entry(s, 1, 1000 + i, 0, f);
        add_entry(s, 2, 2000 + i, 1, f);
    }
    /* an id past 2^63 sorts last */
    add_entry(s, 1, 1006, UINT64_MAX, "max");
    store_group_put(s, 1, "billing", 7, sid_(1003, 0), 3);
    store_group_put(s, 1, "alerts", 6, sid_(0, 0), -1);
    store_consumer_put(s, 1, "billing", 7, "w2", 2, 11, 12);
    store_consumer_put(s, 1, "billing", 7, "w1", 2, 13, 14);
    store_pending_put(s, 1, "billing", 7, sid_(1002, 0), "w2", 2, 2, 500);
    store_pending_put(s, 1, "billing", 7, sid_(1001, 0), "w1", 2, 1, 400);
    store_dedup_put(s, 1, "m-1", 3, sid_(1001, 0), 900);
}

/*---- Tests -------------------------------------------------------------------------------*/

TEST(reopen_loads_everything_in_documented_order) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    char sub[600];
    snprintf(sub, sizeof sub, "%s/a/b", dir); /* created on open */
    events e = {0};
    store *s = open_in(loop, sub, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    write_model(s);
    CHECK(flush(loop, s));
    store_close(s);

    s = open_in(loop, sub, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    loaded *l = calloc(1, sizeof *l);
    CHECK(load(s, l, 1 << 20) == 0);
    static const char *want[] = {
        "stream 1 orders last=100-1 maxdel=3-0 first=1-0 added=42 len=7 cap=p0x",
        "stream 2 audit last=200-1 maxdel=3-0 first=1-0 added=42 len=7 cap=-",
        "group 1 alerts 0-0 -1",
        "group 1 billing 1003-0 3",
        "consumer 1 billing w1 13 14",
        "consumer 1 billing w2 11 12",
        "pending 1 billing 1001-0 w1 1 400",
        "pending 1 billing 1002-0 w2 2 500",
        "dedup 1 m-1 1001-0 900",
        "entry 1 1001-0 f1",
        "entry 1 1002-0 f2",
        "entry 1 1003-0 f3",
        "entry 1 1004-0 f4",
        "entry 1 1005-0 f5",
        "entry 1 1006-18446744073709551615 max",
        "entry 2 2001-1 f1",
        "entry 2 2002-1 f2",
        "entry 2 2003-1 f3",
        "entry 2 2004-1 f4",
        "entry 2 2005-1 f5",
    };
    int n = (int)(sizeof want / sizeof want[0]);
    CHECKF(l->n == n, "%d lines", l->n);
    for (int i = 0; i < n && i < l->n; i++) CHECKF(strcmp(l->lines[i], want[i]) == 0, "line %d: %s", i, l->lines[i]);
    if (unit_cur_failed) dump(l);

    /* a small budget: each stream gets its fair share of the newest entries,
     * ascending; 4 bytes = 2 entries of 2 bytes for each of the 2 streams
     * (stream 1's newest is "max", 3 bytes, so it gets only that one) */
    memset(l, 0, sizeof *l);
    CHECK(load(s, l, 8) == 0);
    CHECK(has_line(l, "entry 1 1006-18446744073709551615 max"));
    CHECK(!has_line(l, "entry 1 1005-0 f5"));
    CHECK(has_line(l, "entry 2 2004-1 f4") && has_line(l, "entry 2 2005-1 f5"));
    CHECK(has_line(l, "entry 2 2004-1 f4") < has_line(l, "entry 2 2005-1 f5"));
    CHECK(!has_line(l, "entry 2 2003-1 f3"));
    if (unit_cur_failed) dump(l);

    /* a loader callback that refuses stops the load with an error */
    memset(l, 0, sizeof *l);
    l->stop_at = 3;
    store_loader ld = {ld_stream, ld_group, ld_consumer, ld_pending, ld_dedup, ld_entry, l};
    char *err = NULL;
    CHECK(store_load(s, &ld, 1 << 20, &err) == -1);
    CHECK(err && strstr(err, "refused"));
    CHECK(l->n == 3);
    free(err);
    free(l);
    store_close(s);
out:
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

TEST(deletions_cascade) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    events e = {0};
    store *s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    write_model(s);
    CHECK(flush(loop, s));
    store_entry_del(s, 1, sid_(1005, 0));
    store_entry_trim(s, 1, sid_(1003, 0));           /* drops 1001, 1002 */
    store_consumer_del(s, 1, "billing", 7, "w2", 2); /* with its pending 1002 */
    store_group_del(s, 1, "alerts", 6);
    store_dedup_expire(s, 1, 901);
    store_stream_del(s, 2);
    CHECK(flush(loop, s));
    loaded *l = calloc(1, sizeof *l);
    CHECK(load(s, l, 1 << 20) == 0);
    CHECK(has_line(l, "entry 1 1003-0 f3") && has_line(l, "entry 1 1004-0 f4"));
    CHECK(!has_line(l, "entry 1 1001-0 f1") && !has_line(l, "entry 1 1002-0 f2") && !has_line(l, "entry 1 1005-0 f5"));
    CHECK(has_line(l, "consumer 1 billing w1 13 14") && !has_line(l, "consumer 1 billing w2 11 12"));
    CHECK(has_line(l, "pending 1 billing 1001-0 w1 1 400") && !has_line(l, "pending 1 billing 1002-0 w2 2 500"));
    CHECK(!has_line(l, "group 1 alerts 0-0 -1") && has_line(l, "group 1 billing 1003-0 3"));
    CHECK(!has_line(l, "dedup 1 m-1 1001-0 900"));
    for (int i = 0; i < l->n; i++)
        CHECKF(strncmp(l->lines[i], "stream 2 ", 9) != 0 && strncmp(l->lines[i], "entry 2 ", 8) != 0, "%s",
               l->lines[i]);
    CHECK(sql_int(dir, "SELECT count(*) FROM entries WHERE sid = 2") == 0);
    CHECK(sql_int(dir, "SELECT count(*) FROM streams WHERE sid = 2") == 0);
    /* a group deleted takes its consumers and pending entries along */
    store_group_del(s, 1, "billing", 7);
    CHECK(flush(loop, s));
    CHECK(sql_int(dir, "SELECT count(*) FROM consumers") == 0);
    CHECK(sql_int(dir, "SELECT count(*) FROM pending") == 0);
    if (unit_cur_failed) dump(l);
    free(l);
    store_close(s);
out:
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

/* An XADD writes one entry and the stream's row: the store writes runs of
 * appends in one statement and keeps one row write per stream per batch.
 * Whatever the batch looks like, what loads back is every entry and the
 * newest metadata; a delete between two puts of a stream is honoured. */
TEST(appends_in_runs_and_one_row_write_per_stream_load_back_exactly) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    events e = {0};
    store *s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    /* 70 XADDs to stream 1 (two runs of 32 and 6 single rows), each with its
     * metadata put, interleaved with stream 2's */
    char f[32];
    for (uint64_t i = 1; i <= 70; i++) {
        snprintf(f, sizeof f, "v%llu", (unsigned long long)i);
        add_entry(s, 1, 1000 + i, 0, f);
        store_stream_meta m = {sid_(1000 + i, 0), sid_(0, 0), sid_(1001, 0), i, i, NULL, 0};
        store_stream_put(s, 1, "s1", 2, &m);
        if (i % 10 == 0) put_stream(s, 2, "s2", "cap", 3);
    }
    /* stream 3: put, delete, put again: the second put must survive */
    put_stream(s, 3, "s3", NULL, 0);
    add_entry(s, 3, 1, 0, "gone");
    store_stream_del(s, 3);
    store_stream_meta m3 = {sid_(9, 9), sid_(0, 0), sid_(0, 0), 1, 0, NULL, 0};
    store_stream_put(s, 3, "s3", 2, &m3);
    CHECK(flush(loop, s));
    CHECK(sql_int(dir, "SELECT count(*) FROM entries WHERE sid = 1") == 70);
    CHECK(sql_int(dir, "SELECT count(*) FROM entries WHERE sid = 3") == 0);
    loaded *l = calloc(1, sizeof *l);
    CHECK(load(s, l, 1 << 20) == 0);
    CHECK(has_line(l, "stream 1 s1 last=1070-0 maxdel=0-0 first=1001-0 added=70 len=70 cap=-"));
    CHECK(has_line(l, "stream 3 s3 last=9-9 maxdel=0-0 first=0-0 added=1 len=0 cap=-"));
    CHECK(has_line(l, "entry 1 1001-0 v1") && has_line(l, "entry 1 1032-0 v32") && has_line(l, "entry 1 1033-0 v33") &&
          has_line(l, "entry 1 1070-0 v70"));
    int entries = 0;
    for (int i = 0; i < l->n; i++) entries += strncmp(l->lines[i], "entry 1 ", 8) == 0;
    CHECK(entries == 70);
    /* a group's deliveries and acks go in runs too: 40 pending entries in one
     * batch (a run and 8 singles), then 35 acks in the next (a run and 3) */
    store_group_put(s, 1, "g", 1, sid_(1040, 0), 40);
    for (uint64_t i = 1; i <= 40; i++) store_pending_put(s, 1, "g", 1, sid_(1000 + i, 0), i % 2 ? "c1" : "c2", 2, i, 500 + i);
    CHECK(flush(loop, s));
    CHECK(sql_int(dir, "SELECT count(*) FROM pending") == 40);
    for (uint64_t i = 1; i <= 35; i++) store_pending_del(s, 1, "g", 1, sid_(1000 + i, 0));
    CHECK(flush(loop, s));
    memset(l, 0, sizeof *l);
    CHECK(load(s, l, 1 << 20) == 0);
    int pend = 0;
    for (int i = 0; i < l->n; i++) pend += strncmp(l->lines[i], "pending 1 g ", 12) == 0;
    CHECK(pend == 5);
    CHECK(has_line(l, "pending 1 g 1036-0 c2 36 536") && has_line(l, "pending 1 g 1040-0 c2 40 540") &&
          !has_line(l, "pending 1 g 1035-0 c1 35 535"));
    if (unit_cur_failed) dump(l);
    free(l);
    store_close(s);
out:
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

TEST(commits_are_reported_in_seq_order) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    events e = {0};
    store *s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    CHECK(store_seq(s) == 0 && store_committed(s) == 0); /* nothing written: nothing to wait for */
    put_stream(s, 1, "k", NULL, 0);
    CHECK(store_seq(s) == 1);
    for (int i = 0; i < 200; i++) {
        add_entry(s, 1, 10 + i, 0, "v");
        uint64_t seq = store_seq(s);
        ev_run(loop, EVRUN_NOWAIT); /* the prepare watcher closes the batch */
        CHECK(store_seq(s) == seq); /* empty open batch: still the last closed one */
    }
    uint64_t last = store_seq(s);
    CHECK(last == 200);
    CHECK(flush(loop, s));
    CHECK(e.ncommitted >= 1);
    for (int i = 1; i < e.ncommitted; i++) CHECKF(e.committed[i] > e.committed[i - 1], "at %d", i);
    CHECK(e.ncommitted > 0 && e.committed[e.ncommitted - 1] == last);
    CHECK(store_committed(s) == last);
    CHECK(store_backlog_bytes(s) == 0);
    store_stats st;
    store_get_stats(s, &st);
    CHECK(st.batches == 200);
    CHECK(st.records == 201);
    CHECK(st.db_bytes > 0);
    store_close(s);
out:
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

/* While another connection holds the write lock, the writer waits in its
 * first transaction; everything queued meanwhile goes in the next one. */
TEST(batches_queued_while_the_writer_is_busy_share_a_commit) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    events e = {0};
    store *s = open_in(loop, dir, STORE_DURABILITY_FSYNC, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    sqlite3 *other;
    CHECK(sqlite3_open(db_path(dir), &other) == SQLITE_OK);
    CHECK(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    for (int i = 0; i < 50; i++) {
        add_entry(s, 1, 10 + i, 0, "v");
        ev_run(loop, EVRUN_NOWAIT);
    }
    CHECK(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(other);
    CHECK(flush(loop, s));
    store_stats st;
    store_get_stats(s, &st);
    CHECKF(st.batches == 50 && st.commits <= 3, "batches %llu commits %llu", (unsigned long long)st.batches,
           (unsigned long long)st.commits);
    CHECK(st.failures == 0);
    CHECK(st.last_commit_ms > 0);
    CHECK(e.committed[e.ncommitted - 1] == 50);
    store_close(s);
out:
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

TEST(durability_setting_reaches_sqlite) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    events e = {0};
    store_stats st;
    store *s = open_in(loop, dir, STORE_DURABILITY_FSYNC, &e);
    CHECK(s != NULL);
    if (s) {
        store_get_stats(s, &st);
        CHECK(st.synchronous == 2); /* FULL */
        store_close(s);
    }
    s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (s) {
        store_get_stats(s, &st);
        CHECK(st.synchronous == 1); /* NORMAL */
        store_close(s);
    }
    CHECK(sql_int(dir, "PRAGMA user_version") == 2);
    sqlite3 *db;
    sqlite3_stmt *q;
    CHECK(sqlite3_open(db_path(dir), &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(q) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(q, 0), "wal") == 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

TEST(unwritable_directory_is_a_clear_error) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    char path[600];
    char *err = NULL;
    store_callbacks cb = {0};

    /* a path through a regular file: cannot be created, even by root */
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/file/data", dir);
    CHECK(store_open(loop, path, STORE_DURABILITY_OS, &cb, &err) == NULL);
    CHECKF(err && strstr(err, path) && strstr(err, "Not a directory"), "%s", err ? err : "(null)");
    free(err);
    err = NULL;

    /* a read-only directory: permissions for a normal user, a read-only
     * mount for root (skipped when mounting is not allowed here) */
    snprintf(path, sizeof path, "%s/ro", dir);
    mkdir(path, 0755);
    int ro = 0;
    if (geteuid() != 0)
        ro = chmod(path, 0555) == 0;
    else
        ro = mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=64k") == 0;
    if (ro) {
        store *s = store_open(loop, path, STORE_DURABILITY_OS, &cb, &err);
        CHECK(s == NULL);
        CHECKF(err && strstr(err, path) && strstr(err, "not writable"), "%s", err ? err : "(null)");
        free(err);
        store_close(s);
        if (geteuid() == 0) umount(path);
    } else {
        fprintf(stderr, "  (read-only directory case skipped: cannot make one here)\n");
    }
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

/* The child's half of write_failure_fails_its_batches_then_recovers (it
 * lowers RLIMIT_FSIZE for itself only). Returns the number of failed checks. */
static int fsize_child(const char *dir) {
    signal(SIGXFSZ, SIG_IGN);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    events *e = calloc(1, sizeof *e);
    store *s = open_in(loop, dir, STORE_DURABILITY_OS, e);
    CHECK(s != NULL);
    if (!s) return 1;
    put_stream(s, 1, "k", NULL, 0);
    add_entry(s, 1, 1, 0, "before");
    CHECK(flush(loop, s));
    struct stat a, b;
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", db_path(dir));
    stat(db_path(dir), &a);
    stat(wal, &b);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)(a.st_size > b.st_size ? a.st_size : b.st_size);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);

    static char big[256 * 1024];
    memset(big, 'x', sizeof big - 1);
    add_entry(s, 1, 2, 0, big);
    uint64_t bad = store_seq(s);
    ev_run(loop, EVRUN_NOWAIT);
    volatile uint64_t nf = 0;
    ev_tstamp end = ev_time() + 10;
    while (!e->nfailed && ev_time() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(2000);
    }
    nf = (uint64_t)e->nfailed;
    CHECK(nf == 1);
    CHECKF(e->failed_first[0] == bad && e->failed_last[0] == bad, "failed %llu..%llu, batch %llu",
           (unsigned long long)e->failed_first[0], (unsigned long long)e->failed_last[0], (unsigned long long)bad);
    CHECK(store_ok(s) == 0);
    CHECKF(store_error(s) && (strstr(store_error(s), "I/O error") || strstr(store_error(s), "disk full")), "%s",
           store_error(s) ? store_error(s) : "-");
    /* while down, a new batch is refused at once */
    add_entry(s, 1, 3, 0, "while-down");
    uint64_t refused = store_seq(s);
    ev_run(loop, EVRUN_NOWAIT);
    end = ev_time() + 5;
    while (e->nfailed < 2 && e->failed_last[0] != refused && ev_time() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(2000);
    }
    CHECKF(e->failed_last[e->nfailed - 1] == refused, "last failed %llu, refused %llu",
           (unsigned long long)e->failed_last[e->nfailed - 1], (unsigned long long)refused);
    CHECK(store_committed(s) < bad);
    /* probes fail while the cause is there */
    end = ev_time() + 1.6;
    while (ev_time() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(2000);
    }
    CHECK(e->recovered == 0 && store_ok(s) == 0);
    /* the cause goes away: the probe succeeds within a few seconds */
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    end = ev_time() + 10;
    while (!e->recovered && ev_time() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(2000);
    }
    CHECK(e->recovered == 1);
    CHECK(store_ok(s) == 1);
    add_entry(s, 1, 4, 0, "after");
    CHECK(flush(loop, s));
    loaded *l = calloc(1, sizeof *l);
    CHECK(load(s, l, 1 << 20) == 0);
    CHECK(has_line(l, "entry 1 1-0 before") && has_line(l, "entry 1 4-0 after"));
    CHECK(l->n == 3); /* the stream and two entries: neither the failed nor the refused one */
    if (unit_cur_failed) dump(l);
    store_stats st;
    store_get_stats(s, &st);
    CHECK(st.failures == 1);
    free(l);
    store_close(s);
    free(e);
    ev_loop_destroy(loop);
    return unit_cur_failed;
}

TEST(write_failure_fails_its_batches_then_recovers) {
    char *dir = tmpdir();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(fsize_child(dir) ? 1 : 0);
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    rmdir_all(dir);
}

TEST(row_corrupted_with_the_shell_is_reported_not_served) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    events e = {0};
    store *s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    put_stream(s, 1, "k", NULL, 0);
    for (int i = 1; i <= 5; i++) add_entry(s, 1, i, 0, "good");
    CHECK(flush(loop, s));
    store_close(s);

    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "sqlite3 '%s' \"UPDATE entries SET fields = CAST('evil' AS BLOB) WHERE (ms, seq) = "
             "(SELECT ms, seq FROM entries ORDER BY ms, seq LIMIT 1 OFFSET 2)\"",
             db_path(dir));
    CHECK(system(cmd) == 0);

    s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    loaded *l = calloc(1, sizeof *l);
    CHECK(load(s, l, 1 << 20) == 0);
    CHECK(l->corrupt == 1);
    CHECK(has_line(l, "entry 1 3-0 CORRUPT"));
    CHECK(has_line(l, "entry 1 2-0 good") && has_line(l, "entry 1 4-0 good"));
    for (int i = 0; i < l->n; i++) CHECK(!strstr(l->lines[i], "evil"));
    store_stats st;
    store_get_stats(s, &st);
    CHECK(st.corrupt_entries == 1);
    if (unit_cur_failed) dump(l);
    free(l);
    store_close(s);
out:
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

/*---- Cold reads ---------------------------------------------------------------------------*/

typedef struct got {
    uint64_t calls;
    uint64_t ids[64];
    int corrupt[64];
    size_t n;
    char err[128];
    int in_call;
} got;

static int inside_read;

static void on_read(void *ctx, const store_row *rows, size_t n, const char *err) {
    got *g = ctx;
    g->in_call |= inside_read;
    g->n = n;
    for (size_t i = 0; i < n && i < 64; i++) {
        g->ids[i] = rows[i].id.ms;
        g->corrupt[i] = rows[i].corrupt;
        if (!rows[i].corrupt && (rows[i].flen != 2 || memcmp(rows[i].fields, "ok", 2) != 0)) g->corrupt[i] = 2;
    }
    if (err) snprintf(g->err, sizeof g->err, "%s", err);
    g->calls++;
}

/* A read whose callback cancels another one (its caller went away). */
typedef struct canceller {
    got g;
    store *s;
    uint64_t victim;
} canceller;

static void on_read_cancel(void *ctx, const store_row *rows, size_t n, const char *err) {
    canceller *c = ctx;
    store_read_cancel(c->s, c->victim);
    on_read(&c->g, rows, n, err);
}

static uint64_t read_(store *s, uint64_t a, uint64_t b, size_t count, int rev, got *g) {
    inside_read = 1;
    uint64_t id = store_read(s, 1, sid_(a, 0), sid_(b, UINT64_MAX), count, rev, on_read, g);
    inside_read = 0;
    return id;
}

TEST(cold_reads_ascending_descending_count_and_cancel) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    events e = {0};
    store *s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    for (int i = 1; i <= 20; i++) add_entry(s, 1, i, 0, "ok");
    add_entry(s, 2, 7, 0, "other stream");
    CHECK(flush(loop, s));

    got asc = {0}, desc = {0}, all = {0}, gone = {0}, after = {0}, empty = {0};
    CHECK(read_(s, 5, 15, 3, 0, &asc) > 0);
    CHECK(read_(s, 5, 15, 3, 1, &desc) > 0);
    CHECK(read_(s, 5, 15, 0, 0, &all) > 0);
    uint64_t c = read_(s, 1, 20, 0, 0, &gone);
    store_read_cancel(s, c);
    CHECK(read_(s, 30, 40, 0, 0, &empty) > 0);
    CHECK(read_(s, 1, 1, 0, 0, &after) > 0);
    CHECK(run_until(loop, &after.calls, 1, 5000));
    CHECK(run_until(loop, &empty.calls, 1, 1000));
    CHECK(asc.calls == 1 && asc.n == 3 && asc.ids[0] == 5 && asc.ids[1] == 6 && asc.ids[2] == 7);
    CHECK(desc.calls == 1 && desc.n == 3 && desc.ids[0] == 15 && desc.ids[1] == 14 && desc.ids[2] == 13);
    CHECK(all.calls == 1 && all.n == 11 && all.ids[0] == 5 && all.ids[10] == 15);
    for (size_t i = 0; i < all.n; i++) CHECK(all.corrupt[i] == 0);
    CHECK(empty.calls == 1 && empty.n == 0 && empty.err[0] == '\0');
    CHECK(after.n == 1 && after.ids[0] == 1);
    CHECK(gone.calls == 0); /* cancelled: never called back */
    CHECK(!asc.in_call && !desc.in_call && !all.in_call);
    store_stats st;
    store_get_stats(s, &st);
    CHECK(st.reads >= 5);

    /* a callback cancelling a read that finished with it */
    canceller killer = {.s = s};
    got victim = {0}, tail = {0};
    CHECK(store_read(s, 1, sid_(1, 0), sid_(2, 0), 0, 0, on_read_cancel, &killer) > 0);
    killer.victim = read_(s, 1, 2, 0, 0, &victim);
    CHECK(read_(s, 3, 3, 0, 0, &tail) > 0);
    CHECK(run_until(loop, &tail.calls, 1, 5000));
    CHECK(killer.g.calls == 1 && victim.calls == 0);

    /* a corrupt row in a cold read comes back flagged, without its fields */
    store_close(s);
    CHECK(sql_exec(dir, "UPDATE entries SET fields = CAST('no' AS BLOB) WHERE sid = 1 AND (ms, seq) = "
                        "(SELECT ms, seq FROM entries WHERE sid = 1 ORDER BY ms, seq LIMIT 1 OFFSET 1)") == 0);
    s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    got bad = {0};
    CHECK(read_(s, 1, 3, 0, 0, &bad) > 0);
    CHECK(run_until(loop, &bad.calls, 1, 5000));
    CHECK(bad.n == 3 && bad.corrupt[0] == 0 && bad.corrupt[1] == 1 && bad.corrupt[2] == 0);
    store_get_stats(s, &st);
    CHECK(st.corrupt_entries == 1);
    store_close(s);
out:
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

/*---- Memory bounds and close ----------------------------------------------------------------*/

TEST(big_iteration_closes_bounded_batches_and_reports_backlog) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    events e = {0};
    store *s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    static char f[64 * 1024];
    memset(f, 'y', sizeof f - 1);
    for (int i = 0; i < 64; i++) add_entry(s, 1, i + 1, 0, f); /* 4 MB in one loop iteration */
    CHECKF(store_seq(s) >= 4, "seq %llu", (unsigned long long)store_seq(s));
    /* how much is still uncommitted depends on the writer's pace; it is never more than was written */
    CHECK(store_backlog_bytes(s) <= 64 * (sizeof f + 256));
    CHECK(store_backlog_bytes(s) < STORE_BACKLOG_LIMIT);
    CHECK(flush(loop, s));
    CHECK(store_backlog_bytes(s) == 0);
    /* store_close commits what is left and reports it from inside */
    add_entry(s, 1, 1000, 0, "last");
    uint64_t last = store_seq(s);
    int before = e.ncommitted;
    store_close(s);
    CHECK(e.ncommitted == before + 1 && e.committed[e.ncommitted - 1] == last);
    CHECK(sql_int(dir, "SELECT count(*) FROM entries") == 65);
out:
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

/*---- Schema versions ---------------------------------------------------------------------------*/

TEST(schema_older_version_is_migrated_newer_and_foreign_refused) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char *dir = tmpdir();
    events e = {0};
    store *s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    put_stream(s, 1, "k", NULL, 0);
    add_entry(s, 1, 1, 0, "kept");
    CHECK(flush(loop, s));
    store_close(s);

    /* a version-1 database (no meta table, no dedup index) is migrated */
    CHECK(sql_exec(dir, "DROP TABLE meta; DROP INDEX dedup_time; PRAGMA user_version = 1") == 0);
    s = open_in(loop, dir, STORE_DURABILITY_OS, &e);
    CHECK(s != NULL);
    if (!s) goto out;
    CHECK(sql_int(dir, "PRAGMA user_version") == 2);
    CHECK(sql_int(dir, "SELECT count(*) FROM sqlite_master WHERE name IN ('meta', 'dedup_time')") == 2);
    loaded *l = calloc(1, sizeof *l);
    CHECK(load(s, l, 1 << 20) == 0);
    CHECK(has_line(l, "entry 1 1-0 kept"));
    free(l);
    store_close(s);

    /* a newer version is refused, untouched */
    char *err = NULL;
    store_callbacks cb = {0};
    CHECK(sql_exec(dir, "PRAGMA user_version = 99") == 0);
    CHECK(store_open(loop, dir, STORE_DURABILITY_OS, &cb, &err) == NULL);
    CHECKF(err && strstr(err, "newer luahub") && strstr(err, "99") && strstr(err, db_path(dir)), "%s",
           err ? err : "(null)");
    free(err);
    err = NULL;
    CHECK(sql_int(dir, "PRAGMA user_version") == 99);

    /* tables but no version: someone else's database */
    CHECK(sql_exec(dir, "PRAGMA user_version = 0") == 0);
    CHECK(store_open(loop, dir, STORE_DURABILITY_OS, &cb, &err) == NULL);
    CHECKF(err && strstr(err, "not a luahub database"), "%s", err ? err : "(null)");
    free(err);
out:
    rmdir_all(dir);
    ev_loop_destroy(loop);
}

UNIT_MAIN()
