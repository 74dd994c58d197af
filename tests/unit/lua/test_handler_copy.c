/* test_handler_copy.c -- state handover between two lua_States: plain data
 * is copied deeply; anything else is refused with the path to it. */
#include <lauxlib.h>
#include <lualib.h>

#include "lua/handler_copy.h"
#include "unit.h"

/* Runs `expr` in `from`, copies its value into a fresh state under pcall
 * and runs `check` there with the copy as `v`. Returns "ok", the check's
 * failure, or the copy's error message (static buffer). */
static char result[512];

static int do_copy(lua_State *to) {
    lua_State *from = lua_touserdata(to, 1);
    hcopy_value(from, -1, to, "snapshot()");
    return 1;
}

static const char *copy_and_check(const char *expr, const char *check) {
    lua_State *from = luaL_newstate(), *to = luaL_newstate();
    luaL_openlibs(from);
    luaL_openlibs(to);
    if (luaL_dostring(from, expr) != LUA_OK) {
        snprintf(result, sizeof result, "setup: %s", lua_tostring(from, -1));
        goto out;
    }
    int top = lua_gettop(from);
    lua_pushcfunction(to, do_copy);
    lua_pushlightuserdata(to, from);
    if (lua_pcall(to, 1, 1, 0) != LUA_OK) {
        snprintf(result, sizeof result, "%s", lua_tostring(to, -1));
        if (lua_gettop(from) < top) snprintf(result, sizeof result, "from stack damaged");
        goto out;
    }
    lua_setglobal(to, "v");
    if (luaL_dostring(to, check) != LUA_OK) snprintf(result, sizeof result, "check: %s", lua_tostring(to, -1));
    else snprintf(result, sizeof result, "ok");
out:
    lua_close(from);
    lua_close(to);
    return result;
}

#define EXPECT(expr, check, want)                                                              \
    do {                                                                                       \
        const char *got = copy_and_check(expr, check);                                         \
        CHECKF(strstr(got, want) != NULL, "%s -> %s (want %s)", expr, got, want);              \
    } while (0)

TEST(scalars) {
    EXPECT("return nil", "assert(v == nil)", "ok");
    EXPECT("return 42", "assert(math.type(v) == 'integer' and v == 42)", "ok");
    EXPECT("return 2.5", "assert(math.type(v) == 'float' and v == 2.5)", "ok");
    EXPECT("return 0/0", "assert(v ~= v)", "ok");
    EXPECT("return false", "assert(v == false)", "ok");
    EXPECT("return 'a\\0b'", "assert(v == 'a\\0b')", "ok");
}

TEST(nested_tables_with_every_kind_of_key) {
    EXPECT("return { list = {1, 2, 3}, m = { a = { b = { c = 'deep' } } }, [1.5] = 'f', [true] = 't', [7] = 's' }",
           "assert(#v.list == 3 and v.list[3] == 3 and v.m.a.b.c == 'deep' and v[1.5] == 'f' and v[true] == 't' "
           "and v[7] == 's')",
           "ok");
}

TEST(metatables_are_not_copied_and_access_is_raw) {
    EXPECT("return setmetatable({ x = 1 }, { __index = function() error('touched') end, __pairs = error })",
           "assert(getmetatable(v) == nil and v.x == 1 and v.y == nil)", "ok");
}

TEST(shared_tables_are_copied_twice_not_refused) {
    EXPECT("local s = { 1 } return { a = s, b = s }", "assert(v.a ~= v.b and v.a[1] == 1 and v.b[1] == 1)", "ok");
}

TEST(refusals_name_the_path) {
    EXPECT("return { f = print }", "", "snapshot().f is a function");
    EXPECT("return { list = { 1, { co = coroutine.create(print) } } }", "", "snapshot().list[2].co is a thread");
    EXPECT("return { ['a b'] = io.stdout }", "", "snapshot()[\"a b\"] is a userdata");
    EXPECT("local t = {} t.x = { y = t } return t", "", "snapshot().x.y is a cycle");
    EXPECT("return { [{}] = 1 }", "", "snapshot() has a table key");
    EXPECT("return print", "", "snapshot() is a function");
}

TEST(depth_is_bounded) {
    EXPECT("local t = {} for i = 1, 99 do t = { t } end return t", "", "ok");
    EXPECT("local t = {} for i = 1, 100 do t = { t } end return t", "", "nested more than 100 tables deep");
}

UNIT_MAIN()
