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
 *       The same as HUB.REPLY id message ERROR.
 *
 * A caller's outstanding calls are a FIFO in request order (ucli.calls). A
 * reply, error, timeout or disconnect completes a request: if it is the
 * oldest, its outcome is written to the caller at once, followed by every
 * later one already completed; otherwise the outcome is kept in the request
 * (out of the id table: a second HUB.REPLY is an unknown id) until its turn.
 * Held input runs from an idle watcher once the calls before it were
 * answered. */
#include "unicast.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "base/log.h"
#include "reply.h"

enum outcome { OUT_REPLY, OUT_ERROR, OUT_TIMEOUT, OUT_GONE };

/* A request delivered to a client listener, waiting for its reply (in
 * u->reqs), or for a client caller, answered and waiting for its turn. */
typedef struct ureq {
    UT_hash_handle hh; /* u->reqs, by id */
    uint64_t id;
    uint64_t caller_id;         /* the calling connection's id; 0: a Lua caller, or the caller is gone */
    conn *listener;             /* NULL: a Lua listener's on_call, answered by unicast_complete */
    struct ureq *lprev, *lnext; /* the listener's ucli->delivered */
    struct ureq *cnext;         /* the caller's ucli->calls, in request order */
    int answered;               /* a client caller's call, completed out of turn: */
    enum outcome outcome;       /* ... how, and (REPLY / ERROR) result/rlen */
    unicast *u;
    ev_timer timer;
    long long timeout_ms;
    unicast_done_fn done; /* a Lua caller's callback (caller_id is 0), or NULL */
    void *done_ctx;
    int ok;       /* once completed for a Lua caller: the outcome */
    char *result; /* the reply or error kept for the caller */
    size_t rlen;
    struct ureq *done_next; /* u->done */
    size_t nlen;
    char name[];
} ureq;

/* A request held behind its connection's calls: argv points into the bytes
 * after it. */
typedef struct held {
    struct held *next;
    int argc;
    size_t bytes; /* what it is charged (cli_charge): all of it, not only argument bytes */
    hstr argv[];
} held;

/* One registration of a connection: in its ucli's hash (by name) and list
 * (HUB.LISTEN order), so adding, finding and dropping one are O(1). */
typedef struct uname {
    UT_hash_handle hh;
    struct uname *prev, *next;
    size_t len;
    char p[];
} uname;

/* What the unicast layer knows about one connection. */
typedef struct ucli {
    UT_hash_handle hh; /* u->clis, by connection id */
    uint64_t id;
    conn *c;
    uname *names;             /* its registrations: uthash by name */
    uname *first, *last;      /* ... and in HUB.LISTEN order */
    size_t nnames;
    ureq *delivered;          /* requests delivered to it, unanswered */
    ureq *calls, *calls_tail; /* its outstanding HUB.CALLs, oldest first */
    size_t ncalls;
    held *hhead, *htail; /* requests held behind its calls, in order */
    size_t held_bytes;   /* memory kept for it: held input, call records, early replies */
    int replaying;       /* a held request is being run */
    int ready;           /* on u->ready: calls answered, held requests to run */
    struct ucli *ready_next;
} ucli;

struct unicast {
    hub *h;
    ureq *reqs;
    ucli *clis;
    uint64_t seq;
    ev_idle replay_w;            /* runs held requests of callers whose calls were answered, and Lua callers' results */
    ureq *done_head, *done_tail; /* completed requests of Lua callers, to hand over */
    ucli *ready_head, *ready_tail;
};

#define NAME_IN_ERR(n, l) (int)((l) > 200 ? 200 : (l)), (n)
#define ERR_MAX 4000       /* bytes of a listener's HUB.ERROR message the caller gets */
#define MALLOC_OVERHEAD 16 /* charged per allocation besides its size (glibc's chunk header, rounding) */

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

static uname *cli_name_find(const ucli *k, const char *p, size_t len) {
    uname *n;
    HASH_FIND(hh, k->names, p, len, n);
    return n;
}

static void held_clear(ucli *k) {
    while (k->hhead) {
        held *x = k->hhead;
        k->hhead = x->next;
        free(x);
    }
    k->htail = NULL;
    k->held_bytes = 0;
    k->c->flags &= ~CONN_HOLDING;
}

/* Counts n more bytes kept for k against client-query-buffer-limit.
 * Returns 0, or -1 after closing the connection if that passes the limit. */
static int cli_charge(ucli *k, size_t n, const char *what) {
    if ((long long)(k->held_bytes + n) > k->c->hub->cfg.client_query_buffer_limit) {
        log_warning("Closing client id=%llu addr=%s: memory held for its HUB.CALLs (%s) passed "
                    "client-query-buffer-limit",
                    (unsigned long long)k->id, k->c->addr, what);
        conn_close(k->c, NULL);
        return -1;
    }
    k->held_bytes += n;
    return 0;
}

/*---- Requests ------------------------------------------------------------------------*/

/* Takes r out of the table and its listener's list and stops its timer. */
static void req_detach(ureq *r) {
    unicast *u = r->u;
    ev_timer_stop(u->h->loop, &r->timer);
    HASH_DEL(u->reqs, r);
    ucli *l = r->listener ? cli_find(u, r->listener->id) : NULL;
    if (r->lprev)
        r->lprev->lnext = r->lnext;
    else if (l)
        l->delivered = r->lnext;
    if (r->lnext) r->lnext->lprev = r->lprev;
    r->lprev = r->lnext = NULL;
}

/* Puts k on the replay list if it has held requests. */
static void schedule_replay(unicast *u, ucli *k) {
    if (k->ready || !k->hhead) return;
    k->ready = 1;
    k->ready_next = NULL;
    if (u->ready_tail)
        u->ready_tail->ready_next = k;
    else
        u->ready_head = k;
    u->ready_tail = k;
    ev_idle_start(u->h->loop, &u->replay_w);
}

/* Memory a client caller's outstanding call holds (see cli_charge). */
static size_t call_size(const ureq *r) {
    return sizeof *r + r->nlen + 1 + MALLOC_OVERHEAD + r->rlen;
}

/* Writes outcome o of r (p/n: the payload or message) to its caller c. */
static void write_outcome(conn *c, const ureq *r, enum outcome o, const char *p, size_t n) {
    switch (o) {
    case OUT_REPLY:
        reply_bulk(c, p, n);
        break;
    case OUT_ERROR:
        reply_errorf(c, "ERR %.*s", (int)(n > ERR_MAX ? ERR_MAX : n), p);
        break;
    case OUT_TIMEOUT:
        reply_errorf(c, "TIMEOUT no reply from '%.*s' within %lld ms", NAME_IN_ERR(r->name, r->nlen), r->timeout_ms);
        break;
    case OUT_GONE:
        reply_errorf(c, "ERR listener for '%.*s' disconnected", NAME_IN_ERR(r->name, r->nlen));
        break;
    }
}

/* Takes k's oldest call off its FIFO and frees it. */
static void call_pop(ucli *k) {
    ureq *r = k->calls;
    k->calls = r->cnext;
    if (!k->calls) k->calls_tail = NULL;
    k->ncalls--;
    k->held_bytes -= call_size(r);
    free(r->result);
    free(r);
}

/* Keeps outcome o of call r, answered before an earlier call of its caller
 * k, until its turn. A reply or error is copied; past the memory limit, or
 * out of memory, k is closed instead. */
static void call_keep(ucli *k, ureq *r, enum outcome o, const char *p, size_t n) {
    r->answered = 1;
    r->outcome = o;
    if (o != OUT_REPLY && o != OUT_ERROR) return; /* written from r's name and timeout */
    if (o == OUT_ERROR && n > ERR_MAX) n = ERR_MAX;
    if (cli_charge(k, n, "early replies") < 0) return;
    if (!(r->result = malloc(n + 1))) {
        k->held_bytes -= n;
        conn_close(k->c, "out of memory keeping a reply");
        return;
    }
    memcpy(r->result, p, n);
    r->rlen = n;
}

/* After k's oldest call was written: writes the outcomes its next calls
 * keep, in order, up to the first one still waiting; if none is left, k is
 * no longer blocked and its held requests may run. */
static void calls_flush(unicast *u, ucli *k) {
    while (k->calls && k->calls->answered) {
        ureq *r = k->calls;
        /* a reply without its copy only if that closed k: its output goes nowhere */
        write_outcome(k->c, r, r->outcome, r->result ? r->result : "", r->rlen);
        call_pop(k);
    }
    k->c->last_interaction = ev_now(u->h->loop); /* an answer restarts the idle clock, as a write in Redis */
    if (!k->ncalls) k->c->flags &= ~CONN_BLOCKED;
    schedule_replay(u, k);
}

/* Drops k's calls (k's connection is going): the answered ones are freed,
 * the others stay in the table with no caller (a late reply is dropped). */
static void calls_drop(ucli *k) {
    while (k->calls) {
        ureq *r = k->calls;
        k->calls = r->cnext;
        r->cnext = NULL;
        if (r->answered) {
            free(r->result);
            free(r);
        } else {
            r->caller_id = 0;
        }
    }
    k->calls_tail = NULL;
    k->ncalls = 0;
}

/* Hands request r's outcome to its Lua caller, from the idle watcher. */
static void done_queue(ureq *r, enum outcome o, const char *p, size_t n) {
    unicast *u = r->u;
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
    if (u->done_tail)
        u->done_tail->done_next = r;
    else
        u->done_head = r;
    u->done_tail = r;
    ev_idle_start(u->h->loop, &u->replay_w);
}

/* Completes request r: its caller gets outcome o (p/n: the payload or the
 * message for OUT_REPLY / OUT_ERROR) in its turn, or r is dropped if the
 * caller is gone. */
static void req_complete(ureq *r, enum outcome o, const char *p, size_t n) {
    unicast *u = r->u;
    req_detach(r);
    if (r->done) { /* a Lua caller: handed over from the idle watcher, never from here */
        done_queue(r, o, p, n);
        return;
    }
    ucli *k = r->caller_id ? cli_find(u, r->caller_id) : NULL;
    if (!k) {
        free(r);
    } else if (r == k->calls) {
        write_outcome(k->c, r, o, p, n);
        call_pop(k);
        calls_flush(u, k);
    } else {
        call_keep(k, r, o, p, n);
    }
}

static void req_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    req_complete(w->data, OUT_TIMEOUT, NULL, 0);
}

/* Creates request and delivers it to listener l, or (l NULL) only records
 * it for unicast_complete. Returns it, or NULL if out of memory. */
static ureq *req_send(unicast *u, conn *l, const char *name, size_t nlen, const char *p, size_t n,
                      long long timeout_ms) {
    ucli *lk = l ? cli_get(u, l) : NULL;
    ureq *r = lk || !l ? malloc(sizeof *r + nlen + 1) : NULL;
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
    ev_timer_init(&r->timer, req_timeout_cb, (double)r->timeout_ms / 1000.0, 0.0);
    r->timer.data = r;
    if (r->timeout_ms > 0) {
        ev_now_update(u->h->loop);
        ev_timer_start(u->h->loop, &r->timer);
    }
    if (!l) return r;
    r->lnext = lk->delivered;
    if (lk->delivered) lk->delivered->lprev = r;
    lk->delivered = r;
    char idbuf[24];
    int idlen = snprintf(idbuf, sizeof idbuf, "%llu", (unsigned long long)r->id);
    reply_push(l, 4);
    reply_cstr(l, "request");
    reply_bulk(l, idbuf, (size_t)idlen);
    reply_bulk(l, name, nlen);
    reply_bulk(l, p, n);
    return r;
}

uint64_t unicast_call(conn *c, conn *l, const hstr *name, const hstr *payload, long long timeout_ms) {
    unicast *u = c->hub->unicast;
    ucli *k = u ? cli_get(u, c) : NULL;
    size_t size = sizeof(ureq) + name->len + 1 + MALLOC_OVERHEAD; /* call_size before a reply */
    if (k && cli_charge(k, size, "call records") < 0) return 0;
    ureq *r = k ? req_send(u, l, name->p, name->len, payload->p, payload->len, timeout_ms) : NULL;
    if (!r) {
        if (k) k->held_bytes -= size;
        /* an error now would overtake the replies of earlier calls */
        if (k && k->ncalls)
            conn_close(c, "out of memory for a call");
        else
            reply_error(c, "ERR out of memory");
        return 0;
    }
    r->caller_id = c->id;
    if (k->calls_tail)
        k->calls_tail->cnext = r;
    else
        k->calls = r;
    k->calls_tail = r;
    k->ncalls++;
    c->flags |= CONN_BLOCKED;
    return r->id;
}

uint64_t unicast_request(hub *h, conn *l, const char *name, size_t nlen, const char *p, size_t n, long long timeout_ms,
                         unicast_done_fn done, void *ctx) {
    ureq *r = h->unicast ? req_send(h->unicast, l, name, nlen, p, n, timeout_ms) : NULL;
    if (!r) return 0;
    r->done = done;
    r->done_ctx = ctx;
    return r->id;
}

void unicast_complete(hub *h, uint64_t id, int ok, const char *p, size_t n) {
    ureq *r = NULL;
    if (h->unicast) HASH_FIND(hh, h->unicast->reqs, &id, sizeof id, r);
    if (r && !r->listener) req_complete(r, ok ? OUT_REPLY : OUT_ERROR, p, n);
}

void unicast_forget(hub *h, uint64_t id) {
    unicast *u = h->unicast;
    if (!u) return;
    ureq *r;
    HASH_FIND(hh, u->reqs, &id, sizeof id, r);
    if (!r)
        for (r = u->done_head; r && r->id != id; r = r->done_next) {
        }
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

size_t unicast_pending(const hub *h) {
    return h->unicast ? HASH_COUNT(h->unicast->reqs) : 0;
}

/*---- Holding and replaying a blocked connection's requests ----------------------------*/

static listen_registry *registry(conn *c);

/* Whether request argv goes out at once as a HUB.CALL to a client listener,
 * rather than being answered now (an error, a Lua listener's reply), which
 * would overtake the replies of c's earlier calls. The checks are the
 * dispatcher's and HUB.CALL's own. */
static int forwards_call(conn *c, int argc, const hstr *argv) {
    long long timeout;
    if (!c->hub->up.call_runnable(c, argc, argv, &timeout)) return 0;
    listen_registry *reg = registry(c);
    const listener *l = reg ? listen_find(reg, argv[1].p, argv[1].len) : NULL;
    return l && l->kind == LISTENER_CONN;
}

/* Whether k's request argv may run now, given its outstanding calls. */
static int may_run(ucli *k, int argc, const hstr *argv) {
    return k->ncalls == 0 || (k->ncalls < UNICAST_MAX_CALLS && forwards_call(k->c, argc, argv));
}

int unicast_hold(conn *c, int argc, const hstr *argv) {
    /* the flags say whether c has calls outstanding or requests held: a
     * connection with neither (every request of most) needs no lookup */
    if (!(c->flags & (CONN_BLOCKED | CONN_HOLDING))) return 0;
    unicast *u = c->hub->unicast;
    ucli *k = u ? cli_find(u, c->id) : NULL;
    if (!k || k->replaying || (!k->hhead && may_run(k, argc, argv))) return 0;
    size_t data = 0;
    for (int i = 0; i < argc; i++) data += argv[i].len;
    /* the record's real cost: an empty argument still takes an hstr */
    size_t size = sizeof(held) + (size_t)argc * sizeof(hstr) + data + 1;
    size_t bytes = size + MALLOC_OVERHEAD;
    if (cli_charge(k, bytes, "input held") < 0) return 1;
    held *x = malloc(size);
    if (!x) {
        k->held_bytes -= bytes;
        conn_close(c, "out of memory holding input");
        return 1;
    }
    x->next = NULL;
    x->argc = argc;
    x->bytes = bytes;
    char *p = (char *)&x->argv[argc];
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i].p, argv[i].len);
        x->argv[i].p = p;
        x->argv[i].len = argv[i].len;
        p += argv[i].len;
    }
    if (k->htail)
        k->htail->next = x;
    else
        k->hhead = x;
    k->htail = x;
    c->flags |= CONN_HOLDING;
    return 1;
}

/* Runs the held requests of every connection on the ready list, in order,
 * while they may run (see may_run). Runs from an idle watcher, never inside
 * another command. */
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
        while (k->hhead && !(c->flags & (CONN_CLOSING | CONN_CLOSE_AFTER_REPLY)) &&
               may_run(k, k->hhead->argc, k->hhead->argv)) {
            held *x = k->hhead;
            k->hhead = x->next;
            if (!k->hhead) {
                k->htail = NULL;
                c->flags &= ~CONN_HOLDING;
            }
            k->held_bytes -= x->bytes;
            k->replaying = 1;
            c->hub->up.dispatch(c, x->argc, x->argv);
            k->replaying = 0;
            free(x);
        }
    }
    if (!u->done_head) ev_idle_stop(loop, w);
}

/*---- Registrations ----------------------------------------------------------------------*/

static listen_registry *registry(conn *c) {
    return c->hub->listeners;
}

/* Appends who holds l ("handler x" or "client id=.. addr=.. [name=..]") to b. */
static void describe(hub *h, const listener *l, textbuf *b) {
    if (l->kind == LISTENER_HANDLER) {
        textbuf_printf(b, "handler %s", h->up.handler_name ? h->up.handler_name(l->owner) : "?");
    } else {
        conn *c = l->owner;
        textbuf_printf(b, "client id=%llu addr=%s%s%s", (unsigned long long)c->id, c->addr, c->name ? " name=" : "",
                       c->name ? c->name : "");
    }
}

void unicast_replaced(hub *h, const listener *old, const char *name, size_t len, const listener *by) {
    if (old->kind == LISTENER_HANDLER) {
        if (h->up.handler_replaced) h->up.handler_replaced(old->owner, name, len);
        return;
    }
    textbuf who = {0};
    describe(h, by, &who);
    conn *c = old->owner;
    reply_push(c, 3);
    reply_cstr(c, "replaced");
    reply_bulk(c, name, len);
    reply_cstr(c, who.p && !who.oom ? who.p : "");
    textbuf_free(&who);
}

/* Drops registration i of k (the registry's and k's copy). */
static void drop_name(conn *c, ucli *k, uname *n) {
    listen_registry *reg = registry(c);
    if (reg) listen_remove(reg, n->p, n->len, c);
    HASH_DEL(k->names, n);
    if (n->prev) n->prev->next = n->next;
    else k->first = n->next;
    if (n->next) n->next->prev = n->prev;
    else k->last = n->prev;
    free(n);
    if (--k->nnames == 0) c->flags &= ~CONN_LISTENER;
}

int unicast_listen(conn *c, const char *name, size_t len, size_t *count) {
    unicast *u = c->hub->unicast;
    listen_registry *reg = registry(c);
    ucli *k = u && reg ? cli_get(u, c) : NULL;
    if (!k) return u && reg ? -2 : -1;
    if (!cli_name_find(k, name, len)) {
        uname *copy = malloc(sizeof *copy + len + 1);
        if (!copy) return -2;
        memcpy(copy->p, name, len);
        copy->p[len] = '\0';
        copy->len = len;
        listener prev;
        int rc = listen_add(reg, name, len, LISTENER_CONN, c, &prev);
        if (rc < 0) {
            free(copy);
            return -2;
        }
        HASH_ADD_KEYPTR(hh, k->names, copy->p, copy->len, copy);
        copy->next = NULL;
        copy->prev = k->last;
        if (k->last) k->last->next = copy;
        else k->first = copy;
        k->last = copy;
        k->nnames++;
        c->flags |= CONN_LISTENER;
        if (rc == 2) {
            listener me = {LISTENER_CONN, c};
            unicast_replaced(c->hub, &prev, name, len, &me);
        }
    }
    *count = k->nnames;
    return 0;
}

size_t unicast_unlisten(conn *c, const char *name, size_t len) {
    unicast *u = c->hub->unicast;
    ucli *k = u ? cli_find(u, c->id) : NULL;
    if (!k) return 0;
    uname *at = cli_name_find(k, name, len);
    if (at) drop_name(c, k, at);
    return k->nnames;
}

size_t unicast_unlisten_all(conn *c, unicast_name_fn each) {
    unicast *u = c->hub->unicast;
    ucli *k = u ? cli_find(u, c->id) : NULL;
    size_t n = 0;
    while (k && k->nnames) {
        /* report first, while the copy of the name is alive */
        each(c, k->first->p, k->first->len, k->nnames - 1);
        drop_name(c, k, k->first);
        n++;
    }
    return n;
}

void unicast_reset(conn *c) {
    unicast *u = c->hub->unicast;
    ucli *k = u ? cli_find(u, c->id) : NULL;
    while (k && k->nnames) drop_name(c, k, k->last);
    c->flags &= ~CONN_LISTENER;
}

/*---- Replies ---------------------------------------------------------------------------*/

int unicast_answer(conn *c, uint64_t id, const char *p, size_t n, int is_error) {
    unicast *u = c->hub->unicast;
    ureq *r = NULL;
    if (u && id) HASH_FIND(hh, u->reqs, &id, sizeof id, r);
    if (!r || r->listener != c) return -1;
    req_complete(r, is_error ? OUT_ERROR : OUT_REPLY, p, n);
    return 0;
}

/*---- Life cycle ----------------------------------------------------------------------------*/

void unicast_conn_closed(conn *c) {
    unicast *u = c->hub->unicast;
    ucli *k = u ? cli_find(u, c->id) : NULL;
    if (!k) return;
    /* names first, so nothing new reaches it while its requests fail */
    while (k->nnames) drop_name(c, k, k->last);
    calls_drop(k);
    while (k->delivered) req_complete(k->delivered, OUT_GONE, NULL, 0);
    held_clear(k);
    if (k->ready) {
        ucli **pp = &u->ready_head, *last = NULL;
        while (*pp && *pp != k) last = *pp, pp = &(*pp)->ready_next;
        if (*pp) *pp = k->ready_next;
        if (u->ready_tail == k) u->ready_tail = last;
    }
    HASH_DEL(u->clis, k);
    free(k);
}

/* Frees what k owns, without telling anyone (at exit). */
static void cli_release(ucli *k) {
    HASH_CLEAR(hh, k->names); /* the table first: it is reached through an entry */
    for (uname *n = k->first, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    calls_drop(k);
    held_clear(k);
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
    ucli *k, *kt;
    HASH_ITER(hh, u->clis, k, kt) { /* before the requests: calls_drop touches the unanswered ones */
        // cppcheck-suppress uninitvar ; uthash's iteration macro confuses it
        cli_release(k);
        HASH_DEL(u->clis, k);
        free(k);
    }
    ureq *r, *rt;
    HASH_ITER(hh, u->reqs, r, rt) {
        ev_timer_stop(u->h->loop, &r->timer);
        HASH_DEL(u->reqs, r);
        free(r);
    }
    free(u);
}
