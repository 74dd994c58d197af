/* handler.h -- the Lua handler runtime as the rest of the core sees it.
 * (Contract between the core and the runtime; the runtime's internals live
 * in handler*.c / hubmod.c / sandbox.c / cmd_hub.c.)
 *
 * The core calls: handlers_new() once after the router exists (loads every
 * *.lua in cfg.handlers_dir), handlers_rescan() on SIGHUP, handlers_free() at
 * exit. HUB.* commands and the INFO "# Handlers" section are implemented by
 * the runtime (commands.h). */
#ifndef LUAHUB_HANDLER_H
#define LUAHUB_HANDLER_H

#include "base/hub.h"

/* Creates the runtime and loads the handlers directory. A handler that fails
 * to load is reported (HUB.HANDLERS shows it as failed) and does not run.
 * Only running out of memory returns NULL, with a logged reason; a missing
 * or unreadable directory is logged and the runtime starts empty, so a later
 * SIGHUP or HUB.RELOAD can pick the directory up. */
handlers *handlers_new(hub *h);

/* Rescans the directory: reloads changed files (by content, including the
 * lib files they required), loads new ones, unloads deleted ones (SIGHUP).
 * Never fails; each outcome is logged. */
void handlers_rescan(handlers *hs);

void handlers_free(handlers *hs);

/* Upcalls for the layers below (hub->up, wired by main.c): a client took
 * over listen name `name` from handler `owner` (its on_replaced runs), and a
 * handler's name for messages. owner is a listen registration's owner of
 * kind LISTENER_HANDLER. */
void handler_upcall_replaced(void *owner, const char *name, size_t len);
const char *handler_upcall_name(const void *owner);

#endif
