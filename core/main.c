/* main.c -- process start and stop: options, listening sockets, signals, the
 * per-iteration flush, the once-a-second cron and graceful shutdown. */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "base/config.h"
#include "net/conn.h"
#include "lua/handler.h"
#include "lua/handler_consume.h"
#include "base/hub.h"
#include "base/log.h"
#include "route/stats.h"
#include "net/unicast.h"
#include "route/listen.h"
#include "store/store.h"
#include "store/capture.h"
#include "store/stream.h"

/*---- Listeners ----------------------------------------------------------*/

/* Opens a non-blocking TCP listener on cfg->bind:cfg->port ("*" = every
 * IPv4 address). Returns the fd or -1 after logging why. */
static int listen_tcp(const config *cfg) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    const char *host = strcmp(cfg->bind, "*") == 0 ? NULL : cfg->bind;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        log_warning("Could not resolve bind address '%s': %s", cfg->bind, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, cfg->tcp_backlog) == 0) break;
        log_warning("Could not listen on %s:%d: %s", cfg->bind, cfg->port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Opens a unix-socket listener at cfg->unixsocket with cfg->unixsocketperm. */
static int listen_unix(const config *cfg) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(cfg->unixsocket) >= sizeof sa.sun_path) {
        log_warning("unixsocket path too long: %s", cfg->unixsocket);
        return -1;
    }
    strcpy(sa.sun_path, cfg->unixsocket);
    unlink(cfg->unixsocket);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, cfg->tcp_backlog) != 0) {
        log_warning("Could not listen on unix socket %s: %s", cfg->unixsocket, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    chmod(cfg->unixsocket, (mode_t)cfg->unixsocketperm);
    return fd;
}

/*---- Loop hooks ---------------------------------------------------------*/

/* 1 while some connection still has output to write. */
static int output_pending(hub *h) {
    for (conn *c = h->conns; c; c = c->next)
        if (c->obytes && !(c->flags & CONN_CLOSING)) return 1;
    return 0;
}

/* Before the loop blocks: write everything queued this iteration, then free
 * the connections closed meanwhile; during shutdown, stop once all is out. */
static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)revents;
    hub *h = w->data;
    conn_run_unparked(h);
    conn_flush_pending(h);
    conn_free_closing(h);
    if (h->shutting_down && !output_pending(h)) ev_break(loop, EVBREAK_ALL);
}

static void cron_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    conn_cron(w->data);
}

static void shutdown_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents, (void)w;
    log_warning("Shutdown timeout reached with output still pending; exiting anyway");
    ev_break(loop, EVBREAK_ALL);
}

/* SIGTERM/SIGINT: stop accepting and reading, then let flush_cb end the loop
 * once pending output is written, or the deadline passes. */
static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)revents;
    hub *h = w->data;
    if (h->shutting_down) return;
    log_notice("Received %s, shutting down (flushing output for up to %llds)",
               w->signum == SIGINT ? "SIGINT" : "SIGTERM", h->cfg.shutdown_timeout);
    h->shutting_down = 1;
    if (h->tcp_fd >= 0) ev_io_stop(loop, &h->tcp_w);
    if (h->unix_fd >= 0) ev_io_stop(loop, &h->unix_w);
    conn_stop_accept_backoff(h);
    for (conn *c = h->conns; c; c = c->next) ev_io_stop(loop, &c->rw);
    ev_timer_init(&h->shutdown_w, shutdown_deadline_cb, (double)h->cfg.shutdown_timeout, 0);
    h->shutdown_w.data = h;
    ev_timer_start(loop, &h->shutdown_w);
}

static void hup_cb(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)loop, (void)revents;
    hub *h = w->data;
    log_notice("Received SIGHUP, rescanning handlers in %s", h->cfg.handlers_dir);
    if (h->handlers) handlers_rescan(h->handlers);
}

/* The loop's cached time in ms: event timestamps (see router_set_clock). */
static double loop_clock_ms(void *ctx) {
    return ev_now(((hub *)ctx)->loop) * 1000.0;
}

/*---- The store ----------------------------------------------------------*/

/* A transaction committed: entries may leave memory, gated replies go out. */
static void store_committed_cb(void *ctx, uint64_t seq) {
    hub *h = ctx;
    if (h->streams) streams_committed(h->streams, seq);
    conn_release_gates(h, seq);
}

/* Batches failed: no client gets an ack for them (their connections close);
 * writes are refused until the store recovers. */
static void store_failed_cb(void *ctx, uint64_t first, uint64_t last, const char *why) {
    hub *h = ctx;
    log_warning("Store failure (batches %llu..%llu not stored): %s; writes refused until it recovers",
                (unsigned long long)first, (unsigned long long)last, why ? why : "unknown");
    conn_fail_gates(h, first, why);
}

/* The store works again: the database is the truth, reload the model. */
static void store_recovered_cb(void *ctx) {
    hub *h = ctx;
    char *err = NULL;
    if (h->streams && streams_load(h->streams, &err) < 0) {
        log_warning("Store recovered but reloading the streams failed: %s", err ? err : "?");
        free(err);
        return;
    }
    capture_rebuild(h->capture);
    log_notice("Store recovered; streams reloaded from the database");
}

/* Opens the store in cfg.dir and loads the stream model. Returns 0, or -1
 * after logging why. */
static int open_store(hub *h) {
    store_callbacks cb = {store_committed_cb, store_failed_cb, store_recovered_cb, h};
    int dur = !strcasecmp(h->cfg.durability, "fsync") ? STORE_DURABILITY_FSYNC : STORE_DURABILITY_OS;
    char *err = NULL;
    if (!(h->store = store_open(h->loop, h->cfg.dir, dur, &cb, &err))) {
        log_warning("Cannot open the stream store in '%s': %s", h->cfg.dir, err ? err : "unknown error");
        free(err);
        return -1;
    }
    h->streams = streams_new(h->store, (size_t)h->cfg.stream_cache_memory, (size_t)h->cfg.stream_max_pending,
                             cmd_stream_wake);
    if (!h->streams) {
        log_warning("out of memory");
        return -1;
    }
    if (!(h->capture = capture_new(h->loop, h->streams, h->router, cmd_stream_key_appended))) {
        log_warning("out of memory");
        return -1;
    }
    double t0 = ev_time();
    if (streams_load(h->streams, &err) < 0) {
        log_warning("Cannot load the streams from '%s': %s", h->cfg.dir, err ? err : "unknown error");
        free(err);
        return -1;
    }
    capture_rebuild(h->capture);
    streams_info si;
    streams_get_info(h->streams, &si);
    log_notice("Store %s/luahub.db open (durability %s): %zu streams, %llu entries (%llu in memory) loaded in %.0f ms",
               h->cfg.dir, h->cfg.durability, si.streams, (unsigned long long)si.entries_stored,
               (unsigned long long)si.entries_memory, (ev_time() - t0) * 1000.0);
    return 0;
}

/*---- File descriptors ---------------------------------------------------*/

#define RESERVED_FDS 32 /* descriptors kept for listeners, logs, handler files (as Redis) */

/* As Redis's adjustOpenFilesLimit: raises RLIMIT_NOFILE to maxclients +
 * RESERVED_FDS where allowed (stepping down until the kernel agrees), and if
 * that falls short, lowers maxclients to fit, saying so. Returns 0, or -1 if
 * not even one client fits. */
static int fit_maxclients(config *cfg) {
    rlim_t want = (rlim_t)cfg->maxclients + RESERVED_FDS;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_warning("Unable to obtain the current NOFILE limit (%s), assuming 1024", strerror(errno));
        rl.rlim_cur = rl.rlim_max = 1024;
    }
    rlim_t old = rl.rlim_cur;
    if (old >= want) return 0;
    rlim_t got = old;
    int setrlimit_error = 0;
    for (rlim_t try = want; try > old; try = try > 16 ? try - 16 : 0) {
        struct rlimit n = {try, rl.rlim_max >= try ? rl.rlim_max : try};
        if (setrlimit(RLIMIT_NOFILE, &n) == 0) {
            got = try;
            break;
        }
        setrlimit_error = errno;
        if (try <= 16) break;
    }
    if (got > old)
        log_notice("Increased maximum number of open files to %llu (it was originally set to %llu).",
                   (unsigned long long)got, (unsigned long long)old);
    if (got >= want) return 0;
    if (got <= RESERVED_FDS) {
        log_warning("Your current 'ulimit -n' of %llu is not enough for the server to start. Please increase your "
                    "open file limit to at least %llu. Exiting.",
                    (unsigned long long)old, (unsigned long long)want);
        return -1;
    }
    long long fit = (long long)(got - RESERVED_FDS);
    log_warning("You requested maxclients of %lld requiring at least %llu max file descriptors.", cfg->maxclients,
                (unsigned long long)want);
    log_warning("Server can't set maximum open files to %llu because of OS error: %s.", (unsigned long long)want,
                strerror(setrlimit_error ? setrlimit_error : EPERM));
    log_warning("Current maximum open files is %llu. maxclients has been reduced to %lld to compensate for low "
                "ulimit. If you need higher maxclients increase 'ulimit -n'.",
                (unsigned long long)got, fit);
    cfg->maxclients = fit;
    return 0;
}

/*---- Main ---------------------------------------------------------------*/

int main(int argc, char **argv) {
    static hub H;
    hub *h = &H;
#ifdef __GLIBC__
    /* Blocks of 256 KB and more (big payloads, queued events, Lua strings)
     * come from mmap and go back to the kernel when freed. A fixed value
     * also turns off glibc's dynamic threshold, which after a big free
     * would keep later big blocks in the heap, where RSS stays high. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            config_usage();
            return 0;
        }
        if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-v")) {
            printf("luahub %s\n", LUAHUB_VERSION);
            return 0;
        }
    }
    config_defaults(&h->cfg);
    char err[512];
    if (config_from_args(&h->cfg, argc - 1, argv + 1, err, sizeof err)) {
        fprintf(stderr, "luahub: %s\n", err);
        return 1;
    }
    log_level = h->cfg.loglevel;
    signal(SIGPIPE, SIG_IGN);
    /* past RLIMIT_FSIZE a write fails (EFBIG: a store failure, reported and
     * recovered from) instead of killing the hub */
    signal(SIGXFSZ, SIG_IGN);
    if (fit_maxclients(&h->cfg)) return 1;

    h->loop = ev_default_loop(EVFLAG_AUTO);
    h->start_time = ev_now(h->loop);
    h->tcp_fd = h->unix_fd = -1;
    commands_init();
    /* how the lower layers reach the higher ones (base/hub.h) */
    h->up.dispatch = commands_dispatch;
    h->up.call_runnable = commands_call_runnable;
    h->up.handler_replaced = handler_upcall_replaced;
    h->up.handler_name = handler_upcall_name;
    h->up.stream_appended = cmd_stream_key_appended;
    h->listeners = listen_new();
    h->router = router_new();
    if (h->router) stats_set_max_names(router_stats(h->router), (size_t)h->cfg.stats_max_names);
    if (h->router) stats_set_max_name_len(router_stats(h->router), (size_t)h->cfg.stats_max_name_len);
    if (!h->router || !h->listeners) {
        log_warning("out of memory");
        return 1;
    }
    router_set_clock(h->router, loop_clock_ms, h);
    if (open_store(h) < 0) {
        store_close(h->store);
        return 1;
    }

    if (h->cfg.port && (h->tcp_fd = listen_tcp(&h->cfg)) < 0) return 1;
    if (h->cfg.unixsocket[0] && (h->unix_fd = listen_unix(&h->cfg)) < 0) return 1;
    if (h->tcp_fd < 0 && h->unix_fd < 0) {
        log_warning("Nothing to listen on: set port or unixsocket");
        return 1;
    }
    if (h->tcp_fd >= 0) {
        ev_io_init(&h->tcp_w, conn_accept_cb, h->tcp_fd, EV_READ);
        h->tcp_w.data = h;
        ev_io_start(h->loop, &h->tcp_w);
    }
    if (h->unix_fd >= 0) {
        ev_io_init(&h->unix_w, conn_accept_cb, h->unix_fd, EV_READ);
        h->unix_w.data = h;
        ev_io_start(h->loop, &h->unix_w);
    }

    ev_signal_init(&h->sigterm_w, stop_cb, SIGTERM);
    ev_signal_init(&h->sigint_w, stop_cb, SIGINT);
    ev_signal_init(&h->sighup_w, hup_cb, SIGHUP);
    h->sigterm_w.data = h->sigint_w.data = h->sighup_w.data = h;
    ev_signal_start(h->loop, &h->sigterm_w);
    ev_signal_start(h->loop, &h->sigint_w);
    ev_signal_start(h->loop, &h->sighup_w);
    ev_prepare_init(&h->flush_w, flush_cb);
    h->flush_w.data = h;
    ev_prepare_start(h->loop, &h->flush_w);
    ev_timer_init(&h->cron_w, cron_cb, 1.0, 1.0);
    h->cron_w.data = h;
    ev_timer_start(h->loop, &h->cron_w);

    h->handlers = handlers_new(h);
    h->unicast = unicast_new(h);

    log_notice("luahub %s started, pid %d, listening on %s:%d%s%s", LUAHUB_VERSION, (int)getpid(), h->cfg.bind,
               h->cfg.port, h->unix_fd >= 0 ? " and " : "", h->unix_fd >= 0 ? h->cfg.unixsocket : "");
    log_notice("Ready to accept connections");
    ev_run(h->loop, 0);

    /* Shutdown: the store commits what it has (its last callbacks release
     * gated replies), then every connection closes, then the runtime. */
    capture_free(h->capture); /* its cold reads are cancelled before the store closes */
    h->capture = NULL;
    consume_release_reads(); /* and the Lua consumers' */
    conn_flush_pending(h);
    store_close(h->store);
    conn_flush_pending(h);
    for (conn *c = h->conns; c; c = c->next) conn_close(c, NULL);
    conn_free_closing(h);
    handlers_free(h->handlers); /* before unicast_free: closing versions forget their hub.call waits */
    unicast_free(h->unicast);
    listen_free(h->listeners);
    h->unicast = NULL;
    router_free(h->router);
    streams_free(h->streams);
    h->streams = NULL;
    h->store = NULL;
    commands_free();
    conn_release_caches();
    if (h->tcp_fd >= 0) close(h->tcp_fd);
    if (h->unix_fd >= 0) {
        close(h->unix_fd);
        unlink(h->cfg.unixsocket);
    }
    ev_loop_destroy(h->loop);
    log_notice("luahub is now ready to exit, bye bye...");
    return 0;
}
