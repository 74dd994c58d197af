/* hubmod.h -- the `hub` Lua module a handler gets from require("hub"):
 *
 *   hub.publish(name, data) -> receivers   through router_publish, like a
 *                                          client's PUBLISH (data: string or
 *                                          number, sent as its tostring)
 *   hub.log(level, msg)                    debug | info | notice | warning,
 *                                          rate-limited per handler
 *   hub.now() -> ms                        integer ms since the epoch
 *   hub.after(ms, fn) -> timer             fn() once, after ms (>= 0)
 *   hub.every(ms, fn) -> timer             fn() every ms (> 0)
 *   timer:cancel() / hub.cancel(timer)     true if it was still pending
 *   hub.name, hub.version                  the handler's name, its version
 *
 * Each timer is one ev_timer. A timer runs until it fires (after), is
 * cancelled, or its version is closed (reload, unload, exit): a reload does
 * not carry timers over; snapshot/on_reload re-arm what should survive.
 * Dropping the handle does not cancel a timer. Timers count against the
 * handler's memory limit. */
#ifndef LUAHUB_HUBMOD_H
#define LUAHUB_HUBMOD_H

#include <lua.h>

#include "handler_lua.h"

/* The module's loader (package.preload.hub). */
int luaopen_hub(lua_State *L);

/* Stops and frees every timer of v; their handles become inert. Called
 * before v's state is closed. */
void hubmod_close_timers(hversion *v);

/* hub.call(name, data [, timeout_ms]) -> reply | nil, err. The reply is
 * waited for without blocking the hub: on_event, on_call and timer
 * callbacks run as coroutines, and hub.call suspends the calling one until
 * the reply, the error, the timeout (call-timeout by default) or the
 * listener's disconnect. A Lua listener answers at once unless its own
 * on_call waits in hub.call; its caller (a coroutine, or a client's
 * HUB.CALL) then waits for it in turn, and gets its reply or error when it
 * finishes. Only those callbacks can wait: elsewhere (on_reload, inside a
 * coroutine of the handler's own) a call that would wait returns nil and an
 * error, and so does a call back into a handler that is already running (a
 * cycle). */

/* Records the registry slot of the coroutine waiting in w (handler_lua.c,
 * once the coroutine has yielded). */
void hubmod_wait_anchor(hwait *w, int co_ref);

/* Marks w as the wait of an on_call coroutine whose result answers request
 * `answer` (unicast_complete; 0: nobody waits for it, the result is
 * dropped). */
void hubmod_wait_call(hwait *w, uint64_t answer);

/* Marks w as the wait of a consumer's on_event, delivery `task`
 * (handler_consume.c): a timeout fails the delivery, the end of the
 * coroutine finishes it, a dropped wait abandons it. */
void hubmod_wait_task(hwait *w, uint64_t task);

/* Forgets every coroutine of v waiting in hub.call (their replies will be
 * dropped). Called before v's state is closed: at unload or shutdown (a
 * reload retires a version with waiters instead, see handler_retire, and
 * closes it once the last one has finished). */
void hubmod_close_waits(hversion *v);

#endif
