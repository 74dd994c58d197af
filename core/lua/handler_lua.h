/* handler_lua.h -- one loaded version of a handler: its own lua_State with a
 * memory cap, an instruction budget, the sandbox, and the functions and
 * lists its file returned. Everything that runs handler code goes through
 * here, always under lua_pcall with a traceback message handler, so an error
 * (including "not enough memory" and "instruction limit exceeded") comes back
 * as a string and never unwinds into the hub.
 *
 * Memory: every allocation of the state goes through one lua_Alloc that
 * refuses to grow past the version's limit (handler-memory-limit); Lua turns
 * the refusal into a memory error for that handler only. Timers created by
 * the hub module are charged to the same account.
 *
 * Instructions: a count hook on every thread of the state adds up VM
 * instructions per invocation; past handler-instruction-limit it raises
 * "instruction limit exceeded", and keeps raising at every instruction until
 * the invocation ends, so pcall inside handler code cannot swallow it.
 *
 * Time: the outermost invocation (no other handler code running) starts a
 * time slice of handler-time-slice ms that nested invocations (hub.call into
 * a Lua listener) share. The count hook, the bounded library functions
 * (lua_bounded.h), coroutine switches and large or refused allocations
 * compare CLOCK_MONOTONIC with its end; past it the invocation fails with
 * "time slice exceeded (handler-time-slice is N ms)", sticky as above.
 *
 * Memory near the cap: each refused allocation costs Lua an emergency full
 * collection; the allocator checks the slice at every refusal, so a handler
 * cannot spend a collection per pcall round past its slice.
 *
 * Errors are returned as malloc'd strings: the message (with file:line when
 * Lua knows it), then "\nstack traceback:\n..." when there is one. An error
 * string is NULL only when even it could not be allocated; consumers read
 * NULL as "out of memory" (herr_msglen and handler_error accept it). */
#ifndef LUAHUB_HANDLER_LUA_H
#define LUAHUB_HANDLER_LUA_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "handler_queue.h"
#include "sandbox.h"

typedef struct handler handler;
typedef struct htimer htimer;
typedef struct hwait hwait;

/* A byte string copied out of Lua (NUL-terminated, may contain NULs). */
typedef struct hstrv {
    char *p;
    size_t len;
} hstrv;

/* A file a version was built from, as it was then (reload fingerprints). */
typedef struct hdep {
    char *path;
    uint64_t hash;
    size_t len;
} hdep;

typedef struct hversion {
    lua_State *L;
    handler *h; /* the handler this is (or would become) a version of */
    int number; /* hub.version */
    size_t mem_used, mem_limit;
    long long budget_limit, budget_used;
    int budget_exceeded; /* 0, or why this invocation must end (handler_lua.c) */
    lua_State *current;  /* the thread running handler code now, or NULL */
    int mem_refusals;    /* refusals that survived an emergency collection */
    void *refused_ptr;   /* the last refused allocation, to tell Lua's retry */
    size_t refused_size;
    int ref_on_event, ref_on_call, ref_snapshot, ref_on_reload; /* registry refs or LUA_NOREF */
    int ref_on_replaced; /* optional on_replaced(name): a newer listener took a name */
    int ref_idle_co;     /* a finished coroutine kept for the next task, or LUA_NOREF */
    hstrv *subscribe;    /* patterns, in file order, without duplicates */
    size_t nsubscribe;
    hstrv group;   /* consumer group the subscribe patterns join, or {NULL, 0} */
    /* consume = {stream=, group= [, max_deliveries=] [, retry_ms=]}: a durable
     * consumer of a stream's group (handler_consume.c); stream.p NULL if none */
    hstrv cstream, cgroup;
    long long cmax_deliveries, cretry_ms;
    hstrv *listen; /* unicast names, without duplicates */
    size_t nlisten;
    htimer *timers; /* pending timers (hubmod.c) */
    size_t ntimers;
    hdep *deps; /* lib files require() loaded */
    size_t ndeps, capdeps;
    sandbox_opts sb;
    char *lib_path;
    int closing; /* lua_close in progress: the hub module refuses work */
    /* on_event, on_call and timers run as coroutines so hub.call can wait (hubmod.c) */
    lua_State *running; /* the callback coroutine being resumed, or NULL */
    hwait *yielding;    /* set by hub.call just before it yields */
    hwait *waits;       /* coroutines waiting for a reply */
    size_t nwaits;
    int active;    /* invocations running (a call cycle check) */
    int co_errmem; /* the coroutine failed with a memory error */
    /* retired by a reload while coroutines were waiting in hub.call: no new
     * events, calls or timers; closed when its last waiter finishes */
    int retired;
    struct hversion *retired_next; /* handler's list of draining versions */
} hversion;

/* The version a state (or any coroutine of it) belongs to. */
hversion *hversion_of(lua_State *L);

/* Creates an empty state for version `number` of h. Returns NULL with *err
 * set if the state cannot be created. */
hversion *hversion_new(handler *h, int number, size_t mem_limit, long long instruction_limit, const char *lib_path,
                       char **err);

/* Opens the sandbox, runs the file's text (chunk name "@path") and validates
 * what it returned (the handler contract). Returns 0, or -1 with *err. */
int hversion_load(hversion *v, const char *path, const char *src, size_t len, char **err);

/* State handover into the new version nv from old: old's snapshot() (if
 * any), copied as plain data, is passed to nv's on_reload(old) (if any).
 * Returns 0, or -1 with *err ("snapshot: ...", "on_reload: ...", or the
 * copy's complaint). Neither version's subscriptions are touched. */
int hversion_handover(hversion *nv, hversion *old, char **err);

/* Runs on_event(ev) for a queued event, in a coroutine: if it waits in
 * hub.call it is suspended and resumed by the reply later. Returns 0, or -1
 * with *err. */
int hversion_event(hversion *v, const hevent *e, char **err);

/* One stream entry for a consumer's on_event (handler_consume.c). */
typedef struct hcentry {
    const char *stream, *entry; /* the stream's key, the entry id as "ms-seq" */
    size_t slen, elen;
    const char *f; /* the entry's fields, in the stream model's encoding */
    size_t flen;
    uint64_t deliveries;
    uint64_t ms; /* the id's ms part: ev.time */
} hcentry;

/* Runs on_event(ev) for a stream entry, in a coroutine as hversion_event;
 * `task` names the delivery, so the consumer learns how a wait in hub.call
 * ends. Returns 0 (returned: acknowledge), 1 (waits in hub.call), or -1
 * with *err. */
int hversion_consume(hversion *v, const hcentry *e, uint64_t task, char **err);

/* Runs on_call(ev) for a call, in a coroutine as on_event. Returns 0 with
 * the reply (malloc'd) in *reply / *rlen, -1 with *err, or 1 if on_call
 * waits in hub.call: *pending is its wait, and the caller names the request
 * the reply will answer with hubmod_wait_call (hubmod.h). */
int hversion_call(hversion *v, const char *name, size_t nlen, const char *data, size_t dlen, uint64_t id,
                  double time_ms, char **reply, size_t *rlen, char **err, hwait **pending);

/* Runs on_replaced(name), if the version has one: another listener (a
 * client's HUB.LISTEN) took over one of its listen names. Returns 0, or -1
 * with *err. */
int hversion_replaced(hversion *v, const char *name, size_t len, char **err);

/* Calls the function in registry slot ref with no arguments (timers), in a
 * coroutine, as on_event is. Returns 0, or -1 with *err. */
int hversion_run_ref(hversion *v, int ref, char **err);

/* Resumes the coroutine at registry slot co_ref, waiting in hub.call, with
 * its result: the reply (ok) or nil and the error message. Returns 0 when
 * the callback has finished (an on_call's, is_call, with its reply in
 * *reply / *rlen), 1 if it waits in hub.call again (an on_call's wait keeps
 * answering `answer`), or -1 with *err (the callback's error). */
int hversion_resume(hversion *v, int co_ref, int ok, const char *p, size_t n, int is_call, uint64_t answer,
                    uint64_t task, char **reply, size_t *rlen, char **err);

/* Stops the version's timers and closes its state (only C finalizers run:
 * the sandbox refuses __gc to handler code). NULL is allowed. */
void hversion_close(hversion *v);

/* Length of the message part of an error string (before the traceback);
 * 0 for NULL. */
size_t herr_msglen(const char *err);

/* 64-bit FNV-1a of a byte string: how reloads tell whether a file changed. */
uint64_t hhash(const char *p, size_t n);

#endif
