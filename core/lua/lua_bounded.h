/* lua_bounded.h -- library functions a handler gets in place of the stock
 * ones whose C loops ignore the instruction budget, the time slice and the
 * memory cap:
 *
 *   string.find, string.match, string.gmatch, string.gsub
 *                 our own matcher with Lua 5.4's pattern semantics (results
 *                 and error messages), counting steps; plain find is memmem
 *                 (linear). A gsub replacement string is counted too.
 *   string.rep    an empty result returns at once; the size is checked
 *                 against the memory cap before copying
 *                 (doubling memcpy, linear).
 *   table.move    the stock function in chunks of LB_STEPS elements.
 *   table.sort    without a comparator, a table longer than LB_STEPS is
 *                 sorted with a C comparator that counts comparisons.
 *   utf8.len, utf8.offset, table.insert, table.remove
 *                 the stock functions, followed by one check when the first
 *                 operand was long (LB_BIG bytes, LB_STEPS elements): linear,
 *                 allocating nothing, so without it a loop ran hundreds of
 *                 them between two looks at the clock (seconds). Plain find
 *                 checks once after a scan of LB_BIG bytes or more.
 *
 * Every LB_STEPS steps they call opts->check(ctx, L, 0), which raises when
 * the invocation is past its time slice (handler_lua.c). The same counts
 * bound what the stock versions spend in the loop: seconds to hours for
 * string.rep("", 1e9), table.move({}, 1, 1e9, 2) or a backtracking pattern. */
#ifndef LUAHUB_LUA_BOUNDED_H
#define LUAHUB_LUA_BOUNDED_H

#include <lua.h>

#include "sandbox.h"

/* Steps between two calls of opts->check. */
#define LB_STEPS 4096
/* A string this long makes a linear call look at the clock once. */
#define LB_BIG (64 * 1024)

/* Replaces the functions above in the string and table libraries of L (the
 * global tables `string` and `table`, which string methods share). Call in
 * protected mode; o must outlive L. */
void lbounded_open(lua_State *L, const sandbox_opts *o);

#endif
