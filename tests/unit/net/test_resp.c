/* test_resp.c -- unit tests for the incremental RESP request parser (resp.c):
 * multibulk and inline requests, every split point, buffer moves between
 * calls, Redis's error texts and limits, and a randomized round trip. */
#include "net/resp.h"
#include "unit.h"

#include <limits.h>
#include <stdlib.h>

/* An expected argument: bytes and length (binary-safe). */
struct arg {
    const char *p;
    size_t n;
};

/* A valid request and the arguments it must parse to. */
struct frame {
    const char *data;
    size_t len;
    int argc;
    struct arg argv[8];
};

#define S(x) x, sizeof(x) - 1
#define A(x) {x, sizeof(x) - 1}

static const resp_limits LIM = {512LL * 1024 * 1024, 1024 * 1024, 64 * 1024};

/* Returns a malloc'd copy of s[0..n) sized exactly, so ASan catches any read
 * past the bytes handed to the parser. */
static char *dup_bytes(const char *s, size_t n) {
    char *b = malloc(n ? n : 1);
    if (n) memcpy(b, s, n);
    return b;
}

/* Returns 1 if the parser's argc/argv (relative to buf) equal want[0..argc). */
static int args_match(const resp_parser *p, const char *buf, const struct arg *want, int argc) {
    if (p->argc != argc) return 0;
    for (int i = 0; i < argc; i++) {
        if (p->argv[i].len != want[i].n) return 0;
        if (want[i].n && memcmp(buf + p->argv[i].off, want[i].p, want[i].n) != 0) return 0;
    }
    return 1;
}

/* Parses s[0..n) from a fresh parser and an exact-size copy in one call.
 * Returns the status; the parser is left for the caller to inspect and free,
 * and *copy (if not NULL) receives the buffer the offsets point into. */
static resp_status parse_once(resp_parser *p, const char *s, size_t n, const resp_limits *lim, char **copy) {
    resp_parser_init(p);
    char *b = dup_bytes(s, n);
    resp_status st = resp_parse(p, b, n, lim);
    if (copy)
        *copy = b;
    else
        free(b);
    return st;
}

/* Parses s[0..n) in one call and returns the error text (or "" / "INCOMPLETE"
 * / "OK" when there is none) in a static buffer. */
static const char *parse_err(const char *s, size_t n, const resp_limits *lim) {
    static char out[128];
    resp_parser p;
    resp_status st = parse_once(&p, s, n, lim, NULL);
    if (st == RESP_OK)
        snprintf(out, sizeof out, "OK");
    else if (st == RESP_INCOMPLETE)
        snprintf(out, sizeof out, "INCOMPLETE");
    else
        snprintf(out, sizeof out, "%s", p.err ? p.err : "(null)");
    resp_parser_free(&p);
    return out;
}

/* The valid requests every split test walks through. */
static const struct frame FRAMES[] = {
    {S("*1\r\n$4\r\nPING\r\n"), 1, {A("PING")}},
    {S("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"), 3, {A("SET"), A("key"), A("value")}},
    {S("*2\r\n$7\r\nPUBLISH\r\n$0\r\n\r\n"), 2, {A("PUBLISH"), A("")}},
    {S("*3\r\n$3\r\na\0b\r\n$4\r\n\r\n\r\n\r\n$6\r\n$3\r\n*1\r\n"), 3, {A("a\0b"), A("\r\n\r\n"), A("$3\r\n*1")}},
    {S("*0\r\n"), 0, {{0}}},
    {S("*-1\r\n"), 0, {{0}}},
    {S("*1\r\n$12\r\n0123456789ab\r\n"), 1, {A("0123456789ab")}},
    {S("*1\r\n$0\r\n\r\n"), 1, {A("")}},
    {S("PING\r\n"), 1, {A("PING")}},
    {S("PING\n"), 1, {A("PING")}},
    {S("\r\n"), 0, {{0}}},
    {S("  set   a\t\tb  \r\n"), 3, {A("set"), A("a"), A("b")}},
    {S("SET \"a b\" \"c\\\"d\\n\\x41\\x4a\\\\\"\r\n"), 3, {A("SET"), A("a b"), A("c\"d\nAJ\\")}},
    {S("echo 'it\\'s' '\\n' \"\\x00\\xff\"\n"), 4, {A("echo"), A("it's"), A("\\n"), A("\0\xff")}},
};
#define NFRAMES (int)(sizeof FRAMES / sizeof FRAMES[0])

TEST(multibulk_basic) {
    resp_parser p;
    char *b;
    const char req[] = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    CHECK(parse_once(&p, req, sizeof req - 1, &LIM, &b) == RESP_OK);
    struct arg want[] = {A("SET"), A("key"), A("value")};
    CHECK(args_match(&p, b, want, 3));
    CHECK(p.consumed == sizeof req - 1);
    CHECK(p.argv[0].off == 8 && p.argv[1].off == 17 && p.argv[2].off == 26);
    free(b);
    resp_parser_free(&p);
}

TEST(every_frame_one_shot) {
    for (int f = 0; f < NFRAMES; f++) {
        resp_parser p;
        char *b;
        resp_status st = parse_once(&p, FRAMES[f].data, FRAMES[f].len, &LIM, &b);
        CHECKF(st == RESP_OK, "frame %d: status %d err %s", f, st, p.err ? p.err : "");
        CHECKF(args_match(&p, b, FRAMES[f].argv, FRAMES[f].argc), "frame %d: args", f);
        CHECKF(p.consumed == FRAMES[f].len, "frame %d: consumed %zu", f, p.consumed);
        free(b);
        resp_parser_free(&p);
    }
}

TEST(pipelined) {
    /* multibulk, *0, inline with escapes, empty line, multibulk: in one buffer */
    const char req[] = "*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n"
                       "*0\r\n"
                       "echo \"a\\tb\" 'x'\r\n"
                       "\n"
                       "*1\r\n$4\r\nPING\r\n";
    char *b = dup_bytes(req, sizeof req - 1);
    size_t len = sizeof req - 1, off = 0;
    resp_parser p;
    resp_parser_init(&p);
    struct arg w0[] = {A("ECHO"), A("hi")};
    struct arg w2[] = {A("echo"), A("a\tb"), A("x")};
    struct arg w4[] = {A("PING")};
    const struct arg *wants[] = {w0, NULL, w2, NULL, w4};
    int argcs[] = {2, 0, 3, 0, 1};
    for (int i = 0; i < 5; i++) {
        resp_status st = resp_parse(&p, b + off, len - off, &LIM);
        CHECKF(st == RESP_OK, "request %d: status %d", i, st);
        CHECKF(args_match(&p, b + off, wants[i], argcs[i]), "request %d: args", i);
        off += p.consumed;
    }
    CHECK(off == len);
    CHECK(resp_parse(&p, b + off, 0, &LIM) == RESP_INCOMPLETE);
    free(b);
    resp_parser_free(&p);
}

TEST(inline_rewrite_stays_in_its_request) {
    /* Decoding an inline line in place must not touch the next request. */
    const char req[] = "set \"k\\x41\" '\\'v\\''\r\n*1\r\n$4\r\nPING\r\n";
    char *b = dup_bytes(req, sizeof req - 1);
    resp_parser p;
    resp_parser_init(&p);
    CHECK(resp_parse(&p, b, sizeof req - 1, &LIM) == RESP_OK);
    struct arg want[] = {A("set"), A("kA"), A("'v'")};
    CHECK(args_match(&p, b, want, 3));
    size_t c = p.consumed;
    CHECK(c == 21);
    CHECK(memcmp(b + c, req + c, sizeof req - 1 - c) == 0);
    CHECK(resp_parse(&p, b + c, sizeof req - 1 - c, &LIM) == RESP_OK && p.argc == 1);
    free(b);
    resp_parser_free(&p);
}

TEST(negative_and_zero_multibulk) {
    /* Redis ignores *0 and any negative count (its "Negative multibulk
     * length" test sends *-10 and expects the connection to go on). */
    const char *reqs[] = {"*0\r\n", "*-1\r\n", "*-10\r\n", "*-9223372036854775808\r\n"};
    for (int i = 0; i < 4; i++) {
        resp_parser p;
        size_t n = strlen(reqs[i]);
        CHECKF(parse_once(&p, reqs[i], n, &LIM, NULL) == RESP_OK, "%s", reqs[i]);
        CHECKF(p.argc == 0 && p.consumed == n, "%s: argc %d consumed %zu", reqs[i], p.argc, p.consumed);
        resp_parser_free(&p);
    }
    CHECK(strcmp(parse_err(S("*-0\r\n"), &LIM), "Protocol error: invalid multibulk length") == 0);
}

TEST(split_at_every_byte) {
    /* Prefix k -> INCOMPLETE, then the whole frame (in a new buffer) -> the
     * same result as a one-shot parse. */
    for (int f = 0; f < NFRAMES; f++) {
        const struct frame *fr = &FRAMES[f];
        for (size_t k = 0; k < fr->len; k++) {
            resp_parser p;
            resp_parser_init(&p);
            char *pre = dup_bytes(fr->data, k);
            resp_status st = resp_parse(&p, pre, k, &LIM);
            CHECKF(st == RESP_INCOMPLETE, "frame %d prefix %zu: status %d", f, k, st);
            free(pre);
            char *whole = dup_bytes(fr->data, fr->len);
            st = resp_parse(&p, whole, fr->len, &LIM);
            CHECKF(st == RESP_OK, "frame %d after prefix %zu: status %d", f, k, st);
            CHECKF(args_match(&p, whole, fr->argv, fr->argc), "frame %d after prefix %zu: args", f, k);
            CHECKF(p.consumed == fr->len, "frame %d after prefix %zu: consumed", f, k);
            free(whole);
            resp_parser_free(&p);
        }
    }
}

TEST(byte_by_byte_with_moves) {
    /* One more byte per call, each time in a freshly allocated buffer (the old
     * one freed), so the offsets must not depend on where the bytes live. */
    for (int f = 0; f < NFRAMES; f++) {
        const struct frame *fr = &FRAMES[f];
        resp_parser p;
        resp_parser_init(&p);
        resp_status st = RESP_INCOMPLETE;
        char *b = NULL;
        size_t k;
        for (k = 1; k <= fr->len; k++) {
            free(b);
            b = dup_bytes(fr->data, k);
            st = resp_parse(&p, b, k, &LIM);
            if (st != RESP_INCOMPLETE) break;
        }
        CHECKF(st == RESP_OK && k == fr->len, "frame %d: status %d at %zu", f, st, k);
        CHECKF(st == RESP_OK && args_match(&p, b, fr->argv, fr->argc), "frame %d: args", f);
        free(b);
        resp_parser_free(&p);
    }
}

TEST(inline_words) {
    struct {
        const char *line;
        int argc;
        struct arg argv[4];
    } cases[] = {
        {"PING\r\n", 1, {A("PING")}},
        {"PING\n", 1, {A("PING")}},
        {"a  b   c\r\n", 3, {A("a"), A("b"), A("c")}},
        {"\ta\t\tb\t\r\n", 2, {A("a"), A("b")}},
        {"\"a b\" c\r\n", 2, {A("a b"), A("c")}},
        {"\"\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n", 1, {A("\n\r\t\b\a\\\"q")}},
        {"\"\\x41\\x7a\\xFf\\x0g\\xZZ\"\n", 1, {A("Az\xff" "x0gxZZ")}},
        {"'a \"b\" \\n \\' c'\n", 1, {A("a \"b\" \\n ' c")}},
        {"\"\" ''\n", 2, {A(""), A("")}},
        {"foo\"bar baz\" x\n", 2, {A("foobar baz"), A("x")}},
        {"a'b c'\n", 1, {A("ab c")}},
        {"\"a\"\tb\n", 2, {A("a"), A("b")}},
        {"a\vb \vc\n", 2, {A("a\vb"), A("c")}},       /* \v splits only as a blank */
        {"\"a\"\vb\n", 2, {A("a"), A("b")}},          /* but may follow a quote */
        {"x\r\r\n", 1, {A("x")}},                     /* inner \r is a blank */
        {"a\rb\n", 2, {A("a"), A("b")}},
        {"\xc3\xa9t\xc3\xa9\n", 1, {A("\xc3\xa9t\xc3\xa9")}},
        {"\n", 0, {{0}}},
        {"\r\n", 0, {{0}}},
        {"   \t \r\n", 0, {{0}}},
        {"$3\r\n", 1, {A("$3")}},                     /* not '*': inline */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        resp_parser p;
        char *b;
        size_t n = strlen(cases[i].line);
        resp_status st = parse_once(&p, cases[i].line, n, &LIM, &b);
        CHECKF(st == RESP_OK, "case %zu: status %d (%s)", i, st, p.err ? p.err : "");
        CHECKF(args_match(&p, b, cases[i].argv, cases[i].argc), "case %zu: args (argc %d)", i, p.argc);
        CHECKF(p.consumed == n, "case %zu: consumed %zu", i, p.consumed);
        free(b);
        resp_parser_free(&p);
    }
}

TEST(inline_unbalanced_quotes) {
    const char *bad[] = {
        "\"abc\n", "'abc\r\n", "\"a\"b\n", "'a'b\n", "set \"\"\"test-key\"\"\" v\r\n",
        "\"a\\\"\n", "'a\\'\n", "\"abc\\\n", "x \"\\x4\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *e = parse_err(bad[i], strlen(bad[i]), &LIM);
        CHECKF(strcmp(e, "Protocol error: unbalanced quotes in request") == 0, "case %zu: %s", i, e);
    }
    /* a closing quote before the \r of \r\n is fine: the \r is not part of the line */
    CHECK(strcmp(parse_err(S("\"a\"\r\n"), &LIM), "OK") == 0);
}

TEST(multibulk_length_errors) {
    const char *bad[] = {"*abc\r\n", "*01\r\n", "*+1\r\n", "* 1\r\n", "*1 \r\n", "*\r\n",
                         "*1\rX", "*99999999999999999999\r\n", "*1x\r\n", "*-\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *e = parse_err(bad[i], strlen(bad[i]), &LIM);
        CHECKF(strcmp(e, "Protocol error: invalid multibulk length") == 0, "case %zu: %s", i, e);
    }
    resp_limits small = LIM;
    small.max_multibulk = 10;
    CHECK(strcmp(parse_err(S("*10\r\n"), &small), "INCOMPLETE") == 0);
    CHECK(strcmp(parse_err(S("*11\r\n"), &small), "Protocol error: invalid multibulk length") == 0);
    resp_limits huge = LIM;
    huge.max_multibulk = LLONG_MAX;
    CHECK(strcmp(parse_err(S("*2147483647\r\n"), &huge), "INCOMPLETE") == 0);
    CHECK(strcmp(parse_err(S("*2147483648\r\n"), &huge), "Protocol error: invalid multibulk length") == 0);
    /* the default limit (max-multibulk-len 1048576) */
    CHECK(strcmp(parse_err(S("*1048576\r\n"), &LIM), "INCOMPLETE") == 0);
    CHECK(strcmp(parse_err(S("*1048577\r\n"), &LIM), "Protocol error: invalid multibulk length") == 0);
}

TEST(bulk_length_errors) {
    const char *bad[] = {"*1\r\n$-1\r\n", "*1\r\n$-10\r\n", "*1\r\n$abc\r\n", "*1\r\n$01\r\n",
                         "*1\r\n$+1\r\n", "*1\r\n$ 1\r\n", "*1\r\n$1 \r\n", "*1\r\n$\r\n",
                         "*1\r\n$99999999999999999999\r\n", "*1\r\n$1\rX",
                         "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *e = parse_err(bad[i], strlen(bad[i]), &LIM);
        CHECKF(strcmp(e, "Protocol error: invalid bulk length") == 0, "case %zu: %s", i, e);
    }
}

TEST(oversized_bulk_refused_before_payload) {
    resp_limits small = LIM;
    small.max_bulk = 100;
    /* only the header: no payload byte has arrived */
    CHECK(strcmp(parse_err(S("*1\r\n$100\r\n"), &small), "INCOMPLETE") == 0);
    CHECK(strcmp(parse_err(S("*1\r\n$101\r\n"), &small), "Protocol error: invalid bulk length") == 0);
    /* the default proto-max-bulk-len (512 MB), and an absurd one */
    CHECK(strcmp(parse_err(S("*1\r\n$536870912\r\n"), &LIM), "INCOMPLETE") == 0);
    CHECK(strcmp(parse_err(S("*1\r\n$536870913\r\n"), &LIM), "Protocol error: invalid bulk length") == 0);
    CHECK(strcmp(parse_err(S("*2\r\n$1\r\nx\r\n$9223372036854775807\r\n"), &LIM),
                 "Protocol error: invalid bulk length") == 0);
    /* resumed: the header completes in a later call */
    resp_parser p;
    resp_parser_init(&p);
    char req[] = "*1\r\n$101\r\n";
    CHECK(resp_parse(&p, req, 8, &small) == RESP_INCOMPLETE);
    CHECK(resp_parse(&p, req, 9, &small) == RESP_INCOMPLETE);
    CHECK(resp_parse(&p, req, 10, &small) == RESP_ERROR);
    CHECK(p.err && strcmp(p.err, "Protocol error: invalid bulk length") == 0);
    resp_parser_free(&p);
}

TEST(expected_dollar) {
    CHECK(strcmp(parse_err(S("*1\r\nfoo\r\n"), &LIM), "Protocol error: expected '$', got 'f'") == 0);
    CHECK(strcmp(parse_err(S("*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"), &LIM),
                 "Protocol error: expected '$', got 'f'") == 0);
    /* refused as soon as the byte arrives, without waiting for a line */
    CHECK(strcmp(parse_err(S("*2\r\n$1\r\nx\r\n:"), &LIM), "Protocol error: expected '$', got ':'") == 0);
    CHECK(strcmp(parse_err(S("*1\r\n*1\r\n"), &LIM), "Protocol error: expected '$', got '*'") == 0);
    /* \r and \n are shown as spaces (as Redis's error replies do) */
    CHECK(strcmp(parse_err(S("*1\r\n\r\n"), &LIM), "Protocol error: expected '$', got ' '") == 0);
    /* a wrong (too short) bulk length is caught where the \r\n should be */
    CHECK(strcmp(parse_err(S("*2\r\n$1\r\nx\r\n$1\r\nyy\r\n"), &LIM), "Protocol error: expected CRLF after bulk data") == 0);
}

TEST(bulk_not_followed_by_crlf) {
    const char *e = "Protocol error: expected CRLF after bulk data";
    CHECK(strcmp(parse_err(S("*1\r\n$3\r\nfooXY"), &LIM), e) == 0);
    CHECK(strcmp(parse_err(S("*1\r\n$3\r\nfooX"), &LIM), e) == 0);   /* early */
    CHECK(strcmp(parse_err(S("*1\r\n$3\r\nfoo\rX"), &LIM), e) == 0);
    CHECK(strcmp(parse_err(S("*1\r\n$3\r\nfoo\n\r"), &LIM), e) == 0);
    CHECK(strcmp(parse_err(S("*1\r\n$3\r\nfoo\r"), &LIM), "INCOMPLETE") == 0);
    CHECK(strcmp(parse_err(S("*1\r\n$0\r\n\n"), &LIM), e) == 0);
}

/* Builds c followed by n copies of fill (and an optional tail) in a malloc'd
 * buffer; returns it and stores its length in *len. */
static char *make_line(char c, size_t n, char fill, const char *tail, size_t *len) {
    size_t t = tail ? strlen(tail) : 0, pre = c ? 1 : 0;
    char *b = malloc(pre + n + t + 1);
    if (pre) b[0] = c;
    memset(b + pre, fill, n);
    if (t) memcpy(b + pre + n, tail, t);
    *len = pre + n + t;
    return b;
}

TEST(too_big_count_strings) {
    size_t n;
    char *b;
    /* '*' and digits, no \r: fine up to 64 KiB, refused past it */
    b = make_line('*', 64 * 1024 - 1, '1', NULL, &n);
    CHECK(strcmp(parse_err(b, n, &LIM), "INCOMPLETE") == 0);
    free(b);
    b = make_line('*', 64 * 1024, '1', NULL, &n);
    CHECK(strcmp(parse_err(b, n, &LIM), "Protocol error: too big mbulk count string") == 0);
    free(b);

    const char pre[] = "*1\r\n";
    size_t body;
    char *tail = make_line('$', 64 * 1024 - 1, '1', NULL, &body);
    b = malloc(sizeof pre - 1 + body + 1);
    memcpy(b, pre, sizeof pre - 1);
    memcpy(b + sizeof pre - 1, tail, body);
    CHECK(strcmp(parse_err(b, sizeof pre - 1 + body, &LIM), "INCOMPLETE") == 0);
    b[sizeof pre - 1 + body] = '1';
    CHECK(strcmp(parse_err(b, sizeof pre - 1 + body + 1, &LIM), "Protocol error: too big bulk count string") == 0);
    free(b);
    free(tail);

    /* resumed in small pieces, the same */
    resp_limits small = LIM;
    small.max_inline = 16;
    char line[] = "*1\r\n$1111111111111111"; /* '$' + 16 digits: too big at the last byte */
    resp_parser p;
    resp_parser_init(&p);
    resp_status st = RESP_INCOMPLETE;
    size_t k;
    for (k = 1; k <= sizeof line - 1 && st == RESP_INCOMPLETE; k++) st = resp_parse(&p, line, k, &small);
    CHECK(st == RESP_ERROR && k - 1 == sizeof line - 1);
    CHECK(p.err && strcmp(p.err, "Protocol error: too big bulk count string") == 0);
    resp_parser_free(&p);
}

TEST(too_big_inline) {
    size_t n;
    char *b;
    const char *big = "Protocol error: too big inline request";
    b = make_line(0, 64 * 1024, 'a', NULL, &n);
    CHECK(strcmp(parse_err(b, n, &LIM), "INCOMPLETE") == 0);
    free(b);
    b = make_line(0, 64 * 1024 + 1, 'a', NULL, &n);
    CHECK(strcmp(parse_err(b, n, &LIM), big) == 0);
    free(b);
    b = make_line(0, 64 * 1024, 'a', "\r", &n);    /* may still be "\r\n" */
    CHECK(strcmp(parse_err(b, n, &LIM), "INCOMPLETE") == 0);
    free(b);
    b = make_line(0, 64 * 1024, 'a', "\r\n", &n);
    CHECK(strcmp(parse_err(b, n, &LIM), "OK") == 0);
    free(b);
    b = make_line(0, 64 * 1024, 'a', "\n", &n);
    CHECK(strcmp(parse_err(b, n, &LIM), "OK") == 0);
    free(b);
    b = make_line(0, 64 * 1024, 'a', "\rx", &n);
    CHECK(strcmp(parse_err(b, n, &LIM), big) == 0);
    free(b);
    b = make_line(0, 64 * 1024 + 1, 'a', "\n", &n);  /* even with its newline */
    CHECK(strcmp(parse_err(b, n, &LIM), big) == 0);
    free(b);
    /* a NUL means Redis would never find the newline: refused at once */
    CHECK(strcmp(parse_err(S("\0"), &LIM), big) == 0);
    CHECK(strcmp(parse_err(S("PING\0\r\n"), &LIM), big) == 0);
    CHECK(strcmp(parse_err(S("$\0AAAA"), &LIM), big) == 0);
    CHECK(strcmp(parse_err(S("PING\r\n\0"), &LIM), "OK") == 0); /* the NUL is the next request's */
    /* the multibulk "*\0": no \r ever, so too big once past the limit */
    resp_limits small = LIM;
    small.max_inline = 8;
    CHECK(strcmp(parse_err(S("*\0AAAAAA\n"), &small), "Protocol error: too big mbulk count string") == 0);
}

TEST(too_many_inline_words) {
    resp_limits small = LIM;
    small.max_multibulk = 2;
    CHECK(strcmp(parse_err(S("a b\n"), &small), "OK") == 0);
    CHECK(strcmp(parse_err(S("a b c\n"), &small), "Protocol error: too many arguments in inline request") == 0);
}

TEST(argv_grows_as_arguments_arrive) {
    resp_parser p;
    resp_parser_init(&p);
    char big[] = "*1000000\r\n";
    CHECK(resp_parse(&p, big, sizeof big - 1, &LIM) == RESP_INCOMPLETE);
    CHECK(p.argv_cap == 0 && p.argv == NULL);
    resp_parser_free(&p);

    /* argv never exceeds the request's own count */
    resp_parser_init(&p);
    char three[] = "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n";
    CHECK(resp_parse(&p, three, sizeof three - 1, &LIM) == RESP_OK && p.argc == 3);
    CHECK(p.argv_cap == 3);

    /* 3000 args: capacity doubles up to exactly 3000, and is dropped again
     * before the next request since it is above 1024 */
    size_t cap = 16 + 3000 * 7, n = 0;
    char *b = malloc(cap);
    n += (size_t)sprintf(b, "*3000\r\n");
    for (int i = 0; i < 3000; i++) n += (size_t)sprintf(b + n, "$1\r\n%c\r\n", 'a' + i % 26);
    int seen_cap_ok = 1;
    resp_status st;
    for (size_t k = 64;; k += 64) {
        size_t m = k < n ? k : n;
        st = resp_parse(&p, b, m, &LIM);
        if (p.argv_cap > 3000 || (p.argc > 8 && p.argv_cap > 2 * p.argc)) seen_cap_ok = 0;
        if (st != RESP_INCOMPLETE || m == n) break;
    }
    CHECK(st == RESP_OK && p.argc == 3000);
    CHECK(p.argv_cap == 3000);
    CHECK(seen_cap_ok);
    int order_ok = 1;
    for (int i = 0; i < 3000; i++)
        if (p.argv[i].len != 1 || b[p.argv[i].off] != 'a' + i % 26) order_ok = 0;
    CHECK(order_ok);
    CHECK(resp_parse(&p, three, sizeof three - 1, &LIM) == RESP_OK && p.argc == 3);
    CHECK(p.argv_cap == 3);
    free(b);

    /* capped by max_multibulk */
    resp_limits small = LIM;
    small.max_multibulk = 5;
    char five[] = "a b c d e\n";
    CHECK(resp_parse(&p, five, sizeof five - 1, &small) == RESP_OK && p.argc == 5 && p.argv_cap <= 5);
    resp_parser_free(&p);
}

TEST(reset_after_ok_and_error) {
    resp_parser p;
    resp_parser_init(&p);
    char bad[] = "*1\r\nx";
    CHECK(resp_parse(&p, bad, sizeof bad - 1, &LIM) == RESP_ERROR);
    char good[] = "*1\r\n$1\r\nz\r\n";
    CHECK(resp_parse(&p, good, sizeof good - 1, &LIM) == RESP_OK && p.argc == 1 && p.err == NULL);
    CHECK(p.argv[0].off == 8);
    resp_parser_free(&p);
}

TEST(big_bulk_in_small_pieces) {
    /* a 4 MB bulk fed 1 KB at a time through a buffer that is compacted and
     * regrown like a connection's query buffer */
    size_t plen = 4u << 20;
    char hdr[64];
    int h = snprintf(hdr, sizeof hdr, "*2\r\n$3\r\nPUB\r\n$%zu\r\n", plen);
    size_t total = (size_t)h + plen + 2;
    char *src = malloc(total);
    memcpy(src, hdr, (size_t)h);
    for (size_t i = 0; i < plen; i++) src[h + i] = (char)(i * 131 + 7);
    memcpy(src + h + plen, "\r\n", 2);
    resp_parser p;
    resp_parser_init(&p);
    char *buf = NULL;
    size_t have = 0, cap = 0;
    resp_status st = RESP_INCOMPLETE;
    while (st == RESP_INCOMPLETE && have < total) {
        size_t add = total - have < 1024 ? total - have : 1024;
        if (have + add > cap) { /* grow by moving to a new block */
            cap = cap ? cap * 2 : 4096;
            char *nb = malloc(cap);
            if (have) memcpy(nb, buf, have);
            free(buf);
            buf = nb;
        }
        memcpy(buf + have, src + have, add);
        have += add;
        st = resp_parse(&p, buf, have, &LIM);
    }
    CHECK(st == RESP_OK && have == total && p.consumed == total);
    CHECK(p.argc == 2 && p.argv[1].len == plen && memcmp(buf + p.argv[1].off, src + h, plen) == 0);
    free(buf);
    free(src);
    resp_parser_free(&p);
}

/*---- Randomized round trip ---------------------------------------------*/

static unsigned long long rng_state;

/* Returns the next pseudo-random 64-bit value (xorshift64*). */
static unsigned long long rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* Returns a pseudo-random value in [0, n). */
static size_t rnd_below(size_t n) { return (size_t)(rnd() % n); }

/* A growable byte string for building streams. */
struct bytes {
    char *p;
    size_t n, cap;
};

/* Appends s[0..n) to b. */
static void put(struct bytes *b, const void *s, size_t n) {
    if (n == 0) return;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

/* Appends the C string s to b. */
static void puts_b(struct bytes *b, const char *s) { put(b, s, strlen(s)); }

/* One request as generated: its arguments, owned. */
struct req {
    int argc;
    struct bytes *argv;
};

/* Returns a random byte, biased towards the ones the protocol cares about. */
static char rnd_byte(void) {
    static const char special[] = "\r\n\0$*\"'\\ \tx0";
    if (rnd_below(3) == 0) return special[rnd_below(sizeof special - 1)];
    return (char)rnd_below(256);
}

/* Encodes r as a RESP multibulk into s. */
static void encode_multibulk(struct bytes *s, const struct req *r) {
    char hdr[32];
    snprintf(hdr, sizeof hdr, "*%d\r\n", r->argc);
    puts_b(s, hdr);
    for (int i = 0; i < r->argc; i++) {
        snprintf(hdr, sizeof hdr, "$%zu\r\n", r->argv[i].n);
        puts_b(s, hdr);
        put(s, r->argv[i].p, r->argv[i].n);
        puts_b(s, "\r\n");
    }
}

/* Encodes one word for an inline line the way a client could: bare when
 * possible, else '...' when possible, else "..." with escapes. */
static void encode_inline_word(struct bytes *s, const struct bytes *w) {
    int bare = w->n > 0, single = 1;
    for (size_t i = 0; i < w->n; i++) {
        unsigned char c = (unsigned char)w->p[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' || c == '"' ||
            c == '\'' || c == 0)
            bare = 0;
        if (c == '\\' || c == '\n' || c == 0) single = 0;
    }
    int style = (int)rnd_below(3);
    if (bare && style == 0) {
        put(s, w->p, w->n);
    } else if (single && style != 2) {
        puts_b(s, "'");
        for (size_t i = 0; i < w->n; i++) {
            if (w->p[i] == '\'')
                puts_b(s, "\\'");
            else
                put(s, &w->p[i], 1);
        }
        puts_b(s, "'");
    } else {
        puts_b(s, "\"");
        for (size_t i = 0; i < w->n; i++) {
            unsigned char c = (unsigned char)w->p[i];
            char esc[8];
            if (c == '"' || c == '\\') {
                esc[0] = '\\', esc[1] = (char)c, esc[2] = 0;
            } else if (c == '\n' && rnd_below(2)) {
                strcpy(esc, "\\n");
            } else if (c == '\t' && rnd_below(2)) {
                strcpy(esc, "\\t");
            } else if (c < 32 || c >= 127 || rnd_below(8) == 0) {
                snprintf(esc, sizeof esc, rnd_below(2) ? "\\x%02x" : "\\x%02X", c);
            } else {
                esc[0] = (char)c, esc[1] = 0;
            }
            puts_b(s, esc);
        }
        puts_b(s, "\"");
    }
}

/* Encodes r as an inline line (words separated by random blanks). */
static void encode_inline(struct bytes *s, const struct req *r) {
    static const char *seps[] = {" ", "  ", "\t", " \t "};
    struct bytes line = {0};
    if (rnd_below(4) == 0) puts_b(&line, " ");
    for (int i = 0; i < r->argc; i++) {
        if (i) puts_b(&line, seps[rnd_below(4)]);
        encode_inline_word(&line, &r->argv[i]);
    }
    if (rnd_below(3) == 0) puts_b(&line, " ");
    /* a line starting with '*' would be a multibulk: indent it */
    if (line.n && line.p[0] == '*') puts_b(s, " ");
    if (line.n) put(s, line.p, line.n);
    puts_b(s, rnd_below(2) ? "\r\n" : "\n");
    free(line.p);
}

/* Fills r with random arguments; small ones for inline lines. */
static void random_req(struct req *r, int for_inline) {
    r->argc = (int)rnd_below(for_inline ? 6 : 12);
    r->argv = calloc((size_t)r->argc + 1, sizeof *r->argv);
    for (int i = 0; i < r->argc; i++) {
        size_t n = rnd_below(8) == 0 ? rnd_below(2000) : rnd_below(for_inline ? 24 : 40);
        if (for_inline && n > 200) n = 200;
        for (size_t j = 0; j < n; j++) {
            char c = rnd_byte();
            put(&r->argv[i], &c, 1);
        }
    }
}

/* Feeds stream s to one parser the way a connection would: random-sized
 * reads appended to a query buffer that is compacted after each batch and
 * reallocated (moved) at random. Returns the number of requests matching
 * reqs, in order, or -1 on the first mismatch. */
static int feed_stream(const struct bytes *s, const struct req *reqs, int nreqs, size_t maxchunk) {
    resp_parser p;
    resp_parser_init(&p);
    char *q = NULL;
    size_t qlen = 0, sent = 0;
    int got = 0, bad = 0;
    while (!bad && (sent < s->n || qlen)) {
        size_t add = s->n - sent;
        if (add > 0) {
            size_t c = 1 + rnd_below(maxchunk);
            if (c < add) add = c;
        }
        /* always a fresh allocation: the old address must not matter */
        char *nq = malloc(qlen + add + 1);
        if (qlen) memcpy(nq, q, qlen);
        memcpy(nq + qlen, s->p + sent, add);
        free(q);
        q = nq;
        qlen += add;
        sent += add;
        size_t pos = 0;
        while (pos < qlen) {
            resp_status st = resp_parse(&p, q + pos, qlen - pos, &LIM);
            if (st == RESP_INCOMPLETE) break;
            if (st == RESP_ERROR || got >= nreqs) {
                fprintf(stderr, "  unexpected %s at request %d\n", st == RESP_ERROR ? p.err : "request", got);
                bad = 1;
                break;
            }
            const struct req *r = &reqs[got];
            int ok = p.argc == r->argc;
            for (int i = 0; ok && i < r->argc; i++)
                ok = p.argv[i].len == r->argv[i].n &&
                     (r->argv[i].n == 0 || memcmp(q + pos + p.argv[i].off, r->argv[i].p, r->argv[i].n) == 0);
            if (!ok) {
                fprintf(stderr, "  request %d: argc %d want %d\n", got, p.argc, r->argc);
                bad = 1;
                break;
            }
            got++;
            pos += p.consumed;
        }
        if (pos) {
            memmove(q, q + pos, qlen - pos);
            qlen -= pos;
        }
        if (sent == s->n && qlen && !bad) {
            /* everything sent but bytes left over: a request never completed */
            fprintf(stderr, "  %zu bytes left unparsed\n", qlen);
            bad = 1;
        }
    }
    free(q);
    resp_parser_free(&p);
    return bad ? -1 : got;
}

TEST(random_round_trip) {
    for (int round = 0; round < 300; round++) {
        unsigned long long seed = 0x9E3779B97F4A7C15ULL * (unsigned long long)(round + 1);
        rng_state = seed;
        int nreqs = 1 + (int)rnd_below(20);
        struct req *reqs = calloc((size_t)nreqs, sizeof *reqs);
        struct bytes s = {0};
        for (int i = 0; i < nreqs; i++) {
            int inl = rnd_below(3) == 0;
            random_req(&reqs[i], inl);
            if (inl)
                encode_inline(&s, &reqs[i]);
            else
                encode_multibulk(&s, &reqs[i]);
        }
        size_t chunks[] = {1, 7, 64, 4096, s.n};
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            int got = feed_stream(&s, reqs, nreqs, chunks[c]);
            CHECKF(got == nreqs, "round %d (seed %llx) max chunk %zu: %d of %d", round, seed, chunks[c], got,
                   nreqs);
        }
        for (int i = 0; i < nreqs; i++) {
            for (int j = 0; j < reqs[i].argc; j++) free(reqs[i].argv[j].p);
            free(reqs[i].argv);
        }
        free(reqs);
        free(s.p);
    }
}

UNIT_MAIN()
