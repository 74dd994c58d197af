/* cmd_unicast.c -- the remote listener's commands: HUB.LISTEN, HUB.UNLISTEN,
 * HUB.REPLY, HUB.ERROR. Argument checks and replies only; registrations and
 * requests are net/unicast.c's (its top comment has the rules). */
#include <stdint.h>

#include "commands.h"
#include "net/reply.h"
#include "net/unicast.h"

/* [listen|unlisten, name or nil, count]: a push in RESP3, an array in RESP2. */
static void confirm(conn *c, const char *kind, const char *name, size_t len, size_t count) {
    reply_push(c, 3);
    reply_cstr(c, kind);
    if (name) reply_bulk(c, name, len);
    else reply_null(c);
    reply_int(c, (long long)count);
}

void cmd_hub_listen(conn *c, int argc, const hstr *argv) {
    for (int i = 1; i < argc; i++) {
        size_t count;
        int rc = unicast_listen(c, argv[i].p, argv[i].len, &count);
        if (rc < 0) {
            reply_error(c, rc == -1 ? "ERR unicast listeners are not available" : "ERR out of memory");
            return;
        }
        confirm(c, "listen", argv[i].p, argv[i].len, count);
    }
}

static void confirm_unlisten(conn *c, const char *name, size_t len, size_t left) {
    confirm(c, "unlisten", name, len, left);
}

void cmd_hub_unlisten(conn *c, int argc, const hstr *argv) {
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            confirm(c, "unlisten", argv[i].p, argv[i].len, unicast_unlisten(c, argv[i].p, argv[i].len));
        return;
    }
    if (unicast_unlisten_all(c, confirm_unlisten) == 0) confirm(c, "unlisten", NULL, 0, 0);
}

/* Answers request argv[1] with payload argv[2]. */
static void answer(conn *c, const hstr *argv, int is_error) {
    long long id;
    if (hstr_to_ll(&argv[1], &id) || id <= 0 || unicast_answer(c, (uint64_t)id, argv[2].p, argv[2].len, is_error)) {
        reply_error(c, "ERR unknown request id");
        return;
    }
    reply_ok(c);
}

void cmd_hub_reply(conn *c, int argc, const hstr *argv) {
    if (argc > 4 || (argc == 4 && !hstr_is(&argv[3], "error"))) {
        reply_error(c, "ERR syntax error: HUB.REPLY id payload [ERROR]");
        return;
    }
    answer(c, argv, argc == 4);
}

void cmd_hub_error(conn *c, int argc, const hstr *argv) {
    (void)argc;
    answer(c, argv, 1);
}
