/* router.h -- who receives an event: channel subscriptions (exact names) and
 * pattern subscriptions (Redis globs, indexed by patindex), for any kind of
 * subscriber (a client connection, a Lua handler).
 *
 * Routing is C only; payloads are opaque bytes. router_publish is the single
 * entry point of every event into the hub (clients' PUBLISH, handlers'
 * hub.publish): a scale-out engine (Redis) plugs in there later, forwarding
 * local publishes out and remote ones in.
 *
 * Delivery is synchronous: publish calls each subscriber's deliver callback
 * once per matching subscription (a subscriber with a channel and a pattern
 * that both match gets it twice, as in Redis). Callbacks must not subscribe,
 * unsubscribe or publish; subscribers that need to (Lua handlers) queue the
 * event and act on it later. */
#ifndef LUAHUB_ROUTER_H
#define LUAHUB_ROUTER_H

#include <stddef.h>
#include <stdint.h>

typedef struct router router;
typedef struct subscriber subscriber;
struct subref;

/* One event as seen by a subscriber. pattern is NULL for a channel match. */
typedef struct delivery {
    const char *pattern;
    size_t plen;
    const char *chan;
    size_t clen;
    const char *msg;
    size_t mlen;
    uint64_t id;      /* hub-wide event sequence number */
    double time_ms;   /* publish time, ms since the epoch */
} delivery;

/* A subscriber's identity in the router. Embed it; the router owns the
 * subscription fields and the owner only sets `deliver` (and `udata`). */
struct subscriber {
    void (*deliver)(subscriber *s, const delivery *d);
    void *udata;
    struct subref *channels; /* uthash, owned by the router */
    struct subref *patterns;
    size_t nchannels, npatterns;
};

router *router_new(void);
void router_free(router *r);

/* Subscribes s to a channel / pattern. Returns 1 if newly subscribed, 0 if it
 * already was, -1 on allocation failure. */
int router_subscribe(router *r, subscriber *s, const char *chan, size_t len);
int router_psubscribe(router *r, subscriber *s, const char *pat, size_t len);

/* Unsubscribes. Returns 1 if it was subscribed, else 0. */
int router_unsubscribe(router *r, subscriber *s, const char *chan, size_t len);
int router_punsubscribe(router *r, subscriber *s, const char *pat, size_t len);

/* Calls fn for each channel (or pattern) s is subscribed to, in no order.
 * fn may unsubscribe that very entry (used for unsubscribe-all). */
typedef void (*router_name_fn)(const char *name, size_t len, void *ctx);
void router_foreach_channel_of(router *r, subscriber *s, router_name_fn fn, void *ctx);
void router_foreach_pattern_of(router *r, subscriber *s, router_name_fn fn, void *ctx);

/* Drops every subscription of s (on disconnect or handler unload). */
void router_unsubscribe_all(router *r, subscriber *s);

/* Delivers an event to every matching subscription; returns how many
 * deliveries were made (PUBLISH's reply). Assigns the event's id. */
size_t router_publish(router *r, const char *chan, size_t clen, const char *msg, size_t mlen);

/* The same, except that `origin` (may be NULL) is skipped and not counted: a
 * Lua handler never receives its own publications, so a handler that
 * publishes into a pattern it subscribes to cannot feed itself forever. */
size_t router_publish_from(router *r, subscriber *origin, const char *chan, size_t clen, const char *msg,
                           size_t mlen);

/* Introspection for PUBSUB and INFO. */
size_t router_channel_count(const router *r);
size_t router_pattern_count(const router *r);
size_t router_numsub(router *r, const char *chan, size_t len);
/* Calls fn for every channel with at least one subscriber (all if pat NULL,
 * else those matching the glob). */
void router_foreach_channel(router *r, const char *pat, size_t plen, router_name_fn fn, void *ctx);

uint64_t router_events_published(const router *r);
uint64_t router_deliveries(const router *r);

#endif
