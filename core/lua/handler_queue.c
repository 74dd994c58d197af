/* handler_queue.c -- the per-handler event FIFO (see handler_queue.h). */
#include "handler_queue.h"

#include <stdlib.h>
#include <string.h>

/* Ring capacity kept when the queue drains; a burst's bigger ring is freed. */
#define KEEP_CAP 256

size_t hevent_size(const hevent *e) { return sizeof *e + e->clen + e->plen + e->mlen + 3; }

size_t hevent_size_of(const delivery *d) { return sizeof(hevent) + d->clen + (d->pattern ? d->plen : 0) + d->mlen + 3; }

hevent *hevent_new(const delivery *d) {
    size_t plen = d->pattern ? d->plen : 0;
    hevent *e = malloc(sizeof *e + d->clen + plen + d->mlen + 3);
    if (!e) return NULL;
    char *p = e->data;
    e->id = d->id;
    e->time_ms = d->time_ms;
    e->clen = d->clen;
    e->plen = plen;
    e->mlen = d->mlen;
    memcpy(p, d->chan, d->clen);
    p[d->clen] = '\0';
    e->chan = p;
    p += d->clen + 1;
    if (d->pattern) {
        memcpy(p, d->pattern, plen);
        p[plen] = '\0';
        e->pattern = p;
        p += plen + 1;
    } else {
        e->pattern = NULL;
    }
    memcpy(p, d->msg, d->mlen);
    p[d->mlen] = '\0';
    e->msg = p;
    return e;
}

void hqueue_init(hqueue *q) { memset(q, 0, sizeof *q); }

int hqueue_push(hqueue *q, hevent *e) {
    if (q->count == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        hevent **items = malloc(cap * sizeof *items);
        if (!items) return -1;
        for (size_t i = 0; i < q->count; i++) items[i] = q->items[(q->head + i) % q->cap];
        free(q->items);
        q->items = items;
        q->cap = cap;
        q->head = 0;
    }
    q->items[(q->head + q->count) % q->cap] = e;
    q->count++;
    q->bytes += hevent_size(e);
    return 0;
}

hevent *hqueue_pop(hqueue *q) {
    if (!q->count) return NULL;
    hevent *e = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->bytes -= hevent_size(e);
    if (--q->count == 0) {
        q->head = 0;
        if (q->cap > KEEP_CAP) {
            free(q->items);
            q->items = NULL;
            q->cap = 0;
        }
    }
    return e;
}

hevent *hqueue_tail(const hqueue *q) {
    return q->count ? q->items[(q->head + q->count - 1) % q->cap] : NULL;
}

hevent *hqueue_replace_tail(hqueue *q, hevent *e) {
    size_t i = (q->head + q->count - 1) % q->cap;
    hevent *old = q->items[i];
    q->items[i] = e;
    q->bytes = q->bytes - hevent_size(old) + hevent_size(e);
    return old;
}

void hqueue_clear(hqueue *q) {
    hevent *e;
    while ((e = hqueue_pop(q))) free(e);
    free(q->items);
    hqueue_init(q);
}
