/* lua_bounded.c -- the bounded string and table functions (lua_bounded.h).
 *
 * The pattern matcher follows the semantics of Lua 5.4's patterns as the
 * reference manual (section 6.4.1) and the stock library's observable
 * behaviour define them, including its error messages and its recursion
 * limit ("pattern too complex" past 200 nested continuations), so a handler
 * sees no difference; tests/lua/patterns_diff.lua compares the two over
 * random patterns and subjects. The difference is the step counter: every
 * continuation tried and every character a loop looks at is a step. */
#include "lua_bounded.h"

#include <ctype.h>
#include <lauxlib.h>
#include <string.h>

#define MAX_CAPTURES 32 /* LUA_MAXCAPTURES */
#define MAX_DEPTH 200   /* MAXCCALLS of lstrlib.c: nested continuations */
#define CAP_OPEN (-1)   /* a capture whose ')' has not been reached */
#define CAP_POS (-2)    /* a position capture "()" */
#define UC(c) ((unsigned char)(c))

/* Calls o->check every LB_STEPS ticks of *steps. */
static inline void tick_(const sandbox_opts *o, lua_State *L, unsigned *steps) {
    if ((++*steps & (LB_STEPS - 1)) == 0 && o->check) o->check(o->ctx, L, 0);
}

/*---- Matcher ----------------------------------------------------------------------*/

typedef struct mstate {
    lua_State *L;
    const sandbox_opts *o;
    const char *src, *src_end; /* the subject (NUL-terminated, as Lua strings are) */
    const char *pat_end;
    int depth; /* continuations still allowed */
    int level; /* captures open or closed so far */
    unsigned steps;
    struct {
        const char *init;
        ptrdiff_t len; /* bytes, CAP_OPEN or CAP_POS */
    } cap[MAX_CAPTURES];
} mstate;

#define TICK(ms) tick_((ms)->o, (ms)->L, &(ms)->steps)

static void ms_init(mstate *ms, lua_State *L, const sandbox_opts *o, const char *s, size_t ls, const char *p,
                    size_t lp) {
    ms->L = L;
    ms->o = o;
    ms->src = s;
    ms->src_end = s + ls;
    ms->pat_end = p + lp;
    ms->steps = 0;
}

/* Forgets the captures of the previous attempt. */
static void ms_restart(mstate *ms) {
    ms->level = 0;
    ms->depth = MAX_DEPTH;
}

/* Whether byte c is in class %cl (cl a letter of the class, or any other
 * character standing for itself). */
static int in_class(int c, int cl) {
    int r;
    switch (tolower(cl)) {
    case 'a':
        r = isalpha(c);
        break;
    case 'c':
        r = iscntrl(c);
        break;
    case 'd':
        r = isdigit(c);
        break;
    case 'g':
        r = isgraph(c);
        break;
    case 'l':
        r = islower(c);
        break;
    case 'p':
        r = ispunct(c);
        break;
    case 's':
        r = isspace(c);
        break;
    case 'u':
        r = isupper(c);
        break;
    case 'w':
        r = isalnum(c);
        break;
    case 'x':
        r = isxdigit(c);
        break;
    case 'z':
        r = c == 0;
        break; /* deprecated, still in 5.4 */
    default:
        return cl == c;
    }
    return isupper(cl) ? !r : r != 0;
}

/* Whether byte c is in the set [..] that starts at open ('[') and ends at
 * close (its ']'). */
static int in_set(int c, const char *open, const char *close) {
    int yes = 1;
    const char *p = open + 1;
    if (*p == '^') {
        yes = 0;
        p++;
    }
    for (; p < close; p++) {
        if (*p == '%') {
            p++;
            if (in_class(c, UC(*p))) return yes;
        } else if (p[1] == '-' && p + 2 < close) {
            if (UC(p[0]) <= c && c <= UC(p[2])) return yes;
            p += 2;
        } else if (UC(*p) == c) {
            return yes;
        }
    }
    return !yes;
}

/* The end of the single-character class that starts at p. */
static const char *item_end(mstate *ms, const char *p) {
    char c = *p++;
    if (c == '%') {
        if (p >= ms->pat_end) luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (*p == '^') p++;
        do { /* the first character of a set is never its end */
            if (p >= ms->pat_end) luaL_error(ms->L, "malformed pattern (missing ']')");
            c = *p++;
            if (c == '%' && p < ms->pat_end) p++;
        } while (*p != ']');
        return p + 1;
    }
    return p;
}

/* Whether the subject byte at s exists and is in the class p..ep. */
static int item_matches(mstate *ms, const char *s, const char *p, const char *ep) {
    if (s >= ms->src_end) return 0;
    int c = UC(*s);
    switch (*p) {
    case '.':
        return 1;
    case '%':
        return in_class(c, UC(p[1]));
    case '[':
        return in_set(c, p, ep - 1);
    default:
        return UC(*p) == c;
    }
}

static const char *match_at(mstate *ms, const char *s, const char *p);

/* %bxy at s: the end of the balanced run, or NULL. p points at x. */
static const char *balanced(mstate *ms, const char *s, const char *p) {
    if (p >= ms->pat_end - 1) luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= ms->src_end || *s != p[0]) return NULL;
    int open = 1;
    while (++s < ms->src_end) {
        TICK(ms);
        if (*s == p[1]) {
            if (--open == 0) return s + 1;
        } else if (*s == p[0]) {
            open++;
        }
    }
    return NULL;
}

/* item* or item+ (after its first match): as many as possible, then fewer. */
static const char *greedy(mstate *ms, const char *s, const char *p, const char *ep) {
    ptrdiff_t n = 0;
    while (item_matches(ms, s + n, p, ep)) {
        TICK(ms);
        n++;
    }
    for (; n >= 0; n--) {
        const char *r = match_at(ms, s + n, ep + 1);
        if (r) return r;
    }
    return NULL;
}

/* item-: as few as possible, then more. */
static const char *lazy(mstate *ms, const char *s, const char *p, const char *ep) {
    for (;;) {
        const char *r = match_at(ms, s, ep + 1);
        if (r) return r;
        if (!item_matches(ms, s, p, ep)) return NULL;
        s++;
    }
}

static const char *open_capture(mstate *ms, const char *s, const char *p, ptrdiff_t what) {
    if (ms->level >= MAX_CAPTURES) luaL_error(ms->L, "too many captures");
    ms->cap[ms->level].init = s;
    ms->cap[ms->level].len = what;
    ms->level++;
    const char *r = match_at(ms, s, p);
    if (!r) ms->level--;
    return r;
}

static const char *close_capture(mstate *ms, const char *s, const char *p) {
    int l = ms->level - 1;
    while (l >= 0 && ms->cap[l].len != CAP_OPEN) l--;
    if (l < 0) luaL_error(ms->L, "invalid pattern capture");
    ms->cap[l].len = s - ms->cap[l].init;
    const char *r = match_at(ms, s, p);
    if (!r) ms->cap[l].len = CAP_OPEN;
    return r;
}

/* %1..%9 (and %0, always an error): the text of a closed capture again. */
static const char *back_ref(mstate *ms, const char *s, int digit) {
    int l = digit - '1';
    if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_OPEN) luaL_error(ms->L, "invalid capture index %%%d", l + 1);
    size_t len = (size_t)ms->cap[l].len; /* a position capture is huge: never matches */
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->cap[l].init, s, len) == 0) return s + len;
    return NULL;
}

/* Matches pattern p..pat_end against the subject at s: the end of the match,
 * or NULL. Recurses for what may backtrack; a plain sequence loops. */
static const char *match_at(mstate *ms, const char *s, const char *p) {
    if (ms->depth-- == 0) luaL_error(ms->L, "pattern too complex");
    while (s && p < ms->pat_end) {
        TICK(ms);
        if (*p == '(') {
            s = p[1] == ')' ? open_capture(ms, s, p + 2, CAP_POS) : open_capture(ms, s, p + 1, CAP_OPEN);
            break;
        }
        if (*p == ')') {
            s = close_capture(ms, s, p + 1);
            break;
        }
        if (*p == '$' && p + 1 == ms->pat_end) {
            if (s != ms->src_end) s = NULL;
            break;
        }
        if (*p == '%' && p[1] == 'b') {
            s = balanced(ms, s, p + 2);
            p += 4;
            continue;
        }
        if (*p == '%' && p[1] == 'f') {
            p += 2;
            if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
            const char *ep = item_end(ms, p);
            int before = s == ms->src ? 0 : UC(s[-1]);
            if (in_set(before, p, ep - 1) || !in_set(UC(*s), p, ep - 1)) s = NULL;
            p = ep;
            continue;
        }
        if (*p == '%' && isdigit(UC(p[1]))) {
            s = back_ref(ms, s, UC(p[1]));
            p += 2;
            continue;
        }
        const char *ep = item_end(ms, p);
        int one = item_matches(ms, s, p, ep);
        if (!one) {
            if (*ep == '*' || *ep == '?' || *ep == '-')
                p = ep + 1; /* zero of them */
            else
                s = NULL;
            continue;
        }
        if (*ep == '?') {
            const char *r = match_at(ms, s + 1, ep + 1);
            if (r) {
                s = r;
                break;
            }
            p = ep + 1;
            continue;
        }
        if (*ep == '+' || *ep == '*') {
            s = greedy(ms, *ep == '+' ? s + 1 : s, p, ep);
            break;
        }
        if (*ep == '-') {
            s = lazy(ms, s, p, ep);
            break;
        }
        s++;
        p = ep;
    }
    ms->depth++;
    return s;
}

/*---- Captures -----------------------------------------------------------------------*/

/* Capture i of a match s..e as a Lua value on the stack (capture 0 of a
 * pattern without captures is the whole match). Returns its length, or
 * CAP_POS for a position capture (pushed as an integer). When push is 0
 * only a position is pushed; *text gets the captured bytes. */
static ptrdiff_t capture(mstate *ms, int i, const char *s, const char *e, const char **text, int push) {
    if (i >= ms->level) {
        if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
        *text = s;
        if (push) lua_pushlstring(ms->L, s, (size_t)(e - s));
        return e - s;
    }
    ptrdiff_t len = ms->cap[i].len;
    *text = ms->cap[i].init;
    if (len == CAP_OPEN) luaL_error(ms->L, "unfinished capture");
    if (len == CAP_POS)
        lua_pushinteger(ms->L, (lua_Integer)(ms->cap[i].init - ms->src) + 1);
    else if (push)
        lua_pushlstring(ms->L, ms->cap[i].init, (size_t)len);
    return len;
}

/* Pushes every capture (or the whole match s..e if there is none and s is
 * not NULL); returns how many. */
static int push_captures(mstate *ms, const char *s, const char *e) {
    int n = ms->level == 0 && s ? 1 : ms->level;
    luaL_checkstack(ms->L, n, "too many captures");
    const char *text;
    for (int i = 0; i < n; i++) capture(ms, i, s, e, &text, 1);
    return n;
}

/*---- string.find, string.match -------------------------------------------------------*/

/* A 1-based position (negative: from the end) as used by find/match/gmatch. */
static size_t start_pos(lua_Integer pos, size_t len) {
    if (pos > 0) return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len) return 1;
    return len + (size_t)pos + 1;
}

static int has_specials(const char *p, size_t lp) {
    for (size_t i = 0; i < lp; i++)
        if (p[i] && strchr("^$*+?.([%-", p[i])) return 1;
    return 0;
}

static int find_or_match(lua_State *L, int find) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        const char *hit = memmem(s + init, ls - init, p, lp);        /* linear (two-way) */
        if (ls - init >= LB_BIG && o->check) o->check(o->ctx, L, 0); /* one long scan: look at the clock */
        if (hit) {
            lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
            lua_pushinteger(L, (lua_Integer)(hit - s + lp));
            return 2;
        }
        luaL_pushfail(L);
        return 1;
    }
    int anchor = *p == '^';
    if (anchor) p++, lp--;
    mstate ms;
    ms_init(&ms, L, o, s, ls, p, lp);
    const char *at = s + init;
    do {
        ms_restart(&ms);
        const char *e = match_at(&ms, at, p);
        if (e) {
            if (!find) return push_captures(&ms, at, e);
            lua_pushinteger(L, (lua_Integer)(at - s) + 1);
            lua_pushinteger(L, (lua_Integer)(e - s));
            return push_captures(&ms, NULL, NULL) + 2;
        }
    } while (at++ < ms.src_end && !anchor);
    luaL_pushfail(L);
    return 1;
}

static int lb_find(lua_State *L) {
    return find_or_match(L, 1);
}
static int lb_match(lua_State *L) {
    return find_or_match(L, 0);
}

/*---- string.gmatch ------------------------------------------------------------------*/

typedef struct gmatch_state {
    size_t pos;     /* where the next attempt starts (may be len + 1: done) */
    ptrdiff_t last; /* end of the last match, -1 before the first */
} gmatch_state;

/* The iterator: upvalues opts, s, p, state. */
static int gmatch_next(lua_State *L) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(2), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(3), &lp);
    gmatch_state *g = lua_touserdata(L, lua_upvalueindex(4));
    mstate ms;
    ms_init(&ms, L, o, s, ls, p, lp);
    for (const char *at = s + g->pos; at <= ms.src_end; at++) {
        ms_restart(&ms);
        const char *e = match_at(&ms, at, p);
        if (e && e - s != g->last) {
            g->pos = (size_t)(e - s);
            g->last = e - s;
            return push_captures(&ms, at, e);
        }
    }
    g->pos = ls + 1;
    return 0;
}

static int lb_gmatch(lua_State *L) {
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    lua_settop(L, 2);
    gmatch_state *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->pos = init > ls ? ls + 1 : init;
    g->last = -1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_rotate(L, 1, 1); /* opts, s, p, state */
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

/*---- string.gsub --------------------------------------------------------------------*/

/* Appends the replacement string (argument 3) for the match s..e, with %0-%9
 * and %% expanded. */
static void add_template(mstate *ms, luaL_Buffer *b, const char *s, const char *e) {
    lua_State *L = ms->L;
    size_t l;
    const char *t = lua_tolstring(L, 3, &l);
    const char *pc;
    while ((pc = memchr(t, '%', l)) != NULL) {
        TICK(ms);
        luaL_addlstring(b, t, (size_t)(pc - t));
        pc++;
        if (*pc == '%') {
            luaL_addchar(b, '%');
        } else if (*pc == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit(UC(*pc))) {
            const char *text;
            ptrdiff_t len = capture(ms, *pc - '1', s, e, &text, 0);
            if (len == CAP_POS)
                luaL_addvalue(b);
            else
                luaL_addlstring(b, text, (size_t)len);
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", '%');
        }
        l -= (size_t)(pc + 1 - t);
        t = pc + 1;
    }
    luaL_addlstring(b, t, l);
}

/* Appends the replacement for the match s..e; returns whether it differs
 * from the match (false or nil from a table or function keeps the match). */
static int add_replacement(mstate *ms, luaL_Buffer *b, const char *s, const char *e, int tr) {
    lua_State *L = ms->L;
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(ms, s, e);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        const char *text;
        capture(ms, 0, s, e, &text, 1); /* the key: the first capture or the match */
        lua_gettable(L, 3);
    } else {
        add_template(ms, b, s, e);
        return 1;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1)) return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int lb_gsub(lua_State *L) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    const char *s0 = src, *last = NULL;
    int tr = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    int anchor = *p == '^';
    lua_Integer n = 0;
    int changed = 0;
    luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                     "string/function/table");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (anchor) p++, lp--;
    mstate ms;
    ms_init(&ms, L, o, s0, ls, p, lp);
    while (n < max_n) {
        ms_restart(&ms);
        const char *e = match_at(&ms, src, p);
        if (e && e != last) {
            n++;
            changed = add_replacement(&ms, &b, src, e, tr) | changed;
            src = last = e;
        } else if (src < ms.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor) break;
    }
    if (!changed) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

/*---- string.rep ---------------------------------------------------------------------*/

static int lb_rep(lua_State *L) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    size_t l, lsep;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    size_t unit = l + lsep;
    if (unit < l || unit > (size_t)LUA_MAXINTEGER / (size_t)n) return luaL_error(L, "resulting string too large");
    size_t total = (size_t)n * unit - lsep;
    if (o->mem_cap && total > o->mem_cap(o->ctx))
        return luaL_error(L, "not enough memory for string.rep (%I bytes; handler-memory-limit)", (lua_Integer)total);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, total);
    memcpy(p, s, l);
    size_t filled = l;
    if (n > 1) {
        memcpy(p + l, sep, lsep);
        filled = unit;
    }
    while (filled < total) { /* the result is periodic: copy what is there */
        size_t k = filled < total - filled ? filled : total - filled;
        memcpy(p + filled, p, k);
        filled += k;
    }
    luaL_pushresultsize(&b, total);
    return 1;
}

/*---- table.move, table.sort ------------------------------------------------------------*/

/* table.move(a1, f, e, t [, a2]) as the stock function (upvalue 2) moving
 * LB_STEPS elements at a time, in the order that keeps overlapping moves
 * right, with a check between chunks. */
static int lb_move(lua_State *L) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3), t = luaL_checkinteger(L, 4);
    int dst = lua_isnoneornil(L, 5) ? 1 : 5;
    if (e < f || (e - f < LB_STEPS && f > 0)) { /* small: one stock call does the checks and the work */
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_insert(L, 1);
        lua_call(L, lua_gettop(L) - 1, 1);
        return 1;
    }
    luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
    lua_Integer n = e - f + 1;
    luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
    int forward = t > e || t <= f || (dst != 1 && !lua_compare(L, 1, dst, LUA_OPEQ));
    unsigned steps = 0;
    for (lua_Integer done = 0; done < n;) {
        lua_Integer k = n - done < LB_STEPS ? n - done : LB_STEPS;
        lua_Integer off = forward ? done : n - done - k;
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_pushvalue(L, 1);
        lua_pushinteger(L, f + off);
        lua_pushinteger(L, f + off + k - 1);
        lua_pushinteger(L, t + off);
        lua_pushvalue(L, dst);
        lua_call(L, 5, 0);
        done += k;
        steps += LB_STEPS - 1;
        tick_(o, L, &steps);
    }
    lua_pushvalue(L, dst);
    return 1;
}

/* The comparator of a large sort without one: a < b, counted. */
static int sort_less(lua_State *L) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    static unsigned steps;
    tick_(o, L, &steps);
    lua_pushboolean(L, lua_compare(L, 1, 2, LUA_OPLT));
    return 1;
}

static int lb_sort(lua_State *L) {
    if (lua_type(L, 1) == LUA_TTABLE && lua_isnoneornil(L, 2) && lua_rawlen(L, 1) > LB_STEPS) {
        lua_settop(L, 1);
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_pushcclosure(L, sort_less, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 0);
    return 0;
}

/*---- Linear calls that allocate nothing ------------------------------------------------*/

/* Whether the value at idx is a long operand: a string of LB_BIG bytes or
 * more, or a table with LB_STEPS or more array elements. */
static int is_big(lua_State *L, int idx) {
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING) return lua_rawlen(L, idx) >= LB_BIG;
    return t == LUA_TTABLE && lua_rawlen(L, idx) >= LB_STEPS;
}

/* The stock function (upvalue 2) with the whole stack, then, when its
 * first operand was long, one look at the clock. Its cost is linear in data
 * the memory cap bounds, but it allocates nothing, so neither the allocator
 * nor the count hook (once per 1000 instructions, i.e. after hundreds of such
 * calls, seconds) would see the time it took. */
static int lb_checked(lua_State *L) {
    const sandbox_opts *o = lua_touserdata(L, lua_upvalueindex(1));
    int big = is_big(L, 1);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    if (big && o->check) o->check(o->ctx, L, 0);
    return lua_gettop(L);
}

/*---- Installation ---------------------------------------------------------------------*/

/* t[name] = fn with upvalues (o [, the original t[name]]); t at the top. */
static void install(lua_State *L, const sandbox_opts *o, const char *name, lua_CFunction fn, int wrap) {
    lua_pushlightuserdata(L, (void *)o);
    if (wrap) lua_getfield(L, -2, name);
    lua_pushcclosure(L, fn, wrap ? 2 : 1);
    lua_setfield(L, -2, name);
}

void lbounded_open(lua_State *L, const sandbox_opts *o) {
    lua_getglobal(L, "string");
    install(L, o, "find", lb_find, 0);
    install(L, o, "match", lb_match, 0);
    install(L, o, "gmatch", lb_gmatch, 0);
    install(L, o, "gsub", lb_gsub, 0);
    install(L, o, "rep", lb_rep, 0);
    lua_pop(L, 1);
    lua_getglobal(L, "table");
    install(L, o, "move", lb_move, 1);
    install(L, o, "sort", lb_sort, 1);
    install(L, o, "insert", lb_checked, 1);
    install(L, o, "remove", lb_checked, 1);
    lua_pop(L, 1);
    lua_getglobal(L, "utf8");
    install(L, o, "len", lb_checked, 1);
    install(L, o, "offset", lb_checked, 1);
    lua_pop(L, 1);
}
