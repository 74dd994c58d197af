/* commands.c -- the command table, lookup and the checks Redis makes before
 * running a command (unknown name, arity, RESP2 subscribed mode). */
#include "commands.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "net/reply.h"
#include "net/unicast.h"

/* Subcommands are validated (name, arity, subscribed mode) by the
 * dispatcher, with Redis's "parent|sub" names in errors; the parent's
 * function then does the work. */
static const command client_subs[] = {
    {"client|id", 2, 0, NULL, NULL},       {"client|setname", 3, 0, NULL, NULL},
    {"client|getname", 2, 0, NULL, NULL},  {"client|list", -2, 0, NULL, NULL},
    {"client|info", 2, 0, NULL, NULL},     {"client|setinfo", 4, 0, NULL, NULL},
    {"client|help", 2, 0, NULL, NULL},     {NULL, 0, 0, NULL, NULL},
};
static const command pubsub_subs[] = {
    {"pubsub|channels", -2, 0, NULL, NULL},      {"pubsub|numsub", -2, 0, NULL, NULL},
    {"pubsub|numpat", 2, 0, NULL, NULL},         {"pubsub|shardchannels", -2, 0, NULL, NULL},
    {"pubsub|shardnumsub", -2, 0, NULL, NULL},   {"pubsub|help", 2, 0, NULL, NULL},
    {NULL, 0, 0, NULL, NULL},
};
static const command command_subs[] = {
    {"command|count", 2, 0, NULL, NULL}, {"command|info", -2, 0, NULL, NULL},
    {"command|docs", -2, 0, NULL, NULL}, {"command|help", 2, 0, NULL, NULL},
    {NULL, 0, 0, NULL, NULL},
};

static const command xgroup_subs[] = {
    {"xgroup|create", -5, 0, NULL, NULL},         {"xgroup|setid", -5, 0, NULL, NULL},
    {"xgroup|destroy", 4, 0, NULL, NULL},         {"xgroup|createconsumer", 5, 0, NULL, NULL},
    {"xgroup|delconsumer", 5, 0, NULL, NULL},     {"xgroup|help", 2, 0, NULL, NULL},
    {NULL, 0, 0, NULL, NULL},
};
static const command xinfo_subs[] = {
    {"xinfo|stream", -3, 0, NULL, NULL}, {"xinfo|groups", 3, 0, NULL, NULL},
    {"xinfo|consumers", 4, 0, NULL, NULL}, {"xinfo|help", 2, 0, NULL, NULL},
    {NULL, 0, 0, NULL, NULL},
};

static const command table[] = {
    {"ping", -1, CMD_PUBSUB_OK | CMD_LISTENER_OK, cmd_ping, NULL},
    {"echo", 2, 0, cmd_echo, NULL},
    {"quit", -1, CMD_PUBSUB_OK | CMD_LISTENER_OK, cmd_quit, NULL},
    {"hello", -1, 0, cmd_hello, NULL},
    {"reset", 1, CMD_PUBSUB_OK | CMD_LISTENER_OK, cmd_reset, NULL},
    {"select", 2, 0, cmd_select, NULL},
    {"client", -2, 0, cmd_client, client_subs},
    {"info", -1, 0, cmd_info, NULL},
    {"command", -1, 0, cmd_command, command_subs},
    {"subscribe", -2, CMD_PUBSUB_OK, cmd_subscribe, NULL},
    {"unsubscribe", -1, CMD_PUBSUB_OK, cmd_unsubscribe, NULL},
    {"psubscribe", -2, CMD_PUBSUB_OK, cmd_psubscribe, NULL},
    {"punsubscribe", -1, CMD_PUBSUB_OK, cmd_punsubscribe, NULL},
    {"publish", 3, 0, cmd_publish, NULL},
    {"pubsub", -2, 0, cmd_pubsub, pubsub_subs},
    {"hub.call", -3, 0, cmd_hub_call, NULL},
    {"hub.handlers", 1, 0, cmd_hub_handlers, NULL},
    {"hub.reload", -1, 0, cmd_hub_reload, NULL},
    {"hub.stats", -1, 0, cmd_hub_stats, NULL},
    {"hub.gsubscribe", -3, CMD_PUBSUB_OK, cmd_hub_gsubscribe, NULL},
    {"hub.gunsubscribe", -2, CMD_PUBSUB_OK, cmd_hub_gunsubscribe, NULL},
    {"hub.listen", -2, CMD_PUBSUB_OK | CMD_LISTENER_OK, cmd_hub_listen, NULL},
    {"hub.unlisten", -1, CMD_PUBSUB_OK | CMD_LISTENER_OK, cmd_hub_unlisten, NULL},
    {"hub.reply", -3, CMD_PUBSUB_OK | CMD_LISTENER_OK, cmd_hub_reply, NULL},
    {"hub.error", 3, CMD_PUBSUB_OK | CMD_LISTENER_OK, cmd_hub_error, NULL},
    {"hub.stream", -2, 0, cmd_hub_stream, NULL},
    {"hub.publish", -3, 0, cmd_hub_publish, NULL},
    {"xadd", -5, 0, cmd_xadd, NULL},
    {"xlen", 2, 0, cmd_xlen, NULL},
    {"xrange", -4, 0, cmd_xrange, NULL},
    {"xrevrange", -4, 0, cmd_xrevrange, NULL},
    {"xread", -4, 0, cmd_xread, NULL},
    {"xreadgroup", -7, 0, cmd_xreadgroup, NULL},
    {"xgroup", -2, 0, cmd_xgroup, xgroup_subs},
    {"xack", -4, 0, cmd_xack, NULL},
    {"xpending", -3, 0, cmd_xpending, NULL},
    {"xclaim", -6, 0, cmd_xclaim, NULL},
    {"xautoclaim", -6, 0, cmd_xautoclaim, NULL},
    {"xdel", -3, 0, cmd_xdel, NULL},
    {"xtrim", -4, 0, cmd_xtrim, NULL},
    {"xinfo", -2, 0, cmd_xinfo, xinfo_subs},
    {"del", -2, 0, cmd_del, NULL},
    {"unlink", -2, 0, cmd_del, NULL},
    {"exists", -2, 0, cmd_exists, NULL},
    {"type", 2, 0, cmd_type, NULL},
    {"keys", 2, 0, cmd_keys, NULL},
    {"scan", -2, 0, cmd_scan, NULL},
};

typedef struct cmd_entry {
    UT_hash_handle hh;
    const command *cmd;
} cmd_entry;

static cmd_entry *lookup;
#define MAX_CMD_NAME 32

void commands_init(void) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        cmd_entry *e = calloc(1, sizeof *e);
        if (!e) abort();
        e->cmd = &table[i];
        HASH_ADD_KEYPTR(hh, lookup, e->cmd->name, strlen(e->cmd->name), e);
    }
}

void commands_free(void) {
    cmd_entry *e, *tmp;
    HASH_ITER(hh, lookup, e, tmp) {
        HASH_DEL(lookup, e);
        free(e);
    }
}

const command *commands_table(size_t *n) {
    *n = sizeof table / sizeof table[0];
    return table;
}

/* Returns the command named by a (any case), or NULL. */
static const command *commands_find(const hstr *a) {
    char name[MAX_CMD_NAME];
    if (a->len == 0 || a->len >= MAX_CMD_NAME) return NULL;
    for (size_t i = 0; i < a->len; i++) name[i] = (char)tolower((unsigned char)a->p[i]);
    cmd_entry *e;
    HASH_FIND(hh, lookup, name, a->len, e);
    return e ? e->cmd : NULL;
}

/* Replies with Redis's unknown-command error: the name and the first
 * arguments, up to 128 bytes of them. */
static void reply_unknown(conn *c, int argc, const hstr *argv) {
    char args[256];
    size_t n = 0;
    args[0] = '\0';
    for (int i = 1; i < argc && n < 128; i++) {
        int room = 128 - (int)n;
        int take = (int)argv[i].len < room ? (int)argv[i].len : room;
        n += (size_t)snprintf(args + n, sizeof args - n, "'%.*s' ", take, argv[i].p);
    }
    int nlen = argv[0].len > 128 ? 128 : (int)argv[0].len;
    reply_errorf(c, "ERR unknown command '%.*s', with args beginning with: %s", nlen, argv[0].p, args);
}

/* Finds the subcommand of `parent` named by a, or NULL. */
static const command *find_sub(const command *parent, const hstr *a) {
    size_t plen = strlen(parent->name) + 1;
    for (const command *s = parent->subs; s->name; s++)
        if (hstr_is(a, s->name + plen)) return s;
    return NULL;
}

/* The command argv names, if c may run it now: it exists, has the right
 * number of arguments and is allowed in c's mode. Otherwise NULL, after
 * the error reply when `reply` is set. */
static const command *check_command(conn *c, int argc, const hstr *argv, int reply) {
    const command *cmd = commands_find(&argv[0]);
    if (!cmd) {
        if (reply) reply_unknown(c, argc, argv);
        return NULL;
    }
    if (reply) c->last_cmd = cmd->name;
    const command *check = cmd;
    if (cmd->subs && argc >= 2) {
        if (!(check = find_sub(cmd, &argv[1]))) {
            if (!reply) return NULL;
            int n = argv[1].len > 128 ? 128 : (int)argv[1].len;
            char upper[16];
            size_t i = 0;
            for (; i < sizeof upper - 1 && cmd->name[i]; i++) upper[i] = (char)toupper((unsigned char)cmd->name[i]);
            upper[i] = '\0';
            reply_errorf(c, "ERR unknown subcommand '%.*s'. Try %s HELP.", n, argv[1].p, upper);
            return NULL;
        }
    }
    if ((check->arity > 0 && argc != check->arity) || (check->arity < 0 && argc < -check->arity)) {
        if (reply) reply_errorf(c, "ERR wrong number of arguments for '%s' command", check->name);
        return NULL;
    }
    if (c->proto == 2 && (c->flags & CONN_LISTENER) && !(check->flags & (CMD_LISTENER_OK | CMD_PUBSUB_OK))) {
        if (!reply) return NULL;
        reply_errorf(c,
                     "ERR Can't execute '%s': only HUB.REPLY / HUB.ERROR / HUB.LISTEN / HUB.UNLISTEN / "
                     "(P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                     check->name);
        return NULL;
    }
    if (c->proto == 2 && conn_subscriptions(c) && !(c->flags & CONN_LISTENER) && !(check->flags & CMD_PUBSUB_OK)) {
        if (!reply) return NULL;
        reply_errorf(c,
                     "ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
                     "are allowed in this context",
                     check->name);
        return NULL;
    }
    return cmd;
}

int commands_runnable(conn *c, int argc, const hstr *argv) { return check_command(c, argc, argv, 0) != NULL; }

int commands_call_runnable(conn *c, int argc, const hstr *argv, long long *timeout) {
    return hstr_is(&argv[0], "hub.call") && commands_runnable(c, argc, argv) && hub_call_args(argc, argv, timeout) == 0;
}

void commands_dispatch(conn *c, int argc, const hstr *argv) {
    /* a connection waiting on HUB.CALLs may run only what cannot overtake their replies */
    if (unicast_hold(c, argc, argv)) return;
    const command *cmd = check_command(c, argc, argv, 1);
    if (cmd) cmd->fn(c, argc, argv);
}

int hstr_is(const hstr *a, const char *w) {
    size_t n = strlen(w);
    if (a->len != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)a->p[i]) != w[i]) return 0;
    return 1;
}

int hstr_to_ll(const hstr *a, long long *out) { return resp_string2ll(a->p, a->len, out) ? 0 : -1; }
