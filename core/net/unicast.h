/* unicast.h -- remote unicast listeners and request/reply between
 * connections: what HUB.LISTEN / HUB.UNLISTEN / HUB.REPLY / HUB.ERROR do
 * (the commands themselves are cmd/cmd_unicast.c), the remote half of
 * HUB.CALL, and the "replaced" notice of a takeover (for either kind of
 * listener; a Lua handler is told through hub->up.handler_replaced).
 *
 * Names live in the hub's registry (route/listen.h), so clients and
 * Lua handlers share one namespace: the newest registration holds a name and
 * the previous holder is told (a push [replaced, name, who] to a client, a
 * call of on_replaced(name) in a handler); when the holder goes, the name
 * falls back to the most recent earlier registration still alive.
 *
 * A HUB.CALL to a client listener does not block the loop: the request gets
 * an id, goes to the listener as a push [request, id, name, payload] and is
 * kept in a table keyed by id with the caller's connection id (never a
 * pointer: the caller may go away; a late reply is then dropped). The caller
 * is "blocked" like a Redis client in BLPOP (CONN_BLOCKED: flag b in CLIENT
 * LIST, never closed by the idle timeout) while it has calls outstanding,
 * but its pipeline still reaches listeners: a later HUB.CALL that goes to a
 * client listener is forwarded at once, up to UNICAST_MAX_CALLS outstanding
 * per caller. Replies are written strictly in request order: a call answered
 * early keeps its outcome until every earlier one was written. Any other
 * request (a command, a HUB.CALL to a Lua listener, to no listener, an
 * invalid one, or a call past the limit) is held, and so is everything after
 * it, until the calls before it were answered; then the held requests run in
 * order. Memory kept for a caller (held input, its outstanding calls, early
 * replies) counts against client-query-buffer-limit; past it the caller is
 * closed, as Redis closes a client whose query buffer passes it. Each request
 * has its own ev_timer (call-timeout, or the call's timeout-ms; 0 = none).
 * hub.call from Lua (hubmod.c) sends requests through unicast_request: the
 * outcome is handed to a callback from an idle watcher, so Lua is never
 * resumed from inside another connection's command or a connection's free.
 *
 * State is per hub (hub->unicast); per-connection state is keyed by the
 * connection id and dropped by unicast_conn_closed(), which conn_free calls. */
#ifndef LUAHUB_UNICAST_H
#define LUAHUB_UNICAST_H

#include <stddef.h>

#include "conn.h"
#include "route/listen.h"

typedef struct unicast unicast;

/* Creates the state (NULL if out of memory: remote listeners then refuse). */
unicast *unicast_new(hub *h);
/* Frees it; call after every connection has been freed. NULL is allowed. */
void unicast_free(unicast *u);

/* A connection is being freed: its names are unregistered (with fallback),
 * requests delivered to it fail with "listener ... disconnected", the calls
 * it was waiting for are dropped on arrival (a late HUB.REPLY still gets
 * +OK), its held requests and early replies are discarded. */
void unicast_conn_closed(conn *c);

/* HUB.LISTEN for one name: registers c as its newest holder (the previous
 * holder is told), unless c already has it. Returns 0 with *count = the
 * names c has registered, -1 if unicast listeners are not available, -2 if
 * out of memory. */
int unicast_listen(conn *c, const char *name, size_t len, size_t *count);

/* HUB.UNLISTEN for one name (nothing happens if c does not have it).
 * Returns the names c has left. */
size_t unicast_unlisten(conn *c, const char *name, size_t len);

/* HUB.UNLISTEN without names: drops every name of c in registration order,
 * calling each(c, name, len, names left) just before a name is dropped.
 * Returns how many there were. */
typedef void (*unicast_name_fn)(conn *c, const char *name, size_t len, size_t left);
size_t unicast_unlisten_all(conn *c, unicast_name_fn each);

/* HUB.REPLY / HUB.ERROR: answers request id, delivered to c, with the reply
 * or (is_error) the error message. Returns 0, or -1 if id is not a request
 * delivered to c that still waits (unknown, answered, timed out). */
int unicast_answer(conn *c, uint64_t id, const char *p, size_t n, int is_error);

/* RESET: drops c's listen registrations (requests already delivered to it
 * can still be answered). */
void unicast_reset(conn *c);

/* Calls to client listeners one caller may have outstanding at once. */
#define UNICAST_MAX_CALLS 1024

/* Called by the dispatcher first: if the request must wait behind c's
 * outstanding calls or earlier held requests (see the top comment), copies
 * it to c's queue and returns 1; otherwise returns 0 and it runs now (a
 * HUB.CALL then reaches unicast_call even while c has calls outstanding). */
int unicast_hold(conn *c, int argc, const hstr *argv);

/* The waiting half of HUB.CALL: sends the request to client listener l and
 * adds it to the caller c's outstanding calls (c is blocked until they are
 * answered). With l NULL nothing is sent: the call is a Lua listener's
 * on_call that waits in hub.call itself, answered by unicast_complete.
 * timeout_ms < 0 means the call-timeout option; 0 none. Returns the
 * request id, or 0 if it could not be made (c was answered or closed). */
uint64_t unicast_call(conn *c, conn *l, const hstr *name, const hstr *payload, long long timeout_ms);

/* hub.call from Lua: the result of a request, ok with the reply, or not ok
 * with the error message ("timeout: ...", "listener for 'x' disconnected",
 * or the listener's HUB.ERROR message). */
typedef void (*unicast_done_fn)(void *ctx, int ok, const char *p, size_t n);

/* Sends a request with no calling connection to listener l (NULL: as for
 * unicast_call); done(ctx, ...) is called once, later, from the loop (never
 * inside this call), unless the request is forgotten first. Returns the
 * request id, or 0 if out of memory. */
uint64_t unicast_request(hub *h, conn *l, const char *name, size_t nlen, const char *p, size_t n,
                         long long timeout_ms, unicast_done_fn done, void *ctx);

/* Answers request id made with no client listener: the reply (ok) or the
 * error message. Unknown ids (timed out, caller gone) are ignored. */
void unicast_complete(hub *h, uint64_t id, int ok, const char *p, size_t n);

/* Drops the callback of request id (its waiter is gone); the listener's reply
 * is then accepted and dropped. */
void unicast_forget(hub *h, uint64_t id);

/* Tells `old` that `by` took over name from it (see the top comment). */
void unicast_replaced(hub *h, const listener *old, const char *name, size_t len, const listener *by);

/* Requests waiting for a remote listener's reply (INFO). */
size_t unicast_pending(const hub *h);

#endif
