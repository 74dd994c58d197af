/* schema.h -- the store's tables and their versions (private to store/):
 * creates a new database at the current version and migrates an older one
 * step by step, keyed by PRAGMA user_version. The schema is documented in
 * core/store/README.md. */
#ifndef LUAHUB_STORE_SCHEMA_H
#define LUAHUB_STORE_SCHEMA_H

#include <sqlite3.h>

/* The schema version this build writes (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 2

/* Brings the database on `db` to STORE_SCHEMA_VERSION in one transaction:
 * creates it when empty, applies each missing migration in order. Refuses
 * (returns -1 with a malloc'd *err naming `path`) a database written by a
 * newer build, or one with tables but no version (not a luahub database). */
int store_schema_migrate(sqlite3 *db, const char *path, char **err);

#endif
