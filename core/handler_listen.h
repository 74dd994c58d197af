/* handler_listen.h -- the unicast namespace: which listener answers a
 * HUB.CALL name. One flat table, name -> (kind, owner), shared by every kind
 * of listener: Lua handlers (`listen = {...}`) today, remote client
 * connections (HUB.LISTEN) later, so a name is owned by exactly one listener
 * whatever its kind.
 *
 * The registry never calls back into its owners and never frees them; it only
 * maps names to opaque owner pointers. Names are binary-safe byte strings. */
#ifndef LUAHUB_HANDLER_LISTEN_H
#define LUAHUB_HANDLER_LISTEN_H

#include <stddef.h>

typedef struct listen_registry listen_registry;

typedef enum listener_kind {
    LISTENER_HANDLER = 1, /* owner is a `handler *` (handler_runtime.h) */
    LISTENER_CONN = 2,    /* owner is a `conn *` (reserved for HUB.LISTEN) */
} listener_kind;

typedef struct listener {
    listener_kind kind;
    void *owner;
} listener;

listen_registry *listen_new(void);
/* Frees the table (not the owners). NULL is allowed. */
void listen_free(listen_registry *r);

/* Registers name for owner. Returns 1 if added, 0 if owner already had it,
 * -1 if another owner has it (copied into *holder when holder is not NULL),
 * -2 if out of memory. */
int listen_add(listen_registry *r, const char *name, size_t len, listener_kind kind, void *owner,
               listener *holder);

/* Removes name if owner holds it. Returns 1 if removed, 0 otherwise. */
int listen_remove(listen_registry *r, const char *name, size_t len, const void *owner);

/* Removes every name owner holds; returns how many. */
size_t listen_remove_owner(listen_registry *r, const void *owner);

/* The listener for name, or NULL. Valid until the next add/remove. */
const listener *listen_find(const listen_registry *r, const char *name, size_t len);

size_t listen_count(const listen_registry *r);

#endif
