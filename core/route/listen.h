/* listen.h -- the unicast namespace: which listener answers a
 * HUB.CALL name. One table, name -> a stack of registrations, shared by
 * every kind of listener: Lua handlers (`listen = {...}`) and remote client
 * connections (HUB.LISTEN), so a name is answered by exactly one listener
 * whatever its kind.
 *
 * The newest registration is the holder (the top of the name's stack). When
 * the holder goes away (unregisters, disconnects, is unloaded) the name falls
 * back to the most recent earlier registration still there; only owners that
 * are alive are ever in a stack, since owners remove themselves when they
 * go. An owner has at most one registration per name: registering again
 * changes nothing (a handler reload does not take a name back).
 *
 * The registry never calls back into its owners and never frees them; it only
 * maps names to opaque owner pointers. Names are binary-safe byte strings. */
#ifndef LUAHUB_ROUTE_LISTEN_H
#define LUAHUB_ROUTE_LISTEN_H

#include <stddef.h>

typedef struct listen_registry listen_registry;

typedef enum listener_kind {
    LISTENER_HANDLER = 1, /* owner is a `handler *` (handler_runtime.h) */
    LISTENER_CONN = 2,    /* owner is a `conn *` (HUB.LISTEN, unicast.h) */
} listener_kind;

typedef struct listener {
    listener_kind kind;
    void *owner;
} listener;

listen_registry *listen_new(void);
/* Frees the table (not the owners). NULL is allowed. */
void listen_free(listen_registry *r);

/* Registers owner for name as its new holder. Returns 1 if the name was
 * free, 2 if owner took it over from another holder (copied into *prev when
 * prev is not NULL), 0 if owner already had a registration for name (nothing
 * changes, even if it is not the holder), -2 if out of memory. */
int listen_add(listen_registry *r, const char *name, size_t len, listener_kind kind, void *owner, listener *prev);

/* Removes owner's registration for name, wherever it is in the stack.
 * Returns 1 if removed, 0 if owner had none. */
int listen_remove(listen_registry *r, const char *name, size_t len, const void *owner);

/* Removes every registration of owner; returns how many. */
size_t listen_remove_owner(listen_registry *r, const void *owner);

/* The holder of name, or NULL. Valid until the next add/remove. */
const listener *listen_find(const listen_registry *r, const char *name, size_t len);

/* A registration for name of the given kind by another owner than `owner`
 * (anywhere in the stack), or NULL. */
const listener *listen_find_other(const listen_registry *r, const char *name, size_t len, listener_kind kind,
                                  const void *owner);

/* 1 if owner has a registration for name (holder or not). */
int listen_has(const listen_registry *r, const char *name, size_t len, const void *owner);

/* Registrations for name: its holder plus the fallbacks under it (0 if
 * nobody listens). */
size_t listen_depth(const listen_registry *r, const char *name, size_t len);

/* Number of names with a holder. */
size_t listen_count(const listen_registry *r);

#endif
