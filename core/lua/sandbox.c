/* sandbox.c -- builds a handler's restricted Lua environment (see sandbox.h).
 *
 * The sandbox is made by opening only the safe libraries and then removing
 * or wrapping the few unsafe functions they contain; each handler version
 * has its own lua_State, so nothing here is shared between handlers. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua_bounded.h"

/* lua-cjson's header only declares luaopen_cjson; the library also has the
 * variant whose decode returns nil, err instead of raising. */
extern int luaopen_cjson_safe(lua_State *L);

/*---- Wrapped base functions -----------------------------------------------*/

/* load(chunk [, chunkname [, mode [, env]]]) with mode forced to "t": binary
 * chunks (string.dump output, precompiled code) can corrupt the VM. Whether
 * env was passed at all matters (an explicit nil env is an empty _ENV). */
static int sb_load(lua_State *L) {
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    if (n >= 2)
        lua_pushvalue(L, 2);
    else
        lua_pushnil(L);
    lua_pushliteral(L, "t");
    if (n >= 4) lua_pushvalue(L, 4);
    lua_call(L, n >= 4 ? 4 : 3, LUA_MULTRET);
    return lua_gettop(L) - n;
}

/* collectgarbage with the options that cannot change how the collector runs
 * (stopping it would only make the handler hit its memory cap). */
static int sb_collectgarbage(lua_State *L) {
    static const char *const allowed[] = {"collect", "count", "step", "isrunning", NULL};
    const char *opt = luaL_optstring(L, 1, "collect");
    int ok = 0;
    for (int i = 0; allowed[i]; i++) ok |= strcmp(opt, allowed[i]) == 0;
    if (!ok) return luaL_error(L, "collectgarbage('%s') is not available to handlers", opt);
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(2));
    if (o->check) o->check(o->ctx, L, SANDBOX_SWITCH_COST); /* a full collection costs up to the cap */
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

/* setmetatable(t, mt) refusing finalizers (see sandbox.h). */
static int sb_setmetatable(lua_State *L) {
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL) return luaL_error(L, "finalizers (__gc) are not available to handlers");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* xpcall's continuation: stack f, msgh, true, results (or the error). */
static int xpcall_done(lua_State *L, int status, lua_KContext ctx) {
    (void)ctx;
    if (status == LUA_OK || status == LUA_YIELD) return lua_gettop(L) - 2;
    lua_pushboolean(L, 0);
    lua_replace(L, 3);
    if (status == LUA_ERRMEM) return 2; /* as xpcall: no handler for memory errors */
    lua_pushvalue(L, 2);
    lua_insert(L, 4);
    lua_pcall(L, 1, 1, 0); /* the handler's result, or its own error */
    return 2;
}

/* xpcall(f, msgh, ...): pcall(f, ...), then msgh(err) as ordinary code. */
static int sb_xpcall(lua_State *L) {
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2); /* f, msgh, true, f, args... */
    int st = lua_pcallk(L, n - 2, LUA_MULTRET, 0, 0, xpcall_done);
    return xpcall_done(L, st, 0);
}

/*---- Coroutines ---------------------------------------------------------------*/

static void charge(lua_State *L) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    if (o->check) o->check(o->ctx, L, SANDBOX_SWITCH_COST);
}

/* Raises if the thread at idx is one the hub suspended in hub.call. */
static void refuse_hub_thread(lua_State *L, int idx, const char *what) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_HUB_THREADS) == LUA_TTABLE) {
        lua_pushvalue(L, idx);
        if (lua_rawget(L, -2) != LUA_TNIL) luaL_error(L, "cannot %s a coroutine that is waiting in hub.call", what);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Calls the original (upvalue 2) with the whole stack while thread co runs
 * handler code; returns its results. */
static int call_in(lua_State *L, lua_State *co) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, 1);
    lua_State *prev = o->on_switch ? o->on_switch(o->ctx, co) : NULL;
    int st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (o->on_switch) o->on_switch(o->ctx, prev);
    if (st != LUA_OK) lua_error(L);
    return lua_gettop(L);
}

static int sb_co_create(lua_State *L) {
    charge(L);
    return call_in(L, L);
}

static int sb_co_resume(lua_State *L) {
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    refuse_hub_thread(L, 1, "resume");
    charge(L);
    return call_in(L, co);
}

static int sb_co_close(lua_State *L) {
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    refuse_hub_thread(L, 1, "close");
    return call_in(L, co); /* its pending to-be-closed variables run in co */
}

/* A function coroutine.wrap returned: upvalues opts, the stock function,
 * its coroutine. */
static int sb_co_wrapped(lua_State *L) {
    charge(L);
    return call_in(L, lua_tothread(L, lua_upvalueindex(3)));
}

static int sb_co_wrap(lua_State *L) {
    charge(L);
    call_in(L, L);
    lua_settop(L, 1); /* the stock wrapper */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_getupvalue(L, 2, 1); /* its coroutine */
    lua_pushcclosure(L, sb_co_wrapped, 3);
    return 1;
}

/*---- cjson ----------------------------------------------------------------------*/

/* Registry field: the sandbox_opts (light userdata) the cjson wrappers use. */
#define SANDBOX_OPTS_KEY "luahub.sandbox_opts"

/* encode_max_depth / decode_max_depth with the depth clamped. */
static int sb_json_depth(lua_State *L) {
    if (lua_type(L, 1) == LUA_TNUMBER && lua_tonumber(L, 1) > SANDBOX_JSON_MAX_DEPTH) {
        lua_pushinteger(L, SANDBOX_JSON_MAX_DEPTH);
        lua_replace(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void json_bound(lua_State *L, int safe);

/* What one encode may produce at the least: a walk of the value adding up a
 * lower bound of the JSON text (a string is its bytes and two quotes, any
 * other scalar one byte, an array one byte per slot up to its largest index
 * as lua-cjson decides it, with "null" for the holes). lua-cjson builds its
 * output with malloc, outside the state's memory cap, and the result must
 * then fit in the state anyway, so a value whose bound passes the cap is
 * refused before any output exists: a table holding one long string a
 * million times, or {[1e9] = 1} with sparse arrays allowed, costs a walk of
 * what the state holds, not gigabytes. */
typedef struct json_walk {
    const sandbox_opts *o;
    size_t sum, cap, steps;
    double ratio, safe; /* encode_sparse_array's current settings */
} json_walk;

/* Adds n to the bound; 1 once it passes the cap. */
static int json_count(lua_State *L, json_walk *w, size_t n) {
    w->sum += n;
    if (++w->steps % 4096 == 0 && w->o->check) w->o->check(w->o->ctx, L, 4096);
    return w->sum > w->cap;
}

/* Walks the value at the top of L (depth levels down so far); 1 once the
 * bound passes the cap. */
static int json_walk_value(lua_State *L, json_walk *w, int depth) {
    int t = lua_type(L, -1);
    if (t == LUA_TSTRING) return json_count(L, w, lua_rawlen(L, -1) + 2);
    if (t != LUA_TTABLE || depth >= SANDBOX_JSON_MAX_DEPTH) /* too deep: lua-cjson refuses it itself */
        return json_count(L, w, 1);
    luaL_checkstack(L, 4, "JSON nesting");
    /* lua-cjson's array test: only positive integer keys, not excessively sparse */
    double max = 0, items = 0;
    int array = 1;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (k >= 1 && k < 9.2e18 && k == (double)(long long)k) {
            if (k > max) max = k;
            items++;
        } else {
            array = 0;
        }
    }
    if (array && w->ratio > 0 && max > items * w->ratio && max > w->safe) array = 0;
    if (json_count(L, w, 2)) return 1;
    if (array && max > items && json_count(L, w, max - items > (double)w->cap ? w->cap : (size_t)(max - items)))
        return 1; /* the holes, "null" each */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (!array) {
            int over = json_count(L, w, lua_type(L, -2) == LUA_TSTRING ? lua_rawlen(L, -2) + 3 : 4); /* "key": */
            if (over) {
                lua_pop(L, 2);
                return 1;
            }
        }
        int over = json_walk_value(L, w, depth + 1);
        lua_pop(L, 1);
        if (over) {
            lua_pop(L, 1);
            return 1;
        }
    }
    return 0;
}

/* cjson.encode(value) (upvalues: the encoder, its instance's
 * encode_sparse_array, the sandbox_opts, and whether the instance is
 * cjson.safe's), refused when the walk's bound passes the cap: an error, or
 * nil and the message for cjson.safe, as lua-cjson reports its own. */
static int sb_json_encode(lua_State *L) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(3));
    size_t cap = o && o->mem_cap ? o->mem_cap(o->ctx) : 0;
    if (cap) {
        lua_settop(L, 1);
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_call(L, 0, 3); /* convert, ratio, safe */
        json_walk w = {o, 0, cap, 0, lua_tonumber(L, -2), lua_tonumber(L, -1)};
        lua_pop(L, 3);
        if (json_walk_value(L, &w, 0)) {
            lua_pushfstring(L, "cannot encode: the JSON text would pass the handler's memory cap (%I bytes)",
                            (lua_Integer)cap);
            if (!lua_toboolean(L, lua_upvalueindex(4))) {
                luaL_where(L, 1);
                lua_insert(L, -2);
                lua_concat(L, 2);
                return lua_error(L);
            }
            lua_pushnil(L);
            lua_insert(L, -2);
            return 2;
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* cjson.new() returning a bounded instance (upvalue 2: cjson.safe's). */
static int sb_json_new(lua_State *L) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_call(L, 0, 1);
    json_bound(L, lua_toboolean(L, lua_upvalueindex(2)));
    return 1;
}

/* Wraps the depth setters, new() and encode of the cjson module at the top
 * (safe: cjson.safe's, which answers nil, err instead of raising). */
static void json_bound(lua_State *L, int safe) {
    static const char *const setters[] = {"encode_max_depth", "decode_max_depth", NULL};
    for (int i = 0; setters[i]; i++) {
        lua_getfield(L, -1, setters[i]);
        lua_pushcclosure(L, sb_json_depth, 1);
        lua_setfield(L, -2, setters[i]);
    }
    lua_getfield(L, -1, "new");
    lua_pushboolean(L, safe);
    lua_pushcclosure(L, sb_json_new, 2);
    lua_setfield(L, -2, "new");
    lua_getfield(L, -1, "encode");
    lua_getfield(L, -2, "encode_sparse_array");
    lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_OPTS_KEY);
    lua_pushboolean(L, safe);
    lua_pushcclosure(L, sb_json_encode, 4);
    lua_setfield(L, -2, "encode");
}

static int sb_open_cjson(lua_State *L) {
    luaopen_cjson(L);
    json_bound(L, 0);
    return 1;
}

static int sb_open_cjson_safe(lua_State *L) {
    luaopen_cjson_safe(L);
    json_bound(L, 1);
    return 1;
}

/* print(...): arguments through tostring, joined by tabs, to the hub's log. */
static int sb_print(lua_State *L) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    if (o->on_print) o->on_print(o->ctx, msg, len);
    return 0;
}

/*---- require ----------------------------------------------------------------*/

/* Reads a whole file into a malloc'd buffer (see sandbox.h). */
char *sandbox_read_file(const char *path, size_t *len) {
    /* Non-blocking open: a FIFO must not stall the loop (it is refused below). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    int e = fstat(fd, &st) != 0 ? errno : 0;
    if (!e && !S_ISREG(st.st_mode)) e = EINVAL;
    if (!e && st.st_size > SANDBOX_FILE_MAX) e = EFBIG;
    if (e) {
        close(fd);
        errno = e;
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n > SANDBOX_FILE_MAX) { /* it grew while we read */
            free(buf);
            buf = NULL;
            errno = EFBIG;
            break;
        }
        if (ferror(f)) {
            int e = errno;
            free(buf);
            buf = NULL;
            errno = e ? e : EIO;
            break;
        }
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) free(buf);
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* package.searchers[2]: a Lua file from the fixed lib path, text only.
 * Returns the loader and the file name, or a "no file" string. */
static int sb_searcher(lua_State *L) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    const char *name = luaL_checkstring(L, 1);
    if (!o->lib_path || !o->lib_path[0]) {
        lua_pushliteral(L, "no lib directory");
        return 1;
    }
    name = luaL_gsub(L, name, ".", "/");
    const char *file = luaL_gsub(L, o->lib_path, "?", name);
    const char *chunkname = lua_pushfstring(L, "@%s", file);
    /* No Lua call may raise between the malloc and the free below. */
    size_t len = 0;
    errno = 0;
    char *src = sandbox_read_file(file, &len);
    if (!src) {
        if (errno == ENOENT || errno == ENOTDIR)
            lua_pushfstring(L, "no file '%s'", file);
        else
            lua_pushfstring(L, "cannot read '%s': %s", file, strerror(errno ? errno : EIO));
        return 1;
    }
    if (o->on_require) o->on_require(o->ctx, file, src, len);
    int st = luaL_loadbufferx(L, src, len, chunkname, "t");
    free(src);
    if (st != LUA_OK)
        return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", lua_tostring(L, 1), file,
                          lua_tostring(L, -1));
    lua_pushstring(L, file);
    return 2;
}

/*---- Assembly ---------------------------------------------------------------*/

/* Sets t[k] = nil for each name in a NULL-terminated list (t at the top). */
static void remove_fields(lua_State *L, const char *const *names) {
    for (; *names; names++) {
        lua_pushnil(L);
        lua_setfield(L, -2, *names);
    }
}

/* Replaces t[name] (t at the top) with a closure over the original. */
static void wrap_field(lua_State *L, const char *name, lua_CFunction fn) {
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
}

/* The same with upvalues (opts, the original). */
static void wrap_field_o(lua_State *L, const sandbox_opts *o, const char *name, lua_CFunction fn) {
    lua_pushlightuserdata(L, (void *)o);
    lua_getfield(L, -2, name);
    lua_pushcclosure(L, fn, 2);
    lua_setfield(L, -2, name);
}

static void open_os(lua_State *L) {
    static const char *const keep[] = {"clock", "time", "date", NULL};
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 3);
    for (int i = 0; keep[i]; i++) {
        lua_getfield(L, -2, keep[i]);
        lua_setfield(L, -2, keep[i]);
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, LUA_OSLIBNAME);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_insert(L, -2);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 2);
}

static void setup_package(lua_State *L, const sandbox_opts *o) {
    static const char *const drop[] = {"loadlib", "cpath", "searchpath", NULL};
    lua_getglobal(L, LUA_LOADLIBNAME);
    remove_fields(L, drop);
    lua_pushstring(L, o->lib_path ? o->lib_path : "");
    lua_setfield(L, -2, "path");
    /* searchers = { preload (the standard one), lib files (ours) } */
    lua_getfield(L, -1, "searchers");
    lua_createtable(L, 2, 0);
    lua_rawgeti(L, -2, 1);
    lua_rawseti(L, -2, 1);
    lua_pushlightuserdata(L, (void *)o);
    lua_pushcclosure(L, sb_searcher, 1);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -3, "searchers");
    lua_pop(L, 1);
    /* preload: cjson and the caller's modules */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, sb_open_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pushcfunction(L, sb_open_cjson_safe);
    lua_setfield(L, -2, "cjson.safe");
    for (const luaL_Reg *r = o->preload; r && r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    lua_pop(L, 2);
}

void sandbox_open(lua_State *L, const sandbox_opts *o) {
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},          {LUA_LOADLIBNAME, luaopen_package},
        {LUA_COLIBNAME, luaopen_coroutine}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_STRLIBNAME, luaopen_string},   {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},    {NULL, NULL},
    };
    static const char *const base_drop[] = {"dofile", "loadfile", "warn", NULL};
    lua_pushlightuserdata(L, (void *)o); /* for the cjson wrappers, made at require time */
    lua_setfield(L, LUA_REGISTRYINDEX, SANDBOX_OPTS_KEY);
    for (const luaL_Reg *r = libs; r->name; r++) {
        luaL_requiref(L, r->name, r->func, 1);
        lua_pop(L, 1);
    }
    open_os(L);

    lua_pushglobaltable(L);
    remove_fields(L, base_drop);
    wrap_field(L, "load", sb_load);
    wrap_field(L, "setmetatable", sb_setmetatable);
    lua_pushcfunction(L, sb_xpcall);
    lua_setfield(L, -2, "xpcall");
    lua_getfield(L, -1, "collectgarbage");
    lua_pushlightuserdata(L, (void *)o);
    lua_pushcclosure(L, sb_collectgarbage, 2);
    lua_setfield(L, -2, "collectgarbage");
    lua_pushlightuserdata(L, (void *)o);
    lua_pushcclosure(L, sb_print, 1);
    lua_setfield(L, -2, "print");
    lua_pop(L, 1);

    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);

    lua_getglobal(L, LUA_COLIBNAME);
    wrap_field_o(L, o, "create", sb_co_create);
    wrap_field_o(L, o, "resume", sb_co_resume);
    wrap_field_o(L, o, "close", sb_co_close);
    wrap_field_o(L, o, "wrap", sb_co_wrap);
    lua_pop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, SANDBOX_HUB_THREADS);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);

    lbounded_open(L, o);
    setup_package(L, o);
}
