/* cmd_groups.c -- HUB.GSUBSCRIBE and HUB.GUNSUBSCRIBE: a connection joins or
 * leaves competing-consumer groups (router.h), and receives the events its
 * groups hand it as [gmessage, group, channel, payload] frames (a push in
 * RESP3, an array in RESP2, where a member is in subscribed mode). */
#include <string.h>

#include "commands.h"
#include "net/reply.h"

/* A connection's gdeliver: writes the group frame; refuses (so the group
 * picks another member) once the connection is closing. */
static int conn_gdeliver(subscriber *s, const delivery *d, const char *group, size_t glen) {
    conn *c = s->udata;
    if (c->flags & CONN_CLOSING) return 0;
    reply_push(c, 4);
    reply_cstr(c, "gmessage");
    reply_bulk(c, group, glen);
    reply_bulk(c, d->chan, d->clen);
    reply_bulk(c, d->msg, d->mlen);
    return 1;
}

/* [kind, group, count]: count is every subscription of the connection
 * (channels, patterns, group memberships), as in PSUBSCRIBE's reply. */
static void reply_gconfirm(conn *c, const char *kind, const hstr *group, size_t count) {
    reply_push(c, 3);
    reply_cstr(c, kind);
    reply_bulk(c, group->p, group->len);
    reply_int(c, (long long)count);
}

/* HUB.GSUBSCRIBE group pattern [pattern ...]: one confirmation per pattern. */
void cmd_hub_gsubscribe(conn *c, int argc, const hstr *argv) {
    if (cmd_refuse_long_patterns(c, argc, argv, 2)) return;
    c->sub.gdeliver = conn_gdeliver;
    for (int i = 2; i < argc; i++) {
        if (router_gsubscribe(c->hub->router, &c->sub, argv[1].p, argv[1].len, argv[i].p, argv[i].len) < 0) {
            reply_error(c, "ERR out of memory");
            return;
        }
        reply_gconfirm(c, "gsubscribe", &argv[1], conn_subscriptions(c));
    }
}

typedef struct gunsub_ctx {
    conn *c;
    const hstr *group;
} gunsub_ctx;

/* Leaves one group during a leave-all; the confirmation carries the count
 * after the removal. */
static void gunsub_one(const char *pat, size_t plen, void *ctx) {
    gunsub_ctx *u = ctx;
    router_gunsubscribe(u->c->hub->router, &u->c->sub, u->group->p, u->group->len, pat, plen);
    reply_gconfirm(u->c, "gunsubscribe", u->group, conn_subscriptions(u->c));
}

/* HUB.GUNSUBSCRIBE group [pattern ...]: leaves the named patterns' groups,
 * or every pattern of that group; one confirmation per pattern (member or
 * not), or a single one if there was nothing to leave. */
void cmd_hub_gunsubscribe(conn *c, int argc, const hstr *argv) {
    if (argc > 2) {
        for (int i = 2; i < argc; i++) {
            router_gunsubscribe(c->hub->router, &c->sub, argv[1].p, argv[1].len, argv[i].p, argv[i].len);
            reply_gconfirm(c, "gunsubscribe", &argv[1], conn_subscriptions(c));
        }
        return;
    }
    size_t before = c->sub.ngroups;
    gunsub_ctx u = {c, &argv[1]};
    router_foreach_group_of(c->hub->router, &c->sub, argv[1].p, argv[1].len, gunsub_one, &u);
    if (before == c->sub.ngroups) reply_gconfirm(c, "gunsubscribe", &argv[1], conn_subscriptions(c));
}
