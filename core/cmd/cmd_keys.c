/* cmd_keys.c -- the keyspace commands: DEL, UNLINK, EXISTS, TYPE, KEYS,
 * SCAN. The keyspace holds streams only (store/stream.h), so these answer
 * for streams, with Redis's replies. Deleting a stream is durable: the reply
 * is gated on the store's commit like every stream write. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "net/reply.h"
#include "route/glob.h"
#include "store/stream.h"

/* DEL key [key ...] / UNLINK: the number of streams deleted. */
void cmd_del(conn *c, int argc, const hstr *argv) {
    streams *m = c->hub->streams;
    int any = 0;
    for (int i = 1; i < argc && !any; i++) any = streams_find(m, argv[i].p, argv[i].len) != NULL;
    if (any && !store_ok(streams_store(m))) {
        const char *why = store_error(streams_store(m));
        reply_errorf(c, "ERR store unavailable: %s", why ? why : "unknown error");
        return;
    }
    long long n = 0;
    for (int i = 1; i < argc; i++) {
        stream *s = streams_find(m, argv[i].p, argv[i].len);
        if (s) {
            streams_delete(m, s);
            n++;
            cmd_stream_key_deleted(argv[i].p, argv[i].len);
        }
    }
    reply_int(c, n);
    if (n) conn_gate(c, store_seq(streams_store(m)));
}

void cmd_exists(conn *c, int argc, const hstr *argv) {
    long long n = 0;
    for (int i = 1; i < argc; i++) n += streams_find(c->hub->streams, argv[i].p, argv[i].len) != NULL;
    reply_int(c, n);
}

void cmd_type(conn *c, int argc, const hstr *argv) {
    (void)argc;
    reply_status(c, streams_find(c->hub->streams, argv[1].p, argv[1].len) ? "stream" : "none");
}

/* KEYS pattern: every stream key matching (Redis's glob). */
void cmd_keys(conn *c, int argc, const hstr *argv) {
    (void)argc;
    streams *m = c->hub->streams;
    int all = argv[1].len == 1 && argv[1].p[0] == '*';
    long n = 0;
    for (stream *s = streams_first(m); s; s = streams_next(s))
        n += all || glob_match(argv[1].p, argv[1].len, s->key, s->klen);
    reply_array(c, n);
    for (stream *s = streams_first(m); s; s = streams_next(s))
        if (all || glob_match(argv[1].p, argv[1].len, s->key, s->klen)) reply_bulk(c, s->key, s->klen);
}

/* SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]: the cursor is the
 * number of the next stream to visit (streams are visited in creation
 * order, so every key present for the whole scan is returned once). */
void cmd_scan(conn *c, int argc, const hstr *argv) {
    char cur[32];
    if (argv[1].len == 0 || argv[1].len >= sizeof cur) {
        reply_error(c, "ERR invalid cursor");
        return;
    }
    memcpy(cur, argv[1].p, argv[1].len);
    cur[argv[1].len] = '\0';
    char *end;
    errno = 0;
    unsigned long long cursor = strtoull(cur, &end, 10);
    if (*end || errno || cur[0] == '-' || cur[0] == ' ' || cur[0] == '+') {
        reply_error(c, "ERR invalid cursor");
        return;
    }
    const hstr *pat = NULL;
    long long count = 10;
    int type_ok = 1;
    for (int i = 2; i < argc; i++) {
        int more = argc - i - 1;
        if (hstr_is(&argv[i], "count") && more) {
            if (hstr_to_ll(&argv[i + 1], &count) < 0) {
                reply_error(c, "ERR value is not an integer or out of range");
                return;
            }
            if (count < 1) {
                reply_error(c, "ERR syntax error");
                return;
            }
            i++;
        } else if (hstr_is(&argv[i], "match") && more) {
            pat = &argv[++i];
        } else if (hstr_is(&argv[i], "type") && more) {
            type_ok = hstr_is(&argv[++i], "stream");
        } else {
            reply_error(c, "ERR syntax error");
            return;
        }
    }
    streams *m = c->hub->streams;
    stream *s = cursor ? streams_from_sid(m, cursor) : streams_first(m);
    /* visit count streams (at most 10x for a pattern that skips most) */
    stream *first = s;
    long n = 0, visited = 0;
    for (; s && visited < count; s = streams_next(s), visited++)
        n += type_ok && (!pat || glob_match(pat->p, pat->len, s->key, s->klen));
    stream *next = s;
    char nb[32];
    reply_array(c, 2);
    reply_bulk(c, nb, (size_t)snprintf(nb, sizeof nb, "%llu", next ? (unsigned long long)next->sid : 0ULL));
    reply_array(c, n);
    visited = 0;
    for (s = first; s && s != next; s = streams_next(s))
        if (type_ok && (!pat || glob_match(pat->p, pat->len, s->key, s->klen))) reply_bulk(c, s->key, s->klen);
}
