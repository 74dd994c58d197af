/* cmd_hub.c -- placeholder for the HUB.* commands (being written). */
#include "commands.h"
#include "reply.h"

void cmd_hub_call(conn *c, int argc, const hstr *argv) { (void)argc; (void)argv; reply_error(c, "ERR no handlers"); }
void cmd_hub_handlers(conn *c, int argc, const hstr *argv) { (void)argc; (void)argv; reply_array(c, 0); }
void cmd_hub_reload(conn *c, int argc, const hstr *argv) { (void)argc; (void)argv; reply_error(c, "ERR no handlers"); }
void info_handlers_section(hub *h, char *buf, size_t *len, size_t cap) { (void)h; (void)buf; (void)len; (void)cap; }
