/* cmd_server.c -- connection and introspection commands: PING, ECHO, QUIT,
 * HELLO, RESET, SELECT, CLIENT, INFO, COMMAND. */
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "commands.h"
#include "base/log.h"
#include "net/reply.h"
#include "net/unicast.h"

void cmd_ping(conn *c, int argc, const hstr *argv) {
    if (argc > 2) {
        reply_error(c, "ERR wrong number of arguments for 'ping' command");
        return;
    }
    if (c->proto == 2 && conn_subscriptions(c)) {
        /* Redis answers a subscribed RESP2 PING in the message format. */
        reply_array(c, 2);
        reply_cstr(c, "pong");
        if (argc == 2)
            reply_bulk(c, argv[1].p, argv[1].len);
        else
            reply_bulk(c, "", 0);
    } else if (argc == 2) {
        reply_bulk(c, argv[1].p, argv[1].len);
    } else {
        reply_status(c, "PONG");
    }
}

void cmd_echo(conn *c, int argc, const hstr *argv) {
    (void)argc;
    reply_bulk(c, argv[1].p, argv[1].len);
}

void cmd_quit(conn *c, int argc, const hstr *argv) {
    (void)argc, (void)argv;
    reply_ok(c);
    conn_close_after_reply(c);
}

void cmd_select(conn *c, int argc, const hstr *argv) {
    (void)argc;
    long long db;
    if (hstr_to_ll(&argv[1], &db))
        reply_error(c, "ERR value is not an integer or out of range");
    else if (db != 0)
        reply_error(c, "ERR DB index is out of range");
    else
        reply_ok(c);
}

/* Sets the connection name; returns 0, or -1 after replying with Redis's
 * error for a name with spaces or special characters, or ours for one longer
 * than CONN_MAX_NAME (Redis has no limit; a name is copied into every CLIENT
 * LIST line and every "replaced" push naming its holder). */
static int set_name(conn *c, const hstr *name) {
    if (name->len > CONN_MAX_NAME) {
        reply_errorf(c, "ERR Client names cannot be longer than %d bytes.", CONN_MAX_NAME);
        return -1;
    }
    for (size_t i = 0; i < name->len; i++) {
        if (name->p[i] < '!' || name->p[i] > '~') {
            reply_error(c, "ERR Client names cannot contain spaces, newlines or special characters.");
            return -1;
        }
    }
    free(c->name);
    c->name = NULL;
    if (name->len) {
        c->name = strndup(name->p, name->len);
        if (!c->name) {
            reply_error(c, "ERR out of memory");
            return -1;
        }
    }
    return 0;
}

/* HELLO [protover [AUTH user pass] [SETNAME name]]: switches protocol and
 * replies with the server's description as a map. */
void cmd_hello(conn *c, int argc, const hstr *argv) {
    long long ver = c->proto;
    int i = 1;
    if (argc >= 2) {
        if (hstr_to_ll(&argv[1], &ver)) {
            reply_error(c, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (ver < 2 || ver > 3) {
            reply_error(c, "NOPROTO unsupported protocol version");
            return;
        }
        i = 2;
    }
    const hstr *newname = NULL;
    for (; i < argc; i++) {
        int more = argc - i - 1;
        if (hstr_is(&argv[i], "auth") && more >= 2) {
            i += 2; /* no authentication yet: the default user has no password */
        } else if (hstr_is(&argv[i], "setname") && more >= 1) {
            newname = &argv[++i];
        } else {
            int n = argv[i].len > 128 ? 128 : (int)argv[i].len;
            reply_errorf(c, "ERR Syntax error in HELLO option '%.*s'", n, argv[i].p);
            return;
        }
    }
    if (newname && set_name(c, newname)) return;
    c->proto = (int)ver;
    reply_map(c, 7);
    reply_cstr(c, "server");
    reply_cstr(c, "luahub");
    reply_cstr(c, "version");
    reply_cstr(c, LUAHUB_VERSION);
    reply_cstr(c, "proto");
    reply_int(c, c->proto);
    reply_cstr(c, "id");
    reply_int(c, (long long)c->id);
    reply_cstr(c, "mode");
    reply_cstr(c, "standalone");
    reply_cstr(c, "role");
    reply_cstr(c, "master");
    reply_cstr(c, "modules");
    reply_array(c, 0);
}

void cmd_reset(conn *c, int argc, const hstr *argv) {
    (void)argc, (void)argv;
    router_unsubscribe_all(c->hub->router, &c->sub);
    unicast_reset(c);
    free(c->name);
    c->name = NULL;
    c->proto = 2;
    reply_status(c, "RESET");
}

/* CLIENT ID | SETNAME name | GETNAME | LIST | INFO | SETINFO attr value | HELP */
void cmd_client(conn *c, int argc, const hstr *argv) {
    const hstr *sub = &argv[1];
    if (hstr_is(sub, "id") && argc == 2) {
        reply_int(c, (long long)c->id);
    } else if (hstr_is(sub, "setname")) {
        if (argc != 3) {
            reply_error(c, "ERR wrong number of arguments for 'client|setname' command");
            return;
        }
        if (set_name(c, &argv[2]) == 0) reply_ok(c);
    } else if (hstr_is(sub, "getname") && argc == 2) {
        if (c->name)
            reply_cstr(c, c->name);
        else
            reply_null(c);
    } else if (hstr_is(sub, "list")) {
        /* Filters: TYPE normal|pubsub (others match nothing), ID id [id ...]. */
        int type = 0; /* 0 any, 1 normal, 2 pubsub, 3 none */
        int ids_from = 0;
        if (argc >= 4 && hstr_is(&argv[2], "type") && argc == 4) {
            type = hstr_is(&argv[3], "normal") ? 1 : hstr_is(&argv[3], "pubsub") ? 2 : 3;
            if (type == 3 && !hstr_is(&argv[3], "master") && !hstr_is(&argv[3], "replica") &&
                !hstr_is(&argv[3], "slave")) {
                int n = argv[3].len > 128 ? 128 : (int)argv[3].len;
                reply_errorf(c, "ERR Unknown client type '%.*s'", n, argv[3].p);
                return;
            }
        } else if (argc >= 4 && hstr_is(&argv[2], "id")) {
            ids_from = 3;
            for (int i = 3; i < argc; i++) {
                long long id;
                if (hstr_to_ll(&argv[i], &id) || id <= 0) {
                    reply_error(c, "ERR Invalid client ID");
                    return;
                }
            }
        } else if (argc != 2) {
            reply_error(c, "ERR syntax error");
            return;
        }
        textbuf b = {0};
        for (conn *o = c->hub->conns; o && !b.oom; o = o->next) {
            if (o->flags & CONN_CLOSING) continue;
            if (type && type != (conn_subscriptions(o) ? 2 : 1)) continue;
            if (ids_from) {
                int found = 0;
                for (int i = ids_from; i < argc; i++) {
                    long long id;
                    if (hstr_to_ll(&argv[i], &id) == 0 && (uint64_t)id == o->id) found = 1;
                }
                if (!found) continue;
            }
            conn_describe(o, &b);
        }
        if (b.oom)
            reply_error(c, "ERR out of memory");
        else
            reply_verbatim(c, b.p ? b.p : "", b.len);
        textbuf_free(&b);
    } else if (hstr_is(sub, "info") && argc == 2) {
        textbuf b = {0};
        conn_describe(c, &b);
        if (b.oom)
            reply_error(c, "ERR out of memory");
        else
            reply_verbatim(c, b.p, b.len);
        textbuf_free(&b);
    } else if (hstr_is(sub, "setinfo") && argc == 4) {
        reply_ok(c); /* accepted for client libraries that send it; not stored */
    } else if (hstr_is(sub, "help") && argc == 2) {
        static const char *help[] = {"CLIENT <subcommand> [<arg> ...]. Subcommands are:",
                                     "ID",
                                     "GETNAME",
                                     "SETNAME <name>",
                                     "LIST",
                                     "INFO",
                                     "SETINFO <attr> <value>"};
        reply_array(c, (long)(sizeof help / sizeof help[0]));
        for (size_t i = 0; i < sizeof help / sizeof help[0]; i++) reply_status(c, help[i]);
    } else {
        int n = sub->len > 128 ? 128 : (int)sub->len;
        reply_errorf(c, "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try CLIENT HELP.", n, sub->p);
    }
}

/*---- INFO ---------------------------------------------------------------*/

/* Resident set size in bytes, from /proc/self/statm; 0 if unknown. */
static long long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%lld %lld", &size, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

/* 1 if section `name` is asked for by INFO's arguments. */
static int want(int argc, const hstr *argv, const char *name, int is_default) {
    if (argc < 2) return is_default;
    for (int i = 1; i < argc; i++)
        if (hstr_is(&argv[i], name) || hstr_is(&argv[i], "all") || hstr_is(&argv[i], "everything") ||
            (is_default && hstr_is(&argv[i], "default")))
            return 1;
    return 0;
}

void cmd_info(conn *c, int argc, const hstr *argv) {
    hub *h = c->hub;
    textbuf b = {0}; /* grows: no section is ever cut */
    double now = ev_now(h->loop);
    if (want(argc, argv, "server", 1)) {
        struct utsname u;
        uname(&u);
        textbuf_printf(
            &b,
            "# Server\r\nredis_version:%s\r\nluahub_version:%s\r\nredis_mode:standalone\r\nos:%s %s %s\r\n"
            "arch_bits:%d\r\nmultiplexing_api:%s\r\nprocess_id:%d\r\ntcp_port:%d\r\nuptime_in_seconds:%lld\r\n"
            "executable:luahub\r\nhandlers_dir:%s\r\n\r\n",
            LUAHUB_REDIS_COMPAT, LUAHUB_VERSION, u.sysname, u.release, u.machine, (int)(sizeof(void *) * 8),
            (ev_backend(h->loop) & EVBACKEND_EPOLL) ? "epoll" : "libev", (int)getpid(), h->cfg.port,
            (long long)(now - h->start_time), h->cfg.handlers_dir);
    }
    if (want(argc, argv, "clients", 1)) {
        size_t pubsub = 0, blocked = 0;
        for (conn *o = h->conns; o; o = o->next) {
            pubsub += conn_subscriptions(o) > 0;
            blocked += (o->flags & (CONN_BLOCKED | CONN_PARKED)) != 0;
        }
        textbuf_printf(&b,
                       "# Clients\r\nconnected_clients:%zu\r\nmaxclients:%lld\r\nblocked_clients:%zu\r\n"
                       "pubsub_clients:%zu\r\n\r\n",
                       h->nconns, h->cfg.maxclients, blocked, pubsub);
    }
    if (want(argc, argv, "memory", 1)) {
        struct mallinfo2 mi = mallinfo2();
        textbuf_printf(&b, "# Memory\r\nused_memory:%zu\r\nused_memory_rss:%lld\r\n\r\n", mi.uordblks + mi.hblkhd,
                       rss_bytes());
    }
    if (want(argc, argv, "stats", 1)) {
        textbuf_printf(&b,
                       "# Stats\r\ntotal_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
                       "total_net_input_bytes:%llu\r\ntotal_net_output_bytes:%llu\r\nrejected_connections:%llu\r\n"
                       "client_output_buffer_limit_disconnections:%llu\r\nprotocol_errors:%llu\r\n"
                       "pubsub_channels:%zu\r\npubsub_patterns:%zu\r\ntotal_events_published:%llu\r\n"
                       "total_event_deliveries:%llu\r\n\r\n",
                       (unsigned long long)h->stats.connections_received, (unsigned long long)h->stats.commands,
                       (unsigned long long)h->stats.net_input_bytes, (unsigned long long)h->stats.net_output_bytes,
                       (unsigned long long)h->stats.rejected_connections,
                       (unsigned long long)h->stats.output_limit_disconnections,
                       (unsigned long long)h->stats.protocol_errors, router_channel_count(h->router),
                       router_pattern_count(h->router), (unsigned long long)router_events_published(h->router),
                       (unsigned long long)router_deliveries(h->router));
    }
    info_streams_sections(h, &b, want(argc, argv, "persistence", 1), want(argc, argv, "streams", 1));
    if (want(argc, argv, "capture", 1)) info_capture_section(h, &b);
    if (want(argc, argv, "handlers", 1)) info_handlers_section(h, &b);
    if (want(argc, argv, "events", 1)) info_events_section(h, &b);
    if (b.oom) {
        reply_error(c, "ERR out of memory");
    } else {
        size_t len = b.len; /* drop the blank line after the last section */
        if (len >= 4 && b.p[len - 1] == '\n' && b.p[len - 2] == '\r' && b.p[len - 3] == '\n') len -= 2;
        reply_verbatim(c, b.p ? b.p : "", len);
    }
    textbuf_free(&b);
}

/*---- COMMAND ------------------------------------------------------------*/

/* One COMMAND INFO entry in Redis 7's ten-field shape. */
static void reply_command_info(conn *c, const command *cmd) {
    reply_array(c, 10);
    reply_cstr(c, cmd->name);
    reply_int(c, cmd->arity);
    int pubsub = (cmd->flags & CMD_PUBSUB_OK) != 0;
    reply_set(c, pubsub ? 2 : 1);
    reply_status(c, "fast");
    if (pubsub) reply_status(c, "pubsub");
    reply_int(c, 0);
    reply_int(c, 0);
    reply_int(c, 0);
    reply_set(c, 0);
    reply_array(c, 0);
    reply_array(c, 0);
    reply_array(c, 0);
}

/* COMMAND | COMMAND COUNT | COMMAND INFO name... | COMMAND DOCS [name...] */
void cmd_command(conn *c, int argc, const hstr *argv) {
    size_t n;
    const command *t = commands_table(&n);
    if (argc == 1) {
        reply_array(c, (long)n);
        for (size_t i = 0; i < n; i++) reply_command_info(c, &t[i]);
    } else if (hstr_is(&argv[1], "count") && argc == 2) {
        reply_int(c, (long long)n);
    } else if (hstr_is(&argv[1], "info")) {
        reply_array(c, argc - 2);
        for (int a = 2; a < argc; a++) {
            const command *found = NULL;
            for (size_t i = 0; i < n; i++)
                if (hstr_is(&argv[a], t[i].name)) found = &t[i];
            if (found)
                reply_command_info(c, found);
            else
                reply_null_array(c);
        }
    } else if (hstr_is(&argv[1], "docs")) {
        reply_map(c, 0);
    } else if (hstr_is(&argv[1], "help")) {
        static const char *help[] = {"COMMAND <subcommand> [<arg> ...]. Subcommands are:", "(no subcommand)", "COUNT",
                                     "INFO [<command-name> ...]", "DOCS [<command-name> ...]"};
        reply_array(c, (long)(sizeof help / sizeof help[0]));
        for (size_t i = 0; i < sizeof help / sizeof help[0]; i++) reply_status(c, help[i]);
    } else {
        int len = argv[1].len > 128 ? 128 : (int)argv[1].len;
        reply_errorf(c, "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try COMMAND HELP.", len,
                     argv[1].p);
    }
}
