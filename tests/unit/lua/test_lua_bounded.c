/* test_lua_bounded.c -- the bounded string/table functions (lua_bounded.h):
 * a differential test against the stock string library over random
 * patterns and subjects, and proofs that the loops call the check. */
#include <lauxlib.h>
#include <lualib.h>
#include <time.h>

#include "lua/lua_bounded.h"
#include "unit.h"

static int checks, raise_after;

/* opts.check: counts, and raises once raise_after calls have been made. */
static void count_check(void *ctx, lua_State *L, int cost) {
    (void)ctx, (void)cost;
    if (++checks == raise_after) luaL_error(L, "stopped by check");
}

static size_t room = (size_t)-1;
static size_t mem_cap(void *ctx) {
    return room;
}

static sandbox_opts opts = {.check = count_check, .mem_cap = mem_cap};

static int open_cb(lua_State *L) {
    lbounded_open(L, &opts);
    return 0;
}

/* A state with the stock libraries, the stock string functions kept in
 * `stock`, and the bounded ones installed. */
static lua_State *state(void) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    (void)luaL_dostring(L, "stock = {}; for k, f in pairs(string) do stock[k] = f end; "
                           "stock.move, stock.sort = table.move, table.sort");
    lua_pushcfunction(L, open_cb);
    lua_pcall(L, 0, 0, 0);
    return L;
}

/* Runs code; returns NULL or the error. */
static char err[1024];
static const char *run(lua_State *L, const char *code) {
    if (luaL_dostring(L, code) == LUA_OK) return NULL;
    snprintf(err, sizeof err, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return err;
}

/* The differential test: random patterns built from every construct, random
 * subjects; find, match, gmatch (with init) and gsub (string, table and
 * function replacements) must give the same results or the same errors. */
static const char *diff_lua =
    "math.randomseed((...))\n"
    "local atoms = {'a','b','c','.','%a','%d','%s','%w','%l','%u','%p','%x','%c','%g','%A','%D','%S','%W',\n"
    "  '[ab]','[^a]','[a-c]','[%d_]','[]a]','[^]]','[a-]','(',')','()','%b()','%bab','%f[%w]','%f[^a]',\n"
    "  '%1','%2','%0','$','^','%','[','%%','%.','%(','-','*','+','?','x','1','_',' ','%z','%f','%b'}\n"
    "local quant = {'','','','*','+','-','?'}\n"
    "local function pat()\n"
    "  local t = {}\n"
    "  if math.random(4) == 1 then t[#t+1] = '^' end\n"
    "  for _ = 1, math.random(0, 6) do\n"
    "    local a = atoms[math.random(#atoms)]\n"
    "    if math.random(3) == 1 then t[#t+1] = '(' .. a .. quant[math.random(#quant)] .. ')'\n"
    "    else t[#t+1] = a .. quant[math.random(#quant)] end\n"
    "  end\n"
    "  if math.random(4) == 1 then t[#t+1] = '$' end\n"
    "  return table.concat(t)\n"
    "end\n"
    "local chars = {'a','a','b','c','(',')','1','_',' ','.','%','-','x','\\0','\\200'}\n"
    "local function subj()\n"
    "  local t = {}\n"
    "  for i = 1, math.random(0, 14) do t[i] = chars[math.random(#chars)] end\n"
    "  return table.concat(t)\n"
    "end\n"
    "local function norm(ok, ...)\n"
    "  local r = table.pack(ok, ...)\n"
    "  if not ok then r[2] = tostring(r[2]):gsub('^[^:]*:%d+: ', '') end\n"
    "  local out = {}\n"
    "  for i = 1, r.n do out[i] = math.type(r[i]) or type(r[i]) .. ':' .. tostring(r[i]) end\n"
    "  for i = 1, r.n do if math.type(r[i]) then out[i] = out[i] .. tostring(r[i]) end end\n"
    "  return table.concat(out, '|')\n"
    "end\n"
    "local function iter(gm, s, p, init)\n"
    "  return function()\n"
    "    local ok, it = pcall(gm, s, p, init)\n"
    "    if not ok then error(it, 0) end\n"
    "    local out = {}\n"
    "    for _ = 1, 50 do\n"
    "      local r = table.pack(it())\n"
    "      if r[1] == nil then break end\n"
    "      out[#out+1] = norm(true, table.unpack(r, 1, r.n))\n"
    "    end\n"
    "    return table.concat(out, ';')\n"
    "  end\n"
    "end\n"
    "local repls = {'%0', '%1', 'x%2y', '%%', '%', '<%1>', '', 'z',\n"
    "  {a = 'A', b = false, ['1'] = 1, [1] = 'one'},\n"
    "  function(...) local t = table.pack(...); if t.n % 2 == 0 then return table.concat(t, ',', 1, t.n) end end,\n"
    "  function(c) if c == 'a' then return {} end return false end, 7}\n"
    "local _, n = ...\nlocal diffs, ran = 0, 0\n"
    "for i = 1, n do\n"
    "  local s, p = subj(), pat()\n"
    "  local init = math.random(-4, 16)\n"
    "  if math.random(3) == 1 then init = nil end\n"
    "  local cases = {\n"
    "    {'find', function(f) return f(s, p, init) end},\n"
    "    {'find plain', function(f) return f(s, p, init, true) end},\n"
    "    {'match', function(f) return f(s, p, init) end},\n"
    "    {'gmatch', function(f) return f() end, iter(stock.gmatch, s, p, init), iter(string.gmatch, s, p, init)},\n"
    "    {'gsub', function(f, r, m) return f(s, p, r, m) end},\n"
    "  }\n"
    "  for _, c in ipairs(cases) do\n"
    "    local name, call = c[1], c[2]\n"
    "    if os.getenv('LB_TRACE') then io.stderr:write(string.format('%s %q %q %s\\n', name, s, p, tostring(init))) "
    "end\n"
    "    local a, b\n"
    "    if name == 'gmatch' then\n"
    "      a, b = norm(pcall(call, c[3])), norm(pcall(call, c[4]))\n"
    "    elseif name == 'gsub' then\n"
    "      local r, m = repls[math.random(#repls)], math.random(3) == 1 and math.random(0, 3) or nil\n"
    "      a, b = norm(pcall(call, stock.gsub, r, m)), norm(pcall(call, string.gsub, r, m))\n"
    "    else\n"
    "      local key = name == 'find plain' and 'find' or name\n"
    "      a, b = norm(pcall(call, stock[key])), norm(pcall(call, string[key]))\n"
    "    end\n"
    "    ran = ran + 1\n"
    "    if a ~= b then\n"
    "      diffs = diffs + 1\n"
    "      if diffs <= 5 then\n"
    "        io.stderr:write(string.format('  %s(%q, %q, %s): stock %s, ours %s\\n', name, s, p, tostring(init), a, "
    "b))\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return diffs, ran\n";

TEST(patterns_match_stock_library) {
    lua_State *L = state();
    checks = 0, raise_after = -1;
    CHECK(luaL_loadstring(L, diff_lua) == LUA_OK);
    lua_pushinteger(L, (lua_Integer)time(NULL));
    lua_pushinteger(L, 30000);
    int st = lua_pcall(L, 2, 2, 0);
    CHECKF(st == LUA_OK, "%s", st ? lua_tostring(L, -1) : "");
    if (st == LUA_OK) {
        CHECKF(lua_tointeger(L, -2) == 0, "%lld of %lld results differ", (long long)lua_tointeger(L, -2),
               (long long)lua_tointeger(L, -1));
        CHECK(lua_tointeger(L, -1) == 150000);
    }
    lua_close(L);
}

/* Fixed cases the random ones may miss. */
TEST(patterns_fixed_cases) {
    lua_State *L = state();
    const char *e = run(
        L, "local function same(f, ...)\n"
           "  local a = table.pack(pcall(stock[f], ...)); local b = table.pack(pcall(string[f], ...))\n"
           "  assert(a.n == b.n, f .. ': count')\n"
           "  for i = 1, a.n do assert(a[i] == b[i] or tostring(a[i]):gsub('^.-:%d+: ', '') ==\n"
           "    tostring(b[i]):gsub('^.-:%d+: ', ''), f .. ': ' .. tostring(a[i]) .. ' vs ' .. tostring(b[i])) end\n"
           "end\n"
           "same('find', 'hello world', 'o w'); same('find', 'hello', 'l+'); same('find', 'a.b', '.', 1, true)\n"
           "same('match', 'key = value', '(%w+)%s*=%s*(%w+)'); same('match', 'THE (quick) fox', '%((%a+)%)')\n"
           "same('match', 'f(a(b)c)d', '%b()'); same('match', 'THE (quick) fox', '%f[%a]%a+', 5)\n"
           "same('gsub', 'hello world', '(%w+)', '%1 %1'); same('gsub', 'abc', '', '-')\n"
           "same('gsub', 'abc', '%w', '%0%0', 2); same('gsub', '$name = $x', '%$(%w+)', {name = 'N'})\n"
           "same('gsub', 'abc', '()', '%1'); same('match', ('a'):rep(300), ('a?'):rep(300))\n"
           "same('find', 'x', ('(x)'):rep(33)); same('match', 'aaa', '^(a-)%1$')\n"
           "same('gsub', 'abc', 'b', '%9'); same('find', '', ''); same('find', 'abc', '', 10)\n"
           "same('match', 'abc', '(()a%1)'); same('gsub', 'x', 'x', '%')\n"
           "local a, b = {}, {}\n"
           "for k in stock.gmatch('one two three', '%a+', 4) do a[#a+1] = k end\n"
           "for k in string.gmatch('one two three', '%a+', 4) do b[#b+1] = k end\n"
           "assert(table.concat(a, ',') == table.concat(b, ',') and #b == 2)\n"
           "assert(select(2, string.gsub('abc', '%w', '%0')) == 3)\n");
    CHECKF(e == NULL, "%s", e);
    lua_close(L);
}

/* Backtracking that the stock library spends minutes on reaches the check
 * every LB_STEPS steps, and an error from the check ends it. */
TEST(backtracking_calls_the_check) {
    lua_State *L = state();
    checks = 0, raise_after = 50;
    const char *e = run(L, "return (('a'):rep(200)):find('.-.-.-.-b')");
    CHECKF(e && strstr(e, "stopped by check"), "%s", e ? e : "(no error)");
    CHECK(checks == 50);
    checks = 0, raise_after = 20;
    e = run(L, "return string.gsub(('x'):rep(1000), 'x', ('%0'):rep(50000))");
    CHECKF(e && strstr(e, "stopped by check"), "%s", e ? e : "(no error)");
    lua_close(L);
}

TEST(rep_and_move_are_bounded) {
    lua_State *L = state();
    checks = 0, raise_after = -1;
    clock_t t0 = clock();
    CHECK(run(L, "assert(string.rep('', 1e9) == '' and string.rep('', 1e9, '') == '')") == NULL);
    CHECK(clock() - t0 < CLOCKS_PER_SEC / 10);
    CHECK(run(L, "assert(string.rep('ab', 3, ',') == 'ab,ab,ab' and ('x'):rep(1) == 'x' and ('x'):rep(0) == '')") ==
          NULL);
    CHECK(run(L, "local s = ('abc'):rep(1000, '--'); assert(s == stock.rep('abc', 1000, '--'))") == NULL);
    room = 1000;
    const char *e = run(L, "return ('x'):rep(2000)");
    CHECKF(e && strstr(e, "not enough memory"), "%s", e ? e : "(no error)");
    room = (size_t)-1;
    checks = 0, raise_after = 3;
    e = run(L, "table.move({}, 1, 1e9, 2)");
    CHECKF(e && strstr(e, "stopped by check"), "%s", e ? e : "(no error)");
    checks = 0, raise_after = -1;
    CHECK(run(L, "local t = {} for i = 1, 10000 do t[i] = i end\n"
                 "table.move(t, 1, 10000, 3)\n"
                 "assert(t[1] == 1 and t[2] == 2 and t[3] == 1 and t[10002] == 10000)\n"
                 "table.move(t, 3, 10002, 1)\n"
                 "for i = 1, 10000 do assert(t[i] == i) end\n"
                 "local u = table.move(t, 1, 10000, 1, {}); assert(#u == 10000 and u[10000] == 10000)\n"
                 "local big = {} for i = 1, 20000 do big[i] = (i * 7919) % 20011 end\n"
                 "table.sort(big) for i = 2, 20000 do assert(big[i-1] <= big[i]) end") == NULL);
    CHECK(checks > 0); /* the large sort counted its comparisons */
    lua_close(L);
}

UNIT_MAIN()
