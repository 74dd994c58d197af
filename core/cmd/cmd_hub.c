/* cmd_hub.c -- the HUB.* commands and INFO's "# Handlers" section: the
 * network face of the Lua handler runtime (handler_runtime.h).
 *
 *   HUB.CALL name payload [timeout-ms]
 *       The reply of the unicast listener of `name`: a bulk string, or
 *       -ERR no listener for 'name', or -ERR <the handler's error message>.
 *       A Lua listener runs synchronously (bounded by the instruction
 *       budget), so timeout-ms has nothing to wait for. A client listener
 *       (HUB.LISTEN, unicast.c) answers later: the caller is blocked until
 *       its reply, -ERR <its error>, -TIMEOUT no reply from 'name' within
 *       N ms (timeout-ms, default call-timeout; 0 = no limit), or
 *       -ERR listener for 'name' disconnected.
 *   HUB.HANDLERS
 *       An array with one map per handler, in name order: name, version,
 *       state (running | reload-failed | failed), file, loaded_at (ms since
 *       the epoch, 0 if never), events, calls, errors, dropped, queued,
 *       timers, used_memory, draining (retired versions still finishing
 *       hub.call waits), last_error (null if none), subscribe, listen.
 *       RESP2 clients get each map as a flat key/value array.
 *   HUB.RELOAD [name [FORCE]]
 *       Without a name: every handler file (new ones load, changed ones
 *       reload, deleted ones unload); `HUB.RELOAD * FORCE` reloads all
 *       even if unchanged. With a name: that handler only. Replies with an
 *       array of lines, one per handler looked at, in name order:
 *         "<name>: loaded v1" | "<name>: reloaded v3" | "<name>: unchanged v3"
 *         | "<name>: unchanged (not running)" (still the file that failed)
 *         | "<name>: unloaded" | "<name>: failed: <error with file:line>"
 *       or -ERR no handler 'name' (neither file nor handler), -ERR invalid
 *       handler name, -ERR cannot read handlers directory. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "lua/handler_consume.h"
#include "lua/handler_runtime.h"
#include "lua/hubmod.h"
#include "net/reply.h"
#include "route/stats.h"
#include "net/unicast.h"

static const char *state_name(hstate s) {
    switch (s) {
    case HSTATE_RUNNING: return "running";
    case HSTATE_RELOAD_FAILED: return "reload-failed";
    case HSTATE_FAILED: return "failed";
    }
    return "unknown";
}

/* The runtime, or NULL after replying with an error. */
static handlers *runtime(conn *c) {
    if (!c->hub->handlers) reply_error(c, "ERR the handler runtime is not available");
    return c->hub->handlers;
}

/*---- HUB.CALL ---------------------------------------------------------------------*/

int hub_call_args(int argc, const hstr *argv, long long *timeout) {
    *timeout = -1; /* the call-timeout option */
    if (argc > 4) return -1;
    if (argc == 4 && (hstr_to_ll(&argv[3], timeout) || *timeout < 0)) return -2;
    return 0;
}

void cmd_hub_call(conn *c, int argc, const hstr *argv) {
    long long timeout;
    int bad = hub_call_args(argc, argv, &timeout);
    if (bad) {
        reply_error(c, bad == -1 ? "ERR syntax error" : "ERR timeout is not an integer or out of range");
        return;
    }
    handlers *rt = runtime(c);
    if (!rt) return;
    const hstr *name = &argv[1];
    stats_called(router_stats(c->hub->router), name->p, name->len); /* answered or not */
    const listener *l = listen_find(rt->listeners, name->p, name->len);
    if (!l) {
        int n = name->len > 200 ? 200 : (int)name->len;
        reply_errorf(c, "ERR no listener for '%.*s'", n, name->p);
        return;
    }
    if (l->kind == LISTENER_CONN) { /* answered later: the caller blocks (unicast.h) */
        unicast_call(c, l->owner, name, &argv[2], timeout);
        return;
    }
    char *reply = NULL, *err = NULL;
    size_t rlen = 0;
    hwait *pending = NULL;
    int rc = handler_call(l->owner, name->p, name->len, argv[2].p, argv[2].len, &reply, &rlen, &err, &pending);
    if (rc == 1) { /* on_call waits in hub.call: so does the caller, as for a client listener */
        hubmod_wait_call(pending, unicast_call(c, NULL, name, &argv[2], timeout));
        return;
    }
    if (rc < 0) {
        if (!err) {
            reply_error(c, "ERR out of memory");
            return;
        }
        size_t ml = herr_msglen(err);
        reply_errorf(c, "ERR %.*s", (int)(ml > 1000 ? 1000 : ml), err);
        free(err);
        return;
    }
    reply_bulk(c, reply, rlen);
    free(reply);
}

/*---- HUB.HANDLERS -------------------------------------------------------------------*/

static void kv_int(conn *c, const char *k, long long v) {
    reply_cstr(c, k);
    reply_int(c, v);
}

static void kv_str(conn *c, const char *k, const char *v) {
    reply_cstr(c, k);
    if (v) reply_cstr(c, v);
    else reply_null(c);
}

static void kv_list(conn *c, const char *k, const hstrv *list, size_t n) {
    reply_cstr(c, k);
    reply_array(c, (long)n);
    for (size_t i = 0; i < n; i++) reply_bulk(c, list[i].p, list[i].len);
}

void cmd_hub_handlers(conn *c, int argc, const hstr *argv) {
    (void)argc, (void)argv;
    handlers *rt = runtime(c);
    if (!rt) return;
    reply_array(c, (long)HASH_COUNT(rt->by_name));
    for (handler *h = rt->by_name; h; h = h->hh.next) {
        hversion *v = h->cur;
        reply_map(c, 18);
        kv_str(c, "name", h->name);
        kv_int(c, "version", h->version);
        kv_str(c, "state", state_name(h->state));
        kv_str(c, "file", h->path);
        kv_int(c, "loaded_at", (long long)h->loaded_at);
        kv_int(c, "events", (long long)h->events);
        kv_int(c, "calls", (long long)h->calls);
        kv_int(c, "errors", (long long)h->errors);
        kv_int(c, "dropped", (long long)h->dropped);
        kv_int(c, "queued", (long long)h->queue.count);
        kv_int(c, "timers", v ? (long long)v->ntimers : 0);
        kv_int(c, "used_memory", v ? (long long)v->mem_used : 0);
        kv_int(c, "draining", (long long)h->ndraining);
        kv_str(c, "last_error", h->last_error);
        kv_list(c, "subscribe", v ? v->subscribe : NULL, v ? v->nsubscribe : 0);
        kv_str(c, "group", v ? v->group.p : NULL);
        kv_list(c, "listen", v ? v->listen : NULL, v ? v->nlisten : 0);
        consume_info ci;
        reply_cstr(c, "consume");
        if (!consume_get_info(h, &ci)) {
            reply_null(c);
            continue;
        }
        reply_map(c, 8);
        kv_str(c, "stream", ci.stream);
        kv_str(c, "group", ci.group);
        kv_str(c, "state", ci.state);
        kv_int(c, "pending", (long long)ci.pending);
        kv_int(c, "delivered", (long long)ci.delivered);
        kv_int(c, "acked", (long long)ci.acked);
        kv_int(c, "failures", (long long)ci.failures);
        kv_int(c, "dead_lettered", (long long)ci.dead);
    }
}

/*---- HUB.RELOAD ---------------------------------------------------------------------*/

/* The reply lines, collected while the reload runs (the count comes first). */
typedef struct lines {
    char **v;
    size_t n, cap;
} lines;

static void add_line(lines *ls, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_line(lines *ls, const char *fmt, ...) {
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 8;
        char **v = realloc(ls->v, cap * sizeof *v);
        if (!v) return;
        ls->v = v;
        ls->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&ls->v[ls->n], fmt, ap) >= 0) ls->n++;
    va_end(ap);
}

static void collect(void *ctx, const char *name, hreload_outcome o, int version, const char *error) {
    lines *ls = ctx;
    switch (o) {
    case HR_LOADED: add_line(ls, "%s: loaded v%d", name, version); break;
    case HR_RELOADED: add_line(ls, "%s: reloaded v%d", name, version); break;
    case HR_UNCHANGED:
        if (version) add_line(ls, "%s: unchanged v%d", name, version);
        else add_line(ls, "%s: unchanged (not running)", name);
        break;
    case HR_UNLOADED: add_line(ls, "%s: unloaded", name); break;
    case HR_FAILED: add_line(ls, "%s: failed: %s", name, error ? error : "unknown error"); break;
    }
    handlers_log_report(NULL, name, o, version, error);
}

void cmd_hub_reload(conn *c, int argc, const hstr *argv) {
    handlers *rt = runtime(c);
    if (!rt) return;
    int force = 0;
    if (argc > 3 || (argc == 3 && !(force = hstr_is(&argv[2], "force")))) {
        reply_error(c, "ERR syntax error: HUB.RELOAD [name [FORCE]]");
        return;
    }
    lines ls = {0};
    int rc;
    if (argc == 1 || (argv[1].len == 1 && argv[1].p[0] == '*')) rc = handlers_reload_all(rt, force, collect, &ls) == 0 ? 0 : -3;
    else rc = handlers_reload_name(rt, argv[1].p, argv[1].len, force, collect, &ls);
    if (rc == -1) {
        reply_error(c, "ERR invalid handler name");
    } else if (rc == -2) {
        int n = argv[1].len > 200 ? 200 : (int)argv[1].len;
        reply_errorf(c, "ERR no handler '%.*s'", n, argv[1].p);
    } else if (rc == -3) {
        reply_error(c, "ERR cannot read handlers directory");
    } else {
        reply_array(c, (long)ls.n);
        for (size_t i = 0; i < ls.n; i++) reply_cstr(c, ls.v[i]);
    }
    for (size_t i = 0; i < ls.n; i++) free(ls.v[i]);
    free(ls.v);
}

/*---- INFO -------------------------------------------------------------------------------*/

void info_handlers_section(hub *h, textbuf *b) {
    handlers *rt = h->handlers;
    size_t n = 0, failed = 0, queued = 0, timers = 0;
    unsigned long long events = 0, calls = 0, errors = 0, dropped = 0;
    for (handler *x = rt ? rt->by_name : NULL; x; x = x->hh.next) {
        n++;
        failed += x->cur == NULL;
        events += x->events;
        calls += x->calls;
        errors += x->errors;
        dropped += x->dropped;
        queued += x->queue.count;
        if (x->cur) timers += x->cur->ntimers;
    }
    if (rt) dropped += rt->dropped_gone; /* handlers since unloaded */
    textbuf_printf(b,
                   "# Handlers\r\nhandlers:%zu\r\nhandlers_failed:%zu\r\nhandler_events:%llu\r\n"
                   "handler_calls:%llu\r\nhandler_errors:%llu\r\nhandler_dropped:%llu\r\nhandler_queued:%zu\r\n"
                   "handler_timers:%zu\r\nunicast_names:%zu\r\nunicast_pending_calls:%zu\r\nused_memory_lua:%zu\r\n\r\n",
                   n, failed, events, calls, errors, dropped, queued, timers,
                   rt ? listen_count(rt->listeners) : (size_t)0, unicast_pending(h), rt ? handlers_memory(rt) : 0);
}
