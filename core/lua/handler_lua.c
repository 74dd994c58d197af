/* handler_lua.c -- one version of a handler in its own lua_State (see
 * handler_lua.h): the capped allocator, the instruction budget, protected
 * invocation, and validation of what a handler file returns.
 *
 * Discipline: every Lua API call that can allocate (and so raise a memory
 * error) runs inside inv_body under lua_pcall. Outside it the code only
 * pushes light C functions and light userdata, reads strings already on the
 * stack, and sets the stack top, none of which allocates; so a handler at its
 * memory cap can never make Lua panic. */
#include "handler_lua.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handler_copy.h"
#include "handler_runtime.h"
#include "hubmod.h"
#include "base/clock.h"
#include "base/log.h"
#include "store/stream.h"

/* Instructions between two budget checks: the budget is exact to this much. */
#define BUDGET_STEP 1000
/* Growth in one allocation that makes the allocator look at the clock. */
#define BIG_ALLOC (256 * 1024)

/* Why an invocation must end (hversion.budget_exceeded). */
enum { EXC_NONE, EXC_INSTRUCTIONS, EXC_SLICE, EXC_MEMORY };

/* The time slice: shared by every invocation nested in the outermost one. */
static int inv_depth;        /* invocations running, all versions */
static int64_t slice_end_ns; /* CLOCK_MONOTONIC_COARSE deadline of the outermost */
static long long slice_ms;   /* its length, for messages */

/* The coarse clock: read at every outermost invocation and every
 * BUDGET_STEP instructions, so it must be cheap (base/clock.h). */
static int64_t now_ns(void) { return clock_coarse_ns(); }

static int slice_over(void) {
    return inv_depth > 0 && now_ns() >= slice_end_ns;
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/* Marks the invocation as failed for `why` and makes the thread running
 * handler code raise at its next instruction. Safe inside the allocator. */
static void make_sticky(hversion *v, int why) {
    if (!v->budget_exceeded) v->budget_exceeded = why;
    if (v->current) lua_sethook(v->current, budget_hook, LUA_MASKCOUNT, 1);
}

/*---- Memory -----------------------------------------------------------------*/

/* lua_Alloc with a cap: growth past v->mem_limit is refused (Lua then runs an
 * emergency collection and, if that is not enough, raises a memory error).
 * Shrinking and freeing always succeed, as Lua requires. */
static void *hv_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    hversion *v = ud;
    size_t old = ptr ? osize : 0; /* with ptr NULL, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        v->mem_used -= old;
        return NULL;
    }
    if (nsize > old && v->mem_used + (nsize - old) > v->mem_limit) {
        /* Each refusal costs Lua an emergency full collection: once the
         * slice is over, the next instruction ends the invocation. */
        if (slice_over()) make_sticky(v, EXC_SLICE);
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    if (nsize - old >= BIG_ALLOC && nsize > old && slice_over()) make_sticky(v, EXC_SLICE);
    v->mem_used = v->mem_used - old + nsize;
    return p;
}

/* Reached only if an allocation fails outside protected mode, which the
 * discipline above rules out: a bug, so stop loudly. */
static int hv_panic(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    log_warning("Lua panic in a handler state: %s", msg ? msg : "(no message)");
    abort();
    return 0;
}

/*---- Instruction budget and time slice ----------------------------------------*/

/* Pushes the message for v's budget_exceeded. */
static void push_exceeded(lua_State *L, hversion *v) {
    if (v->budget_exceeded == EXC_SLICE)
        lua_pushfstring(L, "time slice exceeded (handler-time-slice is %I ms)", (lua_Integer)slice_ms);
    else if (v->budget_exceeded == EXC_MEMORY)
        lua_pushfstring(L, "not enough memory (handler-memory-limit is %I bytes)", (lua_Integer)v->mem_limit);
    else
        lua_pushliteral(L, "instruction limit exceeded");
}

/* Charges cost instructions; returns whether the invocation must end. */
static int over_budget(hversion *v, long long cost) {
    v->budget_used += cost;
    if (!v->budget_exceeded) {
        if (v->budget_used >= v->budget_limit)
            v->budget_exceeded = EXC_INSTRUCTIONS;
        else if (slice_over())
            v->budget_exceeded = EXC_SLICE;
    }
    return v->budget_exceeded != EXC_NONE;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
    hversion *v = hversion_of(L);
    int step = lua_gethookcount(L);
    if (!over_budget(v, step)) {
        /* a coroutine may still have the per-instruction count of an earlier
         * overrun; put it back to the normal step */
        if (step != BUDGET_STEP) lua_sethook(L, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
        return;
    }
    /* Over budget: from now on every instruction of this thread raises, so
     * the error escapes any pcall in handler code. */
    if (step != 1) lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        lua_pushfstring(L, "%s:%d: ", ar->short_src, ar->currentline);
    else
        lua_pushliteral(L, "");
    push_exceeded(L, v);
    lua_concat(L, 2);
    lua_error(L);
}

/* sandbox_opts.check: the bounded library functions and coroutine switches. */
static void sb_check(void *ctx, lua_State *L, int cost) {
    hversion *v = ctx;
    if (!inv_depth || !over_budget(v, cost)) return;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    luaL_where(L, 1);
    push_exceeded(L, v);
    lua_concat(L, 2);
    lua_error(L);
}

static size_t sb_mem_cap(void *ctx) {
    hversion *v = ctx;
    return v->mem_limit;
}

static lua_State *sb_switch(void *ctx, lua_State *co) {
    hversion *v = ctx;
    lua_State *prev = v->current;
    v->current = co;
    return prev;
}

/* Starts a new invocation's budget on the main thread. */
static void budget_reset(hversion *v) {
    v->budget_used = 0;
    v->budget_exceeded = EXC_NONE;
    lua_sethook(v->L, budget_hook, LUA_MASKCOUNT, v->budget_limit < BUDGET_STEP ? (int)v->budget_limit : BUDGET_STEP);
}

/*---- Protected invocation ---------------------------------------------------*/

enum inv_kind { INV_LOAD, INV_EVENT, INV_CALL, INV_REF, INV_HANDOVER, INV_TASK, INV_RESUME, INV_CONSUME };

/* What one protected call does, its inputs and its outputs. */
typedef struct invocation {
    enum inv_kind kind;
    hversion *v;
    const char *path, *src; /* INV_LOAD */
    size_t len;
    const hevent *ev;        /* INV_EVENT */
    const char *name, *data; /* INV_CALL */
    size_t nlen, dlen;
    uint64_t id;
    double time_ms;
    char *reply; /* INV_CALL result */
    size_t rlen;
    int ref, nres;   /* INV_REF */
    const char *arg; /* INV_REF: one string argument, or NULL for none */
    size_t alen;
    lua_State *from; /* INV_HANDOVER: old state, snapshot at its top */
    int has_snapshot;
    const char *stage; /* INV_HANDOVER: what is running, for messages */
    int co_ref;        /* INV_RESUME: the waiting coroutine */
    int ok;            /* INV_RESUME: hub.call succeeded (arg is the reply) or not (arg is the error) */
    int is_call;       /* INV_CALL, INV_RESUME: the coroutine is an on_call; its result is the reply */
    uint64_t answer;   /* INV_RESUME of an on_call: the request its reply answers */
    hwait *pending;    /* set when the coroutine waits in hub.call (again) */
    const hcentry *ce; /* INV_CONSUME */
    uint64_t task;     /* INV_CONSUME, INV_RESUME: the consumer's delivery, 0 if none */
} invocation;

/* Message handler: the error as a string, with a traceback appended. */
static int msgh(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void validate(lua_State *L, hversion *v, const char *path);

/* Pushes the event table {name, data, pattern, id, time}. */
static void push_ev(lua_State *L, const char *name, size_t nlen, const char *data, size_t dlen, const char *pat,
                    size_t plen, uint64_t id, double time_ms) {
    lua_createtable(L, 0, 5);
    lua_pushlstring(L, name, nlen);
    lua_setfield(L, -2, "name");
    lua_pushlstring(L, data, dlen);
    lua_setfield(L, -2, "data");
    if (pat) {
        lua_pushlstring(L, pat, plen);
        lua_setfield(L, -2, "pattern");
    }
    lua_pushinteger(L, (lua_Integer)id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, (lua_Integer)floor(time_ms));
    lua_setfield(L, -2, "time");
}

/* Collects an entry's field/value strings into the table at `t`. */
typedef struct fields_ctx {
    lua_State *L;
    int t, odd;
} fields_ctx;

static void push_field(void *ctx, const char *p, size_t n, size_t npairs) {
    (void)npairs;
    fields_ctx *fc = ctx;
    lua_pushlstring(fc->L, p, n);
    if ((fc->odd = !fc->odd) == 0) lua_rawset(fc->L, fc->t); /* a repeated field: the last wins */
}

/* Pushes a consumer's event table {stream, entry, name, data, fields,
 * deliveries, time}: name and data are the fields of those names (nil if
 * the entry has none), fields holds every field. */
static void push_centry(lua_State *L, const hcentry *e) {
    lua_createtable(L, 0, 7);
    int ev = lua_gettop(L);
    lua_pushlstring(L, e->stream, e->slen);
    lua_setfield(L, ev, "stream");
    lua_pushlstring(L, e->entry, e->elen);
    lua_setfield(L, ev, "entry");
    lua_pushinteger(L, (lua_Integer)e->deliveries);
    lua_setfield(L, ev, "deliveries");
    lua_pushinteger(L, (lua_Integer)e->ms);
    lua_setfield(L, ev, "time");
    lua_newtable(L);
    fields_ctx fc = {L, lua_gettop(L), 0};
    if (stream_fields_each(e->f, e->flen, push_field, &fc) < 0) luaL_error(L, "malformed stream entry");
    lua_settop(L, fc.t);
    lua_getfield(L, fc.t, "name");
    lua_setfield(L, ev, "name");
    lua_getfield(L, fc.t, "data");
    lua_setfield(L, ev, "data");
    lua_setfield(L, ev, "fields");
}

/*---- Coroutines: callbacks that may wait in hub.call ---------------------------*/

/* Resumes co (at the top of L's stack, and in the registry at co_ref unless
 * that is LUA_NOREF) with nargs values on its stack. When it waits in
 * hub.call again, its registry reference goes to the waiter hub.call
 * registered (v->yielding); when it ends, the reference is dropped. Its error
 * is raised again in L with the coroutine's traceback. For an on_call
 * (iv->is_call) the first result becomes iv->reply, and a wait is marked as
 * the call's, still answering iv->answer. */
/* Copies an on_call's reply, the first of the nres results on co's stack
 * (a string, or a number as its tostring), into iv->reply; raises in L if
 * it is anything else. L's stack is left as it was. */
static void take_reply(lua_State *L, invocation *iv, lua_State *co, int nres) {
    if (nres == 0) {
        lua_pushnil(L);
    } else {
        lua_pop(co, nres - 1);
        lua_xmove(co, L, 1);
    }
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "on_call returned %s, expected a string or a number", luaL_typename(L, -1));
    size_t n;
    const char *s = lua_tolstring(L, -1, &n); /* a number becomes its tostring */
    if (!(iv->reply = malloc(n + 1))) luaL_error(L, "not enough memory for the reply");
    memcpy(iv->reply, s, n);
    iv->reply[n] = '\0';
    iv->rlen = n;
    lua_pop(L, 1);
}

/* Lists (or unlists) the thread at the top of L as waiting in hub.call
 * (sandbox.h). Unlisting never allocates. */
static void mark_hub_thread(lua_State *L, int on) {
    lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_HUB_THREADS);
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, -2);
        if (on)
            lua_pushboolean(L, 1);
        else
            lua_pushnil(L);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
}

static void resume_task(lua_State *L, hversion *v, invocation *iv, lua_State *co, int co_ref, int nargs) {
    int nres = 0;
    lua_State *outer = v->running, *prev = v->current;
    v->yielding = NULL;
    v->running = v->current = co;
    lua_sethook(co, lua_gethook(L), LUA_MASKCOUNT, lua_gethookcount(L));
    int st = lua_resume(co, L, nargs, &nres);
    v->running = outer;
    v->current = prev;
    if (st == LUA_YIELD) {
        hwait *w = v->yielding;
        v->yielding = NULL;
        lua_pop(co, nres);
        if (!w) {
            if (co_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, co_ref);
            lua_pushliteral(L, "a handler callback may only yield inside hub.call");
            lua_error(L);
        }
        mark_hub_thread(L, 1); /* co, at the top: handler code may not resume it */
        if (co_ref == LUA_NOREF) {
            lua_pushvalue(L, -1); /* co */
            co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        hubmod_wait_anchor(w, co_ref);
        if (iv->is_call) hubmod_wait_call(w, iv->answer);
        if (iv->task) hubmod_wait_task(w, iv->task);
        iv->pending = w;
        return;
    }
    if (co_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, co_ref);
    if (st == LUA_OK) {
        if (iv->is_call) take_reply(L, iv, co, nres);
        /* A coroutine that returned can run a new function: keep one for the
         * next task instead of allocating a thread per event. co is at the
         * top of L (run_task and INV_RESUME both leave it there). */
        if (v->ref_idle_co == LUA_NOREF && lua_tothread(L, -1) == co) {
            lua_settop(co, 0);
            v->ref_idle_co = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        return;
    }
    v->co_errmem = st == LUA_ERRMEM;
    if (lua_type(co, -1) == LUA_TSTRING)
        luaL_traceback(L, co, lua_tostring(co, -1), 0);
    else
        lua_xmove(co, L, 1);
    lua_error(L);
}

/* Runs the function below nargs arguments at the top of L in a coroutine:
 * the idle one kept by resume_task if there is one, else a new one. */
static void run_task(lua_State *L, hversion *v, invocation *iv, int nargs) {
    lua_State *co;
    if (v->ref_idle_co != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->ref_idle_co);
        luaL_unref(L, LUA_REGISTRYINDEX, v->ref_idle_co);
        v->ref_idle_co = LUA_NOREF;
        co = lua_tothread(L, -1);
    } else {
        co = lua_newthread(L);
    }
    lua_insert(L, -(nargs + 2)); /* co below the function and its arguments */
    lua_xmove(L, co, nargs + 1);
    resume_task(L, v, iv, co, LUA_NOREF, nargs);
}

/* The body every invocation runs in protected mode. */
static int inv_body(lua_State *L) {
    invocation *iv = lua_touserdata(L, 1);
    hversion *v = iv->v;
    lua_settop(L, 0);
    switch (iv->kind) {
    case INV_LOAD: {
        sandbox_open(L, &v->sb);
        const char *chunkname = lua_pushfstring(L, "@%s", iv->path);
        if (luaL_loadbufferx(L, iv->src, iv->len, chunkname, "t") != LUA_OK) return lua_error(L);
        lua_call(L, 0, 1);
        validate(L, v, iv->path);
        return 0;
    }
    case INV_EVENT: {
        const hevent *e = iv->ev;
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->ref_on_event);
        push_ev(L, e->chan, e->clen, e->msg, e->mlen, e->pattern, e->plen, e->id, e->time_ms);
        run_task(L, v, iv, 1);
        return 0;
    }
    case INV_CONSUME:
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->ref_on_event);
        push_centry(L, iv->ce);
        run_task(L, v, iv, 1);
        return 0;
    case INV_TASK:
        lua_rawgeti(L, LUA_REGISTRYINDEX, iv->ref);
        run_task(L, v, iv, 0);
        return 0;
    case INV_RESUME: {
        lua_rawgeti(L, LUA_REGISTRYINDEX, iv->co_ref);
        lua_State *co = lua_tothread(L, -1);
        if (!co) return 0;
        mark_hub_thread(L, 0);
        int n = 1;
        if (iv->ok) {
            lua_pushlstring(L, iv->arg, iv->alen);
        } else {
            lua_pushnil(L);
            lua_pushlstring(L, iv->arg, iv->alen);
            n = 2;
        }
        if (!lua_checkstack(co, n)) return luaL_error(L, "not enough memory");
        lua_xmove(L, co, n);
        resume_task(L, v, iv, co, iv->co_ref, n);
        return 0;
    }
    case INV_CALL: {
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->ref_on_call);
        push_ev(L, iv->name, iv->nlen, iv->data, iv->dlen, NULL, 0, iv->id, iv->time_ms);
        run_task(L, v, iv, 1);
        return 0;
    }
    case INV_REF:
        lua_rawgeti(L, LUA_REGISTRYINDEX, iv->ref);
        if (iv->arg) lua_pushlstring(L, iv->arg, iv->alen);
        lua_call(L, iv->arg ? 1 : 0, iv->nres);
        return iv->nres;
    case INV_HANDOVER:
        iv->stage = "snapshot";
        if (iv->has_snapshot)
            hcopy_value(iv->from, -1, L, "snapshot()");
        else
            lua_pushnil(L);
        if (v->ref_on_reload != LUA_NOREF) {
            iv->stage = "on_reload";
            lua_rawgeti(L, LUA_REGISTRYINDEX, v->ref_on_reload);
            lua_insert(L, -2);
            lua_call(L, 1, 0);
        }
        return 0;
    }
    return 0;
}

/* Copies the error at the top of v's stack into a malloc'd string. */
static char *error_text(hversion *v, int status) {
    char buf[256];
    const char *msg;
    if (status == LUA_ERRMEM) {
        snprintf(buf, sizeof buf, "not enough memory (handler-memory-limit is %zu bytes)", v->mem_limit);
        msg = buf;
    } else {
        msg = lua_type(v->L, -1) == LUA_TSTRING ? lua_tostring(v->L, -1) : "unknown error";
    }
    return strdup(msg); /* NULL if out of memory: consumers read NULL as "out of memory" */
}

/* Runs iv in protected mode with a fresh budget. On success leaves nres
 * results on the stack (the caller pops them) and returns 0; on error leaves
 * the stack as it was and returns -1 with *err. */
static int inv_run(hversion *v, invocation *iv, int nres, char **err) {
    lua_State *L = v->L;
    int base = lua_gettop(L);
    iv->v = v;
    budget_reset(v);
    if (inv_depth++ == 0) {
        const handler *h = v->h;
        slice_ms = h && h->rt && h->rt->hub && h->rt->hub->cfg.handler_time_slice > 0
                       ? h->rt->hub->cfg.handler_time_slice
                       : 50;
        slice_end_ns = now_ns() + (int64_t)slice_ms * 1000000;
    }
    lua_pushcfunction(L, msgh);
    lua_pushcfunction(L, inv_body);
    lua_pushlightuserdata(L, iv);
    v->co_errmem = 0;
    v->active++;
    lua_State *prev = v->current;
    v->current = L;
    int st = lua_pcall(L, 1, nres, base + 1);
    v->current = prev;
    v->active--;
    inv_depth--;
    if (st != LUA_OK && v->co_errmem && v->budget_exceeded != EXC_SLICE) st = LUA_ERRMEM;
    if (st != LUA_OK) {
        *err = error_text(v, st);
        lua_settop(L, base);
        return -1;
    }
    lua_remove(L, base + 1);
    return 0;
}

/*---- Validation of the returned table -----------------------------------------*/

/* The keys a handler table may have, and what each must be: a function (0),
 * an array of strings (1) or a string (2). */
static const struct {
    const char *key;
    int kind;
} handler_keys[] = {
    {"subscribe", 1}, {"listen", 1},      {"on_event", 0}, {"on_call", 0}, {"snapshot", 0},
    {"on_reload", 0}, {"on_replaced", 0}, {"group", 2},    {"consume", 3},
};

/* Bounds of consume's numbers (README, "Durable consumers"). */
#define CONSUME_MAX_DELIVERIES 1000000
#define CONSUME_MAX_RETRY_MS 3600000

static void bad(lua_State *L, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void bad(lua_State *L, const char *path, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lua_pushfstring(L, "%s: malformed return value: %s", path, msg);
    lua_error(L);
}

/* Checks that the list at index li holds only non-empty strings at 1..#list. */
static void check_list(lua_State *L, const char *path, const char *key, int li) {
    if (!lua_istable(L, li)) bad(L, path, "'%s' must be an array of strings, got %s", key, luaL_typename(L, li));
    lua_Integer n = (lua_Integer)lua_rawlen(L, li);
    lua_pushnil(L);
    while (lua_next(L, li)) {
        if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n)
            bad(L, path, "'%s' must be an array, not a map", key);
        if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
            bad(L, path, "'%s'[%lld] must be a non-empty string", key, (long long)lua_tointeger(L, -2));
        lua_pop(L, 1);
    }
}

/* Pushes t[key] without metamethods. */
static int rawfield(lua_State *L, int t, const char *key) {
    lua_pushstring(L, key);
    return lua_rawget(L, t);
}

/* Copies the list t[key] into *out (deduplicated, in linear time: an open
 * addressing set of indexes into *out). The array is attached to v before
 * anything can raise, so hversion_close frees it in every case. */
static void extract_list(lua_State *L, int t, const char *key, hstrv **out, size_t *n) {
    if (rawfield(L, t, key) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    size_t len = lua_rawlen(L, -1);
    if (!len) {
        lua_pop(L, 1);
        return;
    }
    hstrv *arr = calloc(len, sizeof *arr);
    *out = arr; /* owned by the version from here on */
    size_t cap = 16;
    while (cap < 2 * len) cap *= 2;
    size_t *set = arr ? calloc(cap, sizeof *set) : NULL; /* index + 1, 0 = empty */
    if (!set) {
        luaL_error(L, "not enough memory");
        return;
    }
    for (size_t i = 1; i <= len; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        size_t sl;
        const char *s = lua_tolstring(L, -1, &sl);
        size_t slot = hhash(s, sl) & (cap - 1);
        while (set[slot] && !(arr[set[slot] - 1].len == sl && memcmp(arr[set[slot] - 1].p, s, sl) == 0))
            slot = (slot + 1) & (cap - 1);
        if (!set[slot]) {
            char *p = malloc(sl + 1);
            if (!p) {
                free(set);
                luaL_error(L, "not enough memory");
                return;
            }
            memcpy(p, s, sl);
            p[sl] = '\0';
            arr[*n].p = p;
            arr[(*n)++].len = sl;
            set[slot] = *n;
        }
        lua_pop(L, 1);
    }
    free(set);
    lua_pop(L, 1);
}

/* Copies the string t[key] into *out (attached before anything can raise). */
static void extract_string(lua_State *L, int t, const char *key, hstrv *out) {
    rawfield(L, t, key);
    size_t sl;
    const char *s = lua_tolstring(L, -1, &sl);
    if (!(out->p = malloc(sl + 1))) {
        luaL_error(L, "not enough memory");
        return;
    }
    memcpy(out->p, s, sl + 1);
    out->len = sl;
    lua_pop(L, 1);
}

/* Stores t[key] in the registry if it is a function. */
static int ref_function(lua_State *L, int t, const char *key) {
    if (rawfield(L, t, key) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Checks consume = {stream=, group= [, max_deliveries=] [, retry_ms=]}. */
static void check_consume(lua_State *L, const char *path, int ct) {
    if (!lua_istable(L, ct)) bad(L, path, "'consume' must be a table, got %s", luaL_typename(L, ct));
    lua_pushnil(L);
    while (lua_next(L, ct)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int str = k && (strcmp(k, "stream") == 0 || strcmp(k, "group") == 0);
        int num = k && (strcmp(k, "max_deliveries") == 0 || strcmp(k, "retry_ms") == 0);
        if (!str && !num) bad(L, path, "unknown key in 'consume' (known: stream, group, max_deliveries, retry_ms)");
        if (str && (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0 || lua_rawlen(L, -1) > 1024))
            bad(L, path, "'consume.%s' must be a non-empty string of at most 1024 bytes", k);
        if (num) {
            long long lo = strcmp(k, "retry_ms") == 0 ? 0 : 1;
            long long hi = lo ? CONSUME_MAX_DELIVERIES : CONSUME_MAX_RETRY_MS;
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < lo || lua_tointeger(L, -1) > hi)
                bad(L, path, "'consume.%s' must be an integer from %lld to %lld", k, lo, hi);
        }
        lua_pop(L, 1);
    }
    if (rawfield(L, ct, "stream") != LUA_TSTRING) bad(L, path, "'consume' needs 'stream'");
    if (rawfield(L, ct, "group") != LUA_TSTRING) bad(L, path, "'consume' needs 'group'");
    lua_pop(L, 2);
}

/* Validates the value at the top (what the file returned) against the
 * handler contract, with the test kit's messages, and records it in v. */
static void validate(lua_State *L, hversion *v, const char *path) {
    if (!lua_istable(L, -1)) bad(L, path, "expected a table, got %s", luaL_typename(L, -1));
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int known = -1;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (size_t i = 0; i < sizeof handler_keys / sizeof handler_keys[0]; i++)
                if (strcmp(lua_tostring(L, -2), handler_keys[i].key) == 0) known = (int)i;
        if (known < 0) {
            if (lua_type(L, -2) == LUA_TSTRING) bad(L, path, "unknown key '%s'", lua_tostring(L, -2));
            if (lua_isinteger(L, -2)) bad(L, path, "unknown key %lld", (long long)lua_tointeger(L, -2));
            bad(L, path, "unknown key of type %s", luaL_typename(L, -2));
            return; /* not reached: bad() raises */
        }
        const char *key = handler_keys[known].key;
        if (handler_keys[known].kind == 1)
            check_list(L, path, key, lua_gettop(L));
        else if (handler_keys[known].kind == 2) {
            if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
                bad(L, path, "'%s' must be a non-empty string, got %s", key,
                    lua_type(L, -1) == LUA_TSTRING ? "an empty string" : luaL_typename(L, -1));
        } else if (handler_keys[known].kind == 3) {
            check_consume(L, path, lua_gettop(L));
        } else if (!lua_isfunction(L, -1))
            bad(L, path, "'%s' must be a function, got %s", key, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    int has_event = rawfield(L, t, "on_event") == LUA_TFUNCTION;
    int has_call = rawfield(L, t, "on_call") == LUA_TFUNCTION;
    int nsub = rawfield(L, t, "subscribe") == LUA_TTABLE ? (int)lua_rawlen(L, -1) : 0;
    int nlis = rawfield(L, t, "listen") == LUA_TTABLE ? (int)lua_rawlen(L, -1) : 0;
    int has_group = rawfield(L, t, "group") == LUA_TSTRING;
    int has_consume = rawfield(L, t, "consume") == LUA_TTABLE;
    lua_pop(L, 6);
    if (has_consume && !has_event) bad(L, path, "'consume' without 'on_event'");
    if (has_consume && nsub > 0) bad(L, path, "'consume' with 'subscribe' (on_event would get both)");
    if (nsub > 0 && !has_event) bad(L, path, "'subscribe' without 'on_event'");
    if (nlis > 0 && !has_call) bad(L, path, "'listen' without 'on_call'");
    if (has_group && nsub == 0) bad(L, path, "'group' without 'subscribe'");

    extract_list(L, t, "subscribe", &v->subscribe, &v->nsubscribe);
    extract_list(L, t, "listen", &v->listen, &v->nlisten);
    if (has_group) extract_string(L, t, "group", &v->group);
    if (has_consume) {
        rawfield(L, t, "consume");
        int ct = lua_gettop(L);
        extract_string(L, ct, "stream", &v->cstream);
        extract_string(L, ct, "group", &v->cgroup);
        v->cmax_deliveries = rawfield(L, ct, "max_deliveries") == LUA_TNUMBER ? (long long)lua_tointeger(L, -1) : 5;
        v->cretry_ms = rawfield(L, ct, "retry_ms") == LUA_TNUMBER ? (long long)lua_tointeger(L, -1) : 1000;
        lua_pop(L, 3);
    }
    v->ref_on_event = ref_function(L, t, "on_event");
    v->ref_on_call = ref_function(L, t, "on_call");
    v->ref_snapshot = ref_function(L, t, "snapshot");
    v->ref_on_reload = ref_function(L, t, "on_reload");
    v->ref_on_replaced = ref_function(L, t, "on_replaced");
}

/*---- Sandbox callbacks --------------------------------------------------------*/

/* Remembers a lib file this version loaded, for reload fingerprints. */
static void on_require(void *ctx, const char *path, const char *src, size_t len) {
    hversion *v = ctx;
    for (size_t i = 0; i < v->ndeps; i++)
        if (strcmp(v->deps[i].path, path) == 0) return;
    if (v->ndeps == v->capdeps) {
        size_t cap = v->capdeps ? v->capdeps * 2 : 4;
        hdep *d = realloc(v->deps, cap * sizeof *d);
        if (!d) return;
        v->deps = d;
        v->capdeps = cap;
    }
    hdep *d = &v->deps[v->ndeps];
    if (!(d->path = strdup(path))) return;
    d->hash = hhash(src, len);
    d->len = len;
    v->ndeps++;
}

static void on_print(void *ctx, const char *msg, size_t len) {
    hversion *v = ctx;
    handler_log(v->h, LOG_VERBOSE, msg, len);
}

/*---- Public API ---------------------------------------------------------------*/

hversion *hversion_of(lua_State *L) {
    return *(hversion **)lua_getextraspace(L);
}

hversion *hversion_new(handler *h, int number, size_t mem_limit, long long instruction_limit, const char *lib_path,
                       char **err) {
    static const luaL_Reg preload[] = {{"hub", luaopen_hub}, {NULL, NULL}};
    hversion *v = calloc(1, sizeof *v);
    if (!v || !(v->lib_path = strdup(lib_path ? lib_path : ""))) {
        free(v);
        *err = strdup("out of memory");
        return NULL;
    }
    v->h = h;
    v->number = number;
    v->mem_limit = mem_limit;
    v->budget_limit = instruction_limit > 0 ? instruction_limit : 1;
    v->ref_on_event = v->ref_on_call = v->ref_snapshot = v->ref_on_reload = v->ref_on_replaced = LUA_NOREF;
    v->ref_idle_co = LUA_NOREF;
    v->sb = (sandbox_opts){v->lib_path, on_require, on_print, v, preload, sb_check, sb_mem_cap, sb_switch};
    v->L = lua_newstate(hv_alloc, v);
    if (!v->L) {
        char buf[128];
        snprintf(buf, sizeof buf, "not enough memory to create a Lua state (handler-memory-limit is %zu bytes)",
                 mem_limit);
        *err = strdup(buf);
        free(v->lib_path);
        free(v);
        return NULL;
    }
    *(hversion **)lua_getextraspace(v->L) = v;
    lua_atpanic(v->L, hv_panic);
    return v;
}

int hversion_load(hversion *v, const char *path, const char *src, size_t len, char **err) {
    invocation iv = {.kind = INV_LOAD, .path = path, .src = src, .len = len};
    return inv_run(v, &iv, 0, err);
}

/* Returns "<prefix>: <err>" and frees err. */
static char *prefixed(const char *prefix, char *err) {
    if (!err) return NULL;
    size_t n = strlen(prefix) + strlen(err) + 3;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s: %s", prefix, err);
    free(err);
    return s;
}

int hversion_handover(hversion *nv, hversion *old, char **err) {
    int top = lua_gettop(old->L);
    int has = 0;
    if (old->ref_snapshot != LUA_NOREF) {
        invocation snap = {.kind = INV_REF, .ref = old->ref_snapshot, .nres = 1};
        if (inv_run(old, &snap, 1, err)) {
            *err = prefixed("snapshot", *err);
            return -1;
        }
        has = 1;
    }
    invocation iv = {.kind = INV_HANDOVER, .from = old->L, .has_snapshot = has};
    int rc = inv_run(nv, &iv, 0, err);
    lua_settop(old->L, top);
    /* the copy's own complaints already say "snapshot()..." */
    if (rc && iv.stage && strcmp(iv.stage, "on_reload") == 0) *err = prefixed("on_reload", *err);
    return rc;
}

int hversion_event(hversion *v, const hevent *e, char **err) {
    if (v->ref_on_event == LUA_NOREF) return 0;
    invocation iv = {.kind = INV_EVENT, .ev = e};
    return inv_run(v, &iv, 0, err);
}

int hversion_consume(hversion *v, const hcentry *e, uint64_t task, char **err) {
    invocation iv = {.kind = INV_CONSUME, .ce = e, .task = task};
    if (inv_run(v, &iv, 0, err)) return -1;
    return iv.pending ? 1 : 0;
}

int hversion_call(hversion *v, const char *name, size_t nlen, const char *data, size_t dlen, uint64_t id,
                  double time_ms, char **reply, size_t *rlen, char **err, hwait **pending) {
    invocation iv = {.kind = INV_CALL,
                     .name = name,
                     .nlen = nlen,
                     .data = data,
                     .dlen = dlen,
                     .id = id,
                     .time_ms = time_ms,
                     .is_call = 1};
    if (inv_run(v, &iv, 0, err)) {
        free(iv.reply);
        return -1;
    }
    if (iv.pending) {
        *pending = iv.pending;
        return 1;
    }
    *reply = iv.reply;
    *rlen = iv.rlen;
    return 0;
}

int hversion_run_ref(hversion *v, int ref, char **err) {
    invocation iv = {.kind = INV_TASK, .ref = ref, .nres = 0};
    return inv_run(v, &iv, 0, err);
}

int hversion_resume(hversion *v, int co_ref, int ok, const char *p, size_t n, int is_call, uint64_t answer,
                    uint64_t task, char **reply, size_t *rlen, char **err) {
    invocation iv = {.kind = INV_RESUME,
                     .co_ref = co_ref,
                     .ok = ok,
                     .arg = p,
                     .alen = n,
                     .is_call = is_call,
                     .answer = answer,
                     .task = task};
    if (inv_run(v, &iv, 0, err)) {
        free(iv.reply);
        return -1;
    }
    if (iv.pending) return 1;
    *reply = iv.reply;
    *rlen = iv.rlen;
    return 0;
}

int hversion_replaced(hversion *v, const char *name, size_t len, char **err) {
    if (v->ref_on_replaced == LUA_NOREF) return 0;
    invocation iv = {.kind = INV_REF, .ref = v->ref_on_replaced, .nres = 0, .arg = name, .alen = len};
    return inv_run(v, &iv, 0, err);
}

void hversion_close(hversion *v) {
    if (!v) return;
    v->closing = 1;
    hubmod_close_timers(v);
    hubmod_close_waits(v);
    if (v->L) {
        budget_reset(v);
        lua_close(v->L);
    }
    for (size_t i = 0; i < v->nsubscribe; i++) free(v->subscribe[i].p);
    for (size_t i = 0; i < v->nlisten; i++) free(v->listen[i].p);
    for (size_t i = 0; i < v->ndeps; i++) free(v->deps[i].path);
    free(v->subscribe);
    free(v->listen);
    free(v->group.p);
    free(v->cstream.p);
    free(v->cgroup.p);
    free(v->deps);
    free(v->lib_path);
    free(v);
}

size_t herr_msglen(const char *err) {
    if (!err) return 0;
    const char *tb = strstr(err, "\nstack traceback:");
    return tb ? (size_t)(tb - err) : strlen(err);
}

uint64_t hhash(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}
