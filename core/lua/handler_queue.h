/* handler_queue.h -- a handler's inbox: a FIFO of events copied out of the
 * router's delivery, waiting to be run by the handler's current version.
 *
 * The queue belongs to the handler, not to a version of it, so a reload
 * neither loses nor repeats an event: whatever is queued at the switch is run
 * by the new version, in publish order. The queue is a ring of pointers that
 * grows on demand and counts the bytes it holds; its bounds (handler-queue-limit
 * events, handler-queue-memory bytes) are enforced by the caller, which
 * counts what it refuses as dropped. */
#ifndef LUAHUB_HANDLER_QUEUE_H
#define LUAHUB_HANDLER_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "route/router.h"

/* One queued event: a single allocation holding the channel, the pattern
 * that matched (NULL for a channel match) and the payload. */
typedef struct hevent {
    uint64_t id;
    double time_ms;
    const char *chan, *pattern, *msg;
    size_t clen, plen, mlen;
    char data[];
} hevent;

typedef struct hqueue {
    hevent **items;
    size_t head, count, cap;
    size_t bytes; /* hevent_size of every queued event (handler-queue-memory) */
} hqueue;

/* Copies a delivery; NULL if out of memory. Free with free(). */
hevent *hevent_new(const delivery *d);

/* The bytes e holds (its allocation), or that a copy of d would hold. */
size_t hevent_size(const hevent *e);
size_t hevent_size_of(const delivery *d);

void hqueue_init(hqueue *q);
/* Appends e; returns 0, or -1 if out of memory (e is then not queued). */
int hqueue_push(hqueue *q, hevent *e);
/* Removes and returns the oldest event, or NULL if empty. */
hevent *hqueue_pop(hqueue *q);
/* The newest event, or NULL. */
hevent *hqueue_tail(const hqueue *q);
/* Puts e in place of the newest event and returns the one it replaced. */
hevent *hqueue_replace_tail(hqueue *q, hevent *e);
/* Frees every queued event and the ring. */
void hqueue_clear(hqueue *q);

#endif
