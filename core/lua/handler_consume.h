/* handler_consume.h -- Lua handlers as durable consumers of a stream's
 * consumer group (the handler key `consume`): the runtime's side. A handler
 * whose serving version has `consume` owns an hconsume (h->cons) that
 * outlives its versions while the stream and group stay the same; the
 * drain (handler.c) runs its deliveries under the same limits as events.
 * README, "Durable consumers", says what users see. */
#ifndef LUAHUB_HANDLER_CONSUME_H
#define LUAHUB_HANDLER_CONSUME_H

#include <stdint.h>

#include "handler_lua.h"

typedef struct handlers handlers;
typedef struct hconsume hconsume;

/* How a delivery's on_event ended. */
enum { CONSUME_RETURNED, CONSUME_FAILED, CONSUME_DROPPED };

/* After h's serving version changed to nv (or h lost it, nv NULL): keeps
 * the consumer if nv consumes the same stream and group, else replaces or
 * drops it (its entries stay pending in the group). Returns 0, or -1 if out
 * of memory (h then does not consume until its next load). */
int consume_switch(handler *h, hversion *nv);
/* Drops h's consumer (unload; the group membership stays). */
void consume_free(handler *h);

/* 1 if h's consumer can deliver (or dead-letter) an entry now. */
int consume_has_work(handler *h);
/* Delivers one entry (or dead-letters one, or starts a cold read).
 * Returns 1 if it did something, 0 if there was nothing to do. */
int consume_step(handler *h);
/* Puts every consumer with work on the ready list (the drain, each loop
 * iteration: appends, commits and recoveries need no other wake-up). */
void consume_wake_ready(handlers *rt);

/* Delivery `task` of h ended as `how` (err: on_event's error). */
void consume_task_done(handler *h, uint64_t task, int how, const char *err);
/* A hub.call of delivery `task` timed out: the delivery fails. */
void consume_call_timeout(handler *h, uint64_t task, const char *msg, size_t n);

/* A cold read for `waiter` finished (the model's wake): 1 if the waiter is
 * a consumer (put back on the ready list), 0 if not. */
int consume_cold_wake(void *waiter);
/* The store is closing: cancel every consumer's cold read. */
void consume_release_reads(void);

/* HUB.HANDLERS: h's consumer state, or 0 if h does not consume. */
typedef struct consume_info {
    const char *stream, *group, *state;
    uint64_t pending, delivered, acked, failures, dead;
} consume_info;
int consume_get_info(handler *h, consume_info *out);

#endif
