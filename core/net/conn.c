/* conn.c -- client connections: accept, read and parse requests, buffer and
 * flush output, enforce the per-connection limits (see conn.h). */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "reply.h"
#include "unicast.h"

#define QBUF_READ_LEN (16 * 1024) /* bytes asked of each read(2), as Redis */
#define OBUF_BLOCK (16 * 1024)    /* size of an output block */
#define MAX_IOV 64                /* blocks per writev */
#define STACK_ARGS 32             /* argv kept on the stack up to this many */

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_process_input(conn *c);

/*---- Accept -------------------------------------------------------------*/

/* Formats the peer and local addresses of fd into c->addr / c->laddr. */
static void conn_set_addrs(conn *c) {
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char ip[INET6_ADDRSTRLEN];
    for (int local = 0; local < 2; local++) {
        char *out = local ? c->laddr : c->addr;
        len = sizeof sa;
        int rc =
            local ? getsockname(c->fd, (struct sockaddr *)&sa, &len) : getpeername(c->fd, (struct sockaddr *)&sa, &len);
        if (rc != 0) {
            snprintf(out, sizeof c->addr, "?");
        } else if (sa.ss_family == AF_INET) {
            struct sockaddr_in *s = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
            snprintf(out, sizeof c->addr, "%s:%d", ip, ntohs(s->sin_port));
        } else if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *s = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
            snprintf(out, sizeof c->addr, "[%s]:%d", ip, ntohs(s->sin6_port));
        } else {
            snprintf(out, sizeof c->addr, "%.63s", c->hub->cfg.unixsocket);
        }
    }
}

/* The last message frame encoded, so a publish to N subscribers encodes each
 * frame (per pattern and protocol) once and copies it N times. Keyed by the
 * event id, which is unique per publish, and the pattern entry's name, which
 * is stable during the publish. */
static struct {
    uint64_t id;
    const char *pattern;
    int proto;
    char *buf;
    size_t len, cap;
} frame_cache;

/* Encodes d for a connection speaking `proto` into frame_cache. Returns 0, or
 * -1 if out of memory. */
static int frame_encode(const delivery *d, int proto) {
    size_t need = REPLY_MESSAGE_SIZE(d->plen, d->clen, d->mlen);
    if (need > frame_cache.cap) {
        char *b = realloc(frame_cache.buf, need);
        if (!b) return -1;
        frame_cache.buf = b;
        frame_cache.cap = need;
    }
    frame_cache.len =
        reply_format_message(frame_cache.buf, proto, d->pattern, d->plen, d->chan, d->clen, d->msg, d->mlen);
    frame_cache.id = d->id;
    frame_cache.pattern = d->pattern;
    frame_cache.proto = proto;
    return 0;
}

/* Delivers a pub/sub message to a connection (its router callback). */
static void conn_deliver(subscriber *s, const delivery *d) {
    conn *c = s->udata;
    if (c->flags & CONN_CLOSING) return;
    if (frame_cache.id != d->id || frame_cache.pattern != d->pattern || frame_cache.proto != c->proto ||
        !frame_cache.buf) {
        if (frame_encode(d, c->proto) < 0) {
            conn_close(c, "out of memory encoding a message");
            return;
        }
    }
    conn_write(c, frame_cache.buf, frame_cache.len);
}

void conn_release_caches(void) {
    free(frame_cache.buf);
    memset(&frame_cache, 0, sizeof frame_cache);
}

/* Creates a connection for an accepted socket and starts reading. */
static conn *conn_new(hub *h, int fd, int is_unix) {
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->hub = h;
    c->fd = fd;
    c->id = ++h->next_conn_id;
    c->proto = 2;
    c->flags = is_unix ? CONN_UNIX : 0;
    c->created = c->last_interaction = ev_now(h->loop);
    c->last_cmd = "NULL";
    c->sub.deliver = conn_deliver;
    c->sub.udata = c;
    resp_parser_init(&c->parser);
    conn_set_addrs(c);
    ev_io_init(&c->rw, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->ww, conn_write_cb, fd, EV_WRITE);
    c->rw.data = c->ww.data = c;
    ev_io_start(h->loop, &c->rw);
    c->next = h->conns;
    if (h->conns) h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    return c;
}

#define ACCEPT_BACKOFF 0.1 /* seconds accepting pauses when out of descriptors or memory */

/* The accept back-off: while file descriptors (or socket buffers) are
 * exhausted, a listener stays readable, so accepting again at once would
 * spin the loop. Instead the listeners stop and this timer restarts them. */
static struct {
    ev_timer timer;
    int active; /* an episode is under way: it was logged once */
} backoff;

static void accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    hub *h = w->data;
    if (h->shutting_down) return;
    if (h->tcp_fd >= 0) ev_io_start(loop, &h->tcp_w);
    if (h->unix_fd >= 0) ev_io_start(loop, &h->unix_w);
}

/* Stops both listeners for ACCEPT_BACKOFF seconds; logs the first time of an
 * episode only (it ends with the next successful accept). */
static void accept_pause(hub *h, int err) {
    if (!backoff.active) {
        log_warning("Cannot accept clients: %s (%zu connected, maxclients %lld); pausing accepts, retrying every "
                    "%d ms",
                    strerror(err), h->nconns, h->cfg.maxclients, (int)(ACCEPT_BACKOFF * 1000));
        backoff.active = 1;
    }
    if (h->tcp_fd >= 0) ev_io_stop(h->loop, &h->tcp_w);
    if (h->unix_fd >= 0) ev_io_stop(h->loop, &h->unix_w);
    ev_timer_stop(h->loop, &backoff.timer);
    ev_timer_init(&backoff.timer, accept_retry_cb, ACCEPT_BACKOFF, 0.0);
    backoff.timer.data = h;
    ev_timer_start(h->loop, &backoff.timer);
}

void conn_stop_accept_backoff(hub *h) {
    ev_timer_stop(h->loop, &backoff.timer);
}

/* Accepts every pending connection on a listening socket. Over maxclients, the
 * newcomer gets Redis's error and is closed at once. Out of descriptors, the
 * listeners pause (accept_pause). */
void conn_accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop, (void)revents;
    hub *h = w->data;
    for (int i = 0; i < 1000; i++) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_pause(h, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                log_warning("accept: %s", strerror(errno));
            return;
        }
        if (backoff.active) {
            log_notice("Accepting clients again");
            backoff.active = 0;
        }
        h->stats.connections_received++;
        if (h->shutting_down || h->nconns >= (size_t)h->cfg.maxclients) {
            static const char err[] = "-ERR max number of clients reached\r\n";
            ssize_t n = write(fd, err, sizeof err - 1);
            (void)n;
            close(fd);
            h->stats.rejected_connections++;
            continue;
        }
        int is_unix = w == &h->unix_w;
        if (!is_unix) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (!conn_new(h, fd, is_unix)) {
            close(fd);
            log_warning("out of memory accepting a client");
        }
    }
}

/*---- Closing ------------------------------------------------------------*/

void conn_close(conn *c, const char *why) {
    if (c->flags & CONN_CLOSING) return;
    c->flags |= CONN_CLOSING;
    ev_io_stop(c->hub->loop, &c->rw);
    ev_io_stop(c->hub->loop, &c->ww);
    if (why) log_verbose("closing client id=%llu addr=%s: %s", (unsigned long long)c->id, c->addr, why);
    c->closing_next = c->hub->closing;
    c->hub->closing = c;
}

void conn_close_after_reply(conn *c) {
    c->flags |= CONN_CLOSE_AFTER_REPLY;
    ev_io_stop(c->hub->loop, &c->rw);
    if (c->obytes == 0) conn_close(c, NULL);
}

/* Releases everything a connection owns. It must already be off the pending
 * list (conn_free_closing guarantees it). */
static void park_drop(conn *c, int closing);
static void gate_unlink(conn *c);
static void unpark_unlink(conn *c);

static void conn_free(conn *c) {
    hub *h = c->hub;
    if (c->park) park_drop(c, 1);
    if (c->flags & CONN_GATED) gate_unlink(c);
    if (c->flags & CONN_UNPARKED) unpark_unlink(c);
    unicast_conn_closed(c);
    router_unsubscribe_all(h->router, &c->sub);
    close(c->fd);
    for (obuf_block *b = c->ohead, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    resp_parser_free(&c->parser);
    free(c->qbuf);
    free(c->name);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    h->nconns--;
    free(c);
}

void conn_free_closing(hub *h) {
    if (!h->closing) return;
    /* Drop closing connections from the pending list first. */
    conn **pp = &h->pending;
    while (*pp) {
        if ((*pp)->flags & CONN_CLOSING)
            *pp = (*pp)->pending_next;
        else
            pp = &(*pp)->pending_next;
    }
    while (h->closing) {
        conn *c = h->closing;
        h->closing = c->closing_next;
        conn_free(c);
    }
}

/*---- Output -------------------------------------------------------------*/

/* Returns the output limits that apply to c: pubsub for a subscriber. */
static const obuf_limit *conn_limit(const conn *c) {
    return conn_subscriptions(c) ? &c->hub->cfg.obuf_pubsub : &c->hub->cfg.obuf_normal;
}

int conn_check_output_limits(conn *c) {
    if (c->flags & CONN_CLOSING) return 1;
    const obuf_limit *l = conn_limit(c);
    double now = ev_now(c->hub->loop);
    int over = 0;
    if (l->hard && (long long)c->obytes >= l->hard) over = 1;
    if (l->soft && (long long)c->obytes >= l->soft) {
        if (c->soft_limit_since == 0)
            c->soft_limit_since = now;
        else if (now - c->soft_limit_since >= (double)l->soft_secs)
            over = 1;
    } else {
        c->soft_limit_since = 0;
    }
    if (!over) return 0;
    log_warning("Client id=%llu addr=%s closed for overcoming of output buffer limits (%zu bytes buffered)",
                (unsigned long long)c->id, c->addr, c->obytes);
    c->hub->stats.output_limit_disconnections++;
    conn_close(c, NULL);
    return 1;
}

/* Puts c on the hub's list of connections to flush before the loop blocks. */
static void conn_queue_flush(conn *c) {
    if (c->flags & CONN_PENDING_WRITE) return;
    c->flags |= CONN_PENDING_WRITE;
    c->pending_next = c->hub->pending;
    c->hub->pending = c;
}

/* Appends n bytes to the output chain, allocating a block when the tail is
 * full; a new block is also the moment the output limits are checked. */
void conn_write(conn *c, const char *p, size_t n) {
    if (c->flags & CONN_CLOSING) return;
    obuf_block *b = c->otail;
    if (b && b->size - b->used >= n) {
        memcpy(b->data + b->used, p, n);
        b->used += n;
        c->obytes += n;
        conn_queue_flush(c);
        return;
    }
    size_t first = b ? b->size - b->used : 0;
    if (first) {
        memcpy(b->data + b->used, p, first);
        b->used += first;
    }
    size_t rest = n - first;
    size_t size = rest > OBUF_BLOCK ? rest : OBUF_BLOCK;
    obuf_block *nb = malloc(sizeof *nb + size);
    if (!nb) {
        conn_close(c, "out of memory for output");
        return;
    }
    nb->next = NULL;
    nb->size = size;
    nb->used = rest;
    memcpy(nb->data, p + first, rest);
    if (b)
        b->next = nb;
    else
        c->ohead = nb;
    c->otail = nb;
    c->obytes += n;
    conn_queue_flush(c);
    conn_check_output_limits(c);
}

/* Writes as much buffered output as the socket takes. Returns 0 when all was
 * written, 1 if some remains (EAGAIN), -1 on a socket error. Keeps the head
 * block, emptied, for reuse so a steady stream does not malloc per message. */
static int conn_write_out(conn *c) {
    while (c->obytes) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        size_t off = c->osent;
        for (obuf_block *b = c->ohead; b && n < MAX_IOV; b = b->next, off = 0) {
            if (b->used - off == 0) continue;
            iov[n].iov_base = b->data + off;
            iov[n].iov_len = b->used - off;
            n++;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
            return -1;
        }
        c->hub->stats.net_output_bytes += (uint64_t)w;
        c->obytes -= (size_t)w;
        size_t left = (size_t)w;
        while (left) {
            obuf_block *b = c->ohead;
            size_t avail = b->used - c->osent;
            if (left < avail) {
                c->osent += left;
                break;
            }
            left -= avail;
            c->osent = 0;
            if (b->next) {
                c->ohead = b->next;
                free(b);
            } else {
                b->used = 0;
            }
        }
    }
    /* All written: keep one empty block. */
    while (c->ohead && c->ohead->next) {
        obuf_block *b = c->ohead;
        c->ohead = b->next;
        free(b);
    }
    if (c->ohead) {
        c->ohead->used = 0;
        if (c->ohead->size > OBUF_BLOCK) { /* don't keep a huge one around */
            free(c->ohead);
            c->ohead = NULL;
        }
    }
    c->otail = c->ohead;
    c->osent = 0;
    c->soft_limit_since = 0;
    return 0;
}

/* Flushes one connection and arms or disarms its EV_WRITE watcher. */
static void conn_flush(conn *c) {
    if (c->flags & (CONN_CLOSING | CONN_GATED)) return;
    int rc = conn_write_out(c);
    if (rc < 0) {
        conn_close(c, strerror(errno));
    } else if (rc > 0) {
        if (!ev_is_active(&c->ww)) ev_io_start(c->hub->loop, &c->ww);
    } else {
        if (ev_is_active(&c->ww)) ev_io_stop(c->hub->loop, &c->ww);
        if (c->flags & CONN_CLOSE_AFTER_REPLY) conn_close(c, NULL);
    }
}

void conn_flush_pending(hub *h) {
    while (h->pending) {
        conn *c = h->pending;
        h->pending = c->pending_next;
        c->flags &= ~CONN_PENDING_WRITE;
        /* A connection waiting on EV_WRITE is flushed by its watcher. */
        if (!ev_is_active(&c->ww)) conn_flush(c);
    }
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop, (void)revents;
    conn_flush(w->data);
}

/*---- Gates ---------------------------------------------------------------*/

/* Connections whose output waits for a commit, and the highest committed
 * batch seen. One hub per process. */
static struct {
    conn *head;
    uint64_t committed;
} gates;

static void gate_unlink(conn *c) {
    for (conn **pp = &gates.head; *pp; pp = &(*pp)->gated_next)
        if (*pp == c) {
            *pp = c->gated_next;
            break;
        }
    c->flags &= ~CONN_GATED;
    c->gate = 0;
}

void conn_gate(conn *c, uint64_t seq) {
    if (c->flags & CONN_CLOSING || seq <= gates.committed) return;
    if (seq > c->gate) c->gate = seq;
    if (c->flags & CONN_GATED) return;
    c->flags |= CONN_GATED;
    c->gated_next = gates.head;
    gates.head = c;
}

void conn_release_gates(hub *h, uint64_t committed) {
    (void)h;
    if (committed > gates.committed) gates.committed = committed;
    conn **pp = &gates.head;
    while (*pp) {
        conn *c = *pp;
        if (c->gate <= committed) {
            *pp = c->gated_next;
            c->flags &= ~CONN_GATED;
            c->gate = 0;
            if (c->obytes) {
                conn_queue_flush(c);
            } else if (c->flags & CONN_CLOSE_AFTER_REPLY) {
                conn_close(c, NULL);
            }
        } else {
            pp = &c->gated_next;
        }
    }
}

void conn_fail_gates(hub *h, uint64_t first_seq, const char *why) {
    (void)h;
    conn **pp = &gates.head;
    while (*pp) {
        conn *c = *pp;
        if (c->gate >= first_seq) {
            *pp = c->gated_next;
            c->flags &= ~CONN_GATED;
            c->gate = 0;
            log_warning("Closing client id=%llu addr=%s: its acknowledged writes were not stored (%s)",
                        (unsigned long long)c->id, c->addr, why ? why : "store failure");
            conn_close(c, NULL);
        } else {
            pp = &c->gated_next;
        }
    }
}

/*---- Parked requests -----------------------------------------------------*/

struct conn_parked {
    int argc;
    hstr *argv; /* into the same allocation */
    int rerun;  /* its request is running again */
    ev_timer timer;
    conn_timeout_fn on_timeout;
    conn_release_fn on_release;
};

/* The connections woken, in order (FIFO), and whether they are being run. */
static struct {
    conn *head, *tail;
    int running;
} unparked;

static void unpark_unlink(conn *c) {
    conn *prev = NULL;
    for (conn *x = unparked.head; x; prev = x, x = x->unpark_next)
        if (x == c) {
            if (prev)
                prev->unpark_next = c->unpark_next;
            else
                unparked.head = c->unpark_next;
            if (unparked.tail == c) unparked.tail = prev;
            break;
        }
    c->flags &= ~CONN_UNPARKED;
}

/* Ends c's park: its release callback (unless already released), the timer,
 * the copy, the flag. */
static void park_drop(conn *c, int closing) {
    struct conn_parked *p = c->park;
    if (p->on_release) p->on_release(c, closing);
    ev_timer_stop(c->hub->loop, &p->timer);
    free(p);
    c->park = NULL;
    c->flags &= ~CONN_PARKED;
}

static void park_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    conn *c = w->data;
    struct conn_parked *p = c->park;
    conn_timeout_fn fn = p->on_timeout;
    if (c->flags & CONN_UNPARKED) unpark_unlink(c);
    park_drop(c, 0);
    if (fn) fn(c);
    conn_process_input(c);
}

int conn_rerunning(const conn *c) { return c->park && c->park->rerun; }

int conn_park(conn *c, int argc, const hstr *argv, long long timeout_ms, conn_timeout_fn on_timeout,
              conn_release_fn on_release) {
    struct conn_parked *p = c->park;
    if (p && p->rerun) {
        p->rerun = 0;
        p->on_timeout = on_timeout;
        p->on_release = on_release;
        c->flags |= CONN_PARKED;
        return 0;
    }
    size_t bytes = sizeof *p + (size_t)argc * sizeof(hstr);
    for (int i = 0; i < argc; i++) bytes += argv[i].len;
    if (!(p = calloc(1, bytes))) return -1;
    p->argc = argc;
    p->argv = (hstr *)(p + 1);
    char *d = (char *)(p->argv + argc);
    for (int i = 0; i < argc; i++) {
        memcpy(d, argv[i].p, argv[i].len);
        p->argv[i].p = d;
        p->argv[i].len = argv[i].len;
        d += argv[i].len;
    }
    p->on_timeout = on_timeout;
    p->on_release = on_release;
    ev_timer_init(&p->timer, park_timeout_cb, (double)timeout_ms / 1000.0, 0.0);
    p->timer.data = c;
    if (timeout_ms > 0) ev_timer_start(c->hub->loop, &p->timer);
    c->park = p;
    c->flags |= CONN_PARKED;
    return 0;
}

void conn_unpark(conn *c) {
    if (!c->park || (c->flags & (CONN_UNPARKED | CONN_CLOSING)) || c->park->rerun) return;
    struct conn_parked *p = c->park;
    if (p->on_release) p->on_release(c, 0);
    p->on_release = NULL;
    c->flags |= CONN_UNPARKED;
    c->unpark_next = NULL;
    if (unparked.tail)
        unparked.tail->unpark_next = c;
    else
        unparked.head = c;
    unparked.tail = c;
}

void conn_run_unparked(hub *h) {
    if (unparked.running) return;
    unparked.running = 1;
    while (unparked.head) {
        conn *c = unparked.head;
        unparked.head = c->unpark_next;
        if (!unparked.head) unparked.tail = NULL;
        c->flags &= ~CONN_UNPARKED;
        if (c->flags & CONN_CLOSING || !c->park) continue;
        struct conn_parked *p = c->park;
        p->rerun = 1;
        c->flags &= ~CONN_PARKED;
        h->up.dispatch(c, p->argc, p->argv);
        if (c->park == p && p->rerun) {
            /* it ran to the end: the request is done, input resumes */
            p->rerun = 0;
            park_drop(c, 0);
            conn_process_input(c);
        }
    }
    unparked.running = 0;
}

/*---- Input --------------------------------------------------------------*/

/* Parses and runs every complete request in the query buffer, then moves the
 * unparsed rest to the front. */
static void conn_process_input(conn *c) {
    hub *h = c->hub;
    resp_limits lim = {h->cfg.proto_max_bulk_len, h->cfg.max_multibulk_len, 64 * 1024};
    size_t pos = 0;
    hstr stack_argv[STACK_ARGS];
    while (pos < c->qlen && !(c->flags & (CONN_CLOSING | CONN_CLOSE_AFTER_REPLY | CONN_PARKED))) {
        char *req = c->qbuf + pos;
        resp_status st = resp_parse(&c->parser, req, c->qlen - pos, &lim);
        if (st == RESP_INCOMPLETE) break;
        if (st == RESP_ERROR) {
            h->stats.protocol_errors++;
            log_verbose("Protocol error (%s) from client id=%llu addr=%s", c->parser.err, (unsigned long long)c->id,
                        c->addr);
            reply_errorf(c, "ERR %s", c->parser.err);
            conn_close_after_reply(c);
            break;
        }
        int argc = c->parser.argc;
        if (argc > 0) {
            hstr *argv = argc <= STACK_ARGS ? stack_argv : malloc((size_t)argc * sizeof *argv);
            if (!argv) {
                conn_close(c, "out of memory for arguments");
                break;
            }
            for (int i = 0; i < argc; i++) {
                argv[i].p = req + c->parser.argv[i].off;
                argv[i].len = c->parser.argv[i].len;
            }
            c->last_interaction = ev_now(h->loop);
            h->up.dispatch(c, argc, argv);
            h->stats.commands++;
            if (argv != stack_argv) free(argv);
        }
        pos += c->parser.consumed;
        /* readers woken by this command are served right after it, as Redis does */
        if (unparked.head) conn_run_unparked(h);
    }
    if (pos) {
        memmove(c->qbuf, c->qbuf + pos, c->qlen - pos);
        c->qlen -= pos;
    }
}

/* Reads what the socket has, growing the query buffer as a request needs and
 * closing the connection past client-query-buffer-limit. */
static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop, (void)revents;
    conn *c = w->data;
    hub *h = c->hub;
    if (c->qcap - c->qlen < QBUF_READ_LEN) {
        size_t cap = c->qcap ? c->qcap * 2 : QBUF_READ_LEN * 2;
        while (cap - c->qlen < QBUF_READ_LEN) cap *= 2;
        char *q = realloc(c->qbuf, cap);
        if (!q) {
            conn_close(c, "out of memory for input");
            return;
        }
        c->qbuf = q;
        c->qcap = cap;
    }
    ssize_t n = read(c->fd, c->qbuf + c->qlen, c->qcap - c->qlen);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        conn_close(c, strerror(errno));
        return;
    }
    if (n == 0) {
        conn_close(c, "client closed connection");
        return;
    }
    c->qlen += (size_t)n;
    h->stats.net_input_bytes += (uint64_t)n;
    conn_process_input(c);
    if ((long long)c->qlen > h->cfg.client_query_buffer_limit) {
        log_warning("Closing client id=%llu addr=%s that reached max query buffer length (%zu bytes)",
                    (unsigned long long)c->id, c->addr, c->qlen);
        conn_close(c, NULL);
        return;
    }
    /* Give back memory a big request left behind. */
    if (c->qlen == 0 && c->qcap > 4 * QBUF_READ_LEN) {
        free(c->qbuf);
        c->qbuf = NULL;
        c->qcap = 0;
    }
}

/*---- Housekeeping -------------------------------------------------------*/

void conn_cron(hub *h) {
    double now = ev_now(h->loop);
    for (conn *c = h->conns; c; c = c->next) {
        if (c->flags & CONN_CLOSING) continue;
        if (c->obytes) conn_check_output_limits(c);
        /* as Redis: never a subscriber (nor a listener), nor a client blocked on a call or a read */
        if (h->cfg.timeout && !conn_subscriptions(c) && !(c->flags & (CONN_LISTENER | CONN_BLOCKED | CONN_PARKED)) &&
            now - c->last_interaction > (double)h->cfg.timeout)
            conn_close(c, "idle timeout");
    }
}

void conn_describe(conn *c, textbuf *b) {
    double now = ev_now(c->hub->loop);
    char flags[4], *f = flags; /* Redis's letters, in its order: P (pub/sub), b (blocked); N if none */
    if (conn_subscriptions(c)) *f++ = 'P';
    if (c->flags & (CONN_BLOCKED | CONN_PARKED)) *f++ = 'b';
    if (f == flags) *f++ = 'N';
    *f = '\0';
    textbuf_printf(b,
                   "id=%llu addr=%s laddr=%s fd=%d name=%s age=%lld idle=%lld flags=%s db=0 sub=%zu "
                   "psub=%zu ssub=0 multi=-1 qbuf=%zu qbuf-free=%zu argv-mem=0 multi-mem=0 obl=0 "
                   "oll=0 omem=%zu tot-mem=%zu events=r cmd=%s user=default redir=-1 resp=%d\n",
                   (unsigned long long)c->id, c->addr, c->laddr, c->fd, c->name ? c->name : "",
                   (long long)(now - c->created), (long long)(now - c->last_interaction), flags, c->sub.nchannels,
                   c->sub.npatterns, c->qlen, c->qcap - c->qlen, c->obytes, sizeof *c + c->qcap + c->obytes,
                   c->last_cmd, c->proto);
}
