/* handler_copy.c -- plain-data copy between two lua_States (see
 * handler_copy.h). Recursive over tables with an explicit path, so errors say
 * where the offending value is. */
#include "handler_copy.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct copy_ctx {
    lua_State *from, *to;
    const void *active[HCOPY_MAX_DEPTH]; /* tables on the current path */
    int depth;
    char path[512];
    size_t plen;
} copy_ctx;

static void copy_value(copy_ctx *c, int idx);

/* Raises the error in the destination state, with the path as its subject. */
static void fail(copy_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(copy_ctx *c, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lua_pushstring(c->to, msg);
    lua_error(c->to);
    for (;;) {} /* lua_error does not return */
}

/* Appends a key to the path: .name for identifiers, [repr] otherwise. */
static void path_push_key(copy_ctx *c, int kidx) {
    char buf[96];
    lua_State *L = c->from;
    if (lua_type(L, kidx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, kidx, &n);
        int ident = n > 0 && (isalpha((unsigned char)s[0]) || s[0] == '_');
        for (size_t i = 0; ident && i < n; i++) ident = isalnum((unsigned char)s[i]) || s[i] == '_';
        if (ident) snprintf(buf, sizeof buf, ".%.*s", (int)(n > 80 ? 80 : n), s);
        else snprintf(buf, sizeof buf, "[\"%.*s%s\"]", (int)(n > 60 ? 60 : n), s, n > 60 ? "..." : "");
    } else if (lua_type(L, kidx) == LUA_TBOOLEAN) {
        snprintf(buf, sizeof buf, "[%s]", lua_toboolean(L, kidx) ? "true" : "false");
    } else if (lua_isinteger(L, kidx)) {
        snprintf(buf, sizeof buf, "[%lld]", (long long)lua_tointeger(L, kidx));
    } else {
        snprintf(buf, sizeof buf, "[%.14g]", (double)lua_tonumber(L, kidx));
    }
    size_t n = strlen(buf);
    if (c->plen + n < sizeof c->path) {
        memcpy(c->path + c->plen, buf, n + 1);
        c->plen += n;
    }
}

static void copy_table(copy_ctx *c, int idx) {
    lua_State *from = c->from, *to = c->to;
    const void *p = lua_topointer(from, idx);
    for (int i = 0; i < c->depth; i++)
        if (c->active[i] == p) fail(c, "%s is a cycle: it contains itself", c->path);
    if (c->depth >= HCOPY_MAX_DEPTH) fail(c, "%s is nested more than %d tables deep", c->path, HCOPY_MAX_DEPTH);
    if (!lua_checkstack(from, 4)) fail(c, "%s: out of stack space", c->path);
    luaL_checkstack(to, 4, "handover nested too deeply");
    c->active[c->depth++] = p;
    lua_newtable(to);
    lua_pushnil(from);
    while (lua_next(from, idx)) {
        int kt = lua_type(from, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN)
            fail(c, "%s has a %s key: only strings, numbers and booleans can be keys", c->path,
                 lua_typename(from, kt));
        size_t saved = c->plen;
        path_push_key(c, lua_absindex(from, -2));
        copy_value(c, -2);
        copy_value(c, -1);
        lua_rawset(to, -3);
        c->plen = saved;
        c->path[saved] = '\0';
        lua_pop(from, 1);
    }
    c->depth--;
}

/* Pushes onto c->to a copy of c->from's value at idx. */
static void copy_value(copy_ctx *c, int idx) {
    lua_State *from = c->from, *to = c->to;
    idx = lua_absindex(from, idx);
    switch (lua_type(from, idx)) {
    case LUA_TNIL: lua_pushnil(to); break;
    case LUA_TBOOLEAN: lua_pushboolean(to, lua_toboolean(from, idx)); break;
    case LUA_TNUMBER:
        if (lua_isinteger(from, idx)) lua_pushinteger(to, lua_tointeger(from, idx));
        else lua_pushnumber(to, lua_tonumber(from, idx));
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(from, idx, &n); /* already a string: no conversion */
        lua_pushlstring(to, s, n);
        break;
    }
    case LUA_TTABLE: copy_table(c, idx); break;
    default:
        fail(c, "%s is a %s: only strings, numbers, booleans and tables can be handed over", c->path,
             luaL_typename(from, idx));
    }
}

void hcopy_value(lua_State *from, int idx, lua_State *to, const char *root) {
    copy_ctx c;
    c.from = from;
    c.to = to;
    c.depth = 0;
    snprintf(c.path, sizeof c.path, "%s", root);
    c.plen = strlen(c.path);
    copy_value(&c, idx);
}
