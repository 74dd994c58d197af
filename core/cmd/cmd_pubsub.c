/* cmd_pubsub.c -- SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH,
 * PUBSUB (PUBLISH is in cmd_hubstream.c, with the capture): Redis's pub/sub commands with Redis's reply shapes. Confirmations
 * are pushes in RESP3 and arrays in RESP2 (reply_push decides). */
#include <string.h>

#include "commands.h"
#include "net/reply.h"

/* [kind, name, count] confirmation; name NULL gives a null. */
static void reply_confirm(conn *c, const char *kind, const char *name, size_t len) {
    reply_push(c, 3);
    reply_bulk(c, kind, strlen(kind));
    if (name) reply_bulk(c, name, len);
    else reply_null(c);
    reply_int(c, (long long)conn_subscriptions(c));
}

void cmd_subscribe(conn *c, int argc, const hstr *argv) {
    for (int i = 1; i < argc; i++) {
        if (router_subscribe(c->hub->router, &c->sub, argv[i].p, argv[i].len) < 0) {
            reply_error(c, "ERR out of memory");
            return;
        }
        reply_confirm(c, "subscribe", argv[i].p, argv[i].len);
    }
}

/* Patterns are capped (pattern-max-len) so that matching one against a name
 * costs a bounded number of word operations per name byte (route/glob.h).
 * The whole command is refused, nothing subscribed, as for Redis's
 * argument errors. */
int cmd_refuse_long_patterns(conn *c, int argc, const hstr *argv, int first) {
    long long max = c->hub->cfg.pattern_max_len;
    for (int i = first; i < argc; i++)
        if ((long long)argv[i].len > max) {
            reply_errorf(c, "ERR pattern is longer than pattern-max-len (%lld bytes)", max);
            return 1;
        }
    return 0;
}

void cmd_psubscribe(conn *c, int argc, const hstr *argv) {
    if (cmd_refuse_long_patterns(c, argc, argv, 1)) return;
    for (int i = 1; i < argc; i++) {
        if (router_psubscribe(c->hub->router, &c->sub, argv[i].p, argv[i].len) < 0) {
            reply_error(c, "ERR out of memory");
            return;
        }
        reply_confirm(c, "psubscribe", argv[i].p, argv[i].len);
    }
}

typedef struct unsub_ctx {
    conn *c;
    int pattern;
} unsub_ctx;

/* Confirms and drops one subscription during an unsubscribe-all. The
 * confirmation is written first, while the router's copy of the name is
 * still alive, with the count it will have after the removal. */
static void unsub_one(const char *name, size_t len, void *ctx) {
    unsub_ctx *u = ctx;
    reply_push(u->c, 3);
    reply_cstr(u->c, u->pattern ? "punsubscribe" : "unsubscribe");
    reply_bulk(u->c, name, len);
    reply_int(u->c, (long long)conn_subscriptions(u->c) - 1);
    if (u->pattern) router_punsubscribe(u->c->hub->router, &u->c->sub, name, len);
    else router_unsubscribe(u->c->hub->router, &u->c->sub, name, len);
}

/* UNSUBSCRIBE / PUNSUBSCRIBE: with names, each one (subscribed or not) is
 * confirmed; without, every current one is, and if there was none a single
 * confirmation with a null name is sent, as Redis does. */
static void unsubscribe_generic(conn *c, int argc, const hstr *argv, int pattern) {
    const char *kind = pattern ? "punsubscribe" : "unsubscribe";
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            if (pattern) router_punsubscribe(c->hub->router, &c->sub, argv[i].p, argv[i].len);
            else router_unsubscribe(c->hub->router, &c->sub, argv[i].p, argv[i].len);
            reply_confirm(c, kind, argv[i].p, argv[i].len);
        }
        return;
    }
    size_t before = pattern ? c->sub.npatterns : c->sub.nchannels;
    unsub_ctx u = {c, pattern};
    if (pattern) router_foreach_pattern_of(c->hub->router, &c->sub, unsub_one, &u);
    else router_foreach_channel_of(c->hub->router, &c->sub, unsub_one, &u);
    if (before == 0) reply_confirm(c, kind, NULL, 0);
}

void cmd_unsubscribe(conn *c, int argc, const hstr *argv) { unsubscribe_generic(c, argc, argv, 0); }
void cmd_punsubscribe(conn *c, int argc, const hstr *argv) { unsubscribe_generic(c, argc, argv, 1); }

typedef struct list_ctx {
    conn *c;
    long n;
    int count_only;
} list_ctx;

static void list_channel(const char *name, size_t len, void *ctx) {
    list_ctx *l = ctx;
    if (!l->count_only) reply_bulk(l->c, name, len);
    l->n++;
}

/* PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | HELP. */
void cmd_pubsub(conn *c, int argc, const hstr *argv) {
    router *r = c->hub->router;
    if (hstr_is(&argv[1], "channels") && argc <= 3) {
        const char *pat = argc == 3 ? argv[2].p : NULL;
        size_t plen = argc == 3 ? argv[2].len : 0;
        list_ctx l = {c, 0, 1};
        router_foreach_channel(r, pat, plen, list_channel, &l);
        reply_array(c, l.n);
        l.count_only = 0;
        l.n = 0;
        router_foreach_channel(r, pat, plen, list_channel, &l);
    } else if (hstr_is(&argv[1], "numsub")) {
        reply_array(c, (long)(argc - 2) * 2);
        for (int i = 2; i < argc; i++) {
            reply_bulk(c, argv[i].p, argv[i].len);
            reply_int(c, (long long)router_numsub(r, argv[i].p, argv[i].len));
        }
    } else if (hstr_is(&argv[1], "numpat") && argc == 2) {
        reply_int(c, (long long)router_pattern_count(r));
    } else if ((hstr_is(&argv[1], "shardchannels") && argc <= 3)) {
        reply_array(c, 0);
    } else if (hstr_is(&argv[1], "shardnumsub")) {
        reply_array(c, (long)(argc - 2) * 2);
        for (int i = 2; i < argc; i++) {
            reply_bulk(c, argv[i].p, argv[i].len);
            reply_int(c, 0);
        }
    } else if (hstr_is(&argv[1], "help") && argc == 2) {
        static const char *help[] = {
            "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CHANNELS [<pattern>]", "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT", "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]", "    Return the number of subscribers for the specified channels.",
        };
        reply_array(c, (long)(sizeof help / sizeof help[0]));
        for (size_t i = 0; i < sizeof help / sizeof help[0]; i++) reply_status(c, help[i]);
    } else {
        int n = argv[1].len > 128 ? 128 : (int)argv[1].len;
        reply_errorf(c, "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try PUBSUB HELP.", n,
                     argv[1].p);
    }
}
