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
struct gmember;
struct stats;

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
 * subscription fields and the owner only sets `deliver` (and `udata`), and
 * `gdeliver` before joining a group.
 *
 * gdeliver receives one event on behalf of a group (see "Competing
 * consumers" below) and returns 1 if it took it, 0 if it cannot (e.g. the
 * connection is closing), in which case the group offers it to the next
 * member. A Lua handler with `group = "name"` joins the same way (handler.c,
 * handler_reload.c). */
struct subscriber {
    void (*deliver)(subscriber *s, const delivery *d);
    int (*gdeliver)(subscriber *s, const delivery *d, const char *group, size_t glen);
    void *udata;
    struct subref *channels; /* uthash, owned by the router */
    struct subref *patterns;
    struct gmember *groups;  /* uthash, owned by the router */
    size_t nchannels, npatterns, ngroups;
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

/* Competing consumers. A group is the pair (group name, pattern); its
 * members are subscribers. The group itself is one pattern subscriber in the
 * router, so a matching event makes one delivery to the group (and counts
 * one in publish's reply), which hands it to exactly one live member: round
 * robin over the members, skipping one that refuses (gdeliver returns 0) or
 * that published the event. The same subscriber joining (g, "a.*") and
 * (g, "a.b") is in two groups and can get an event from each, like a
 * channel plus a pattern subscription does.
 *
 * router_gsubscribe returns 1 if s newly joined, 0 if it already was a
 * member, -1 on allocation failure. router_gunsubscribe returns 1 if it was
 * a member; a group with no members left is dropped. */
int router_gsubscribe(router *r, subscriber *s, const char *group, size_t glen, const char *pat, size_t plen);
int router_gunsubscribe(router *r, subscriber *s, const char *group, size_t glen, const char *pat, size_t plen);
/* Calls fn with the pattern of each group named `group` s is a member of;
 * fn may leave that very group. */
void router_foreach_group_of(router *r, subscriber *s, const char *group, size_t glen, router_name_fn fn,
                             void *ctx);
/* Number of (group, pattern) groups with at least one member. */
size_t router_group_count(const router *r);

/* Drops every subscription and group membership of s (on disconnect or
 * handler unload). */
void router_unsubscribe_all(router *r, subscriber *s);

/* Delivers an event to every matching subscription; returns how many
 * deliveries were made (PUBLISH's reply). Assigns the event's id. */
size_t router_publish(router *r, const char *chan, size_t clen, const char *msg, size_t mlen);

/* The same, except that `origin` (may be NULL) is skipped and not counted: a
 * Lua handler never receives its own publications, so a handler that
 * publishes into a pattern it subscribes to cannot feed itself forever. */
size_t router_publish_from(router *r, subscriber *origin, const char *chan, size_t clen, const char *msg,
                           size_t mlen);

/* The publish hook (the capture of store/capture.h, set at start by main.c;
 * this layer does not know it): called for every publish after the event
 * got its id and time and before any delivery, with the publisher's
 * message id (NULL unless HUB.PUBLISH ... MSGID) and `arg` from
 * router_publish_ex (NULL for the other entry points). It returns 1 to
 * withhold the event from every subscriber (a duplicate already
 * published), else 0. Like deliver, it must not publish or subscribe. */
typedef int (*router_hook_fn)(void *ctx, const delivery *d, const char *msgid, size_t idlen, void *arg);
void router_set_hook(router *r, router_hook_fn fn, void *ctx);

/* router_publish_from with a message id and an argument for the hook. */
size_t router_publish_ex(router *r, subscriber *origin, const char *chan, size_t clen, const char *msg, size_t mlen,
                         const char *msgid, size_t idlen, void *arg);

/* Called by a deliver callback that dropped the event it was handed (a Lua
 * handler's full queue): the publish in progress does not count that
 * delivery among its receivers. */
void router_refused(router *r);

/* Introspection for PUBSUB and INFO. */
size_t router_channel_count(const router *r);
size_t router_pattern_count(const router *r);
size_t router_numsub(router *r, const char *chan, size_t len);
/* How many deliveries a publish to chan would make now: its channel
 * subscribers plus the subscriptions of every matching pattern (a group
 * counts once). */
size_t router_receivers(router *r, const char *chan, size_t len);
/* Calls fn for every channel with at least one subscriber (all if pat NULL,
 * else those matching the glob). */
void router_foreach_channel(router *r, const char *pat, size_t plen, router_name_fn fn, void *ctx);

/* Event timestamps come from `clock(ctx)` (ms since the epoch) when set:
 * the hub passes the loop's cached time, read once per loop iteration, so a
 * publish costs no clock syscall. Unset (unit tests), gettimeofday is used. */
void router_set_clock(router *r, double (*clock)(void *ctx), void *ctx);

uint64_t router_events_published(const router *r);
uint64_t router_deliveries(const router *r);
/* Events a matching group could not hand to any member: every member
 * refused it (a Lua member's full queue, a closing connection) or was its
 * publisher. Such an event is not counted as delivered. */
uint64_t router_group_misses(const router *r);

/* The per-event-name traffic statistics every publish is counted in
 * (stats.h); owned by the router, never NULL after router_new. */
struct stats *router_stats(router *r);

#endif
