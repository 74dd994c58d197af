/* test_handler_runtime.c -- the handler runtime in-process, on a real libev
 * loop and router but without sockets: delivery never runs Lua, queued
 * events are run by the loop in publish order, a reload switches versions
 * between two events without losing or repeating any, limits hold, and
 * everything is freed (the test runs under ASan/LSan). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua/handler_runtime.h"
#include "base/log.h"
#include "unit.h"

/*---- Fixture: a hub without sockets -------------------------------------------------*/

typedef struct collector {
    subscriber sub;
    char got[4096][48];
    int n;
} collector;

static void collect_cb(subscriber *s, const delivery *d) {
    collector *c = s->udata;
    if (c->n < 4096) snprintf(c->got[c->n++], sizeof c->got[0], "%.*s", (int)d->mlen, d->msg);
}

typedef struct fixture {
    hub h;
    collector out;
} fixture;

static fixture F;

static void fx_write(const char *name, const char *text) {
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", F.h.cfg.handlers_dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void fx_remove(const char *name) {
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", F.h.cfg.handlers_dir, name);
    unlink(path);
}

/* A fresh hub whose handlers dir holds `name` with `text` (if name). */
static void fx_init(const char *name, const char *text) {
    memset(&F, 0, sizeof F);
    log_level = LOG_WARNING + 1; /* quiet */
    config_defaults(&F.h.cfg);
    snprintf(F.h.cfg.handlers_dir, sizeof F.h.cfg.handlers_dir, "/tmp/luahub-rt-XXXXXX");
    if (!mkdtemp(F.h.cfg.handlers_dir)) abort();
    F.h.loop = ev_loop_new(EVFLAG_AUTO);
    F.h.router = router_new();
    F.h.listeners = listen_new();
    F.out.sub.deliver = collect_cb;
    F.out.sub.udata = &F.out;
    router_subscribe(F.h.router, &F.out.sub, "out", 3);
    if (name) fx_write(name, text);
}

static void fx_start(void) { F.h.handlers = handlers_new(&F.h); }

/* Turns the loop until nothing is queued (bounded). */
static void fx_spin(void) {
    for (int i = 0; i < 1000 && F.h.handlers->ready_head; i++) ev_run(F.h.loop, EVRUN_NOWAIT);
    ev_run(F.h.loop, EVRUN_NOWAIT);
}

static void fx_free(void) {
    handlers_free(F.h.handlers);
    router_unsubscribe_all(F.h.router, &F.out.sub);
    router_free(F.h.router);
    listen_free(F.h.listeners);
    ev_loop_destroy(F.h.loop);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", F.h.cfg.handlers_dir);
    if (system(cmd) != 0) abort();
}

static void publish(const char *chan, const char *msg) {
    router_publish(F.h.router, chan, strlen(chan), msg, strlen(msg));
}

static handler *find(const char *name) { return handlers_find(F.h.handlers, name, strlen(name)); }

static int reload(const char *name, int force) {
    return handlers_reload_name(F.h.handlers, name, strlen(name), force, NULL, NULL);
}

#define RELAY(tag)                                                                              \
    "local hub = require('hub')\n"                                                              \
    "return { subscribe = { 'in' }, on_event = function(ev) hub.publish('out', '" tag "' .. ev.data) end,\n" \
    "  snapshot = function() return {} end, on_reload = function() end }\n"

/*---- Tests -------------------------------------------------------------------------*/

TEST(delivery_only_queues_and_the_loop_runs_events_in_order) {
    fx_init("relay.lua", RELAY("a:"));
    fx_start();
    char msg[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(msg, sizeof msg, "%d", i);
        publish("in", msg);
    }
    CHECK(F.out.n == 0);                        /* no Lua ran inside router_publish */
    CHECK(find("relay")->queue.count == 1000);
    fx_spin();
    CHECK(F.out.n == 1000);
    int ordered = 1;
    for (int i = 0; i < F.out.n; i++) {
        snprintf(msg, sizeof msg, "a:%d", i);
        ordered &= strcmp(F.out.got[i], msg) == 0;
    }
    CHECK(ordered);
    CHECK(find("relay")->events == 1000 && find("relay")->queue.count == 0);
    CHECK(!ev_is_active(&F.h.handlers->idle_w)); /* the loop may block again */
    fx_free();
}

TEST(events_queued_before_a_reload_run_once_on_the_new_version) {
    fx_init("relay.lua", RELAY("v1:"));
    fx_start();
    publish("in", "0");
    fx_spin();
    char msg[16];
    for (int i = 1; i <= 50; i++) {
        snprintf(msg, sizeof msg, "%d", i);
        publish("in", msg);
    }
    fx_write("relay.lua", RELAY("v2:"));
    CHECK(reload("relay", 0) == 0);
    CHECK(find("relay")->version == 2 && find("relay")->queue.count == 50);
    publish("in", "51");
    fx_spin();
    CHECK(F.out.n == 52);
    CHECK(strcmp(F.out.got[0], "v1:0") == 0);
    int ok = 1;
    for (int i = 1; i <= 51; i++) {
        snprintf(msg, sizeof msg, "v2:%d", i);
        ok &= strcmp(F.out.got[i], msg) == 0;
    }
    CHECK(ok);
    fx_free();
}

TEST(a_failed_reload_keeps_the_old_version_and_the_queue) {
    fx_init("relay.lua", RELAY("v1:"));
    fx_start();
    for (int i = 0; i < 10; i++) publish("in", "x");
    fx_write("relay.lua", "return {");
    CHECK(reload("relay", 0) == 0);
    handler *h = find("relay");
    CHECK(h->version == 1 && h->state == HSTATE_RELOAD_FAILED && h->queue.count == 10);
    CHECK(h->last_error && strstr(h->last_error, "relay.lua:1:"));
    fx_spin();
    CHECK(F.out.n == 10 && strcmp(F.out.got[9], "v1:x") == 0);
    fx_free();
}

TEST(queue_limit_drops_and_counts) {
    fx_init("relay.lua", RELAY(""));
    F.h.cfg.handler_queue_limit = 5;
    fx_start();
    for (int i = 0; i < 20; i++) publish("in", "x");
    CHECK(find("relay")->queue.count == 5 && find("relay")->dropped == 15);
    fx_spin();
    CHECK(F.out.n == 5 && find("relay")->events == 5);
    fx_free();
}

TEST(an_event_matching_several_patterns_runs_once_reporting_the_first) {
    fx_init("m.lua", "local hub = require('hub')\n"
                     "return { subscribe = { 'a*', '*b', 'ab' },\n"
                     "  on_event = function(ev) hub.publish('out', ev.pattern) end }\n");
    fx_start();
    publish("ab", "");
    publish("xb", "");
    fx_spin();
    CHECK(F.out.n == 2);
    CHECK(strcmp(F.out.got[0], "a*") == 0 && strcmp(F.out.got[1], "*b") == 0);
    fx_free();
}

TEST(memory_cap_holds_and_the_state_survives) {
    fx_init("hog.lua", "local keep\n"
                       "return { listen = { 'hog', 'ok' }, on_call = function(ev)\n"
                       "  if ev.name == 'ok' then keep = nil return 'ok' end\n"
                       "  keep = {} while true do keep[#keep + 1] = string.rep('x', 1000) .. #keep end end }\n");
    F.h.cfg.handler_memory_limit = 512 * 1024;
    fx_start();
    handler *h = find("hog");
    char *reply = NULL, *err = NULL;
    size_t rlen;
    hwait *pending = NULL;
    CHECK(handler_call(h, "hog", 3, "", 0, &reply, &rlen, &err, &pending) == -1);
    CHECK(err && strstr(err, "not enough memory"));
    CHECK(h->cur->mem_used <= h->cur->mem_limit);
    free(err);
    err = NULL;
    CHECK(handler_call(h, "ok", 2, "", 0, &reply, &rlen, &err, &pending) == 0);
    CHECK(pending == NULL);
    CHECK(reply && strcmp(reply, "ok") == 0);
    free(reply);
    CHECK(h->errors == 1);
    fx_free();
}

TEST(instruction_budget_stops_loops_even_under_pcall) {
    fx_init("spin.lua", "return { listen = { 'a', 'b' }, on_call = function(ev)\n"
                        "  if ev.name == 'a' then while true do end end\n"
                        "  while true do pcall(function() while true do end end) end end }\n");
    F.h.cfg.handler_instruction_limit = 100000;
    fx_start();
    handler *h = find("spin");
    for (int i = 0; i < 2; i++) {
        char *reply = NULL, *err = NULL;
        size_t rlen;
        hwait *pending = NULL;
        CHECK(handler_call(h, i ? "b" : "a", 1, "", 0, &reply, &rlen, &err, &pending) == -1);
        CHECKF(err && strstr(err, "spin.lua:") && strstr(err, "instruction limit exceeded"), "%s", err);
        free(err);
    }
    fx_free();
}

TEST(timers_fire_on_the_loop_and_stop_with_their_version) {
    fx_init("t.lua", "local hub = require('hub')\n"
                     "hub.after(1, function() hub.publish('out', 'after v' .. hub.version) end)\n"
                     "hub.every(1, function() end)\n"
                     "hub.after(100000, function() end)\n"
                     "return {}\n");
    fx_start();
    handler *h = find("t");
    CHECK(h->cur->ntimers == 3);
    for (int i = 0; i < 200 && F.out.n == 0; i++) ev_run(F.h.loop, EVRUN_ONCE);
    CHECK(F.out.n == 1 && strcmp(F.out.got[0], "after v1") == 0);
    CHECK(h->cur->ntimers == 2);
    size_t mem = h->cur->mem_used;
    CHECK(reload("t", 1) == 0); /* the old version's timers stop; v2 makes its own */
    CHECK(h->version == 2 && h->cur->ntimers == 3);
    CHECK(h->cur->mem_used <= mem + 4096);
    fx_free(); /* pending timers are freed with their version (LSan checks) */
}

TEST(unload_removes_subscriptions_names_and_queue) {
    fx_init("gone.lua", "return { subscribe = { 'in', 'x.*' }, on_event = function() end,\n"
                        "         listen = { 'gone' }, on_call = function() return '' end }\n");
    fx_start();
    CHECK(router_pattern_count(F.h.router) == 2 && listen_count(F.h.handlers->listeners) == 1);
    publish("in", "queued");
    fx_remove("gone.lua");
    CHECK(reload("gone", 0) == 0);
    CHECK(find("gone") == NULL);
    CHECK(router_pattern_count(F.h.router) == 0 && listen_count(F.h.handlers->listeners) == 0);
    CHECK(!F.h.handlers->ready_head);
    CHECK(reload("gone", 0) == -2);
    CHECK(reload("../x", 0) == -1);
    fx_free();
}

TEST(reload_all_loads_new_reloads_changed_and_unloads_deleted) {
    fx_init("a.lua", "return {}");
    fx_write("b.lua", "return {}");
    fx_start();
    fx_write("a.lua", "return {} -- changed");
    fx_write("c.lua", "return {}");
    fx_remove("b.lua");
    CHECK(handlers_reload_all(F.h.handlers, 0, NULL, NULL) == 0);
    CHECK(find("a")->version == 2 && find("b") == NULL && find("c")->version == 1);
    CHECK(handlers_reload_all(F.h.handlers, 0, NULL, NULL) == 0);
    CHECK(find("a")->version == 2 && find("c")->version == 1);
    fx_free();
}

TEST(finalizers_at_close_cannot_use_the_hub) {
    fx_init("gc.lua", "local hub = require('hub')\n"
                      "local keep = setmetatable({}, { __gc = function()\n"
                      "  hub.publish('out', 'from gc') hub.after(1, print) end })\n"
                      "return { snapshot = function() return { keep ~= nil } end }\n");
    fx_start();
    fx_free();
    CHECK(F.out.n == 0);
}

UNIT_MAIN()
