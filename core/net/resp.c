/* resp.c -- incremental, zero-copy parser for client requests in the Redis
 * protocol (see resp.h for the contract).
 *
 * It follows Redis 7's processMultibulkBuffer / processInlineBuffer and
 * sdssplitargs: same accepted inputs, same error texts, same limits. Where
 * Redis relies on C strings it is made binary-safe and stricter:
 *  - a header line must end in "\r\n" (Redis skips whatever byte follows \r);
 *  - a bulk's payload must be followed by "\r\n" (Redis skips 2 bytes);
 *  - a NUL byte in an inline line is refused at once: Redis's strchr() can
 *    never see past it, so Redis buffers until "too big inline request",
 *    which is the error given here without the wait;
 *  - an inline line longer than max_inline is refused even when its newline
 *    arrived in the same read (Redis accepts it then), so the outcome does not
 *    depend on how the bytes were chunked. */
#include "resp.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum {
    ST_START = 0,   /* nothing of the request parsed yet */
    ST_MB_COUNT,    /* reading the `*N\r\n` line starting at pos */
    ST_BULK_HDR,    /* reading a `$len\r\n` line starting at pos */
    ST_BULK_DATA,   /* waiting for bulk_len bytes + \r\n starting at pos */
    ST_INLINE       /* waiting for the end of an inline line */
};

#define ARGV_INITIAL 8    /* first allocation of argv */
#define ARGV_KEEP 1024    /* argv larger than this is freed between requests */

static const char ERR_MBULK_LEN[] = "Protocol error: invalid multibulk length";
static const char ERR_BULK_LEN[] = "Protocol error: invalid bulk length";
static const char ERR_INLINE_BIG[] = "Protocol error: too big inline request";
static const char ERR_MBULK_BIG[] = "Protocol error: too big mbulk count string";
static const char ERR_BULK_BIG[] = "Protocol error: too big bulk count string";
static const char ERR_QUOTES[] = "Protocol error: unbalanced quotes in request";
static const char ERR_BULK_CRLF[] = "Protocol error: expected CRLF after bulk data";
static const char ERR_INLINE_ARGS[] = "Protocol error: too many arguments in inline request";
static const char ERR_OOM[] = "out of memory for request arguments";

/* Result of reading a `*N` or `$len` header line. */
enum { HDR_INCOMPLETE, HDR_OK, HDR_BAD, HDR_TOO_BIG };

/* Prepares an empty parser; it allocates nothing until an argument arrives. */
void resp_parser_init(resp_parser *p) {
    memset(p, 0, sizeof *p);
    p->state = ST_START;
}

/* Frees the argv array; the parser may be reused after resp_parser_init. */
void resp_parser_free(resp_parser *p) {
    free(p->argv);
    p->argv = NULL;
    p->argv_cap = 0;
    p->argc = 0;
}

/* Forgets any partial request, keeping argv storage (unless it is big). */
static void parser_reset(resp_parser *p) {
    p->state = ST_START;
    p->pos = 0;
    p->scan = 0;
    p->multibulk_left = 0;
    p->bulk_len = 0;
    p->is_inline = 0;
}

/* Records a protocol error and resets the parser. Returns RESP_ERROR. */
static resp_status parser_fail(resp_parser *p, const char *err) {
    p->err = err;
    parser_reset(p);
    return RESP_ERROR;
}

/* Marks the request as complete at byte `end`. Returns RESP_OK. */
static resp_status parser_done(resp_parser *p, size_t end) {
    p->consumed = end;
    parser_reset(p);
    return RESP_OK;
}

/* Parses s[0..n) as a strictly formatted decimal long long, like Redis's
 * string2ll: optional '-', no '+', no spaces, no leading zeros, no "-0".
 * Returns 1 and sets *out on success, 0 otherwise. */
int resp_string2ll(const char *s, size_t n, long long *out) {
    size_t i = 0;
    int neg = 0;
    if (n == 0) return 0;
    if (n == 1 && s[0] == '0') {
        *out = 0;
        return 1;
    }
    if (s[0] == '-') {
        neg = 1;
        i = 1;
        if (n == 1) return 0;
    }
    if (s[i] < '1' || s[i] > '9') return 0;
    unsigned long long v = 0;
    const unsigned long long max = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10) return 0;
        v = v * 10 + d;
    }
    if (neg)
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    else
        *out = (long long)v;
    return 1;
}

/* Reads the header line starting at p->pos (its type byte, '*' or '$', was
 * already checked). Returns HDR_OK with the number in *n and p->pos moved past
 * the \r\n, HDR_INCOMPLETE, HDR_BAD (not a valid number or no \n after \r), or
 * HDR_TOO_BIG (more than max_inline bytes and still no \r). */
static int read_header(resp_parser *p, const char *buf, size_t len, size_t max_inline, long long *n) {
    const char *s = buf + p->pos + 1, *end = buf + len;

    /* Fast path: a short number starting with 1-9 directly followed by \r\n. */
    if (s < end && *s >= '1' && *s <= '9') {
        long long v = 0;
        const char *q = s;
        while (q < end && q - s < 18 && *q >= '0' && *q <= '9') v = v * 10 + (*q++ - '0');
        if (end - q >= 2 && q[0] == '\r' && q[1] == '\n') {
            *n = v;
            p->pos = (size_t)(q + 2 - buf);
            return HDR_OK;
        }
    }

    /* General path: find the \r (resuming where the last call stopped). */
    if (p->scan < p->pos + 1) p->scan = p->pos + 1;
    const char *cr = p->scan < len ? memchr(buf + p->scan, '\r', len - p->scan) : NULL;
    if (!cr) {
        p->scan = len;
        return len - p->pos > max_inline ? HDR_TOO_BIG : HDR_INCOMPLETE;
    }
    p->scan = (size_t)(cr - buf);
    if (cr + 1 >= end) return HDR_INCOMPLETE;
    if (cr[1] != '\n' || !resp_string2ll(s, (size_t)(cr - s), n)) return HDR_BAD;
    p->pos = (size_t)(cr + 2 - buf);
    return HDR_OK;
}

/* Makes room for one more argument, never beyond `most` entries in all.
 * Returns 1 on success, 0 when out of memory. */
static int argv_reserve(resp_parser *p, long long most) {
    if (p->argc < p->argv_cap) return 1;
    long long cap = p->argv_cap ? (long long)p->argv_cap * 2 : ARGV_INITIAL;
    if (cap > most) cap = most;
    if (cap > INT_MAX) cap = INT_MAX;
    if (cap <= p->argc) cap = (long long)p->argc + 1;
    resp_arg *a = realloc(p->argv, (size_t)cap * sizeof *a);
    if (!a) return 0;
    p->argv = a;
    p->argv_cap = (int)cap;
    return 1;
}

/* Continues a multibulk request from the parser's state. Returns RESP_OK,
 * RESP_INCOMPLETE or RESP_ERROR (with p->err set). */
static resp_status parse_multibulk(resp_parser *p, const char *buf, size_t len, const resp_limits *lim) {
    long long n;

    if (p->state == ST_MB_COUNT) {
        switch (read_header(p, buf, len, lim->max_inline, &n)) {
        case HDR_INCOMPLETE: return RESP_INCOMPLETE;
        case HDR_TOO_BIG: return parser_fail(p, ERR_MBULK_BIG);
        case HDR_BAD: return parser_fail(p, ERR_MBULK_LEN);
        }
        if (n > lim->max_multibulk || n > INT_MAX) return parser_fail(p, ERR_MBULK_LEN);
        if (n <= 0) return parser_done(p, p->pos); /* *0 and *-N: nothing to run */
        p->multibulk_left = n;
        p->state = ST_BULK_HDR;
        p->scan = p->pos;
    }

    while (p->multibulk_left) {
        if (p->state == ST_BULK_HDR) {
            if (p->pos >= len) return RESP_INCOMPLETE;
            char c = buf[p->pos];
            if (c != '$') {
                /* Redis's text, with \r and \n shown as spaces as its
                 * addReplyErrorFormat does (a NUL ends the text there). */
                if (c == '\r' || c == '\n') c = ' ';
                memcpy(p->errbuf, "Protocol error: expected '$', got 'X'", 38);
                p->errbuf[35] = c;
                return parser_fail(p, p->errbuf);
            }
            switch (read_header(p, buf, len, lim->max_inline, &n)) {
            case HDR_INCOMPLETE: return RESP_INCOMPLETE;
            case HDR_TOO_BIG: return parser_fail(p, ERR_BULK_BIG);
            case HDR_BAD: return parser_fail(p, ERR_BULK_LEN);
            }
            if (n < 0 || n > lim->max_bulk) return parser_fail(p, ERR_BULK_LEN);
            p->bulk_len = n;
            p->state = ST_BULK_DATA;
        }

        /* ST_BULK_DATA: the payload and its \r\n, all present or not. */
        unsigned long long avail = len - p->pos, need = (unsigned long long)p->bulk_len;
        if (avail < need + 2) {
            if (avail > need && buf[p->pos + need] != '\r') return parser_fail(p, ERR_BULK_CRLF);
            return RESP_INCOMPLETE;
        }
        if (buf[p->pos + need] != '\r' || buf[p->pos + need + 1] != '\n')
            return parser_fail(p, ERR_BULK_CRLF);
        if (!argv_reserve(p, (long long)p->argc + p->multibulk_left)) return parser_fail(p, ERR_OOM);
        p->argv[p->argc].off = p->pos;
        p->argv[p->argc].len = (size_t)need;
        p->argc++;
        p->pos += (size_t)need + 2;
        p->scan = p->pos;
        p->multibulk_left--;
        p->state = ST_BULK_HDR;
    }
    return parser_done(p, p->pos);
}

/* Returns 1 for the bytes C's isspace() accepts in the "C" locale. */
static inline int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Returns 1 for an ASCII hex digit. */
static inline int is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Returns the value of a hex digit (is_hex must hold). */
static inline int hex_val(char c) {
    if (c <= '9') return c - '0';
    if (c <= 'F') return c - 'A' + 10;
    return c - 'a' + 10;
}

/* Splits line s[0..n) into words with sdssplitargs's rules, decoding quotes
 * and escapes in place (each word is written over its own start, so the
 * write position never passes the read position). Returns RESP_OK with
 * p->argc/argv set, or RESP_ERROR with p->err set. */
static resp_status split_inline(resp_parser *p, char *s, size_t n, long long max_args) {
    size_t i = 0;
    for (;;) {
        while (i < n && is_space(s[i])) i++;
        if (i >= n) return RESP_OK;

        size_t start = i, w = i;
        int inq = 0, insq = 0, done = 0;
        while (!done) {
            if (inq) {
                if (i >= n) return parser_fail(p, ERR_QUOTES); /* unterminated */
                if (s[i] == '\\' && i + 3 < n && s[i + 1] == 'x' && is_hex(s[i + 2]) && is_hex(s[i + 3])) {
                    s[w++] = (char)(hex_val(s[i + 2]) * 16 + hex_val(s[i + 3]));
                    i += 4;
                } else if (s[i] == '\\' && i + 1 < n) {
                    char c;
                    switch (s[i + 1]) {
                    case 'n': c = '\n'; break;
                    case 'r': c = '\r'; break;
                    case 't': c = '\t'; break;
                    case 'b': c = '\b'; break;
                    case 'a': c = '\a'; break;
                    default: c = s[i + 1]; break;
                    }
                    s[w++] = c;
                    i += 2;
                } else if (s[i] == '"') {
                    /* the closing quote must be followed by a space or nothing */
                    if (i + 1 < n && !is_space(s[i + 1])) return parser_fail(p, ERR_QUOTES);
                    done = 1;
                    i++;
                } else {
                    s[w++] = s[i++];
                }
            } else if (insq) {
                if (i >= n) return parser_fail(p, ERR_QUOTES);
                if (s[i] == '\\' && i + 1 < n && s[i + 1] == '\'') {
                    s[w++] = '\'';
                    i += 2;
                } else if (s[i] == '\'') {
                    if (i + 1 < n && !is_space(s[i + 1])) return parser_fail(p, ERR_QUOTES);
                    done = 1;
                    i++;
                } else {
                    s[w++] = s[i++];
                }
            } else if (i >= n) {
                done = 1;
            } else {
                switch (s[i]) {
                case ' ':
                case '\n':
                case '\r':
                case '\t':
                    done = 1;
                    i++;
                    break;
                case '"':
                    inq = 1;
                    i++;
                    break;
                case '\'':
                    insq = 1;
                    i++;
                    break;
                default:
                    /* Unquoted bytes stay where they are: a word ends at its
                     * closing quote, so no unquoted byte follows a decoded
                     * (shortened) part and here w == i. */
                    w++;
                    i++;
                    break;
                }
            }
        }

        if (p->argc >= max_args) return parser_fail(p, ERR_INLINE_ARGS);
        if (!argv_reserve(p, max_args)) return parser_fail(p, ERR_OOM);
        p->argv[p->argc].off = start;
        p->argv[p->argc].len = w - start;
        p->argc++;
    }
}

/* Continues an inline request: waits for its \n (searching only bytes not
 * searched before), then splits it. Returns RESP_OK, RESP_INCOMPLETE or
 * RESP_ERROR (with p->err set). */
static resp_status parse_inline(resp_parser *p, char *buf, size_t len, const resp_limits *lim) {
    size_t max = lim->max_inline;
    /* A \n further than max+1 bytes in means a line longer than max. */
    size_t win = len;
    if (max < (size_t)-2 && max + 2 < win) win = max + 2;

    char *nl = p->scan < win ? memchr(buf + p->scan, '\n', win - p->scan) : NULL;
    size_t upto = nl ? (size_t)(nl - buf) : win;
    if (p->scan < upto && memchr(buf + p->scan, '\0', upto - p->scan))
        return parser_fail(p, ERR_INLINE_BIG); /* Redis never finds the \n */
    if (!nl) {
        p->scan = win;
        /* max+1 bytes are fine only if the last is the \r of a \r\n */
        if (len - 1 > max || (len - 1 == max && buf[max] != '\r')) return parser_fail(p, ERR_INLINE_BIG);
        return RESP_INCOMPLETE;
    }

    size_t line = (size_t)(nl - buf);
    if (line > 0 && buf[line - 1] == '\r') line--;
    if (line > max) return parser_fail(p, ERR_INLINE_BIG);
    long long max_args = lim->max_multibulk < INT_MAX ? lim->max_multibulk : INT_MAX;
    if (split_inline(p, buf, line, max_args) != RESP_OK) return RESP_ERROR;
    return parser_done(p, (size_t)(nl - buf) + 1);
}

/* Parses (or resumes parsing) the request at buf[0..len): see resp.h. */
resp_status resp_parse(resp_parser *p, char *buf, size_t len, const resp_limits *lim) {
    if (p->state == ST_START) {
        p->argc = 0;
        p->consumed = 0;
        p->err = NULL;
        if (p->argv_cap > ARGV_KEEP) resp_parser_free(p);
        if (len == 0) return RESP_INCOMPLETE;
        p->pos = 0;
        if (buf[0] == '*') {
            p->state = ST_MB_COUNT;
            p->scan = 1;
        } else {
            p->state = ST_INLINE;
            p->is_inline = 1;
            p->scan = 0;
        }
    } else if (len < p->pos) {
        return RESP_INCOMPLETE; /* contract broken (fewer bytes than before) */
    }
    if (p->state == ST_INLINE) return parse_inline(p, buf, len, lim);
    return parse_multibulk(p, buf, len, lim);
}
