/* hubmod.c -- the `hub` module and its timers (see hubmod.h). Every function
 * finds its handler version through the state's extra space, so one C
 * implementation serves every state. */
#include "hubmod.h"

#include <ev.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "handler_consume.h"
#include "handler_runtime.h"
#include "base/log.h"
#include "route/stats.h"
#include "net/unicast.h"

#define TIMER_MT "luahub.timer"

struct htimer {
    ev_timer w;
    hversion *v;
    int fn_ref;           /* the callback, in the registry */
    htimer **box;         /* the handle's userdata, NULL once collected */
    htimer *prev, *next;  /* v->timers */
    htimer *due_prev, *due_next; /* its handler's due list, while queued */
    int queued;           /* fired, waiting on the due list for the drain */
    int firing;           /* its callback is running */
    int cancelled;        /* cancelled while firing: free when the callback returns */
};

/* The calling version; raises if it is being closed (a finalizer running
 * during unload must not start work that would outlive its state). */
static hversion *live_version(lua_State *L, const char *fname) {
    hversion *v = hversion_of(L);
    if (v->closing) luaL_error(L, "%s: this handler version has been unloaded", fname);
    return v;
}

/*---- Timers -------------------------------------------------------------------*/

static struct ev_loop *loop_of(hversion *v) { return v->h->rt->hub->loop; }

/* Takes t off its handler's due list. */
static void due_unlink(htimer *t) {
    if (!t->queued) return;
    handler *h = t->v->h;
    if (t->due_prev) t->due_prev->due_next = t->due_next;
    else h->due_head = t->due_next;
    if (t->due_next) t->due_next->due_prev = t->due_prev;
    else h->due_tail = t->due_prev;
    t->due_prev = t->due_next = NULL;
    t->queued = 0;
}

/* Takes t off its version's list and detaches its handle. */
static void timer_unlink(htimer *t) {
    hversion *v = t->v;
    due_unlink(t);
    if (t->prev) t->prev->next = t->next;
    else v->timers = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
    if (t->box) *t->box = NULL;
    t->box = NULL;
    v->ntimers--;
}

static void timer_free(htimer *t) {
    t->v->mem_used -= sizeof *t;
    free(t);
}

/* Cancels a pending timer (not yet run, or repeating). */
static void timer_cancel(htimer *t) {
    ev_timer_stop(loop_of(t->v), &t->w);
    timer_unlink(t);
    luaL_unref(t->v->L, LUA_REGISTRYINDEX, t->fn_ref);
    if (t->firing) t->cancelled = 1;
    else timer_free(t);
}

/* libev's callback: never runs Lua. The timer goes on its handler's due
 * list and the drain runs its callback (hubmod_run_due) under the drain's
 * limits. A repeating timer already on the list is not queued twice: the
 * runs it missed while waiting coalesce into one. */
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    htimer *t = w->data;
    if (t->queued) return;
    handler *h = t->v->h;
    t->queued = 1;
    t->due_next = NULL;
    t->due_prev = h->due_tail;
    if (h->due_tail) h->due_tail->due_next = t;
    else h->due_head = t;
    h->due_tail = t;
    handler_wake(h);
}

int hubmod_run_due(handler *h) {
    htimer *t = h->due_head;
    if (!t) return 0;
    due_unlink(t);
    hversion *v = t->v;
    int ref = t->fn_ref;
    int once = t->w.repeat <= 0.0;
    /* A one-shot timer is done before its callback runs: cancelling it from
     * inside returns false, as it is no longer pending. libev has already
     * stopped it. */
    if (once) timer_unlink(t);
    t->firing = 1;
    char *err = NULL;
    if (hversion_run_ref(v, ref, &err)) {
        handler_error(v->h, "timer", err);
        free(err);
    }
    t->firing = 0;
    if (once) {
        luaL_unref(v->L, LUA_REGISTRYINDEX, ref);
        timer_free(t);
    } else if (t->cancelled) {
        timer_free(t);
    }
    return 1;
}

void hubmod_close_timers(hversion *v) {
    while (v->timers) {
        htimer *t = v->timers;
        ev_timer_stop(loop_of(v), &t->w);
        timer_unlink(t);
        timer_free(t);
    }
}

/* hub.after / hub.every */
static int add_timer(lua_State *L, int repeat) {
    const char *fname = repeat ? "hub.every" : "hub.after";
    hversion *v = live_version(L, fname);
    if (v->retired) return luaL_error(L, "%s: this handler version has been replaced by a reload", fname);
    double ms = lua_type(L, 1) == LUA_TNUMBER ? (double)lua_tonumber(L, 1) : NAN;
    if (repeat ? !(ms > 0) : !(ms >= 0)) return luaL_error(L, "%s: ms must be a number %s", fname, repeat ? "> 0" : ">= 0");
    if (!lua_isfunction(L, 2)) return luaL_error(L, "%s: fn must be a function", fname);
    if (v->mem_used + sizeof(htimer) > v->mem_limit)
        return luaL_error(L, "%s: not enough memory (handler-memory-limit is %I bytes)", fname, (lua_Integer)v->mem_limit);
    htimer **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, TIMER_MT);
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    htimer *t = calloc(1, sizeof *t);
    if (!t) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "%s: out of memory", fname);
    }
    /* nothing below raises */
    t->v = v;
    t->fn_ref = ref;
    t->box = box;
    *box = t;
    t->next = v->timers;
    if (v->timers) v->timers->prev = t;
    v->timers = t;
    v->ntimers++;
    v->mem_used += sizeof *t;
    double secs = ms / 1000.0;
    ev_timer_init(&t->w, timer_cb, secs, repeat ? secs : 0.0);
    t->w.data = t;
    struct ev_loop *loop = loop_of(v);
    ev_now_update(loop); /* the loop's clock may be stale after a long batch */
    ev_timer_start(loop, &t->w);
    return 1;
}

static int hub_after(lua_State *L) { return add_timer(L, 0); }
static int hub_every(lua_State *L) { return add_timer(L, 1); }

/* timer:cancel() -> true if it was pending */
static int timer_cancel_l(lua_State *L) {
    htimer **box = luaL_checkudata(L, 1, TIMER_MT);
    htimer *t = *box;
    if (t) timer_cancel(t);
    lua_pushboolean(L, t != NULL);
    return 1;
}

static int hub_cancel(lua_State *L) {
    if (!luaL_testudata(L, 1, TIMER_MT)) return luaL_error(L, "hub.cancel: not a timer handle");
    return timer_cancel_l(L);
}

/* A collected handle leaves its timer running. */
static int timer_gc(lua_State *L) {
    htimer **box = luaL_checkudata(L, 1, TIMER_MT);
    if (*box) (*box)->box = NULL;
    *box = NULL;
    return 0;
}

static int timer_tostring(lua_State *L) {
    htimer **box = luaL_checkudata(L, 1, TIMER_MT);
    lua_pushfstring(L, "hub.timer (%s)", *box ? "pending" : "done");
    return 1;
}

/*---- Events, log, clock ---------------------------------------------------------*/

/* Checks the (name, data) arguments hub.publish and hub.call share: a string
 * name, and data as a string or a number (which becomes its tostring). */
static void check_name_data(lua_State *L, const char *fname) {
    if (lua_type(L, 1) != LUA_TSTRING) luaL_error(L, "%s: name must be a string", fname);
    int dt = lua_type(L, 2);
    if (dt != LUA_TSTRING && dt != LUA_TNUMBER) luaL_error(L, "%s: data must be a string", fname);
}

static int hub_publish(lua_State *L) {
    hversion *v = live_version(L, "hub.publish");
    check_name_data(L, "hub.publish");
    size_t nlen, dlen;
    const char *name = lua_tolstring(L, 1, &nlen);
    const char *data = lua_tolstring(L, 2, &dlen); /* a number becomes its tostring */
    /* Never back to this handler itself: see router_publish_from. */
    size_t n = router_publish_from(v->h->rt->hub->router, &v->h->sub, name, nlen, data, dlen);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int hub_log(lua_State *L) {
    static const char *const names[] = {"debug", "info", "notice", "warning", NULL};
    static const int levels[] = {LOG_DEBUG, LOG_VERBOSE, LOG_NOTICE, LOG_WARNING};
    hversion *v = live_version(L, "hub.log");
    const char *lv = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
    int i = 0;
    while (lv && names[i] && strcmp(names[i], lv) != 0) i++;
    if (!lv || !names[i])
        return luaL_error(L, "hub.log: level must be debug, info, notice or warning, got %s",
                          lv ? lv : luaL_typename(L, 1));
    int mt = lua_type(L, 2);
    if (mt != LUA_TSTRING && mt != LUA_TNUMBER) return luaL_error(L, "hub.log: msg must be a string");
    size_t len;
    const char *msg = lua_tolstring(L, 2, &len);
    handler_log(v->h, levels[i], msg, len);
    return 0;
}

static int hub_now(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)floor(clock_wall_ms()));
    return 1;
}

/*---- hub.call -------------------------------------------------------------------------*/

/* A callback coroutine waiting in hub.call for a reply: a client listener's,
 * or a Lua listener's on_call that waits itself. */
struct hwait {
    hversion *v;
    uint64_t req_id;        /* the request it waits for (unicast.h) */
    int co_ref;             /* the coroutine in the registry, once it has yielded */
    int is_call;            /* the coroutine is an on_call: its result answers `answer` */
    uint64_t answer;        /* that request (unicast_complete), 0 if nobody waits for it */
    uint64_t task;          /* a consumer's delivery (handler_consume.c), 0 if none */
    hwait *prev, *next;     /* v->waits */
};

static void wait_unlink(hwait *w) {
    hversion *v = w->v;
    if (w->prev) w->prev->next = w->next;
    else v->waits = w->next;
    if (w->next) w->next->prev = w->prev;
    v->nwaits--;
}

void hubmod_wait_anchor(hwait *w, int co_ref) { w->co_ref = co_ref; }

void hubmod_wait_task(hwait *w, uint64_t task) { w->task = task; }

void hubmod_wait_call(hwait *w, uint64_t answer) {
    w->is_call = 1;
    w->answer = answer;
}

/* Answers the caller of an on_call (nothing if nobody waits for it). */
static void answer_call(hversion *v, uint64_t answer, int ok, const char *p, size_t n) {
    if (answer) unicast_complete(v->h->rt->hub, answer, ok, p, n);
}

void hubmod_close_waits(hversion *v) {
    while (v->waits) {
        hwait *w = v->waits;
        unicast_forget(v->h->rt->hub, w->req_id);
        if (w->is_call) {
            char msg[300];
            int n = snprintf(msg, sizeof msg, "handler '%.200s' was unloaded before on_call answered", v->h->name);
            answer_call(v, w->answer, 0, msg, (size_t)n);
        }
        if (w->task) consume_task_done(v->h, w->task, CONSUME_DROPPED, NULL);
        wait_unlink(w);
        free(w);
    }
}

/* The request's outcome (unicast_done_fn): resumes the coroutine; when an
 * on_call's coroutine finishes, its reply or error answers its caller. */
static void wait_done(void *ctx, int ok, const char *p, size_t n) {
    hwait *w = ctx;
    hversion *v = w->v;
    int ref = w->co_ref, is_call = w->is_call;
    uint64_t answer = w->answer, task = w->task;
    wait_unlink(w);
    free(w);
    /* a timeout fails a consumer's delivery, whatever on_event does next */
    if (task && !ok && n >= 8 && memcmp(p, "timeout:", 8) == 0) consume_call_timeout(v->h, task, p, n);
    if (ref != LUA_NOREF) {
        char *reply = NULL, *err = NULL;
        size_t rlen = 0;
        int rc = hversion_resume(v, ref, ok, p, n, is_call, answer, task, &reply, &rlen, &err);
        if (task && rc != 1) consume_task_done(v->h, task, rc < 0 ? CONSUME_FAILED : CONSUME_RETURNED, err);
        if (rc < 0) {
            handler_error(v->h, is_call ? "on_call" : "callback after hub.call", err);
            if (is_call) answer_call(v, answer, 0, err ? err : "out of memory", err ? herr_msglen(err) : 13);
        } else if (rc == 0 && is_call) {
            answer_call(v, answer, 1, reply, rlen);
        }
        free(reply);
        free(err);
    } else if (task) {
        consume_task_done(v->h, task, CONSUME_DROPPED, NULL);
    }
    handler_drained(v); /* a retired version closes with its last waiter */
}

static int call_fail(lua_State *L, const char *msg) {
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

static int push_lstring(lua_State *L) {
    lua_pushlstring(L, lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

/* Pushes n bytes of p, a malloc'd string, and frees p, also when the copy
 * hits the version's memory cap (the memory error is raised after the free). */
static void push_owned(lua_State *L, char *p, size_t n) {
    lua_pushcfunction(L, push_lstring);
    lua_pushlightuserdata(L, p);
    lua_pushinteger(L, (lua_Integer)n);
    int rc = lua_pcall(L, 2, 1, 0);
    free(p);
    if (rc != LUA_OK) lua_error(L);
}

/* Suspends the calling coroutine until a reply comes: from client listener
 * l, or (l NULL) from `callee`, a Lua listener's on_call that waits itself. */
static int wait_reply(lua_State *L, hversion *v, conn *l, const char *name, size_t nlen, const char *data,
                      size_t dlen, long long timeout, hwait *callee) {
    if (L != v->running)
        return call_fail(L, "hub.call: a listener that waits can only be waited for in on_event, on_call or a "
                            "timer callback");
    /* Checked before anything is registered: a failed yield would leave the
     * request behind for the next coroutine.yield to receive. */
    if (!lua_isyieldable(L))
        return call_fail(L, "hub.call: cannot wait here (inside a metamethod, an iterator, a sort comparator "
                            "or a gsub callback)");
    hwait *w = calloc(1, sizeof *w);
    if (!w) return luaL_error(L, "hub.call: out of memory");
    w->v = v;
    w->co_ref = LUA_NOREF;
    w->req_id = unicast_request(v->h->rt->hub, l, name, nlen, data, dlen, timeout, wait_done, w);
    if (!w->req_id) {
        free(w);
        return luaL_error(L, "hub.call: out of memory");
    }
    if (callee) hubmod_wait_call(callee, w->req_id);
    w->next = v->waits;
    if (v->waits) v->waits->prev = w;
    v->waits = w;
    v->nwaits++;
    v->yielding = w;
    return lua_yield(L, 0);
}

static int hub_call(lua_State *L) {
    hversion *v = live_version(L, "hub.call");
    check_name_data(L, "hub.call");
    long long timeout = -1;
    if (!lua_isnoneornil(L, 3)) {
        double t = lua_type(L, 3) == LUA_TNUMBER ? (double)lua_tonumber(L, 3) : -1;
        if (!(t >= 0 && t < 9e15)) return luaL_error(L, "hub.call: timeout must be a number of ms >= 0");
        timeout = (long long)t;
    }
    size_t nlen, dlen;
    const char *name = lua_tolstring(L, 1, &nlen);
    const char *data = lua_tolstring(L, 2, &dlen);
    handlers *rt = v->h->rt;
    stats_called(router_stats(rt->hub->router), name, nlen);
    const listener *l = listen_find(rt->listeners, name, nlen);
    if (!l) {
        lua_pushnil(L);
        lua_pushfstring(L, "no listener for '%s'", name);
        return 2;
    }
    if (l->kind == LISTENER_CONN) return wait_reply(L, v, l->owner, name, nlen, data, dlen, timeout, NULL);
    handler *t = l->owner;
    if (t == v->h || (t->cur && t->cur->active))
        return call_fail(L, "hub.call: call cycle (the listener's handler is already running)");
    lua_checkstack(L, 4); /* room for the results before anything is allocated outside Lua */
    char *reply = NULL, *err = NULL;
    size_t rlen = 0;
    hwait *pending = NULL;
    int rc = handler_call(t, name, nlen, data, dlen, &reply, &rlen, &err, &pending);
    if (rc == 1) return wait_reply(L, v, NULL, name, nlen, data, dlen, timeout, pending);
    if (rc < 0) {
        lua_pushnil(L);
        if (!err) lua_pushliteral(L, "out of memory"); /* nothing to free if this raises */
        else push_owned(L, err, herr_msglen(err));
        return 2;
    }
    push_owned(L, reply, rlen);
    return 1;
}

int luaopen_hub(lua_State *L) {
    static const luaL_Reg funcs[] = {
        {"publish", hub_publish}, {"log", hub_log},     {"now", hub_now},       {"after", hub_after},
        {"every", hub_every},     {"cancel", hub_cancel}, {"call", hub_call},     {NULL, NULL},
    };
    static const luaL_Reg timer_methods[] = {{"cancel", timer_cancel_l}, {NULL, NULL}};
    hversion *v = hversion_of(L);
    if (luaL_newmetatable(L, TIMER_MT)) {
        luaL_newlib(L, timer_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, timer_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, timer_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, TIMER_MT);
        lua_setfield(L, -2, "__name");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable"); /* getmetatable(handle) is false: no tampering */
    }
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    lua_pushstring(L, v->h->name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, v->number);
    lua_setfield(L, -2, "version");
    return 1;
}
