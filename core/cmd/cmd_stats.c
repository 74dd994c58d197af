/* cmd_stats.c -- HUB.STATS and INFO's "# Events" section: the per-event-name
 * traffic statistics (stats.h) as commands and operators see them. */
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "lua/handler_runtime.h"
#include "commands.h"
#include "net/reply.h"
#include "route/stats.h"

#define STATS_FIELDS 9

typedef struct stats_reply {
    conn *c;
    long n;
    int count_only;
} stats_reply;

/* Writes one name's entry: a map in RESP3, a flat array in RESP2. The
 * subscriber and listener counts are the router's and the unicast
 * registry's, as of now. */
static void reply_entry(const stats_view *v, void *ctx) {
    stats_reply *sr = ctx;
    sr->n++;
    if (sr->count_only) return;
    conn *c = sr->c;
    reply_map(c, STATS_FIELDS);
    reply_cstr(c, "name");
    reply_bulk(c, v->name, v->len);
    reply_cstr(c, "published");
    reply_int(c, (long long)v->published);
    reply_cstr(c, "delivered");
    reply_int(c, (long long)v->delivered);
    reply_cstr(c, "called");
    reply_int(c, (long long)v->called);
    reply_cstr(c, "last_minute");
    reply_int(c, (long long)v->last_minute);
    reply_cstr(c, "rate_per_sec");
    reply_double(c, v->rate);
    reply_cstr(c, "last_seen_ms");
    reply_int(c, (long long)v->last_seen_ms);
    reply_cstr(c, "subscribers");
    reply_int(c, (long long)router_receivers(c->hub->router, v->name, v->len));
    reply_cstr(c, "listeners");
    const handlers *rt = c->hub->handlers;
    reply_int(c, rt ? (long long)listen_depth(rt->listeners, v->name, v->len) : 0);
}

/* HUB.STATS [pattern]: one entry per tracked name matching the glob (all
 * without one), sorted by name. */
void cmd_hub_stats(conn *c, int argc, const hstr *argv) {
    if (argc > 2) {
        reply_error(c, "ERR wrong number of arguments for 'hub.stats' command");
        return;
    }
    stats *st = router_stats(c->hub->router);
    const char *pat = argc == 2 ? argv[1].p : NULL;
    size_t plen = argc == 2 ? argv[1].len : 0;
    double now = clock_wall_ms();
    stats_reply sr = {c, 0, 1};
    stats_foreach(st, pat, plen, now, reply_entry, &sr);
    reply_array(c, sr.n);
    sr.count_only = 0;
    sr.n = 0;
    stats_foreach(st, pat, plen, now, reply_entry, &sr);
}

void info_events_section(hub *h, textbuf *b) {
    stats *st = router_stats(h->router);
    textbuf_printf(b,
                   "# Events\r\nevent_names_tracked:%zu\r\nevent_names_max:%lld\r\nevent_names_evicted:%llu\r\n"
                   "event_names_untracked:%llu\r\n"
                   "event_names_total_events:%llu\r\nconsumer_groups:%zu\r\nconsumer_group_misses:%llu\r\n\r\n",
                   stats_count(st), h->cfg.stats_max_names, (unsigned long long)stats_evicted(st),
                   (unsigned long long)stats_untracked(st),
                   (unsigned long long)stats_total(st), router_group_count(h->router),
                   (unsigned long long)router_group_misses(h->router));
}
