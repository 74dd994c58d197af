/* test_handler_sandbox.c -- what a handler's state contains and lacks, and
 * where require() looks. */
#include <lauxlib.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua/sandbox.h"
#include "unit.h"

static char printed[256];
static char required[256];

static void on_print(void *ctx, const char *msg, size_t len) {
    (void)ctx;
    snprintf(printed, sizeof printed, "%.*s", (int)len, msg);
}

static void on_require(void *ctx, const char *path, const char *src, size_t len) {
    (void)ctx, (void)src, (void)len;
    snprintf(required, sizeof required, "%s", path);
}

static int open_cb(lua_State *L) {
    sandbox_open(L, lua_touserdata(L, 1));
    return 0;
}

static char libdir[64], lib_path[128];
static sandbox_opts opts;

/* debug_mark(co): lists co as the hub's (as handler_lua.c does for a
 * coroutine waiting in hub.call). */
static int debug_mark(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_HUB_THREADS);
    lua_pushvalue(L, 1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    return 0;
}

static lua_State *sandbox(void) {
    lua_State *L = luaL_newstate();
    lua_pushcfunction(L, open_cb);
    lua_pushlightuserdata(L, &opts);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) fprintf(stderr, "sandbox_open: %s\n", lua_tostring(L, -1));
    lua_register(L, "debug_mark", debug_mark);
    return L;
}

/* Runs code in a fresh sandbox; returns "ok: <tostring(result)>" or "error: <msg>". */
static char out[512];
static const char *run(const char *code) {
    lua_State *L = sandbox();
    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
        snprintf(out, sizeof out, "error: %s", lua_tostring(L, -1));
    else
        snprintf(out, sizeof out, "ok: %s", luaL_tolstring(L, -1, NULL));
    lua_close(L);
    return out;
}

#define EXPECT(code, want)                                                                                             \
    do {                                                                                                               \
        const char *got = run(code);                                                                                   \
        CHECKF(strncmp(got, want, strlen(want)) == 0, "%s -> %s (want %s)", code, got, want);                          \
    } while (0)

/* For messages that carry a chunk position first. */
#define EXPECT_IN(code, want)                                                                                          \
    do {                                                                                                               \
        const char *got = run(code);                                                                                   \
        CHECKF(strstr(got, want) != NULL, "%s -> %s (want %s)", code, got, want);                                      \
    } while (0)

static void setup(void) {
    if (libdir[0]) return;
    snprintf(libdir, sizeof libdir, "/tmp/luahub-sandbox-XXXXXX");
    if (!mkdtemp(libdir)) abort();
    snprintf(lib_path, sizeof lib_path, "%s/?.lua", libdir);
    char p[160];
    snprintf(p, sizeof p, "%s/mod.lua", libdir);
    FILE *f = fopen(p, "w");
    fputs("return { answer = 42 }", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/sub", libdir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/sub/inner.lua", libdir);
    f = fopen(p, "w");
    fputs("return 'inner'", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/binary.lua", libdir);
    f = fopen(p, "w");
    fputs("\x1bLuaT", f);
    fclose(f);
    opts = (sandbox_opts){lib_path, on_require, on_print, NULL, NULL, NULL, NULL, NULL};
}

TEST(unsafe_globals_are_gone) {
    setup();
    EXPECT("return io", "ok: nil");
    EXPECT("return debug", "ok: nil");
    EXPECT("return dofile", "ok: nil");
    EXPECT("return loadfile", "ok: nil");
    EXPECT("return warn", "ok: nil");
    EXPECT("return string.dump", "ok: nil");
    EXPECT("return ('').dump", "ok: nil");
    EXPECT("return os.exit or os.execute or os.getenv or os.remove or os.rename or os.tmpname", "ok: nil");
    EXPECT("return package.loadlib or package.cpath or package.searchpath", "ok: nil");
    EXPECT("return #package.searchers", "ok: 2");
    EXPECT("return package.loaded.io or package.loaded.debug", "ok: nil");
    EXPECT("return package.loaded.os.exit", "ok: nil");
}

TEST(safe_library_is_there) {
    setup();
    EXPECT("return type(os.time()) .. type(os.clock()) .. os.date('!%Y', 0)", "ok: numbernumber1970");
    EXPECT("return math.max(1, 2) + #string.rep('x', 3) + utf8.len('é') + select('#', table.unpack({1, 2}))", "ok: 8");
    EXPECT("return coroutine.wrap(function() coroutine.yield('y') end)()", "ok: y");
    EXPECT("return require('cjson').encode({1, 2})", "ok: [1,2]");
    EXPECT("return select(2, require('cjson.safe').decode('{'))", "ok: Expected");
    EXPECT("return collectgarbage('count') > 0", "ok: true");
}

TEST(load_is_text_only) {
    setup();
    EXPECT("return load('return 7')()", "ok: 7");
    EXPECT("return select(2, load('\\27LuaT'))", "ok: attempt to load a binary chunk");
    EXPECT("return select(2, load('\\27LuaT', 'x', 'b'))", "ok: attempt to load a binary chunk");
    EXPECT("local env = { y = 3 } return load('return y', 'c', 'bt', env)()", "ok: 3");
    EXPECT("return load('return y', 'c', 't', nil)", "ok: function"); /* explicit nil env is allowed */
    EXPECT("local parts = { '\\27Lua', 'T' } local i = 0 "
           "return select(2, load(function() i = i + 1 return parts[i] end))",
           "ok: attempt to load a binary chunk");
}

TEST(collectgarbage_cannot_stop_the_collector) {
    setup();
    EXPECT("collectgarbage('stop')", "error: ");
    EXPECT("collectgarbage('generational')", "error: ");
    EXPECT("collectgarbage('setpause', 1000)", "error: ");
    EXPECT("return collectgarbage('step')", "ok: ");
    EXPECT("return collectgarbage()", "ok: 0");
}

TEST(require_finds_only_the_lib_path) {
    setup();
    required[0] = '\0';
    EXPECT("return require('mod').answer", "ok: 42");
    CHECK(strstr(required, "/mod.lua") != NULL);
    EXPECT("return require('sub.inner')", "ok: inner");
    EXPECT_IN("package.path = '/etc/?' return require('passwd')",
              "module 'passwd' not found:\n\tno field package.preload['passwd']\n\tno file '");
    EXPECT_IN("return require('lfs')", "module 'lfs' not found");
    EXPECT_IN("return require('binary')", "error loading module 'binary'");
    EXPECT_IN("return require('..etc.passwd')", "module '..etc.passwd' not found");
}

TEST(print_goes_to_the_callback) {
    setup();
    printed[0] = '\0';
    EXPECT("print('a', 1, nil, true)", "ok: nil");
    CHECK(strcmp(printed, "a\t1\tnil\ttrue") == 0);
}

TEST(finalizers_xpcall_and_hub_threads) {
    setup();
    EXPECT_IN("setmetatable({}, {__gc = function() end})", "finalizers (__gc) are not available to handlers");
    EXPECT_IN("setmetatable({}, {__gc = false})", "finalizers (__gc) are not available to handlers");
    EXPECT("local mt = {} local t = setmetatable({}, mt) mt.__gc = error return getmetatable(t) == mt", "ok: true");
    EXPECT("return select('#', xpcall(function(...) return ... end, print, 1, 2, 3))", "ok: 4");
    EXPECT("local ok, e = xpcall(error, function(m) return 'h:' .. m end, 'x', 0) return tostring(ok) .. e",
           "ok: falseh:x");
    EXPECT("local ok, e = xpcall(error, function(m) error('again', 0) end, 'x') return e", "ok: again");
    EXPECT_IN("xpcall(print)", "bad argument #2 to 'xpcall'");
    EXPECT("local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)\n"
           "local _, x = coroutine.resume(co, 1) local _, y = coroutine.resume(co, 10)\n"
           "local g = coroutine.wrap(function() coroutine.yield(1) return 2 end)\n"
           "return x .. y .. g() .. g() .. coroutine.status(co)",
           "ok: 22012dead");
    /* a thread the hub lists as waiting in hub.call cannot be resumed or closed */
    EXPECT_IN("local co = coroutine.create(function() coroutine.yield() end) coroutine.resume(co)\n"
              "debug_mark(co) return coroutine.resume(co)",
              "cannot resume a coroutine that is waiting in hub.call");
    EXPECT_IN("local co = coroutine.create(function() coroutine.yield() end) coroutine.resume(co)\n"
              "debug_mark(co) return coroutine.close(co)",
              "cannot close a coroutine that is waiting in hub.call");
}

TEST(cleanup) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", libdir);
    CHECK(system(cmd) == 0);
}

UNIT_MAIN()
