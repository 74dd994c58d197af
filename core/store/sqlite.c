/* sqlite.c -- the embedded engine behind store.h: one SQLite database in WAL
 * mode, a writer thread that applies every batch queued when it wakes in ONE
 * transaction (group commit), a reader thread with its own read-only
 * connection for cold reads, the failure / probe / recovery cycle, and the
 * entry checksums (XXH3-64). Completions reach the loop through one ev_async.
 * core/store/README.md explains the schema, the threads and why a commit that
 * was reported is never lost.
 *
 * Locking: one mutex `mu` guards everything the threads share (the batch
 * queue, the writer's state, the completion list, the read queues, the
 * stats); the loop-only fields (the open batch, seq, committed, ok, error)
 * are touched only on the loop thread. The writer connection is used by the
 * writer thread, except in store_open and in store_load, which pause it. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/log.h"
#include "schema.h"

#define BUSY_TIMEOUT_MS 1000
#define PROBE_INTERVAL_S 1

/*---- Records and batches ------------------------------------------------------------------*/

enum op {
    OP_STREAM_PUT,
    OP_STREAM_DEL,
    OP_ENTRY_ADD,
    OP_ENTRY_DEL,
    OP_ENTRY_TRIM,
    OP_GROUP_PUT,
    OP_GROUP_DEL,
    OP_CONSUMER_PUT,
    OP_CONSUMER_DEL,
    OP_PENDING_PUT,
    OP_PENDING_DEL,
    OP_DEDUP_PUT,
    OP_DEDUP_EXPIRE,
    OP_COUNT
};

#define MAX_STMTS 6

/* Each operation's statements. Parameters by slot: ?1 sid, ?2 ?3 the id,
 * ?4 blob a (key, group, fields, msgid), ?5 blob b (consumer, capture),
 * ?6 ?7 integers, ?9 the checksum, ?10..?17 the stream metadata. */
static const char *const op_sql[OP_COUNT][MAX_STMTS] = {
    [OP_STREAM_PUT] = {"INSERT OR REPLACE INTO streams(sid, key, last_ms, last_seq, maxdel_ms, maxdel_seq, first_ms,"
                       " first_seq, entries_added, length, capture) VALUES(?1, ?4, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
                       " ?17, ?5)"},
    [OP_STREAM_DEL] = {"DELETE FROM streams WHERE sid = ?1", "DELETE FROM entries WHERE sid = ?1",
                       "DELETE FROM groups WHERE sid = ?1", "DELETE FROM consumers WHERE sid = ?1",
                       "DELETE FROM pending WHERE sid = ?1", "DELETE FROM dedup WHERE sid = ?1"},
    [OP_ENTRY_ADD] = {"INSERT OR REPLACE INTO entries(sid, ms, seq, fields, sum) VALUES(?1, ?2, ?3, ?4, ?9)"},
    [OP_ENTRY_DEL] = {"DELETE FROM entries WHERE sid = ?1 AND ms = ?2 AND seq = ?3"},
    [OP_ENTRY_TRIM] = {"DELETE FROM entries WHERE sid = ?1 AND (ms, seq) < (?2, ?3)"},
    [OP_GROUP_PUT] = {"INSERT OR REPLACE INTO groups(sid, name, last_ms, last_seq, entries_read)"
                      " VALUES(?1, ?4, ?2, ?3, ?6)"},
    [OP_GROUP_DEL] = {"DELETE FROM groups WHERE sid = ?1 AND name = ?4",
                      "DELETE FROM consumers WHERE sid = ?1 AND grp = ?4",
                      "DELETE FROM pending WHERE sid = ?1 AND grp = ?4"},
    [OP_CONSUMER_PUT] = {"INSERT OR REPLACE INTO consumers(sid, grp, name, seen_ms, active_ms)"
                         " VALUES(?1, ?4, ?5, ?6, ?7)"},
    [OP_CONSUMER_DEL] = {"DELETE FROM consumers WHERE sid = ?1 AND grp = ?4 AND name = ?5",
                         "DELETE FROM pending WHERE sid = ?1 AND grp = ?4 AND consumer = ?5"},
    [OP_PENDING_PUT] = {"INSERT OR REPLACE INTO pending(sid, grp, ms, seq, consumer, deliveries, delivery_ms)"
                        " VALUES(?1, ?4, ?2, ?3, ?5, ?6, ?7)"},
    [OP_PENDING_DEL] = {"DELETE FROM pending WHERE sid = ?1 AND grp = ?4 AND ms = ?2 AND seq = ?3"},
    [OP_DEDUP_PUT] = {"INSERT OR REPLACE INTO dedup(sid, msgid, ms, seq, time_ms) VALUES(?1, ?4, ?2, ?3, ?6)"},
    [OP_DEDUP_EXPIRE] = {"DELETE FROM dedup WHERE sid = ?1 AND time_ms < ?6"},
};

/* One mutation, with its blobs copied behind it. */
typedef struct rec {
    struct rec *next;
    int op;
    uint64_t sid;
    streamid id;
    int64_t i[2];
    const char *a, *b; /* b NULL = SQL NULL (no capture) */
    size_t alen, blen;
    store_stream_meta *meta; /* OP_STREAM_PUT only, behind the record */
    char data[];
} rec;

typedef struct batch {
    struct batch *next;
    uint64_t seq;
    rec *head;
    size_t bytes, nrecs;
} batch;

/*---- Completions (threads -> loop) ----------------------------------------------------------*/

enum { DONE_COMMITTED, DONE_FAILED, DONE_RECOVERED };

typedef struct done_ev {
    struct done_ev *next;
    int kind;
    uint64_t first, last;
    char *why;
} done_ev;

typedef struct read_req {
    struct read_req *next;
    uint64_t id;
    uint64_t sid;
    streamid start, end;
    size_t count;
    int rev, cancelled;
    store_read_fn done;
    void *ctx;
    store_row *rows; /* results, fields in `buf` */
    size_t n;
    char *buf;
    char *err;
} read_req;

struct store {
    struct ev_loop *loop;
    store_callbacks cb;
    char *path, *wal_path;
    int lock_fd; /* <dir>/luahub.lock, flock'ed: one hub per directory */
    sqlite3 *wdb, *rdb;
    sqlite3_stmt *stmts[OP_COUNT][MAX_STMTS];
    sqlite3_stmt *runs[3]; /* run_ops' statements (RUN records each) */
    ev_prepare prepare_w;
    ev_async async_w;
    pthread_t writer, reader;
    int threads;

    /* loop thread only */
    rec *cur_head, **cur_tail;
    size_t cur_bytes, cur_nrecs;
    rec *last_put; /* the open batch's newest OP_STREAM_PUT, or NULL (see store_stream_put) */
    int cur_oom;
    uint64_t seq; /* the open batch's */
    uint64_t committed;
    int ok;
    char *error;
    uint64_t next_read;

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t wcond; /* the writer waits for work */
    pthread_cond_t idle;  /* store_load / store_close wait for the writer */
    pthread_cond_t rcond; /* the reader waits for requests */
    batch *queue, **qtail;
    int stop, paused, busy, down;
    struct timespec probe_at;
    char *down_why;
    done_ev *events, **etail, *elast;
    read_req *rq, **rqtail, *running, *rdone, **rdtail;
    int wake_sent;
    store_stats stats;
    _Atomic size_t backlog; /* bytes of records written and not yet committed or failed */
};

static void wake_loop_locked(store *s) {
    if (!s->wake_sent) {
        s->wake_sent = 1;
        ev_async_send(s->loop, &s->async_w);
    }
}

/* Appends a completion in order; a commit right after a commit only raises
 * its seq, and consecutive failed seqs join one range, so the list stays
 * short however far the loop falls behind. Called with mu held. */
static void push_done_locked(store *s, int kind, uint64_t first, uint64_t last, const char *why) {
    done_ev *l = s->elast;
    if (l && l->kind == kind && kind == DONE_COMMITTED) {
        l->last = last;
    } else if (l && l->kind == kind && kind == DONE_FAILED && l->last + 1 == first) {
        l->last = last;
    } else {
        done_ev *e;
        while (!(e = calloc(1, sizeof *e))) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL); /* the loop must hear about it; wait for memory */
        }
        e->kind = kind;
        e->first = first;
        e->last = last;
        e->why = why ? strdup(why) : NULL;
        *s->etail = e;
        s->etail = &e->next;
        s->elast = e;
    }
    wake_loop_locked(s);
}

static void free_batch(store *s, batch *b) {
    rec *r = b->head;
    while (r) {
        rec *n = r->next;
        free(r);
        r = n;
    }
    atomic_fetch_sub(&s->backlog, b->bytes);
    free(b);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*---- Ids and checksums -----------------------------------------------------------------------*/

/* Ids are stored xor 2^63 as signed integers: SQLite compares signed
 * integers, and this keeps the unsigned order (ids above 2^63 included). */
static int64_t id_col(uint64_t v) {
    return (int64_t)(v ^ 0x8000000000000000ULL);
}
static uint64_t col_id(int64_t v) {
    return (uint64_t)v ^ 0x8000000000000000ULL;
}

/* The envelope's checksum: XXH3-64 of the fields, seeded with the XXH3-64 of
 * (sid, ms, seq) little-endian, so a row moved to another id fails too. */
static uint64_t entry_sum(uint64_t sid, streamid id, const void *fields, size_t flen) {
    unsigned char h[24];
    uint64_t v[3] = {sid, id.ms, id.seq};
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 8; j++) h[k * 8 + j] = (unsigned char)(v[k] >> (8 * j));
    return XXH3_64bits_withSeed(fields, flen, XXH3_64bits(h, sizeof h));
}

/* Checks one entry row (columns: ms, seq, fields, sum) and fills *row; a
 * mismatch is logged and counted, and the fields are withheld. */
static void check_row(store *s, uint64_t sid, sqlite3_stmt *st, store_row *row) {
    row->id.ms = col_id(sqlite3_column_int64(st, 0));
    row->id.seq = col_id(sqlite3_column_int64(st, 1));
    const char *f = sqlite3_column_blob(st, 2);
    size_t n = (size_t)sqlite3_column_bytes(st, 2);
    uint64_t sum = (uint64_t)sqlite3_column_int64(st, 3);
    if (entry_sum(sid, row->id, f ? f : "", n) != sum || sqlite3_column_type(st, 2) != SQLITE_BLOB) {
        row->corrupt = 1;
        row->fields = NULL;
        row->flen = 0;
        pthread_mutex_lock(&s->mu);
        s->stats.corrupt_entries++;
        pthread_mutex_unlock(&s->mu);
        log_warning("Store: entry %llu-%llu of stream %llu fails its checksum; not served",
                    (unsigned long long)row->id.ms, (unsigned long long)row->id.seq, (unsigned long long)sid);
    } else {
        row->corrupt = 0;
        row->fields = f ? f : "";
        row->flen = n;
    }
}

/*---- Errors --------------------------------------------------------------------------------*/

/* A reason a person can act on: the kind of failure, SQLite's message and
 * the system error behind it. */
static char *describe(sqlite3 *db, int rc) {
    const char *kind;
    switch (rc & 0xff) {
    case SQLITE_FULL:
        kind = "disk full";
        break;
    case SQLITE_IOERR:
        kind = "I/O error";
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        kind = "database locked";
        break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        kind = "database corrupt";
        break;
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        kind = "database not writable";
        break;
    case SQLITE_NOMEM:
        kind = "out of memory";
        break;
    default:
        kind = "database error";
        break;
    }
    const char *step = "";
    switch (db ? sqlite3_extended_errcode(db) : rc) {
    case SQLITE_IOERR_WRITE:
        step = " while writing";
        break;
    case SQLITE_IOERR_FSYNC:
    case SQLITE_IOERR_DIR_FSYNC:
        step = " while syncing";
        break;
    case SQLITE_IOERR_READ:
    case SQLITE_IOERR_SHORT_READ:
        step = " while reading";
        break;
    case SQLITE_IOERR_TRUNCATE:
        step = " while truncating";
        break;
    }
    int e = db ? sqlite3_system_errno(db) : 0;
    char *out;
    if (asprintf(&out, "%s: %s%s%s%s%s", kind, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), step, e ? " (" : "",
                 e ? strerror(e) : "", e ? ")" : "") < 0)
        return NULL;
    return out;
}

/*---- The writer thread -------------------------------------------------------------------------*/

static int bind_rec(sqlite3_stmt *st, const rec *r) {
    int n = sqlite3_bind_parameter_count(st), rc = SQLITE_OK;
    for (int p = 1; p <= n && rc == SQLITE_OK; p++) {
        switch (p) {
        case 1:
            rc = sqlite3_bind_int64(st, p, (int64_t)r->sid);
            break;
        case 2:
            rc = sqlite3_bind_int64(st, p, id_col(r->id.ms));
            break;
        case 3:
            rc = sqlite3_bind_int64(st, p, id_col(r->id.seq));
            break;
        case 4:
            rc = r->a ? sqlite3_bind_blob(st, p, r->a, (int)r->alen, SQLITE_STATIC) : SQLITE_OK;
            break;
        case 5:
            rc = r->b ? sqlite3_bind_blob(st, p, r->b, (int)r->blen, SQLITE_STATIC) : sqlite3_bind_null(st, p);
            break;
        case 6:
            rc = sqlite3_bind_int64(st, p, r->i[0]);
            break;
        case 7:
            rc = sqlite3_bind_int64(st, p, r->i[1]);
            break;
        case 9:
            rc = sqlite3_bind_int64(st, p, (int64_t)entry_sum(r->sid, r->id, r->a, r->alen));
            break;
        default:
            if (p >= 10 && p <= 17 && r->meta) {
                const store_stream_meta *m = r->meta;
                uint64_t v[8] = {m->last_id.ms,  m->last_id.seq,  m->max_deleted_id.ms, m->max_deleted_id.seq,
                                 m->first_id.ms, m->first_id.seq, m->entries_added,     m->length};
                rc = sqlite3_bind_int64(st, p, p <= 15 ? id_col(v[p - 10]) : (int64_t)v[p - 10]);
            }
        }
    }
    return rc;
}

/* Consecutive records of one kind that a busy stream writes in bulk
 * (appends; a consumer group's deliveries and acks) are written RUN rows per
 * statement: one VDBE program run per RUN records instead of per record. */
#define RUN 32

/* The operations written in runs, and each one's statement: a head, a
 * tuple of `cols` parameters repeated RUN times (comma-separated), a tail. */
static const struct run_op {
    int op, cols;
    const char *head, *tuple, *tail;
} run_ops[] = {
    {OP_ENTRY_ADD, 5, "INSERT OR REPLACE INTO entries(sid, ms, seq, fields, sum) VALUES", "(?,?,?,?,?)", ""},
    {OP_PENDING_PUT, 7,
     "INSERT OR REPLACE INTO pending(sid, grp, ms, seq, consumer, deliveries, delivery_ms) VALUES", "(?,?,?,?,?,?,?)",
     ""},
    {OP_PENDING_DEL, 4, "DELETE FROM pending WHERE (sid, grp, ms, seq) IN (VALUES", "(?,?,?,?)", ")"},
};
#define NRUN_OPS (int)(sizeof run_ops / sizeof run_ops[0])
_Static_assert(sizeof run_ops / sizeof run_ops[0] == sizeof((store *)0)->runs / sizeof(sqlite3_stmt *),
               "one prepared statement per run_ops entry");

/* The SQL of run_ops[k] (malloc'd), or NULL. */
static char *run_sql(int k) {
    const struct run_op *o = &run_ops[k];
    size_t tl = strlen(o->tuple) + 1, n = strlen(o->head) + RUN * tl + strlen(o->tail) + 2;
    char *sql = malloc(n);
    if (!sql) return NULL;
    char *p = sql + sprintf(sql, "%s", o->head);
    for (int i = 0; i < RUN; i++) p += sprintf(p, "%s%s", i ? "," : "", o->tuple);
    sprintf(p, "%s", o->tail);
    return sql;
}

/* Binds record r as tuple i of run_ops[k]'s statement, in the columns'
 * order of its tuple. */
static int bind_tuple(sqlite3_stmt *st, int k, int i, const rec *r) {
    int p = run_ops[k].cols * i, rc;
    rc = sqlite3_bind_int64(st, p + 1, (int64_t)r->sid);
    if (run_ops[k].op == OP_ENTRY_ADD) {
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, p + 2, id_col(r->id.ms));
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, p + 3, id_col(r->id.seq));
        if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, p + 4, r->a, (int)r->alen, SQLITE_STATIC);
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, p + 5, (int64_t)entry_sum(r->sid, r->id, r->a, r->alen));
        return rc;
    }
    if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, p + 2, r->a, (int)r->alen, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, p + 3, id_col(r->id.ms));
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, p + 4, id_col(r->id.seq));
    if (run_ops[k].op == OP_PENDING_PUT) {
        if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, p + 5, r->b, (int)r->blen, SQLITE_STATIC);
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, p + 6, r->i[0]);
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, p + 7, r->i[1]);
    }
    return rc;
}

/* The run_ops index whose run starts at r (r and the RUN - 1 records after
 * it all of that kind), or -1. */
static int run_at(const store *s, const rec *r) {
    int k = 0;
    while (k < NRUN_OPS && run_ops[k].op != r->op) k++;
    if (k == NRUN_OPS || !s->runs[k]) return -1;
    const rec *x = r->next; /* r itself is of the kind: the RUN - 1 after it */
    for (int i = 1; i < RUN; i++, x = x->next)
        if (!x || x->op != run_ops[k].op) return -1;
    return k;
}

/* Writes the run of run_ops[k] starting at r. */
static int apply_run(store *s, int k, const rec *r) {
    sqlite3_stmt *st = s->runs[k];
    int rc = SQLITE_OK;
    for (int i = 0; i < RUN && rc == SQLITE_OK; i++, r = r->next) rc = bind_tuple(st, k, i, r);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Runs one record's statements; an SQLite result code. */
static int apply_rec(store *s, const rec *r) {
    for (int k = 0; k < MAX_STMTS && s->stmts[r->op][k]; k++) {
        sqlite3_stmt *st = s->stmts[r->op][k];
        int rc = bind_rec(st, r);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE && rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

/* Applies the batches in one transaction. Returns 0, or -1 with *why set
 * and the transaction rolled back. */
static int commit_batches(store *s, batch *list, char **why) {
    int rc = sqlite3_exec(s->wdb, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (batch *b = list; b && rc == SQLITE_OK; b = b->next)
        for (rec *r = b->head; r && rc == SQLITE_OK; r = r->next) {
            int k = run_at(s, r);
            if (k >= 0) {
                rc = apply_run(s, k, r);
                for (int i = 1; i < RUN; i++) r = r->next;
            } else {
                rc = apply_rec(s, r);
            }
        }
    if (rc == SQLITE_OK) rc = sqlite3_exec(s->wdb, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK) return 0;
    *why = describe(s->wdb, rc);
    if (!sqlite3_get_autocommit(s->wdb)) sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* A tiny write transaction: succeeds only when the database takes writes
 * again. */
static int probe(store *s, char **why) {
    int rc = sqlite3_exec(s->wdb,
                          "BEGIN IMMEDIATE; INSERT OR REPLACE INTO meta(k, v) VALUES('probe', strftime('%s','now'));"
                          " COMMIT",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK) return 0;
    *why = describe(s->wdb, rc);
    if (!sqlite3_get_autocommit(s->wdb)) sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static uint64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The writer: sleeps until batches are queued, takes them all and commits
 * them as one transaction; after a failure, probes once a second until a
 * write succeeds again. */
/* How much lower than the loop the store's threads run (a nice value): on a
 * busy machine the scheduler then gives the event loop the CPU first, so a
 * stream written at full speed costs pub/sub clients less latency; the
 * writer still gets every idle cycle, and its batches only grow (group
 * commit) while it waits. */
#define STORE_THREAD_NICE 5

/* Lowers the calling thread's priority (Linux: nice is per thread). */
static void lower_priority(void) {
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, (id_t)gettid());
    if (errno == 0) setpriority(PRIO_PROCESS, (id_t)gettid(), cur + STORE_THREAD_NICE);
}

static void *writer_main(void *arg) {
    store *s = arg;
    lower_priority();
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->paused) {
            pthread_cond_wait(&s->wcond, &s->mu);
            continue;
        }
        if (s->down) {
            if (s->stop) break;
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            if (now.tv_sec < s->probe_at.tv_sec ||
                (now.tv_sec == s->probe_at.tv_sec && now.tv_nsec < s->probe_at.tv_nsec)) {
                pthread_cond_timedwait(&s->wcond, &s->mu, &s->probe_at);
                continue;
            }
            s->busy = 1;
            pthread_mutex_unlock(&s->mu);
            char *why = NULL;
            int rc = probe(s, &why);
            pthread_mutex_lock(&s->mu);
            s->busy = 0;
            if (rc == 0) {
                s->down = 0;
                free(s->down_why);
                s->down_why = NULL;
                log_notice("Store: writes succeed again; recovered");
                push_done_locked(s, DONE_RECOVERED, 0, 0, NULL);
            } else {
                clock_gettime(CLOCK_REALTIME, &s->probe_at);
                s->probe_at.tv_sec += PROBE_INTERVAL_S;
            }
            free(why);
            pthread_cond_broadcast(&s->idle);
            continue;
        }
        if (!s->queue) {
            pthread_cond_broadcast(&s->idle);
            if (s->stop) break;
            pthread_cond_wait(&s->wcond, &s->mu);
            continue;
        }
        batch *list = s->queue;
        s->queue = NULL;
        s->qtail = &s->queue;
        s->busy = 1;
        pthread_mutex_unlock(&s->mu);

        char *why = NULL;
        double t0 = now_ms();
        int rc = commit_batches(s, list, &why);
        double ms = now_ms() - t0;
        uint64_t db_bytes = file_size(s->path) + file_size(s->wal_path);

        pthread_mutex_lock(&s->mu);
        s->busy = 0;
        uint64_t first = list->seq, last = 0;
        size_t nb = 0, nr = 0;
        for (batch *b = list; b; b = b->next) {
            last = b->seq;
            nb++;
            nr += b->nrecs;
        }
        if (rc == 0) {
            s->stats.commits++;
            s->stats.batches += nb;
            s->stats.records += nr;
            s->stats.last_commit_ms = ms;
            s->stats.db_bytes = db_bytes;
            push_done_locked(s, DONE_COMMITTED, first, last, NULL);
        } else {
            /* Every batch queued behind the failed ones fails too: the
             * model reloads from the database, so nothing may land after a
             * hole. */
            for (batch *b = s->queue; b; b = b->next) last = b->seq;
            batch *rest = s->queue;
            s->queue = NULL;
            s->qtail = &s->queue;
            while (rest) {
                batch *n = rest->next;
                free_batch(s, rest);
                rest = n;
            }
            s->stats.failures++;
            s->down = 1;
            free(s->down_why);
            s->down_why = why ? strdup(why) : NULL;
            clock_gettime(CLOCK_REALTIME, &s->probe_at);
            s->probe_at.tv_sec += PROBE_INTERVAL_S;
            log_warning("Store: commit of batches %llu..%llu failed: %s", (unsigned long long)first,
                        (unsigned long long)last, why ? why : "out of memory");
            push_done_locked(s, DONE_FAILED, first, last, why ? why : "out of memory");
        }
        free(why);
        while (list) {
            batch *n = list->next;
            free_batch(s, list);
            list = n;
        }
        pthread_cond_broadcast(&s->idle);
    }
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/*---- The reader thread -------------------------------------------------------------------------*/

/* Runs one cold read on the reader's connection into r->rows / r->buf. */
static void run_read(store *s, read_req *r) {
    static const char *const sql[2] = {
        "SELECT ms, seq, fields, sum FROM entries WHERE sid = ?1 AND (ms, seq) >= (?2, ?3) AND (ms, seq) <= (?4, ?5)"
        " ORDER BY ms, seq LIMIT ?6",
        "SELECT ms, seq, fields, sum FROM entries WHERE sid = ?1 AND (ms, seq) >= (?2, ?3) AND (ms, seq) <= (?4, ?5)"
        " ORDER BY ms DESC, seq DESC LIMIT ?6",
    };
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->rdb, sql[r->rev ? 1 : 0], -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (int64_t)r->sid);
        sqlite3_bind_int64(st, 2, id_col(r->start.ms));
        sqlite3_bind_int64(st, 3, id_col(r->start.seq));
        sqlite3_bind_int64(st, 4, id_col(r->end.ms));
        sqlite3_bind_int64(st, 5, id_col(r->end.seq));
        sqlite3_bind_int64(st, 6, r->count ? (int64_t)r->count : -1);
    }
    size_t cap = 0, used = 0, bcap = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        store_row row;
        check_row(s, r->sid, st, &row);
        if (r->n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            store_row *nr = realloc(r->rows, nc * sizeof *nr);
            if (!nr) {
                rc = SQLITE_NOMEM;
                break;
            }
            r->rows = nr;
            cap = nc;
        }
        if (used + row.flen > bcap) {
            size_t nc = bcap ? bcap * 2 : 4096;
            while (nc < used + row.flen) nc *= 2;
            char *nb = realloc(r->buf, nc);
            if (!nb) {
                rc = SQLITE_NOMEM;
                break;
            }
            r->buf = nb;
            bcap = nc;
        }
        if (row.flen) memcpy(r->buf + used, row.fields, row.flen);
        row.fields = row.corrupt ? NULL : (const char *)(uintptr_t)used; /* an offset until the buffer is final */
        used += row.flen;
        r->rows[r->n++] = row;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_OK) {
        r->err = describe(s->rdb, rc);
        if (!r->err) r->err = strdup("store read failed");
    } else {
        for (size_t k = 0; k < r->n; k++)
            if (!r->rows[k].corrupt) r->rows[k].fields = r->buf + (uintptr_t)r->rows[k].fields;
    }
    sqlite3_finalize(st);
}

static void free_read(read_req *r) {
    free(r->rows);
    free(r->buf);
    free(r->err);
    free(r);
}

static void *reader_main(void *arg) {
    store *s = arg;
    lower_priority();
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (!s->rq) {
            if (s->stop) break;
            pthread_cond_wait(&s->rcond, &s->mu);
            continue;
        }
        read_req *r = s->rq;
        s->rq = r->next;
        if (!s->rq) s->rqtail = &s->rq;
        r->next = NULL;
        s->running = r;
        pthread_mutex_unlock(&s->mu);
        if (!r->cancelled) run_read(s, r); /* a racy peek: at worst a cancelled read runs */
        pthread_mutex_lock(&s->mu);
        s->running = NULL;
        s->stats.reads++;
        if (r->cancelled) {
            free_read(r);
            continue;
        }
        *s->rdtail = r;
        s->rdtail = &r->next;
        wake_loop_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/*---- The loop side ---------------------------------------------------------------------------*/

/* Hands the open batch to the writer (or, while the writer is down, fails
 * it at once). */
static void batch_close(store *s) {
    if (!s->cur_nrecs && !s->cur_oom) return;
    uint64_t seq = s->seq++;
    batch *b = s->cur_oom ? NULL : calloc(1, sizeof *b);
    if (!b) {
        rec *r = s->cur_head;
        while (r) {
            rec *n = r->next;
            free(r);
            r = n;
        }
        atomic_fetch_sub(&s->backlog, s->cur_bytes);
    } else {
        b->seq = seq;
        b->head = s->cur_head;
        b->bytes = s->cur_bytes;
        b->nrecs = s->cur_nrecs;
    }
    s->cur_head = NULL;
    s->cur_tail = &s->cur_head;
    s->cur_bytes = s->cur_nrecs = 0;
    s->cur_oom = 0;
    s->last_put = NULL;

    pthread_mutex_lock(&s->mu);
    if (!b) {
        push_done_locked(s, DONE_FAILED, seq, seq, "out of memory for a write batch");
    } else if (s->down) {
        push_done_locked(s, DONE_FAILED, seq, seq, s->down_why ? s->down_why : "store unavailable");
        free_batch(s, b);
    } else {
        *s->qtail = b;
        s->qtail = &b->next;
        pthread_cond_signal(&s->wcond);
    }
    pthread_mutex_unlock(&s->mu);
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
    batch_close(w->data);
}

/* Delivers completions on the loop thread, in the order they happened.
 * Finished reads are taken one at a time, so a callback that cancels another
 * finished read (its connection closed) still finds it in `rdone`. */
static void deliver(store *s) {
    pthread_mutex_lock(&s->mu);
    done_ev *ev = s->events;
    s->events = NULL;
    s->etail = &s->events;
    s->elast = NULL;
    s->wake_sent = 0;
    pthread_mutex_unlock(&s->mu);

    while (ev) {
        done_ev *n = ev->next;
        if (ev->kind == DONE_COMMITTED) {
            if (ev->last > s->committed) s->committed = ev->last;
            if (s->cb.committed) s->cb.committed(s->cb.ctx, ev->last);
        } else if (ev->kind == DONE_FAILED) {
            s->ok = 0;
            free(s->error);
            s->error = ev->why;
            ev->why = NULL;
            if (s->cb.failed) s->cb.failed(s->cb.ctx, ev->first, ev->last, s->error);
        } else {
            s->ok = 1;
            if (s->cb.recovered) s->cb.recovered(s->cb.ctx);
        }
        free(ev->why);
        free(ev);
        ev = n;
    }
    for (;;) {
        pthread_mutex_lock(&s->mu);
        read_req *r = s->rdone;
        if (r) {
            s->rdone = r->next;
            if (!s->rdone) s->rdtail = &s->rdone;
        }
        pthread_mutex_unlock(&s->mu);
        if (!r) break;
        if (!r->cancelled) r->done(r->ctx, r->err ? NULL : r->rows, r->n, r->err);
        free_read(r);
    }
}

static void async_cb(struct ev_loop *loop, ev_async *w, int revents) {
    deliver(w->data);
}

/* Appends a record to the open batch; a batch that grew past
 * STORE_BATCH_MAX_BYTES is handed to the writer first, so one loop
 * iteration that writes a lot still feeds the writer in bounded pieces. */
static rec *rec_add(store *s, int op, uint64_t sid, const char *a, size_t alen, const char *b, size_t blen, int has_b,
                    size_t extra) {
    if (s->cur_bytes >= STORE_BATCH_MAX_BYTES) batch_close(s);
    size_t size = sizeof(rec) + extra + alen + blen + 2;
    rec *r = calloc(1, size);
    if (!r) {
        s->cur_oom = 1;
        return NULL;
    }
    r->op = op;
    r->sid = sid;
    char *p = r->data + extra;
    if (a) {
        memcpy(p, a, alen);
        r->a = p;
        r->alen = alen;
        p += alen + 1;
    }
    if (has_b) {
        if (blen) memcpy(p, b, blen);
        r->b = p;
        r->blen = blen;
    }
    *s->cur_tail = r;
    s->cur_tail = &r->next;
    s->cur_bytes += size;
    s->cur_nrecs++;
    atomic_fetch_add(&s->backlog, size);
    return r;
}

/*---- Open and close ----------------------------------------------------------------------------*/

static int mkdir_p(const char *dir) {
    char *p = strdup(dir);
    if (!p) return -1;
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *q = '/';
    }
    int rc = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

static void set_err(char **err, const char *fmt, const char *a, const char *b) {
    if (err && asprintf(err, fmt, a, b) < 0) *err = NULL;
}

/* Opens one connection with the store's settings. */
static sqlite3 *open_db(const char *path, int flags, int durability, char **err) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK && (flags & SQLITE_OPEN_READWRITE)) {
        sqlite3_stmt *st;
        rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
            if (rc == SQLITE_ROW) rc = mode && strcmp((const char *)mode, "wal") == 0 ? SQLITE_OK : SQLITE_CANTOPEN;
            sqlite3_finalize(st);
        }
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(
                db, durability == STORE_DURABILITY_FSYNC ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        char *why = describe(db, rc);
        set_err(err, "cannot open the store %s: %s", path, why ? why : "out of memory");
        free(why);
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* Takes <dir>/luahub.lock (flock, released when the process ends, even by
 * kill -9). A second hub on the same directory would pick the same stream
 * numbers and overwrite the first one's committed rows: it must refuse. */
static int lock_dir(store *s, const char *dir, char **err) {
    char *path;
    if (asprintf(&path, "%s/luahub.lock", dir) < 0) {
        set_err(err, "cannot open the store in %s: %s", dir, "out of memory");
        return -1;
    }
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int rc = s->lock_fd < 0 ? -1 : flock(s->lock_fd, LOCK_EX | LOCK_NB);
    if (rc != 0 && errno == EWOULDBLOCK)
        set_err(err, "the store in %s is in use by another luahub (%s is locked)", dir, path);
    else if (rc != 0 && (errno == EROFS || errno == EACCES || errno == EPERM))
        set_err(err, "the store directory %s is not writable: %s", dir, strerror(errno));
    else if (rc != 0)
        set_err(err, "cannot lock the store's %s: %s", path, strerror(errno));
    free(path);
    return rc;
}

store *store_open(struct ev_loop *loop, const char *dir, int durability, const store_callbacks *cb, char **err) {
    if (err) *err = NULL;
    if (mkdir_p(dir) != 0) {
        set_err(err, "cannot create the store directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    store *s = calloc(1, sizeof *s);
    if (!s || asprintf(&s->path, "%s/luahub.db", dir) < 0 || asprintf(&s->wal_path, "%s/luahub.db-wal", dir) < 0) {
        set_err(err, "cannot open the store in %s: %s", dir, "out of memory");
        if (s) {
            free(s->path);
            free(s);
        }
        return NULL;
    }
    s->loop = loop;
    s->lock_fd = -1;
    if (cb) s->cb = *cb;
    s->cur_tail = &s->cur_head;
    s->seq = 1;
    s->ok = 1;
    s->qtail = &s->queue;
    s->etail = &s->events;
    s->rqtail = &s->rq;
    s->rdtail = &s->rdone;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wcond, NULL);
    pthread_cond_init(&s->idle, NULL);
    pthread_cond_init(&s->rcond, NULL);

    if (lock_dir(s, dir, err) != 0) goto fail;
    s->wdb = open_db(s->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, durability, err);
    if (!s->wdb || store_schema_migrate(s->wdb, s->path, err) != 0) goto fail;
    for (int op = 0; op < OP_COUNT; op++)
        for (int k = 0; k < MAX_STMTS && op_sql[op][k]; k++)
            if (sqlite3_prepare_v3(s->wdb, op_sql[op][k], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[op][k], NULL) !=
                SQLITE_OK) {
                set_err(err, "cannot prepare the store's statements in %s: %s", s->path, sqlite3_errmsg(s->wdb));
                goto fail;
            }
    for (int k = 0; k < NRUN_OPS; k++) {
        char *sql = run_sql(k);
        int rc = sql ? sqlite3_prepare_v3(s->wdb, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->runs[k], NULL) : SQLITE_NOMEM;
        free(sql);
        if (rc != SQLITE_OK) {
            set_err(err, "cannot prepare the store's statements in %s: %s", s->path, sqlite3_errmsg(s->wdb));
            goto fail;
        }
    }
    s->rdb = open_db(s->path, SQLITE_OPEN_READONLY, durability, err);
    if (!s->rdb) goto fail;
    s->stats.db_bytes = file_size(s->path) + file_size(s->wal_path);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->wdb, "PRAGMA synchronous", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) s->stats.synchronous = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }

    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        set_err(err, "cannot start the store's writer thread for %s: %s", s->path, strerror(errno));
        goto fail;
    }
    if (pthread_create(&s->reader, NULL, reader_main, s) != 0) {
        set_err(err, "cannot start the store's reader thread for %s: %s", s->path, strerror(errno));
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->wcond);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->writer, NULL);
        goto fail;
    }
    s->threads = 1;
    ev_prepare_init(&s->prepare_w, prepare_cb);
    s->prepare_w.data = s;
    ev_prepare_start(loop, &s->prepare_w);
    ev_async_init(&s->async_w, async_cb);
    s->async_w.data = s;
    ev_async_start(loop, &s->async_w);
    return s;
fail:
    store_close(s);
    return NULL;
}

void store_close(store *s) {
    if (!s) return;
    if (s->threads) {
        batch_close(s);
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->wcond);
        pthread_cond_signal(&s->rcond);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->writer, NULL);
        pthread_join(s->reader, NULL);
        /* the last commits (and reads the reader finished) are reported */
        deliver(s);
        for (read_req *r = s->rq; r;) {
            read_req *n = r->next;
            if (!r->cancelled) r->done(r->ctx, NULL, 0, "store closed");
            free_read(r);
            r = n;
        }
        ev_prepare_stop(s->loop, &s->prepare_w);
        ev_async_stop(s->loop, &s->async_w);
    }
    for (rec *r = s->cur_head; r;) {
        rec *n = r->next;
        free(r);
        r = n;
    }
    for (int op = 0; op < OP_COUNT; op++)
        for (int k = 0; k < MAX_STMTS; k++) sqlite3_finalize(s->stmts[op][k]);
    for (int k = 0; k < NRUN_OPS; k++) sqlite3_finalize(s->runs[k]);
    sqlite3_close(s->rdb);
    sqlite3_close(s->wdb);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->wcond);
    pthread_cond_destroy(&s->idle);
    pthread_cond_destroy(&s->rcond);
    free(s->error);
    free(s->down_why);
    if (s->lock_fd >= 0) close(s->lock_fd);
    free(s->path);
    free(s->wal_path);
    free(s);
}

int store_ok(const store *s) {
    return s->ok;
}
const char *store_error(const store *s) {
    return s->error;
}
uint64_t store_seq(const store *s) {
    return s->cur_nrecs || s->cur_oom ? s->seq : s->seq - 1;
}
uint64_t store_committed(const store *s) {
    return s->committed;
}
size_t store_backlog_bytes(const store *s) {
    return atomic_load(&((store *)s)->backlog);
}

/*---- Mutations ----------------------------------------------------------------------------------*/

/* A stream's row is written whole by every put, and nothing else reads it
 * within a transaction: when the open batch already holds a put of the same
 * stream with the same key and capture blob (every XADD to one stream), the
 * new metadata replaces that record's instead of adding one. The row then
 * takes the newest values at the older record's place, which is the same
 * final state, as long as no delete of the stream came in between
 * (store_stream_del forgets the record). Halves the writer's statements for
 * a stream of appends. */
void store_stream_put(store *s, uint64_t sid, const char *key, size_t klen, const store_stream_meta *m) {
    rec *p = s->last_put;
    if (p && p->sid == sid && p->alen == klen && memcmp(p->a, key, klen) == 0 &&
        (p->b != NULL) == (m->capture != NULL) &&
        (!p->b || (p->blen == m->capture_len && memcmp(p->b, m->capture, p->blen) == 0))) {
        *p->meta = *m;
        p->meta->capture = NULL;
        return;
    }
    rec *r = rec_add(s, OP_STREAM_PUT, sid, key, klen, m->capture, m->capture_len, m->capture != NULL,
                     sizeof(store_stream_meta));
    if (!r) return;
    r->meta = (store_stream_meta *)(void *)r->data;
    *r->meta = *m;
    r->meta->capture = NULL;
    s->last_put = r;
}

void store_stream_del(store *s, uint64_t sid) {
    s->last_put = NULL;
    rec_add(s, OP_STREAM_DEL, sid, NULL, 0, NULL, 0, 0, 0);
}

void store_entry_add(store *s, uint64_t sid, streamid id, const char *fields, size_t flen) {
    rec *r = rec_add(s, OP_ENTRY_ADD, sid, fields, flen, NULL, 0, 0, 0);
    if (r) r->id = id;
}

void store_entry_del(store *s, uint64_t sid, streamid id) {
    rec *r = rec_add(s, OP_ENTRY_DEL, sid, NULL, 0, NULL, 0, 0, 0);
    if (r) r->id = id;
}

void store_entry_trim(store *s, uint64_t sid, streamid below) {
    rec *r = rec_add(s, OP_ENTRY_TRIM, sid, NULL, 0, NULL, 0, 0, 0);
    if (r) r->id = below;
}

void store_group_put(store *s, uint64_t sid, const char *group, size_t glen, streamid last_delivered,
                     int64_t entries_read) {
    rec *r = rec_add(s, OP_GROUP_PUT, sid, group, glen, NULL, 0, 0, 0);
    if (!r) return;
    r->id = last_delivered;
    r->i[0] = entries_read;
}

void store_group_del(store *s, uint64_t sid, const char *group, size_t glen) {
    rec_add(s, OP_GROUP_DEL, sid, group, glen, NULL, 0, 0, 0);
}

void store_consumer_put(store *s, uint64_t sid, const char *group, size_t glen, const char *consumer, size_t clen,
                        int64_t seen_time_ms, int64_t active_time_ms) {
    rec *r = rec_add(s, OP_CONSUMER_PUT, sid, group, glen, consumer, clen, 1, 0);
    if (!r) return;
    r->i[0] = seen_time_ms;
    r->i[1] = active_time_ms;
}

void store_consumer_del(store *s, uint64_t sid, const char *group, size_t glen, const char *consumer, size_t clen) {
    rec_add(s, OP_CONSUMER_DEL, sid, group, glen, consumer, clen, 1, 0);
}

void store_pending_put(store *s, uint64_t sid, const char *group, size_t glen, streamid id, const char *consumer,
                       size_t clen, uint64_t deliveries, int64_t delivery_time_ms) {
    rec *r = rec_add(s, OP_PENDING_PUT, sid, group, glen, consumer, clen, 1, 0);
    if (!r) return;
    r->id = id;
    r->i[0] = (int64_t)deliveries;
    r->i[1] = delivery_time_ms;
}

void store_pending_del(store *s, uint64_t sid, const char *group, size_t glen, streamid id) {
    rec *r = rec_add(s, OP_PENDING_DEL, sid, group, glen, NULL, 0, 0, 0);
    if (r) r->id = id;
}

void store_dedup_put(store *s, uint64_t sid, const char *msgid, size_t mlen, streamid id, int64_t time_ms) {
    rec *r = rec_add(s, OP_DEDUP_PUT, sid, msgid, mlen, NULL, 0, 0, 0);
    if (!r) return;
    r->id = id;
    r->i[0] = time_ms;
}

void store_dedup_expire(store *s, uint64_t sid, int64_t before_ms) {
    rec *r = rec_add(s, OP_DEDUP_EXPIRE, sid, NULL, 0, NULL, 0, 0, 0);
    if (r) r->i[0] = before_ms;
}

/*---- Loading -----------------------------------------------------------------------------------*/

static const char *blob(sqlite3_stmt *st, int col, size_t *len) {
    const char *p = sqlite3_column_blob(st, col);
    *len = (size_t)sqlite3_column_bytes(st, col);
    return p ? p : "";
}

static streamid col_sid(sqlite3_stmt *st, int col) {
    return (streamid){col_id(sqlite3_column_int64(st, col)), col_id(sqlite3_column_int64(st, col + 1))};
}

/* Prepares `sql` with ?1 = sid. */
static sqlite3_stmt *prep(sqlite3 *db, const char *sql, uint64_t sid) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return NULL;
    if (sqlite3_bind_parameter_count(st) >= 1) sqlite3_bind_int64(st, 1, (int64_t)sid);
    return st;
}

/* The newest entries of one stream whose fields fit in `budget` bytes: the
 * id of the oldest of them in *from (SQLITE_ROW), or SQLITE_DONE when none
 * fits. */
static int tail_start(sqlite3 *db, uint64_t sid, size_t budget, streamid *from, size_t *used) {
    sqlite3_stmt *st =
        prep(db, "SELECT ms, seq, length(fields) FROM entries WHERE sid = ?1 ORDER BY ms DESC, seq DESC", sid);
    if (!st) return sqlite3_errcode(db);
    int rc, found = 0;
    *used = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_int64(st, 2);
        if (*used + n > budget) break;
        *used += n;
        *from = col_sid(st, 0);
        found = 1;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return rc;
    return found ? SQLITE_ROW : SQLITE_DONE;
}

/* One row of one of a stream's tables, handed to the loader; non-zero stops. */
typedef int (*row_fn)(store *s, const store_loader *l, uint64_t sid, sqlite3_stmt *st);

static int row_group(store *s, const store_loader *l, uint64_t sid, sqlite3_stmt *st) {
    size_t a;
    const char *g = blob(st, 0, &a);
    return l->group && l->group(l->ctx, sid, g, a, col_sid(st, 1), sqlite3_column_int64(st, 3));
}

static int row_consumer(store *s, const store_loader *l, uint64_t sid, sqlite3_stmt *st) {
    size_t a, b;
    const char *g = blob(st, 0, &a), *c = blob(st, 1, &b);
    return l->consumer &&
           l->consumer(l->ctx, sid, g, a, c, b, sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3));
}

static int row_pending(store *s, const store_loader *l, uint64_t sid, sqlite3_stmt *st) {
    size_t a, b;
    const char *g = blob(st, 0, &a), *c = blob(st, 3, &b);
    return l->pending && l->pending(l->ctx, sid, g, a, col_sid(st, 1), c, b, (uint64_t)sqlite3_column_int64(st, 4),
                                    sqlite3_column_int64(st, 5));
}

static int row_dedup(store *s, const store_loader *l, uint64_t sid, sqlite3_stmt *st) {
    size_t a;
    const char *m = blob(st, 0, &a);
    return l->dedup && l->dedup(l->ctx, sid, m, a, col_sid(st, 1), sqlite3_column_int64(st, 3));
}

static int row_entry(store *s, const store_loader *l, uint64_t sid, sqlite3_stmt *st) {
    store_row row;
    check_row(s, sid, st, &row);
    return l->entry && l->entry(l->ctx, sid, &row);
}

/* Runs a prepared query, one callback per row. SQLITE_DONE, an SQLite error,
 * or -1 when the loader stopped it. Finalizes st. */
static int each_row(store *s, const store_loader *l, uint64_t sid, sqlite3_stmt *st, row_fn fn) {
    if (!st) return sqlite3_errcode(s->wdb);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(s, l, sid, st)) {
            rc = -1;
            break;
        }
    sqlite3_finalize(st);
    return rc;
}

/* Everything of one stream but its metadata, in store.h's order. */
static int load_stream(store *s, const store_loader *l, uint64_t sid, size_t budget, size_t *used) {
    static const struct {
        const char *sql;
        row_fn fn;
    } parts[] = {
        {"SELECT name, last_ms, last_seq, entries_read FROM groups WHERE sid = ?1 ORDER BY name", row_group},
        {"SELECT grp, name, seen_ms, active_ms FROM consumers WHERE sid = ?1 ORDER BY grp, name", row_consumer},
        {"SELECT grp, ms, seq, consumer, deliveries, delivery_ms FROM pending WHERE sid = ?1 ORDER BY grp, ms, seq",
         row_pending},
        {"SELECT msgid, ms, seq, time_ms FROM dedup WHERE sid = ?1 ORDER BY msgid", row_dedup},
    };
    int rc;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if ((rc = each_row(s, l, sid, prep(s->wdb, parts[i].sql, sid), parts[i].fn)) != SQLITE_DONE) return rc;
    streamid from = {0, 0};
    rc = tail_start(s->wdb, sid, budget, &from, used);
    if (rc != SQLITE_ROW) return rc;
    sqlite3_stmt *st =
        prep(s->wdb,
             "SELECT ms, seq, fields, sum FROM entries WHERE sid = ?1 AND (ms, seq) >= (?2, ?3) ORDER BY ms, seq", sid);
    if (st) {
        sqlite3_bind_int64(st, 2, id_col(from.ms));
        sqlite3_bind_int64(st, 3, id_col(from.seq));
    }
    return each_row(s, l, sid, st, row_entry);
}

/* Every stream's metadata, collecting the sids for the second pass. */
static int load_streams(store *s, const store_loader *l, uint64_t **sids, size_t *n) {
    sqlite3_stmt *st = prep(s->wdb,
                            "SELECT sid, key, last_ms, last_seq, maxdel_ms, maxdel_seq, first_ms, first_seq,"
                            " entries_added, length, capture FROM streams ORDER BY sid",
                            0);
    if (!st) return sqlite3_errcode(s->wdb);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            uint64_t *p = realloc(*sids, nc * sizeof *p);
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            *sids = p;
            cap = nc;
        }
        uint64_t sid = (uint64_t)sqlite3_column_int64(st, 0);
        size_t klen;
        const char *key = blob(st, 1, &klen);
        store_stream_meta m = {col_sid(st, 2),
                               col_sid(st, 4),
                               col_sid(st, 6),
                               (uint64_t)sqlite3_column_int64(st, 8),
                               (uint64_t)sqlite3_column_int64(st, 9),
                               NULL,
                               0};
        if (sqlite3_column_type(st, 10) != SQLITE_NULL) m.capture = blob(st, 10, &m.capture_len);
        (*sids)[(*n)++] = sid;
        if (l->stream && l->stream(l->ctx, sid, key, klen, &m)) {
            rc = -1;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Pauses the writer once it has committed everything queued: store_load
 * then uses the writer's connection on the loop thread. */
static void writer_pause(store *s) {
    batch_close(s);
    pthread_mutex_lock(&s->mu);
    while (s->queue || s->busy) pthread_cond_wait(&s->idle, &s->mu);
    s->paused = 1;
    pthread_mutex_unlock(&s->mu);
}

static void writer_resume(store *s) {
    pthread_mutex_lock(&s->mu);
    s->paused = 0;
    pthread_cond_signal(&s->wcond);
    pthread_mutex_unlock(&s->mu);
}

/* Streams first, then each stream's parts; the tail budget is shared out
 * fairly: each stream may use the budget still unused divided by the number
 * of streams still to load, so an early stream cannot starve the rest. */
int store_load(store *s, const store_loader *l, size_t tail_budget, char **err) {
    if (err) *err = NULL;
    writer_pause(s);
    uint64_t *sids = NULL;
    size_t n = 0;
    int rc = sqlite3_exec(s->wdb, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = load_streams(s, l, &sids, &n);
    size_t remaining = tail_budget;
    for (size_t i = 0; i < n && rc == SQLITE_DONE; i++) {
        size_t used = 0;
        rc = load_stream(s, l, sids[i], remaining / (n - i), &used);
        remaining -= used;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_OK) {
        char *why = rc == -1 ? NULL : describe(s->wdb, rc);
        set_err(err, "loading %s failed: %s", s->path, rc == -1 ? "the model refused a row" : why ? why : "?");
        free(why);
    }
    sqlite3_exec(s->wdb, "COMMIT", NULL, NULL, NULL);
    free(sids);
    writer_resume(s);
    return rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : -1;
}

/*---- Cold reads ---------------------------------------------------------------------------------*/

uint64_t store_read(store *s, uint64_t sid, streamid start, streamid end, size_t count, int rev, store_read_fn done,
                    void *ctx) {
    read_req *r = calloc(1, sizeof *r);
    if (!r) return 0;
    r->id = ++s->next_read;
    r->sid = sid;
    r->start = start;
    r->end = end;
    r->count = count;
    r->rev = rev;
    r->done = done;
    r->ctx = ctx;
    pthread_mutex_lock(&s->mu);
    *s->rqtail = r;
    s->rqtail = &r->next;
    pthread_cond_signal(&s->rcond);
    pthread_mutex_unlock(&s->mu);
    return r->id;
}

void store_read_cancel(store *s, uint64_t req) {
    pthread_mutex_lock(&s->mu);
    if (s->running && s->running->id == req) s->running->cancelled = 1;
    for (read_req *r = s->rq; r; r = r->next)
        if (r->id == req) r->cancelled = 1;
    for (read_req *r = s->rdone; r; r = r->next)
        if (r->id == req) r->cancelled = 1;
    pthread_mutex_unlock(&s->mu);
}

/*---- Counters ------------------------------------------------------------------------------------*/

void store_get_stats(const store *s, store_stats *out) {
    store *m = (store *)s;
    pthread_mutex_lock(&m->mu);
    *out = m->stats;
    pthread_mutex_unlock(&m->mu);
}
