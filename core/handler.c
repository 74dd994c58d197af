/* handler.c -- placeholder for the Lua handler runtime (being written). */
#include "handler.h"

#include <stdlib.h>

handlers *handlers_new(hub *h) { (void)h; return NULL; }
void handlers_rescan(handlers *hs) { (void)hs; }
void handlers_free(handlers *hs) { (void)hs; }
