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

#include "hub.h"

/* Creates the runtime and loads the handlers directory. A handler that fails
 * to load is reported and skipped; only a fatal condition (no memory, the
 * directory is not readable) returns NULL with a logged reason. */
handlers *handlers_new(hub *h);

/* Rescans the directory: reloads changed files, loads new ones, unloads
 * deleted ones (SIGHUP). */
void handlers_rescan(handlers *hs);

void handlers_free(handlers *hs);

#endif
