/* cmd_hubstream.c -- capture, pub/sub fanned out into durable streams
 * (store/capture.h): HUB.STREAM CREATE | DROP | LIST, HUB.PUBLISH with a
 * message id, and the gating of PUBLISH's reply when a stream captured it.
 *
 * A publish is delivered to subscribers at once; its reply is gated on the
 * store batch holding the captured entries (conn_gate), so a publisher that
 * got its reply knows the event is stored. When a matching capture cannot
 * store (the store is down or busy), the subscribers still get the event and
 * the publisher gets the error, so it knows the event is not stored. */
#include <string.h>

#include "commands.h"
#include "net/reply.h"
#include "store/capture.h"

/* Publishes with the capture's result; gates c's reply if anything was
 * written. Returns the receivers. */
static size_t publish(conn *c, const hstr *name, const hstr *data, const hstr *msgid, capture_result *res) {
    hub *h = c->hub;
    memset(res, 0, sizeof *res);
    uint64_t w0 = h->streams ? streams_writes(h->streams) : 0;
    size_t n = router_publish_ex(h->router, NULL, name->p, name->len, data->p, data->len, msgid ? msgid->p : NULL,
                                 msgid ? msgid->len : 0, res);
    if (h->streams && streams_writes(h->streams) != w0) conn_gate(c, store_seq(streams_store(h->streams)));
    return n;
}

/* PUBLISH channel message: the receiver count, once captured entries are
 * committed; or the store's error when a capture could not store it. */
void cmd_publish(conn *c, int argc, const hstr *argv) {
    (void)argc;
    capture_result res;
    size_t n = publish(c, &argv[1], &argv[2], NULL, &res);
    if (res.err)
        reply_errorf(c, "%s (delivered to %zu receivers, not stored)", res.err, n);
    else
        reply_int(c, (long long)n);
}

/* HUB.PUBLISH name payload [MSGID id]: [receivers, status], status one of
 * "stored" (in every capture stream that matches), "duplicate" (a matching
 * stream already has the msgid within its DUPWINDOW: stored nowhere again,
 * delivered to nobody, receivers 0) or "not-captured". */
void cmd_hub_publish(conn *c, int argc, const hstr *argv) {
    const hstr *msgid = NULL;
    if (argc == 5 && hstr_is(&argv[3], "msgid")) {
        msgid = &argv[4];
        if (msgid->len > CAPTURE_MSGID_MAX) {
            reply_errorf(c, "ERR msgid is longer than %d bytes", CAPTURE_MSGID_MAX);
            return;
        }
    } else if (argc != 3) {
        reply_error(c, argc == 5 ? "ERR syntax error" : "ERR wrong number of arguments for 'hub.publish' command");
        return;
    }
    capture_result res;
    size_t n = publish(c, &argv[1], &argv[2], msgid, &res);
    if (res.err) {
        reply_errorf(c, "%s (delivered to %zu receivers, not stored)", res.err, n);
        return;
    }
    reply_array(c, 2);
    reply_int(c, (long long)n);
    reply_cstr(c, res.duplicate ? "duplicate" : res.stored ? "stored" : "not-captured");
}

/*---- HUB.STREAM ----------------------------------------------------------------------------*/

static int is_option(const hstr *a) {
    return hstr_is(a, "maxlen") || hstr_is(a, "maxage") || hstr_is(a, "dupwindow") || hstr_is(a, "dupmax");
}

/* Parses CREATE's options from argv[i]. Returns 0, or -1 after an error
 * reply. */
static int parse_options(conn *c, int argc, const hstr *argv, int i, capture_opts *o) {
    *o = (capture_opts){-1, -1, 0, CAPTURE_DUPMAX_DEFAULT};
    for (; i < argc; i += 2) {
        if (!is_option(&argv[i])) {
            int n = argv[i].len > 64 ? 64 : (int)argv[i].len;
            reply_errorf(c, "ERR syntax error: unknown option '%.*s'", n, argv[i].p);
            return -1;
        }
        long long v;
        if (i + 1 >= argc) {
            reply_error(c, "ERR syntax error: an option without its value");
            return -1;
        }
        if (hstr_to_ll(&argv[i + 1], &v) < 0 || v < 0) {
            reply_error(c, "ERR value is not an integer or out of range");
            return -1;
        }
        if (hstr_is(&argv[i], "maxlen")) {
            o->maxlen = v;
        } else if (hstr_is(&argv[i], "dupmax")) {
            if (v < 1 || v > CAPTURE_DUPMAX_MAX) {
                reply_errorf(c, "ERR DUPMAX must be between 1 and %d", CAPTURE_DUPMAX_MAX);
                return -1;
            }
            o->dupmax = v;
        } else {
            if (v > CAPTURE_SECONDS_MAX) {
                reply_errorf(c, "ERR %s must be at most %lld seconds",
                             hstr_is(&argv[i], "maxage") ? "MAXAGE" : "DUPWINDOW", CAPTURE_SECONDS_MAX);
                return -1;
            }
            if (hstr_is(&argv[i], "maxage"))
                o->maxage = v;
            else
                o->dupwindow = v;
        }
    }
    return 0;
}

/* CREATE key CAPTURE pattern [pattern ...] [MAXLEN n] [MAXAGE s]
 * [DUPWINDOW s] [DUPMAX n]. Patterns run up to the first option word. On
 * a plain stream it turns capture on; on a capture stream the new
 * definition replaces the old one (its entries and msgids stay). */
static void hubstream_create(conn *c, int argc, const hstr *argv) {
    if (argc < 5) {
        reply_error(c, "ERR wrong number of arguments for 'hub.stream|create' command");
        return;
    }
    if (!hstr_is(&argv[3], "capture")) {
        reply_error(c, "ERR syntax error: HUB.STREAM CREATE key CAPTURE pattern [pattern ...] [options]");
        return;
    }
    int end = 4;
    while (end < argc && !is_option(&argv[end])) end++;
    if (end == 4) {
        reply_error(c, "ERR CAPTURE needs at least one pattern");
        return;
    }
    capture_opts o;
    if (parse_options(c, argc, argv, end, &o) < 0) return;
    if (cmd_refuse_long_patterns(c, end, argv, 4)) return;
    streams *m = c->hub->streams;
    store *st = streams_store(m);
    if (!store_ok(st)) {
        reply_errorf(c, "ERR store unavailable: %s", store_error(st) ? store_error(st) : "unknown error");
        return;
    }
    uint64_t w0 = streams_writes(m);
    stream *s = streams_find(m, argv[2].p, argv[2].len);
    if (!s && !(s = streams_create(m, argv[2].p, argv[2].len))) {
        reply_error(c, "ERR out of memory");
        return;
    }
    if (capture_define(c->hub->capture, s, (const sstr *)(argv + 4), (size_t)(end - 4), &o) < 0)
        reply_error(c, "ERR out of memory");
    else
        reply_ok(c);
    if (streams_writes(m) != w0) conn_gate(c, store_seq(st));
}

/* DROP key: removes the capture definition and the stream, as DEL does. */
static void hubstream_drop(conn *c, int argc, const hstr *argv) {
    if (argc != 3) {
        reply_error(c, "ERR wrong number of arguments for 'hub.stream|drop' command");
        return;
    }
    streams *m = c->hub->streams;
    stream *s = streams_find(m, argv[2].p, argv[2].len);
    capture_opts o;
    if (!s || !capture_get(s, &o)) {
        reply_error(c, "ERR no such capture stream");
        return;
    }
    store *st = streams_store(m);
    if (!store_ok(st)) {
        reply_errorf(c, "ERR store unavailable: %s", store_error(st) ? store_error(st) : "unknown error");
        return;
    }
    streams_delete(m, s);
    reply_ok(c);
    conn_gate(c, store_seq(st));
    cmd_stream_key_deleted(argv[2].p, argv[2].len);
}

static void reply_limit(conn *c, const char *k, long long v) {
    reply_cstr(c, k);
    if (v < 0)
        reply_cstr(c, "unbounded");
    else
        reply_int(c, v);
}

static void reply_pattern(void *ctx, const char *p, size_t n) {
    reply_bulk(ctx, p, n);
}

/* LIST: one map per capture stream, in creation order. */
static void hubstream_list(conn *c, int argc) {
    if (argc != 2) {
        reply_error(c, "ERR wrong number of arguments for 'hub.stream|list' command");
        return;
    }
    streams *m = c->hub->streams;
    capture_opts o;
    long n = 0;
    for (stream *s = streams_first(m); s; s = streams_next(s)) n += capture_get(s, &o);
    reply_array(c, n);
    for (stream *s = streams_first(m); s; s = streams_next(s)) {
        if (!capture_get(s, &o)) continue;
        reply_map(c, 8);
        reply_cstr(c, "key");
        reply_bulk(c, s->key, s->klen);
        reply_cstr(c, "patterns");
        reply_array(c, (long)capture_npatterns(s));
        capture_foreach_pattern(s, reply_pattern, c);
        reply_limit(c, "maxlen", o.maxlen);
        reply_limit(c, "maxage", o.maxage);
        reply_cstr(c, "dupwindow");
        reply_int(c, o.dupwindow);
        reply_cstr(c, "dupmax");
        reply_int(c, o.dupmax);
        reply_cstr(c, "dedup-records");
        reply_int(c, (long long)s->ndedup);
        reply_cstr(c, "length");
        reply_int(c, (long long)s->meta.length);
    }
}

void cmd_hub_stream(conn *c, int argc, const hstr *argv) {
    if (!c->hub->streams || !c->hub->capture) {
        reply_error(c, "ERR streams are not available");
        return;
    }
    if (hstr_is(&argv[1], "create")) {
        hubstream_create(c, argc, argv);
    } else if (hstr_is(&argv[1], "drop")) {
        hubstream_drop(c, argc, argv);
    } else if (hstr_is(&argv[1], "list")) {
        hubstream_list(c, argc);
    } else {
        int n = argv[1].len > 128 ? 128 : (int)argv[1].len;
        reply_errorf(c, "ERR unknown subcommand '%.*s'. Try HUB.STREAM CREATE|DROP|LIST.", n, argv[1].p);
    }
}

/* INFO's "# Capture" section. */
void info_capture_section(hub *h, struct textbuf *b) {
    if (!h->capture) return;
    capture_stats cs;
    capture_get_stats(h->capture, &cs);
    streams_info si;
    streams_get_info(h->streams, &si);
    textbuf_printf(
        b,
        "# Capture\r\ncapture_streams:%zu\r\ncapture_streams_unbounded:%zu\r\ncapture_entries_stored:%llu\r\n"
        "capture_duplicates:%llu\r\ncapture_not_stored:%llu\r\ncapture_dedup_records:%llu\r\n\r\n",
        cs.streams, cs.unbounded, (unsigned long long)cs.stored, (unsigned long long)cs.duplicates,
        (unsigned long long)cs.not_stored, (unsigned long long)si.dedup_records);
}
