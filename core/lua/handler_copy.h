/* handler_copy.h -- state handover between two versions of a handler: a deep
 * copy of plain data from one lua_State into another.
 *
 * Plain data is nil, booleans, numbers, strings and tables of them, with
 * string, number or boolean keys. Functions, userdata (timer handles), threads
 * and cycles are refused, because they cannot exist in another state. Tables
 * are read raw (metatables are not copied); a table reached twice by two paths
 * is copied twice (it is not a cycle). These are the rules of the test kit's
 * hubtest.copy. */
#ifndef LUAHUB_HANDLER_COPY_H
#define LUAHUB_HANDLER_COPY_H

#include <lua.h>

/* Deepest table nesting a handover accepts. */
#define HCOPY_MAX_DEPTH 100

/* Pushes onto `to` a copy of the value at index idx of `from`. On data that
 * is not plain, raises a Lua error in `to` whose message names the path from
 * `root` (e.g. "snapshot().pending[1].timer is a userdata: ..."). Must run in
 * protected mode on `to`; on an error the caller restores `from`'s stack top,
 * which the copy may leave higher. `from` is only read. */
void hcopy_value(lua_State *from, int idx, lua_State *to, const char *root);

#endif
