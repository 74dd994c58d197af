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
};

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
