/* handler.c -- the Lua handler runtime: the set of handlers, how events reach
 * them and how their errors and logs are kept (see handler.h for the core's
 * view, handler_runtime.h for the internals).
 *
 * Event path: router_publish calls handler_deliver, which must not run Lua
 * (router callbacks may not publish): it copies the event into the handler's
 * queue and puts the handler on the ready list. After each poll an ev_check
 * watcher (drain_cb) runs queued events in bounded batches, round-robin over
 * the ready handlers, so a handler publishing to another handler is handled
 * without recursion and clients are served between batches. Timers take the
 * same path: a timer that fires is queued to its handler (hubmod.c) and its
 * callback runs in the drain, under the same limits, so all the Lua work of
 * one loop iteration is bounded. An ev_idle
 * watcher is active while anything is queued so the loop does not block.
 * Events for one handler run in publish order, whatever its version: the
 * queue belongs to the handler, which is what makes a reload lose nothing. */
#include "handler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "handler_consume.h"
#include "handler_runtime.h"
#include "hubmod.h"
#include "base/log.h"

/* Bytes of an error message kept in last_error (HUB.HANDLERS). */
#define LAST_ERROR_MAX 1024

/*---- Rate-limited logging ---------------------------------------------------------*/

/* Takes a token from rl (refilled at `rate` per second up to `burst`).
 * Returns 1 if the caller may log; *suppressed then holds how many lines
 * were refused since the last allowed one. */
static int ratelimit_allow(ratelimit *rl, double rate, double burst, unsigned long *suppressed) {
    double now = clock_wall_ms() / 1000.0;
    if (rl->last == 0) rl->tokens = burst;
    else rl->tokens += (now - rl->last) * rate;
    if (rl->tokens > burst) rl->tokens = burst;
    rl->last = now;
    if (rl->tokens < 1.0) {
        rl->suppressed++;
        return 0;
    }
    rl->tokens -= 1.0;
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return 1;
}

void handler_log(handler *h, int level, const char *msg, size_t len) {
    if (level < log_level) return;
    unsigned long skipped;
    if (!ratelimit_allow(&h->log_rl, 100, 200, &skipped)) return;
    if (skipped) log_msg(LOG_WARNING, "Handler %s: %lu log lines suppressed (rate limit)", h->name, skipped);
    log_msg(level, "Handler %s: %.*s", h->name, (int)(len > 900 ? 900 : len), msg);
}

void handler_error(handler *h, const char *what, const char *err) {
    if (!err) err = "out of memory";
    size_t ml = herr_msglen(err);
    /* last_error lives outside the Lua cap for the handler's lifetime and
     * every HUB.HANDLERS repeats it: keep a prefix of a long message. */
    size_t keep = ml > LAST_ERROR_MAX ? LAST_ERROR_MAX : ml;
    size_t n = strlen(what) + keep + 3;
    char *last = malloc(n);
    if (last) {
        snprintf(last, n, "%s: %.*s", what, (int)keep, err);
        free(h->last_error);
        h->last_error = last;
    }
    h->errors++;
    h->last_error_at = clock_wall_ms();
    unsigned long skipped;
    if (!ratelimit_allow(&h->err_rl, 10, 20, &skipped)) return;
    if (skipped) log_warning("Handler %s: %lu more errors not logged (rate limit)", h->name, skipped);
    log_warning("Handler %s: %s error: %.*s", h->name, what, (int)ml, err);
    if (log_level <= LOG_VERBOSE && err[ml]) {
        /* the traceback on one line */
        char tb[900];
        size_t j = 0;
        for (const char *p = err + ml + 1; *p && j < sizeof tb - 1; p++) tb[j++] = (*p == '\n' || *p == '\t') ? ' ' : *p;
        tb[j] = '\0';
        log_verbose("Handler %s: %s", h->name, tb);
    }
}

/*---- Delivery and the ready list ----------------------------------------------------*/

/* 1 if h has events, due timers or stream entries waiting for the drain. */
static int has_work(handler *h) { return h->queue.count || h->due_head || (h->cons && consume_has_work(h)); }

static void ready_add(handler *h) {
    handlers *rt = h->rt;
    if (h->ready) return;
    h->ready = 1;
    h->ready_next = NULL;
    if (rt->ready_tail) rt->ready_tail->ready_next = h;
    else rt->ready_head = h;
    rt->ready_tail = h;
    rt->nready++;
    if (!ev_is_active(&rt->idle_w)) ev_idle_start(rt->hub->loop, &rt->idle_w);
}

void handler_wake(handler *h) { ready_add(h); }

static handler *ready_pop(handlers *rt) {
    handler *h = rt->ready_head;
    if (!h) return NULL;
    rt->ready_head = h->ready_next;
    if (!rt->ready_head) rt->ready_tail = NULL;
    h->ready_next = NULL;
    h->ready = 0;
    rt->nready--;
    return h;
}

static void ready_remove(handler *h) {
    handlers *rt = h->rt;
    if (!h->ready) return;
    handler *prev = NULL;
    for (handler *x = rt->ready_head; x; prev = x, x = x->ready_next) {
        if (x != h) continue;
        if (prev) prev->ready_next = h->ready_next;
        else rt->ready_head = h->ready_next;
        if (rt->ready_tail == h) rt->ready_tail = prev;
        break;
    }
    h->ready = 0;
    h->ready_next = NULL;
    rt->nready--;
}

/* Position of pattern p in h's subscribe list (list order decides which
 * pattern an event reports when several match). */
static size_t pattern_rank(const handler *h, const char *p, size_t len) {
    if (!h->cur || !p) return (size_t)-1;
    for (size_t i = 0; i < h->cur->nsubscribe; i++)
        if (h->cur->subscribe[i].len == len && memcmp(h->cur->subscribe[i].p, p, len) == 0) return i;
    return (size_t)-1;
}

static void count_drop(handler *h) {
    h->dropped++;
    unsigned long skipped;
    const config *cfg = &h->rt->hub->cfg;
    if (ratelimit_allow(&h->drop_rl, 0.2, 1, &skipped))
        log_warning("Handler %s: queue full (%zu events, %zu bytes; handler-queue-limit %lld, handler-queue-memory "
                    "%lld), dropping events (%lu dropped so far)",
                    h->name, h->queue.count, h->queue.bytes, cfg->handler_queue_limit, cfg->handler_queue_memory,
                    (unsigned long)h->dropped);
}

/* Queues a copy of d (never runs Lua here). The router calls once per
 * matching subscription; a handler runs each event once (as in the test
 * kit), reporting the first of its patterns, in file order, that matched.
 * All calls for one event come within one router_publish, so the id of the
 * last delivery is enough to spot the repeats. Returns 1 if h has the event
 * (queued now or already), 0 if its queue is full (handler-queue-limit
 * events or handler-queue-memory bytes) or memory ran out. */
static int enqueue(handler *h, const delivery *d) {
    if (d->id == h->last_id) {
        hevent *tail = hqueue_tail(&h->queue);
        if (tail && tail->id == d->id && pattern_rank(h, d->pattern, d->plen) < pattern_rank(h, tail->pattern, tail->plen)) {
            hevent *e = hevent_new(d);
            if (e) free(hqueue_replace_tail(&h->queue, e));
        }
        return 1;
    }
    const config *cfg = &h->rt->hub->cfg;
    if (h->queue.count >= (size_t)cfg->handler_queue_limit) return 0;
    if (h->queue.bytes + hevent_size_of(d) > (size_t)cfg->handler_queue_memory) return 0;
    hevent *e = hevent_new(d);
    if (!e || hqueue_push(&h->queue, e) < 0) {
        free(e);
        return 0;
    }
    h->last_id = d->id;
    ready_add(h);
    return 1;
}

/* The router's callback for a subscription: an event h cannot queue is
 * dropped and counted, once (its other matches then look like repeats), and
 * none of its deliveries count as received (PUBLISH's reply). */
static void handler_deliver(subscriber *s, const delivery *d) {
    handler *h = s->udata;
    router *r = h->rt->hub->router;
    if (d->id == h->drop_id) {
        router_refused(r);
        return;
    }
    if (enqueue(h, d)) return;
    h->last_id = h->drop_id = d->id;
    router_refused(r);
    count_drop(h);
}

/* The router's callback for a consumer group (the handler's `group`): an
 * event h cannot queue is refused, so the group offers it to its next
 * member (router.h); the router counts it if no member takes it. */
static int handler_gdeliver(subscriber *s, const delivery *d, const char *group, size_t glen) {
    (void)group, (void)glen;
    return enqueue(s->udata, d);
}

/*---- Draining ---------------------------------------------------------------------*/

static void run_event(handler *h, hevent *e) {
    if (!h->cur) { /* cannot happen while subscribed; counted rather than lost silently */
        h->dropped++;
        return;
    }
    h->events++;
    char *err = NULL;
    if (hversion_event(h->cur, e, &err)) {
        handler_error(h, "on_event", err);
        free(err);
    }
}

/* After each poll: run due timers and queued events (a handler's due timers
 * first), at most HANDLER_DRAIN_BATCH per handler and HANDLER_DRAIN_MAX (or
 * HANDLER_DRAIN_MS) in all, visiting the handlers that were ready when it
 * started once each; those with work left go to the back of the list. The
 * clock is read after every callback, so one iteration runs at most
 * HANDLER_DRAIN_MS plus one callback's time. The loop then serves clients
 * and comes back at once (the idle watcher keeps it from blocking). */
static void drain_cb(struct ev_loop *loop, ev_check *w, int revents) {
    (void)revents;
    handlers *rt = w->data;
    size_t budget = HANDLER_DRAIN_MAX;
    int64_t deadline = clock_coarse_ns() + (int64_t)(HANDLER_DRAIN_MS * 1e6); /* cheap: read per callback */
    consume_wake_ready(rt);
    for (size_t turns = rt->nready; turns && budget && rt->ready_head; turns--) {
        handler *h = ready_pop(rt);
        size_t batch = HANDLER_DRAIN_BATCH < budget ? HANDLER_DRAIN_BATCH : budget;
        for (; batch && has_work(h); batch--, budget--) {
            if (!hubmod_run_due(h)) {
                hevent *e = hqueue_pop(&h->queue);
                if (e) run_event(h, e);
                else if (!consume_step(h)) break;
                free(e);
            }
            if (clock_coarse_ns() > deadline) budget = batch = 1; /* time is up: stop after this one */
        }
        /* it may already be back: its own publish can queue to itself */
        if (has_work(h)) ready_add(h);
    }
    if (!rt->ready_head) ev_idle_stop(loop, &rt->idle_w);
}

/* Only keeps the loop from blocking while events are queued. */
static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents) { (void)loop, (void)w, (void)revents; }

/*---- Handlers ---------------------------------------------------------------------*/

static int by_name_cmp(handler *a, handler *b) { return strcmp(a->name, b->name); }

handler *handler_create(handlers *rt, const char *name) {
    handler *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    size_t plen = strlen(rt->dir) + strlen(name) + 6;
    h->name = strdup(name);
    h->path = malloc(plen);
    if (!h->name || !h->path) {
        free(h->name);
        free(h->path);
        free(h);
        return NULL;
    }
    snprintf(h->path, plen, "%s/%s.lua", rt->dir, name);
    h->rt = rt;
    h->state = HSTATE_FAILED;
    h->sub.deliver = handler_deliver;
    h->sub.gdeliver = handler_gdeliver;
    h->sub.udata = h;
    hqueue_init(&h->queue);
    HASH_ADD_KEYPTR(hh, rt->by_name, h->name, strlen(h->name), h);
    HASH_SORT(rt->by_name, by_name_cmp);
    return h;
}

void handler_destroy(handler *h) {
    handlers *rt = h->rt;
    HASH_DEL(rt->by_name, h);
    ready_remove(h);
    consume_free(h); /* first: its on_event waits, dropped below, are then nobody's */
    router_unsubscribe_all(rt->hub->router, &h->sub);
    /* h's registrations are exactly cur's names (handler_reload.c's switch
     * keeps them so): removing them by name costs h's names, not the whole
     * registry's */
    for (size_t i = 0; h->cur && i < h->cur->nlisten; i++)
        listen_remove(rt->listeners, h->cur->listen[i].p, h->cur->listen[i].len, h);
    hversion_close(h->cur);
    while (h->draining) {
        hversion *d = h->draining;
        h->draining = d->retired_next;
        hversion_close(d); /* its waiting callers are dropped */
    }
    h->ndraining = 0;
    hqueue_clear(&h->queue);
    for (size_t i = 0; i < h->ndeps; i++) free(h->deps[i].path);
    free(h->deps);
    free(h->last_error);
    free(h->name);
    free(h->path);
    free(h);
}

handler *handlers_find(handlers *rt, const char *name, size_t len) {
    handler *h;
    HASH_FIND(hh, rt->by_name, name, len, h);
    return h;
}

int handler_call(handler *h, const char *name, size_t nlen, const char *data, size_t dlen, char **reply,
                 size_t *rlen, char **err, hwait **pending) {
    if (!h->cur) {
        *err = strdup("handler is not loaded");
        return -1;
    }
    h->calls++;
    uint64_t id = ++h->rt->call_seq;
    int rc = hversion_call(h->cur, name, nlen, data, dlen, id, clock_wall_ms(), reply, rlen, err, pending);
    if (rc < 0) handler_error(h, "on_call", *err);
    return rc;
}

void handler_upcall_replaced(void *owner, const char *name, size_t len) { handler_replaced(owner, name, len); }

const char *handler_upcall_name(const void *owner) { return ((const handler *)owner)->name; }

void handler_replaced(handler *h, const char *name, size_t len) {
    char *err = NULL;
    if (h->cur && hversion_replaced(h->cur, name, len, &err)) {
        handler_error(h, "on_replaced", err);
        free(err);
    }
}

/* Closes the oldest draining version of h that is not running (the list
 * is newest first); its waiting callbacks are dropped, counted and logged. */
static void close_oldest_draining(handler *h) {
    hversion **oldest = NULL;
    for (hversion **p = &h->draining; *p; p = &(*p)->retired_next)
        if (!(*p)->active) oldest = p;
    if (!oldest) return;
    hversion *v = *oldest;
    *oldest = v->retired_next;
    h->ndraining--;
    h->dropped += v->nwaits;
    log_warning("Handler %s: version %d closed with %zu callback(s) still waiting in hub.call "
                "(handler-max-draining %lld)",
                h->name, v->number, v->nwaits, h->rt->hub->cfg.handler_max_draining);
    hversion_close(v);
}

void handler_retire(handler *h, hversion *old) {
    if (!old) return;
    if (!old->nwaits) {
        hversion_close(old);
        return;
    }
    hubmod_close_timers(old);
    old->retired = 1;
    old->retired_next = h->draining;
    h->draining = old;
    h->ndraining++;
    while (h->ndraining > (size_t)h->rt->hub->cfg.handler_max_draining) {
        size_t before = h->ndraining;
        close_oldest_draining(h);
        if (h->ndraining == before) break; /* all running: closed when they finish */
    }
}

void handler_drained(hversion *v) {
    if (!v->retired || v->nwaits || v->active) return;
    handler *h = v->h;
    for (hversion **p = &h->draining; *p; p = &(*p)->retired_next) {
        if (*p != v) continue;
        *p = v->retired_next;
        h->ndraining--;
        hversion_close(v);
        return;
    }
}

size_t handlers_memory(const handlers *rt) {
    size_t n = 0;
    for (const handler *h = rt->by_name; h; h = h->hh.next) {
        if (h->cur) n += h->cur->mem_used;
        for (const hversion *d = h->draining; d; d = d->retired_next) n += d->mem_used;
    }
    return n;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s) {
    size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 2 && s[0] < 0xC2) return 0; /* overlong */
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* Appends s to buf as a JSON string: control characters escaped, bytes that
 * are not UTF-8 (a payload or a file name in an error) replaced by U+FFFD,
 * so the event is always valid JSON. Returns the new length (never past
 * cap - 1; the text is cut if it does not fit). */
static size_t json_str(char *buf, size_t n, size_t cap, const char *s) {
    if (n + 2 >= cap) return n;
    buf[n++] = '"';
    while (*s && n + 8 < cap) {
        unsigned char ch = (unsigned char)*s;
        size_t u = utf8_len((const unsigned char *)s);
        if (ch == '"' || ch == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", ch);
        } else if (u == 0) {
            n += (size_t)snprintf(buf + n, cap - n, "\\ufffd");
        } else {
            memcpy(buf + n, s, u);
            n += u;
            s += u;
            continue;
        }
        s++;
    }
    buf[n++] = '"';
    buf[n] = '\0';
    return n;
}

void handlers_publish_lifecycle(handlers *rt, const char *event, const char *name, int version, const char *error) {
    char buf[2048];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{\"name\":");
    n = json_str(buf, n, sizeof buf - 64, name);
    n += (size_t)snprintf(buf + n, sizeof buf - n, ",\"version\":%d,\"error\":", version);
    if (error) n = json_str(buf, n, sizeof buf - 2, error);
    else n += (size_t)snprintf(buf + n, sizeof buf - n, "null");
    n += (size_t)snprintf(buf + n, sizeof buf - n, "}");
    router_publish(rt->hub->router, event, strlen(event), buf, n);
}

/*---- The core's entry points (handler.h) ---------------------------------------------*/

handlers *handlers_new(hub *h) {
    handlers *rt = calloc(1, sizeof *rt);
    if (!rt || !h->listeners) {
        free(rt);
        log_warning("Handlers: out of memory");
        return NULL;
    }
    rt->hub = h;
    rt->listeners = h->listeners;
    snprintf(rt->dir, sizeof rt->dir, "%s", h->cfg.handlers_dir[0] ? h->cfg.handlers_dir : ".");
    size_t dl = strlen(rt->dir);
    while (dl > 1 && rt->dir[dl - 1] == '/') rt->dir[--dl] = '\0';
    snprintf(rt->lib_path, sizeof rt->lib_path, "%s/lib/?.lua", rt->dir);
    ev_check_init(&rt->drain_w, drain_cb);
    rt->drain_w.data = rt;
    ev_check_start(h->loop, &rt->drain_w);
    ev_idle_init(&rt->idle_w, idle_cb);
    rt->idle_w.data = rt;
    if (handlers_reload_all(rt, 0, handlers_log_report, NULL) < 0)
        log_warning("Handlers directory %s cannot be read; SIGHUP or HUB.RELOAD will look again", rt->dir);
    else
        log_notice("%u handler(s) in %s", HASH_COUNT(rt->by_name), rt->dir);
    return rt;
}

void handlers_rescan(handlers *rt) {
    if (handlers_reload_all(rt, 0, handlers_log_report, NULL) < 0)
        log_warning("Handlers directory %s cannot be read", rt->dir);
}

void handlers_free(handlers *rt) {
    if (!rt) return;
    ev_check_stop(rt->hub->loop, &rt->drain_w);
    ev_idle_stop(rt->hub->loop, &rt->idle_w);
    while (rt->by_name) handler_destroy(rt->by_name);
    free(rt);
}
