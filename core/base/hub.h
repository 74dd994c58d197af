/* hub.h -- the one struct that owns the hub's state: the loop, the options,
 * the router, the connections, the Lua handlers and the counters. Modules
 * receive the hub (or the part they need) as an argument; nothing else is
 * global except the log level. */
#ifndef LUAHUB_HUB_H
#define LUAHUB_HUB_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define LUAHUB_VERSION "0.1.0"
/* The Redis version whose protocol and pub/sub behaviour luahub implements;
 * reported as redis_version in INFO because client libraries gate features
 * on it. */
#define LUAHUB_REDIS_COMPAT "7.0.0"

typedef struct conn conn;
typedef struct handlers handlers;
typedef struct router router;
typedef struct listen_registry listen_registry;
struct hstr;

/* How a lower layer reaches a higher one: functions the higher layer
 * implements, wired once at start by main.c (see core/README.md). A NULL
 * entry means the layer that provides it is not running (unit tests). */
typedef struct hub_upcalls {
    /* net -> cmd: run one parsed request (commands_dispatch) */
    void (*dispatch)(conn *c, int argc, const struct hstr *argv);
    /* net -> cmd: 1 if argv is a HUB.CALL the dispatcher would run, with
     * valid arguments (its timeout in *timeout) */
    int (*call_runnable)(conn *c, int argc, const struct hstr *argv, long long *timeout);
    /* net -> lua: a client took over listen name `name` from Lua handler
     * `owner` (its on_replaced runs), and a handler's name for messages */
    void (*handler_replaced)(void *owner, const char *name, size_t len);
    const char *(*handler_name)(const void *owner);
    /* lua -> cmd: a Lua consumer appended to stream `key` (a dead letter):
     * its blocked readers run again */
    void (*stream_appended)(const char *key, size_t klen);
} hub_upcalls;

typedef struct hub_stats {
    uint64_t connections_received;
    uint64_t rejected_connections;
    uint64_t commands;
    uint64_t output_limit_disconnections;
    uint64_t protocol_errors;
    uint64_t net_input_bytes;
    uint64_t net_output_bytes;
} hub_stats;

typedef struct hub {
    struct ev_loop *loop;
    config cfg;
    router *router;
    handlers *handlers;      /* the Lua runtime (handler.h); may be NULL */
    struct unicast *unicast; /* remote listeners, pending calls (unicast.h); may be NULL */
    listen_registry *listeners; /* the unicast namespace, clients and handlers (route/listen.h) */
    struct store *store;     /* the durable store (store/store.h); NULL in unit tests */
    struct streams *streams; /* the stream model (store/stream.h); NULL in unit tests */
    struct capture *capture; /* pub/sub captured into streams (store/capture.h); NULL in unit tests */
    hub_upcalls up;

    int tcp_fd, unix_fd;
    ev_io tcp_w, unix_w;
    ev_signal sigterm_w, sigint_w, sighup_w;
    ev_prepare flush_w;      /* before the loop blocks: free closed conns, flush output */
    ev_timer cron_w;         /* once a second: soft output limits, idle timeouts */
    ev_timer shutdown_w;     /* shutdown deadline */

    conn *conns;             /* every live connection (doubly linked) */
    conn *pending;           /* connections with output to flush (c->pending_next) */
    conn *closing;           /* connections to free at the next prepare (c->closing_next) */
    size_t nconns;
    uint64_t next_conn_id;

    hub_stats stats;
    double start_time;
    int shutting_down;
} hub;

#endif
