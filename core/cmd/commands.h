/* commands.h -- the command table and dispatch. A command is a function
 * `void cmd_x(conn *c, int argc, const hstr *argv)`; argv[0] is its name.
 * Arity follows Redis: n > 0 exactly n words, n < 0 at least -n words.
 * The table lives in commands.c; implementations are grouped by concern in
 * cmd_pubsub.c, cmd_server.c (connection and introspection) and cmd_hub.c
 * (HUB.*). */
#ifndef LUAHUB_COMMANDS_H
#define LUAHUB_COMMANDS_H

#include <stddef.h>

#include "net/conn.h"

enum {
    CMD_PUBSUB_OK = 1 << 0,   /* allowed in RESP2 subscribed mode */
    CMD_LISTENER_OK = 1 << 1, /* allowed on a RESP2 unicast-listener connection */
};

typedef void (*command_fn)(conn *c, int argc, const hstr *argv);

typedef struct command {
    const char *name; /* lower case; "parent|sub" for a subcommand */
    int arity;        /* a subcommand's arity counts the parent's name too */
    int flags;
    command_fn fn;              /* NULL for a subcommand: the parent's fn runs it */
    const struct command *subs; /* subcommands, terminated by a NULL name */
} command;

/* Builds the lookup table; call once at start. */
void commands_init(void);
void commands_free(void);

/* Looks up and runs one request, replying with Redis's errors for unknown
 * commands, wrong arity and commands not allowed in subscribed mode. */
void commands_dispatch(conn *c, int argc, const hstr *argv);

/* 1 if commands_dispatch would run argv's command rather than refuse it
 * with one of those errors (nothing is written). */
int commands_runnable(conn *c, int argc, const hstr *argv);

/* 1 if argv is a HUB.CALL that commands_dispatch would run, with valid
 * arguments (its timeout in *timeout): hub->up.call_runnable, for the
 * network layer's decision to forward a pipelined call at once. */
int commands_call_runnable(conn *c, int argc, const hstr *argv, long long *timeout);

/* Iterates the table (COMMAND). */
const command *commands_table(size_t *n);

/* 1 if the argument equals the lower-case ASCII word w, case-insensitively. */
int hstr_is(const hstr *a, const char *w);
/* Parses a whole signed decimal as strictly as Redis (resp_string2ll: no
 * "+", spaces, leading zeros or "-0"); returns 0 on success, -1 otherwise. */
int hstr_to_ll(const hstr *a, long long *out);

/* Refuses the command (replies the error, returns 1) if any of
 * argv[first..argc) is longer than pattern-max-len; 0 if they all fit. */
int cmd_refuse_long_patterns(conn *c, int argc, const hstr *argv, int first);

/* Implementations (cmd_*.c). */
void cmd_ping(conn *c, int argc, const hstr *argv);
void cmd_echo(conn *c, int argc, const hstr *argv);
void cmd_quit(conn *c, int argc, const hstr *argv);
void cmd_hello(conn *c, int argc, const hstr *argv);
void cmd_reset(conn *c, int argc, const hstr *argv);
void cmd_select(conn *c, int argc, const hstr *argv);
void cmd_client(conn *c, int argc, const hstr *argv);
void cmd_info(conn *c, int argc, const hstr *argv);
void cmd_command(conn *c, int argc, const hstr *argv);
void cmd_subscribe(conn *c, int argc, const hstr *argv);
void cmd_unsubscribe(conn *c, int argc, const hstr *argv);
void cmd_psubscribe(conn *c, int argc, const hstr *argv);
void cmd_punsubscribe(conn *c, int argc, const hstr *argv);
void cmd_publish(conn *c, int argc, const hstr *argv);
void cmd_pubsub(conn *c, int argc, const hstr *argv);
void cmd_hub_call(conn *c, int argc, const hstr *argv);
/* HUB.CALL's own argument checks: 0 with *timeout (-1 for the call-timeout
 * option), -1 for too many arguments, -2 for a bad timeout. */
int hub_call_args(int argc, const hstr *argv, long long *timeout);
void cmd_hub_handlers(conn *c, int argc, const hstr *argv);
void cmd_hub_reload(conn *c, int argc, const hstr *argv);
void cmd_hub_stats(conn *c, int argc, const hstr *argv);      /* cmd_stats.c */
void cmd_hub_gsubscribe(conn *c, int argc, const hstr *argv); /* cmd_groups.c */
void cmd_hub_gunsubscribe(conn *c, int argc, const hstr *argv);
void cmd_hub_listen(conn *c, int argc, const hstr *argv); /* cmd_unicast.c */
void cmd_hub_unlisten(conn *c, int argc, const hstr *argv);
void cmd_hub_reply(conn *c, int argc, const hstr *argv);
void cmd_hub_error(conn *c, int argc, const hstr *argv);

void cmd_hub_stream(conn *c, int argc, const hstr *argv); /* cmd_hubstream.c */
void cmd_hub_publish(conn *c, int argc, const hstr *argv);
/* INFO's "# Capture" section (cmd_hubstream.c). */
void info_capture_section(hub *h, struct textbuf *b);
/* A stream got entries from a capture: its blocked readers run again. */
void cmd_stream_key_appended(const char *key, size_t klen);
void cmd_xadd(conn *c, int argc, const hstr *argv); /* cmd_stream.c */
void cmd_xlen(conn *c, int argc, const hstr *argv);
void cmd_xrange(conn *c, int argc, const hstr *argv);
void cmd_xrevrange(conn *c, int argc, const hstr *argv);
void cmd_xread(conn *c, int argc, const hstr *argv);
void cmd_xreadgroup(conn *c, int argc, const hstr *argv);
void cmd_xgroup(conn *c, int argc, const hstr *argv);
void cmd_xack(conn *c, int argc, const hstr *argv);
void cmd_xpending(conn *c, int argc, const hstr *argv);
void cmd_xclaim(conn *c, int argc, const hstr *argv);
void cmd_xautoclaim(conn *c, int argc, const hstr *argv);
void cmd_xdel(conn *c, int argc, const hstr *argv);
void cmd_xtrim(conn *c, int argc, const hstr *argv);
void cmd_xinfo(conn *c, int argc, const hstr *argv);
void cmd_del(conn *c, int argc, const hstr *argv); /* cmd_keys.c */
void cmd_exists(conn *c, int argc, const hstr *argv);
void cmd_type(conn *c, int argc, const hstr *argv);
void cmd_keys(conn *c, int argc, const hstr *argv);
void cmd_scan(conn *c, int argc, const hstr *argv);
/* The stream model's wake callback (a cold read finished for a parked
 * connection), and the readers blocked in XREAD/XREADGROUP (INFO). */
void cmd_stream_wake(void *waiter);
size_t streams_blocked_readers(void);
/* A stream key was deleted: its blocked XREADGROUP readers are told. */
void cmd_stream_key_deleted(const char *key, size_t klen);
/* INFO's "# Persistence" and "# Streams" sections (cmd_stream.c). */
void info_streams_sections(hub *h, struct textbuf *b, int persistence, int streams);

/* Sections the handler runtime contributes to INFO (cmd_hub.c). Appends
 * "# Handlers\r\n..." text to b (growable: never cut). */
struct textbuf;
void info_handlers_section(hub *h, struct textbuf *b);
/* INFO's "# Events" section: per-event-name statistics (cmd_stats.c). */
void info_events_section(hub *h, struct textbuf *b);

#endif
