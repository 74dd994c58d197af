/* unicast.c -- remote unicast listeners, pending requests and blocked
 * callers (see unicast.h), and the commands HUB.LISTEN, HUB.UNLISTEN,
 * HUB.REPLY and HUB.ERROR:
 *
 *   HUB.LISTEN name [name ...]
 *       Makes the connection the holder of each name. One confirmation per
 *       name, [listen, name, count] (count: names the connection has
 *       registered), an array in RESP2 and a push in RESP3, like SUBSCRIBE.
 *   HUB.UNLISTEN [name ...]
 *       Drops the registrations (all without names); [unlisten, name, count]
 *       per name, or one with a null name when there was none.
 *   HUB.REPLY id payload [ERROR]
 *       Answers request id (delivered to this connection): +OK, or
 *       -ERR unknown request id (never delivered here, answered, timed out).
 *       With ERROR the caller gets -ERR <payload>.
 *   HUB.ERROR id message
 *       The same as HUB.REPLY id message ERROR. */
#include "unicast.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "handler_runtime.h"
#include "log.h"
#include "reply.h"

/* A request delivered to a client listener, waiting for its reply. */
typedef struct ureq {
    UT_hash_handle hh;      /* u->reqs, by id */
    uint64_t id;
    uint64_t caller_id;     /* the calling connection's id */
    conn *listener;         /* removed from the table before it is freed */
    struct ureq *lprev, *lnext; /* the listener's ucli->delivered */
    unicast *u;
    ev_timer timer;
    long long timeout_ms;
    unicast_done_fn done;   /* a Lua caller's callback (caller_id is 0), or NULL */
    void *done_ctx;
    int ok;                 /* once completed for a Lua caller: the outcome */
    char *result;
    size_t rlen;
    struct ureq *done_next; /* u->done */
    size_t nlen;
    char name[];
} ureq;

/* A request held while its connection is blocked: argv points into data. */
typedef struct held {
    struct held *next;
    int argc;
    size_t bytes;
    hstr argv[];
} held;

typedef struct uname {
    char *p;
    size_t len;
} uname;

/* What the unicast layer knows about one connection. */
typedef struct ucli {
    UT_hash_handle hh;      /* u->clis, by connection id */
    uint64_t id;
    conn *c;
    uname *names;           /* its registrations, in HUB.LISTEN order */
    size_t nnames, capnames;
    ureq *delivered;        /* requests delivered to it, unanswered */
    uint64_t blocked_on;    /* id of the call it waits for; 0 if none */
    held *hhead, *htail;    /* requests held while blocked, in order */
    size_t held_bytes;
    int replaying;          /* its held requests are being run */
    int ready;              /* on u->ready: unblocked with held requests */
    struct ucli *ready_next;
} ucli;

struct unicast {
    hub *h;
    ureq *reqs;
    ucli *clis;
    uint64_t seq;
    ev_idle replay_w;       /* runs held requests of unblocked connections, and Lua callers' results */
    ureq *done_head, *done_tail; /* completed requests of Lua callers, to hand over */
    ucli *ready_head, *ready_tail;
};

#define NAME_IN_ERR(n, l) (int)((l) > 200 ? 200 : (l)), (n)

/*---- Per-connection state -------------------------------------------------------*/

static ucli *cli_find(unicast *u, uint64_t id) {
    ucli *k;
    HASH_FIND(hh, u->clis, &id, sizeof id, k);
    return k;
}

static ucli *cli_get(unicast *u, conn *c) {
    ucli *k = cli_find(u, c->id);
    if (k) return k;
    if (!(k = calloc(1, sizeof *k))) return NULL;
    k->id = c->id;
    k->c = c;
    HASH_ADD(hh, u->clis, id, sizeof k->id, k);
    return k;
}

static long cli_name_index(const ucli *k, const char *p, size_t len) {
    for (size_t i = 0; i < k->nnames; i++)
        if (k->names[i].len == len && memcmp(k->names[i].p, p, len) == 0) return (long)i;
    return -1;
}

static void held_clear(ucli *k) {
    while (k->hhead) {
        held *x = k->hhead;
        k->hhead = x->next;
        free(x);
    }
    k->htail = NULL;
    k->held_bytes = 0;
}

/*---- Requests ------------------------------------------------------------------------*/

/* Takes r out of the table and its listener's list and stops its timer. */
static void req_detach(ureq *r) {
    unicast *u = r->u;
    ev_timer_stop(u->h->loop, &r->timer);
    HASH_DEL(u->reqs, r);
    ucli *l = cli_find(u, r->listener->id);
    if (r->lprev) r->lprev->lnext = r->lnext;
    else if (l) l->delivered = r->lnext;
    if (r->lnext) r->lnext->lprev = r->lprev;
    r->lprev = r->lnext = NULL;
}

/* Puts k on the replay list if it has held requests. */
static void schedule_replay(unicast *u, ucli *k) {
    if (k->ready || !k->hhead) return;
    k->ready = 1;
    k->ready_next = NULL;
    if (u->ready_tail) u->ready_tail->ready_next = k;
    else u->ready_head = k;
    u->ready_tail = k;
    ev_idle_start(u->h->loop, &u->replay_w);
}

enum outcome { OUT_REPLY, OUT_ERROR, OUT_TIMEOUT, OUT_GONE };

/* Answers request r's caller (if it is still there and waiting) and frees r.
 * For OUT_REPLY / OUT_ERROR, p/n is the payload or the message. */
static void req_complete(ureq *r, enum outcome o, const char *p, size_t n) {
    unicast *u = r->u;
    req_detach(r);
    if (r->done) { /* a Lua caller: handed over from the idle watcher, never from here */
        char buf[400];
        if (o == OUT_TIMEOUT)
            n = (size_t)snprintf(buf, sizeof buf, "timeout: no reply from '%.*s' within %lld ms",
                                 NAME_IN_ERR(r->name, r->nlen), r->timeout_ms);
        else if (o == OUT_GONE)
            n = (size_t)snprintf(buf, sizeof buf, "listener for '%.*s' disconnected", NAME_IN_ERR(r->name, r->nlen));
        if (o == OUT_TIMEOUT || o == OUT_GONE) p = buf;
        r->ok = o == OUT_REPLY;
        r->result = malloc(n + 1);
        if (r->result) memcpy(r->result, p, n);
        r->rlen = r->result ? n : 0;
        if (!r->result) r->ok = 0;
        r->done_next = NULL;
        if (u->done_tail) u->done_tail->done_next = r;
        else u->done_head = r;
        u->done_tail = r;
        ev_idle_start(u->h->loop, &u->replay_w);
        return;
    }
    ucli *k = r->caller_id ? cli_find(u, r->caller_id) : NULL;
    if (k && k->blocked_on == r->id) {
        conn *c = k->c;
        switch (o) {
        case OUT_REPLY: reply_bulk(c, p, n); break;
        case OUT_ERROR: reply_errorf(c, "ERR %.*s", (int)(n > 4000 ? 4000 : n), p); break;
        case OUT_TIMEOUT:
            reply_errorf(c, "TIMEOUT no reply from '%.*s' within %lld ms", NAME_IN_ERR(r->name, r->nlen),
                         r->timeout_ms);
            break;
        case OUT_GONE:
            reply_errorf(c, "ERR listener for '%.*s' disconnected", NAME_IN_ERR(r->name, r->nlen));
            break;
        }
        k->blocked_on = 0;
        schedule_replay(u, k);
    }
    free(r);
}

static void req_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    req_complete(w->data, OUT_TIMEOUT, NULL, 0);
}

/* Creates request and delivers it to listener l. Returns it, or NULL if out
 * of memory. */
static ureq *req_send(unicast *u, conn *l, const char *name, size_t nlen, const char *p, size_t n,
                      long long timeout_ms) {
    ucli *lk = cli_get(u, l);
    ureq *r = lk ? malloc(sizeof *r + nlen + 1) : NULL;
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    r->id = ++u->seq;
    r->listener = l;
    r->u = u;
    r->timeout_ms = timeout_ms < 0 ? u->h->cfg.call_timeout : timeout_ms;
    r->nlen = nlen;
    memcpy(r->name, name, nlen);
    r->name[nlen] = '\0';
    HASH_ADD(hh, u->reqs, id, sizeof r->id, r);
    r->lnext = lk->delivered;
    if (lk->delivered) lk->delivered->lprev = r;
    lk->delivered = r;
    ev_timer_init(&r->timer, req_timeout_cb, (double)r->timeout_ms / 1000.0, 0.0);
    r->timer.data = r;
    if (r->timeout_ms > 0) {
        ev_now_update(u->h->loop);
        ev_timer_start(u->h->loop, &r->timer);
    }
    char idbuf[24];
    int idlen = snprintf(idbuf, sizeof idbuf, "%llu", (unsigned long long)r->id);
    reply_push(l, 4);
    reply_cstr(l, "request");
    reply_bulk(l, idbuf, (size_t)idlen);
    reply_bulk(l, name, nlen);
    reply_bulk(l, p, n);
    return r;
}

void unicast_call(conn *c, conn *l, const hstr *name, const hstr *payload, long long timeout_ms) {
    unicast *u = c->hub->unicast;
    ucli *caller = u ? cli_get(u, c) : NULL;
    ureq *r = caller ? req_send(u, l, name->p, name->len, payload->p, payload->len, timeout_ms) : NULL;
    if (!r) {
        reply_error(c, "ERR out of memory");
        return;
    }
    r->caller_id = c->id;
    caller->blocked_on = r->id;
}

uint64_t unicast_request(hub *h, conn *l, const char *name, size_t nlen, const char *p, size_t n,
                         long long timeout_ms, unicast_done_fn done, void *ctx) {
    ureq *r = h->unicast ? req_send(h->unicast, l, name, nlen, p, n, timeout_ms) : NULL;
    if (!r) return 0;
    r->done = done;
    r->done_ctx = ctx;
    return r->id;
}

void unicast_forget(hub *h, uint64_t id) {
    unicast *u = h->unicast;
    if (!u) return;
    ureq *r;
    HASH_FIND(hh, u->reqs, &id, sizeof id, r);
    if (!r)
        for (r = u->done_head; r && r->id != id; r = r->done_next) {}
    if (r) r->done = NULL;
}

/* Hands completed requests over to their Lua callers. */
static void hand_over_done(unicast *u) {
    while (u->done_head) {
        ureq *r = u->done_head;
        u->done_head = r->done_next;
        if (!u->done_head) u->done_tail = NULL;
        if (r->done) r->done(r->done_ctx, r->ok, r->result ? r->result : "out of memory", r->result ? r->rlen : 13);
        free(r->result);
        free(r);
    }
}

size_t unicast_pending(const hub *h) { return h->unicast ? HASH_COUNT(h->unicast->reqs) : 0; }

/*---- Holding and replaying a blocked connection's requests ----------------------------*/

int unicast_hold(conn *c, int argc, const hstr *argv) {
    unicast *u = c->hub->unicast;
    ucli *k = u ? cli_find(u, c->id) : NULL;
    if (!k || !(k->blocked_on || (k->hhead && !k->replaying))) return 0;
    size_t bytes = 0;
    for (int i = 0; i < argc; i++) bytes += argv[i].len;
    if ((long long)(k->held_bytes + bytes) > c->hub->cfg.client_query_buffer_limit) {
        log_warning("Closing client id=%llu addr=%s: input held during a HUB.CALL passed client-query-buffer-limit",
                    (unsigned long long)c->id, c->addr);
        conn_close(c, NULL);
        return 1;
    }
    held *x = malloc(sizeof *x + (size_t)argc * sizeof(hstr) + bytes + 1);
    if (!x) {
        conn_close(c, "out of memory holding input");
        return 1;
    }
    x->next = NULL;
    x->argc = argc;
    x->bytes = bytes;
    char *data = (char *)&x->argv[argc];
    for (int i = 0; i < argc; i++) {
        memcpy(data, argv[i].p, argv[i].len);
        x->argv[i].p = data;
        x->argv[i].len = argv[i].len;
        data += argv[i].len;
    }
    if (k->htail) k->htail->next = x;
    else k->hhead = x;
    k->htail = x;
    k->held_bytes += bytes;
    return 1;
}

/* Runs the held requests of every unblocked connection, in order, until one
 * blocks again. Runs from an idle watcher, never inside another command. */
static void replay_cb(struct ev_loop *loop, ev_idle *w, int revents) {
    (void)revents;
    unicast *u = w->data;
    hand_over_done(u);
    while (u->ready_head) {
        ucli *k = u->ready_head;
        u->ready_head = k->ready_next;
        if (!u->ready_head) u->ready_tail = NULL;
        k->ready = 0;
        conn *c = k->c;
        k->replaying = 1;
        while (k->hhead && !k->blocked_on && !(c->flags & (CONN_CLOSING | CONN_CLOSE_AFTER_REPLY))) {
            held *x = k->hhead;
            k->hhead = x->next;
            if (!k->hhead) k->htail = NULL;
            k->held_bytes -= x->bytes;
            commands_dispatch(c, x->argc, x->argv);
            free(x);
        }
        k->replaying = 0;
    }
    if (!u->done_head) ev_idle_stop(loop, w);
}

/*---- Registrations ----------------------------------------------------------------------*/

static listen_registry *registry(conn *c) {
    return c->hub->handlers ? c->hub->handlers->listeners : NULL;
}

static void describe(const listener *l, char *buf, size_t len) {
    if (l->kind == LISTENER_HANDLER) {
        snprintf(buf, len, "handler %s", ((handler *)l->owner)->name);
    } else {
        conn *c = l->owner;
        snprintf(buf, len, "client id=%llu addr=%s%s%s", (unsigned long long)c->id, c->addr, c->name ? " name=" : "",
                 c->name ? c->name : "");
    }
}

void unicast_replaced(hub *h, const listener *old, const char *name, size_t len, const listener *by) {
    (void)h;
    if (old->kind == LISTENER_HANDLER) {
        handler_replaced(old->owner, name, len);
        return;
    }
    char who[400];
    describe(by, who, sizeof who);
    conn *c = old->owner;
    reply_push(c, 3);
    reply_cstr(c, "replaced");
    reply_bulk(c, name, len);
    reply_cstr(c, who);
}

static void confirm(conn *c, const char *kind, const char *name, size_t len, size_t count) {
    reply_push(c, 3);
    reply_cstr(c, kind);
    if (name) reply_bulk(c, name, len);
    else reply_null(c);
    reply_int(c, (long long)count);
}

/* Drops registration i of k (the registry's and k's copy). */
static void drop_name(conn *c, ucli *k, size_t i) {
    listen_registry *reg = registry(c);
    if (reg) listen_remove(reg, k->names[i].p, k->names[i].len, c);
    free(k->names[i].p);
    memmove(&k->names[i], &k->names[i + 1], (k->nnames - i - 1) * sizeof *k->names);
    if (--k->nnames == 0) c->flags &= ~CONN_LISTENER;
}

void cmd_hub_listen(conn *c, int argc, const hstr *argv) {
    unicast *u = c->hub->unicast;
    listen_registry *reg = registry(c);
    ucli *k = u && reg ? cli_get(u, c) : NULL;
    if (!k) {
        reply_error(c, u && reg ? "ERR out of memory" : "ERR unicast listeners are not available");
        return;
    }
    for (int i = 1; i < argc; i++) {
        const hstr *n = &argv[i];
        if (cli_name_index(k, n->p, n->len) < 0) {
            if (k->nnames == k->capnames) {
                size_t cap = k->capnames ? k->capnames * 2 : 4;
                uname *v = realloc(k->names, cap * sizeof *v);
                if (!v) goto oom;
                k->names = v;
                k->capnames = cap;
            }
            char *copy = malloc(n->len + 1);
            if (!copy) goto oom;
            memcpy(copy, n->p, n->len);
            copy[n->len] = '\0';
            listener prev;
            int rc = listen_add(reg, n->p, n->len, LISTENER_CONN, c, &prev);
            if (rc < 0) {
                free(copy);
                goto oom;
            }
            k->names[k->nnames].p = copy;
            k->names[k->nnames++].len = n->len;
            c->flags |= CONN_LISTENER;
            if (rc == 2) {
                listener me = {LISTENER_CONN, c};
                unicast_replaced(c->hub, &prev, n->p, n->len, &me);
            }
        }
        confirm(c, "listen", n->p, n->len, k->nnames);
    }
    return;
oom:
    reply_error(c, "ERR out of memory");
}

void cmd_hub_unlisten(conn *c, int argc, const hstr *argv) {
    unicast *u = c->hub->unicast;
    ucli *k = u ? cli_find(u, c->id) : NULL;
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            long at = k ? cli_name_index(k, argv[i].p, argv[i].len) : -1;
            if (at >= 0) drop_name(c, k, (size_t)at);
            confirm(c, "unlisten", argv[i].p, argv[i].len, k ? k->nnames : 0);
        }
        return;
    }
    if (!k || k->nnames == 0) {
        confirm(c, "unlisten", NULL, 0, 0);
        return;
    }
    while (k->nnames) {
        /* confirm first, while the copy of the name is alive */
        confirm(c, "unlisten", k->names[0].p, k->names[0].len, k->nnames - 1);
        drop_name(c, k, 0);
    }
}

void unicast_reset(conn *c) {
    unicast *u = c->hub->unicast;
    ucli *k = u ? cli_find(u, c->id) : NULL;
    while (k && k->nnames) drop_name(c, k, k->nnames - 1);
    c->flags &= ~CONN_LISTENER;
}

/*---- Replies ---------------------------------------------------------------------------*/

static void answer(conn *c, const hstr *id, const hstr *payload, enum outcome o) {
    unicast *u = c->hub->unicast;
    long long n;
    ureq *r = NULL;
    if (u && hstr_to_ll(id, &n) == 0 && n > 0) {
        uint64_t key = (uint64_t)n;
        HASH_FIND(hh, u->reqs, &key, sizeof key, r);
    }
    if (!r || r->listener != c) {
        reply_error(c, "ERR unknown request id");
        return;
    }
    req_complete(r, o, payload->p, payload->len);
    reply_ok(c);
}

void cmd_hub_reply(conn *c, int argc, const hstr *argv) {
    if (argc > 4 || (argc == 4 && !hstr_is(&argv[3], "error"))) {
        reply_error(c, "ERR syntax error: HUB.REPLY id payload [ERROR]");
        return;
    }
    answer(c, &argv[1], &argv[2], argc == 4 ? OUT_ERROR : OUT_REPLY);
}

void cmd_hub_error(conn *c, int argc, const hstr *argv) {
    (void)argc;
    answer(c, &argv[1], &argv[2], OUT_ERROR);
}

/*---- Life cycle ----------------------------------------------------------------------------*/

void unicast_conn_closed(conn *c) {
    unicast *u = c->hub->unicast;
    ucli *k = u ? cli_find(u, c->id) : NULL;
    if (!k) return;
    /* names first, so nothing new reaches it while its requests fail */
    while (k->nnames) drop_name(c, k, k->nnames - 1);
    while (k->delivered) req_complete(k->delivered, OUT_GONE, NULL, 0);
    held_clear(k);
    if (k->ready) {
        ucli **pp = &u->ready_head, *last = NULL;
        while (*pp && *pp != k) last = *pp, pp = &(*pp)->ready_next;
        if (*pp) *pp = k->ready_next;
        if (u->ready_tail == k) u->ready_tail = last;
    }
    HASH_DEL(u->clis, k);
    free(k->names);
    free(k);
}

unicast *unicast_new(hub *h) {
    unicast *u = calloc(1, sizeof *u);
    if (!u) {
        log_warning("Unicast: out of memory");
        return NULL;
    }
    u->h = h;
    ev_idle_init(&u->replay_w, replay_cb);
    u->replay_w.data = u;
    return u;
}

void unicast_free(unicast *u) {
    if (!u) return;
    ev_idle_stop(u->h->loop, &u->replay_w);
    while (u->done_head) {
        ureq *d = u->done_head;
        u->done_head = d->done_next;
        free(d->result);
        free(d);
    }
    ureq *r, *rt;
    HASH_ITER(hh, u->reqs, r, rt) {
        ev_timer_stop(u->h->loop, &r->timer);
        HASH_DEL(u->reqs, r);
        free(r);
    }
    ucli *k, *kt;
    HASH_ITER(hh, u->clis, k, kt) {
        // cppcheck-suppress uninitvar ; uthash's iteration macro confuses it
        for (size_t i = 0; i < k->nnames; i++) free(k->names[i].p);
        held_clear(k);
        HASH_DEL(u->clis, k);
        free(k->names);
        free(k);
    }
    free(u);
}
