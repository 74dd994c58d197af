/* handler_runtime.h -- the Lua handler runtime's internals, shared by its
 * files: handler.c (handlers, queues, draining, errors), handler_reload.c
 * (load, reload, unload, rescan), hubmod.c (the hub module) and cmd_hub.c
 * (HUB.* commands, INFO). The rest of the core sees only handler.h.
 *
 * A `handler` is a name (a file in the handlers directory) with what
 * outlives its versions: the router subscriber, the event queue, counters,
 * the last error. Its `cur` version (handler_lua.h) runs the code; a reload
 * swaps `cur` between two events. */
#ifndef LUAHUB_HANDLER_RUNTIME_H
#define LUAHUB_HANDLER_RUNTIME_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "handler.h"
#include "route/listen.h"
#include "handler_lua.h"
#include "handler_queue.h"
#include "route/router.h"

/* Events one handler runs per loop iteration before the next handler's
 * turn, and events (or milliseconds) all handlers run per iteration before
 * clients are served again. */
#define HANDLER_DRAIN_BATCH 256
#define HANDLER_DRAIN_MAX 4096
#define HANDLER_DRAIN_MS 10.0

/* A token bucket for log lines, so a failing or chatty handler cannot flood
 * the log. */
typedef struct ratelimit {
    double tokens, last;
    unsigned long suppressed;
} ratelimit;

typedef enum hstate {
    HSTATE_RUNNING,       /* the newest file is the version serving */
    HSTATE_RELOAD_FAILED, /* a newer file failed to load; the older version serves */
    HSTATE_FAILED,        /* the file failed to load and nothing serves */
} hstate;

struct handler {
    UT_hash_handle hh;       /* rt->by_name, kept sorted by name */
    handlers *rt;
    char *name;              /* the file's base name */
    char *path;              /* <handlers dir>/<name>.lua */
    subscriber sub;          /* subscribed to cur's patterns */
    hqueue queue;
    uint64_t last_id;        /* id of the last event delivered (see handler_deliver) */
    hversion *cur;           /* the version serving, or NULL */
    hversion *draining;      /* retired versions still finishing hub.call waits */
    size_t ndraining;
    int version;             /* cur's number, 0 if none */
    hstate state;
    double loaded_at;        /* ms since the epoch cur was switched in */
    uint64_t events, calls, errors, dropped;
    char *last_error;        /* "<where>: <message>", or NULL */
    double last_error_at;
    /* fingerprint of the files of the last load attempt */
    int fp_valid;
    uint64_t src_hash;
    size_t src_len;
    hdep *deps;
    size_t ndeps;
    uint64_t drop_id;        /* id of the last event dropped (its repeats are refused too) */
    htimer *due_head, *due_tail; /* timers that fired, waiting for the drain (hubmod.c) */
    ratelimit log_rl, err_rl, drop_rl;
    struct hconsume *cons;   /* the durable consumer (handler_consume.h), NULL if cur does not consume */
    handler *ready_next;     /* rt->ready list: handlers with queued events or due timers */
    int ready;
};

struct handlers {
    hub *hub;
    handler *by_name;
    listen_registry *listeners; /* the hub's (hub->listeners), shared with client listeners */
    ev_check drain_w;        /* runs queued events after each poll */
    ev_idle idle_w;          /* active while events are queued: the loop must not block */
    handler *ready_head, *ready_tail;
    size_t nready;
    uint64_t call_seq;       /* ids of HUB.CALL events */
    uint64_t dropped_gone;   /* events and waiters dropped with handlers since unloaded */
    char dir[512];           /* handlers directory, no trailing slash */
    char lib_path[560];      /* <dir>/lib/?.lua */
};

/*---- handler.c ----------------------------------------------------------------*/


/* Creates an empty handler (no version) named name and adds it to rt. */
handler *handler_create(handlers *rt, const char *name);
/* Unsubscribes, unregisters, closes the version and any draining ones
 * (their waiting callbacks are dropped), drops the queue, frees. */
void handler_destroy(handler *h);
handler *handlers_find(handlers *rt, const char *name, size_t len);

/* Puts h on the ready list: the drain will run its queued events and due
 * timers (hubmod_run_due). */
void handler_wake(handler *h);

/* Records an error of h: counted, kept as last_error ("<what>: <message>"),
 * logged (rate-limited, traceback at verbose level). */
void handler_error(handler *h, const char *what, const char *err);
/* A log line from handler code (hub.log, print), rate-limited per handler. */
void handler_log(handler *h, int level, const char *msg, size_t len);

/* Runs h's on_call for a call. Returns 0 with a malloc'd reply, -1 with a
 * malloc'd error (message, then traceback), or 1 if on_call waits in
 * hub.call: the caller then names, with hubmod_wait_call(*pending, id), the
 * request (unicast.h) that gets the reply or error when it finishes. */
int handler_call(handler *h, const char *name, size_t nlen, const char *data, size_t dlen, char **reply,
                 size_t *rlen, char **err, hwait **pending);

/* Tells h that a newer listener took over its listen name: runs its
 * optional on_replaced(name); an error is recorded like any other. */
void handler_replaced(handler *h, const char *name, size_t len);

/* Publishes a lifecycle event (hub.handler.*) as JSON:
 * {"name":..., "version":N, "error":"..." or null}. */
void handlers_publish_lifecycle(handlers *rt, const char *event, const char *name, int version, const char *error);

/* Retires old, the version a reload just replaced: closed now if no
 * coroutine of it waits in hub.call, else kept (timers stopped, no new
 * events or calls) on h->draining until its last waiter finishes. At most
 * handler-max-draining versions are kept: past it the oldest is closed, its
 * waiting callbacks dropped (counted in h->dropped and logged). */
void handler_retire(handler *h, hversion *old);

/* Closes v if it is a retired version with no waiter left (after one of its
 * coroutines was resumed). */
void handler_drained(hversion *v);

/* Sum of the memory of every serving or draining version. */
size_t handlers_memory(const handlers *rt);

/*---- hubmod.c (timers) ---------------------------------------------------------*/

/* Runs the oldest due timer of h (one that fired and was queued for the
 * drain). Returns 1 if one ran, 0 if none is due. */
int hubmod_run_due(handler *h);

/*---- handler_reload.c -----------------------------------------------------------*/

typedef enum hreload_outcome {
    HR_LOADED,    /* a new file, version 1 serving */
    HR_RELOADED,  /* a changed file, new version serving */
    HR_UNCHANGED, /* same files as the last attempt: nothing done */
    HR_FAILED,    /* the file failed; the previous version (if any) serves */
    HR_UNLOADED,  /* the file is gone; the handler was removed */
} hreload_outcome;

/* Called once per handler a reload looked at. version: the version serving
 * afterwards (0 if none); error: the failure's message (no traceback), or
 * NULL. */
typedef void (*hreload_report_fn)(void *ctx, const char *name, hreload_outcome o, int version, const char *error);

/* Brings every handler in line with the directory: unloads deleted files
 * first, then loads new files and reloads changed ones (all if force), in
 * name order. A file whose last attempt failed on a listen name held by
 * another handler, or failed while no version of it serves, is tried again
 * even if unchanged. Returns
 * 0, or -1 if the directory cannot be read (nothing is unloaded then). */
int handlers_reload_all(handlers *rt, int force, hreload_report_fn fn, void *ctx);

/* The same for one name. Returns 0, -1 if name is not a valid handler name,
 * -2 if there is neither such a file nor such a handler. */
int handlers_reload_name(handlers *rt, const char *name, size_t len, int force, hreload_report_fn fn, void *ctx);

/* The report function used for SIGHUP and startup: logs each outcome. */
void handlers_log_report(void *ctx, const char *name, hreload_outcome o, int version, const char *error);

#endif
