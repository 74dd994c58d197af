/* sandbox.h -- what a handler's lua_State contains: the safe part of Lua's
 * standard library and a `require` that only finds the hub's own modules
 * (hub, cjson) and Lua files in the handlers' lib directory.
 *
 * Present: the base library without dofile, loadfile and warn; `load` that
 * only accepts text chunks; `collectgarbage` limited to collect, count, step
 * and isrunning; `print` routed to the hub's log; coroutine, table, string
 * (without string.dump), math, utf8; os with only clock, time and date;
 * package with loaded, preload, path and searchers. Absent: io, debug,
 * os.exit/execute/getenv/remove/rename/tmpname/setlocale, package.loadlib,
 * package.cpath, package.searchpath and the C searchers.
 *
 * `require(name)` looks in package.preload (hub, cjson, cjson.safe) and then
 * for the file opts->lib_path with `?` replaced by name (dots become
 * slashes), loaded as text only. The path is fixed when the sandbox is made;
 * changing package.path from Lua has no effect. */
#ifndef LUAHUB_SANDBOX_H
#define LUAHUB_SANDBOX_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

typedef struct sandbox_opts {
    const char *lib_path;  /* e.g. "handlers/lib/?.lua" */
    /* Called with the name and text of each file require() loads (reload
     * fingerprints use it); may be NULL. */
    void (*on_require)(void *ctx, const char *path, const char *src, size_t len);
    /* Called with print's tab-joined arguments; may be NULL (print is silent). */
    void (*on_print)(void *ctx, const char *msg, size_t len);
    void *ctx;
    const luaL_Reg *preload; /* more modules for require, {NULL, NULL}-terminated; may be NULL */
} sandbox_opts;

/* Turns a fresh state into a handler sandbox. Runs Lua API calls that may
 * raise, so call it in protected mode. opts (and lib_path) must outlive L. */
void sandbox_open(lua_State *L, const sandbox_opts *opts);

/* Reads a whole file into a malloc'd buffer (the caller frees it) and sets
 * *len. Returns NULL with errno set on failure. Used for handler files and
 * the lib modules they require. */
char *sandbox_read_file(const char *path, size_t *len);

#endif
