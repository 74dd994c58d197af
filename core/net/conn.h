/* conn.h -- one client connection: its socket watchers, query buffer and
 * request parsing, its output buffer and the limits on both, its identity
 * as a subscriber in the router.
 *
 * Output is never written from a command: replies are appended to the
 * connection's block chain (reply.h) and the connection is queued on the
 * hub's pending list; conn_flush_pending() writes every queued connection
 * with writev once per loop iteration, before the loop blocks. Whatever the
 * kernel does not take stays buffered and an EV_WRITE watcher finishes it.
 *
 * Closing is deferred: conn_close() marks the connection, stops reading,
 * and links it on the hub's closing list; it is freed (unsubscribed,
 * socket closed) in conn_free_closing(), never in the middle of a command or
 * a publish. A connection closed "after reply" (QUIT, protocol error) is
 * freed once its pending output is flushed. */
#ifndef LUAHUB_CONN_H
#define LUAHUB_CONN_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "base/hub.h"
#include "resp.h"
#include "route/router.h"

enum {
    CONN_PENDING_WRITE = 1 << 0, /* on hub->pending */
    CONN_CLOSE_AFTER_REPLY = 1 << 1,
    CONN_CLOSING = 1 << 2, /* on hub->closing; do nothing more with it */
    CONN_UNIX = 1 << 3,
    CONN_LISTENER = 1 << 4, /* registered as a unicast listener (HUB.LISTEN) */
    CONN_BLOCKED = 1 << 5,  /* waiting on a HUB.CALL to a client listener (unicast.h) */
    CONN_HOLDING = 1 << 6,  /* has requests held behind its calls (unicast.h) */
    CONN_PARKED = 1 << 7,   /* a request waits for data (conn_park): flag b, input paused */
    CONN_GATED = 1 << 8,    /* output held until the store commits (conn_gate) */
    CONN_UNPARKED = 1 << 9, /* queued to run its parked request again */
};

struct conn_parked;

typedef struct obuf_block {
    struct obuf_block *next;
    size_t used, size;
    char data[];
} obuf_block;

struct conn {
    hub *hub;
    uint64_t id;
    int fd;
    int flags;
    int proto; /* 2 or 3 (after HELLO 3) */
    ev_io rw, ww;

    char *qbuf; /* query buffer: unprocessed input */
    size_t qlen, qcap;
    resp_parser parser;

    obuf_block *ohead, *otail; /* output chain; ohead->data[osent..used) unsent */
    size_t osent;
    size_t obytes;           /* bytes buffered, unsent */
    double soft_limit_since; /* when obytes went above the soft limit; 0 = below */

    subscriber sub; /* the connection as a router subscriber */
    char *name;     /* CLIENT SETNAME */
    char addr[64];  /* ip:port or path */
    char laddr[64];
    double created, last_interaction;
    const char *last_cmd; /* name of the last command, static storage */

    conn *prev, *next;  /* hub->conns */
    conn *pending_next; /* hub->pending */
    conn *closing_next; /* hub->closing */

    uint64_t gate;             /* output waits for this store batch to commit; 0 = none */
    conn *gated_next;          /* the list of gated connections */
    struct conn_parked *park;  /* the parked request, or NULL */
    conn *unpark_next;         /* the queue of connections to run again */
};

/* The listeners' accept callback (main starts the watchers). Out of file
 * descriptors (EMFILE, ENFILE) or buffers, it stops both listeners and a
 * timer restarts them after a short back-off, logging once per episode. */
void conn_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
/* Stops the back-off timer (at shutdown). */
void conn_stop_accept_backoff(hub *h);

/* Appends raw bytes to the output and queues the connection for flushing.
 * Used only by the reply helpers. Ignored when the connection is closing. */
void conn_write(conn *c, const char *p, size_t n);

/* Marks c for freeing at the next loop iteration (see top comment). */
void conn_close(conn *c, const char *why);
/* Marks c to be closed once its pending output has been written. */
void conn_close_after_reply(conn *c);

/* Writes every pending connection's output (writev); called before the loop
 * blocks and on shutdown. */
void conn_flush_pending(hub *h);
/* Frees every connection on the closing list. */
void conn_free_closing(hub *h);

/* Checks c's output buffer against its class's limits (pubsub if it has
 * subscriptions, normal otherwise); closes it if over. Returns 1 if closed. */
int conn_check_output_limits(conn *c);

/* Once-a-second housekeeping for all connections: soft limits, idle timeout
 * (never of a subscriber, a listener, or a caller blocked on a HUB.CALL). */
void conn_cron(hub *h);

/*---- Durable replies and parked requests (the stream commands) ----------*/

/* Holds c's output (what is buffered now and everything after it, in
 * order) until the store has committed batch seq: conn_release_gates()
 * releases it. Output-buffer limits still apply. Other connections flow. */
void conn_gate(conn *c, uint64_t seq);
/* The store committed every batch up to `committed`: connections gated on
 * them are flushed. */
void conn_release_gates(hub *h, uint64_t committed);
/* The store failed batches from first_seq on: every connection gated on one
 * of them is closed without its pending output (no ack for what was not
 * stored). */
void conn_fail_gates(hub *h, uint64_t first_seq, const char *why);

/* How a parked request ends: on_timeout writes the timeout reply; on_release
 * drops what the command registered to be woken (closing: c is going away). */
typedef void (*conn_timeout_fn)(conn *c);
typedef void (*conn_release_fn)(conn *c, int closing);

/* Parks c's current request: a copy of argv is kept, the rest of c's input
 * waits in the query buffer (still under client-query-buffer-limit), c is
 * blocked (flag b, blocked_clients, never idle-closed). timeout_ms > 0 arms a
 * timer that calls on_release then on_timeout and resumes input. Called
 * while the parked request runs again, it parks it again with the same copy
 * and deadline (argv may point into the copy). Returns 0, or -1 if out of
 * memory (nothing parked: the command replies an error). */
int conn_park(conn *c, int argc, const hstr *argv, long long timeout_ms, conn_timeout_fn on_timeout,
              conn_release_fn on_release);
/* Wakes a parked c: on_release runs now, and soon (after the current
 * command, never inside it) the parked request is dispatched again from the
 * start, then the rest of c's input. Nothing happens if c is not parked. */
void conn_unpark(conn *c);
/* Runs the requests of every woken connection, in the order they were
 * woken; called after each command and before the loop blocks. */
void conn_run_unparked(hub *h);
/* 1 while c's current request is a parked one running again. */
int conn_rerunning(const conn *c);

/* Frees the shared message-frame cache (at exit). */
void conn_release_caches(void);

/* Number of channel + pattern subscriptions + group memberships. */
static inline size_t conn_subscriptions(const conn *c) {
    return c->sub.nchannels + c->sub.npatterns + c->sub.ngroups;
}

/* Appends one CLIENT LIST line for c, with its trailing \n, to b (reply.h);
 * any length of name or address fits. */
struct textbuf;
void conn_describe(conn *c, struct textbuf *b);

/* Longest CLIENT SETNAME / HELLO SETNAME name accepted, in bytes. */
#define CONN_MAX_NAME 1024

#endif
