/* schema.c -- the store's tables and their migrations (see schema.h and
 * core/store/README.md). Migration i takes a database from user_version i
 * to i + 1; a new database runs them all. Ids are stored as signed 64-bit
 * integers holding the unsigned value xor 2^63, so SQLite's integer order
 * is Redis's id order across the whole uint64 range (see id_col in
 * sqlite.c). */
#include "schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const migrations[STORE_SCHEMA_VERSION] = {
    /* 0 -> 1: the stream model */
    "CREATE TABLE streams(sid INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE,"
    " last_ms INTEGER NOT NULL, last_seq INTEGER NOT NULL,"
    " maxdel_ms INTEGER NOT NULL, maxdel_seq INTEGER NOT NULL,"
    " first_ms INTEGER NOT NULL, first_seq INTEGER NOT NULL,"
    " entries_added INTEGER NOT NULL, length INTEGER NOT NULL, capture BLOB);"
    "CREATE TABLE entries(sid INTEGER NOT NULL, ms INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " fields BLOB NOT NULL, sum INTEGER NOT NULL, PRIMARY KEY(sid, ms, seq)) WITHOUT ROWID;"
    "CREATE TABLE groups(sid INTEGER NOT NULL, name BLOB NOT NULL, last_ms INTEGER NOT NULL,"
    " last_seq INTEGER NOT NULL, entries_read INTEGER NOT NULL, PRIMARY KEY(sid, name)) WITHOUT ROWID;"
    "CREATE TABLE consumers(sid INTEGER NOT NULL, grp BLOB NOT NULL, name BLOB NOT NULL,"
    " seen_ms INTEGER NOT NULL, active_ms INTEGER NOT NULL, PRIMARY KEY(sid, grp, name)) WITHOUT ROWID;"
    "CREATE TABLE pending(sid INTEGER NOT NULL, grp BLOB NOT NULL, ms INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " consumer BLOB NOT NULL, deliveries INTEGER NOT NULL, delivery_ms INTEGER NOT NULL,"
    " PRIMARY KEY(sid, grp, ms, seq)) WITHOUT ROWID;"
    "CREATE TABLE dedup(sid INTEGER NOT NULL, msgid BLOB NOT NULL, ms INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " time_ms INTEGER NOT NULL, PRIMARY KEY(sid, msgid)) WITHOUT ROWID;",
    /* 1 -> 2: a key/value table for the store's own rows (the recovery
     * probe writes here) and an index for DUPWINDOW expiry by time */
    "CREATE TABLE meta(k TEXT PRIMARY KEY, v);"
    "CREATE INDEX dedup_time ON dedup(sid, time_ms);",
};

/* Reads one integer from a single-row query; -1 on error. */
static long long query_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int fail(char **err, const char *path, const char *what, const char *detail) {
    if (asprintf(err, "%s: %s%s%s", path, what, detail ? ": " : "", detail ? detail : "") < 0) *err = NULL;
    return -1;
}

int store_schema_migrate(sqlite3 *db, const char *path, char **err) {
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return fail(err, path, "cannot start the schema transaction", sqlite3_errmsg(db));
    long long v = query_int(db, "PRAGMA user_version");
    long long tables = query_int(db, "SELECT count(*) FROM sqlite_master");
    char msg[160];
    if (v < 0 || tables < 0) {
        fail(err, path, "cannot read the schema version", sqlite3_errmsg(db));
        goto rollback;
    }
    if (v == 0 && tables > 0) {
        fail(err, path, "not a luahub database (it has tables but no schema version)", NULL);
        goto rollback;
    }
    if (v > STORE_SCHEMA_VERSION) {
        snprintf(msg, sizeof msg, "written by a newer luahub (schema version %lld; this build knows up to %d)", v,
                 STORE_SCHEMA_VERSION);
        fail(err, path, msg, NULL);
        goto rollback;
    }
    for (long long i = v; i < STORE_SCHEMA_VERSION; i++) {
        if (sqlite3_exec(db, migrations[i], NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(msg, sizeof msg, "schema migration %lld -> %lld failed", i, i + 1);
            fail(err, path, msg, sqlite3_errmsg(db));
            goto rollback;
        }
    }
    snprintf(msg, sizeof msg, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
    if (sqlite3_exec(db, msg, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        fail(err, path, "cannot commit the schema", sqlite3_errmsg(db));
        goto rollback;
    }
    return 0;
rollback:
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}
