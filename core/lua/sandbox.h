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
 * changing package.path from Lua has no effect.
 *
 * Wrapped so that handler code stays under the instruction budget and the
 * time slice (handler_lua.h) everywhere:
 * - setmetatable refuses a metatable with a __gc field: Lua runs finalizers
 *   with hooks off, so a finalizer could loop forever (at a collection or at
 *   lua_close). Lua 5.4 marks an object for finalization only if __gc is
 *   present when the metatable is set, so adding __gc later is inert.
 * - xpcall(f, msgh, ...) runs f under pcall and then msgh(err) as ordinary
 *   code (Lua runs a message handler with the count hook's budget unchecked
 *   when the error unwinds); without debug nothing observable is lost.
 * - coroutine.create, resume, wrap (and each call of a wrapped function),
 *   collectgarbage: each call is charged SANDBOX_SWITCH_COST instructions
 *   and checks the slice (a new coroutine starts with a fresh hook count).
 *   resume and close refuse the coroutines the hub itself is suspending in
 *   hub.call (those listed in the registry table SANDBOX_HUB_THREADS).
 * - cjson, cjson.safe and their cjson.new() instances: encode_max_depth and
 *   decode_max_depth are clamped to SANDBOX_JSON_MAX_DEPTH (deeper nesting
 *   would overflow the C stack), and encode refuses a value whose JSON text
 *   would pass the memory cap, measured by a walk before any output exists
 *   (lua-cjson allocates the text with malloc, outside the cap).
 * - string.find/match/gmatch/gsub/rep, table.move/sort: lua_bounded.h. */
#ifndef LUAHUB_SANDBOX_H
#define LUAHUB_SANDBOX_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

typedef struct sandbox_opts {
    const char *lib_path; /* e.g. "handlers/lib/?.lua" */
    /* Called with the name and text of each file require() loads (reload
     * fingerprints use it); may be NULL. */
    void (*on_require)(void *ctx, const char *path, const char *src, size_t len);
    /* Called with print's tab-joined arguments; may be NULL (print is silent). */
    void (*on_print)(void *ctx, const char *msg, size_t len);
    void *ctx;
    const luaL_Reg *preload; /* more modules for require, {NULL, NULL}-terminated; may be NULL */
    /* Charges cost instructions to the running invocation and raises (as the
     * count hook does) past its budget or its time slice; may be NULL. */
    void (*check)(void *ctx, lua_State *L, int cost);
    /* The state's memory cap in bytes (a larger result is refused before any
     * work); NULL: no cap. */
    size_t (*mem_cap)(void *ctx);
    /* Handler code now runs in thread co; returns the thread that ran
     * before (passed back when co returns or yields). May be NULL. */
    lua_State *(*on_switch)(void *ctx, lua_State *co);
} sandbox_opts;

/* Registry field: a weak-keyed table whose keys are the threads waiting in
 * hub.call; coroutine.resume/close refuse them. */
#define SANDBOX_HUB_THREADS "luahub.hub_threads"
/* What a coroutine switch or a collectgarbage call costs, in instructions. */
#define SANDBOX_SWITCH_COST 100
/* Deepest JSON a handler may encode or decode (lua-cjson's default). */
#define SANDBOX_JSON_MAX_DEPTH 1000

/* Turns a fresh state into a handler sandbox. Runs Lua API calls that may
 * raise, so call it in protected mode. opts (and lib_path) must outlive L. */
void sandbox_open(lua_State *L, const sandbox_opts *opts);

/* Reads a whole file into a malloc'd buffer (the caller frees it) and sets
 * *len. Returns NULL with errno set on failure. Used for handler files and
 * the lib modules they require. */
char *sandbox_read_file(const char *path, size_t *len);

/* The largest handler or lib file sandbox_read_file reads (a larger one, or
 * anything but a regular file, fails with EFBIG / EINVAL): a source longer
 * than the default handler-memory-limit could not be compiled in it anyway,
 * and the read buffer lives outside the cap. */
#define SANDBOX_FILE_MAX (64 * 1024 * 1024)

#endif
