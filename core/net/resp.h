/* resp.h -- incremental parser for client requests in the Redis protocol.
 *
 * Contract: a request is either a RESP multibulk (`*N\r\n$len\r\nbytes\r\n...`)
 * or an inline command (a line of space-separated words, with Redis's quoting
 * rules: "..." with \n \r \t \b \a \\ \" \xHH escapes, and '...' with \' ).
 * The parser never copies argument bytes: arguments are offsets into the
 * caller's buffer, measured from the start of the request being parsed, so
 * the caller may move (compact or grow) its buffer between calls as long as
 * the unconsumed bytes keep their order and the request still starts at the
 * offset passed as `buf`.
 *
 * Inline requests are decoded IN PLACE: when an inline line is complete, the
 * call that returns RESP_OK (or RESP_ERROR) for it may rewrite bytes of that
 * line (an escaped or quoted word is shifted left over its own quotes and
 * escapes), so each argument is a contiguous run of buffer bytes. Only bytes
 * of the request being returned (buf[0 .. consumed)) are written; bytes of an
 * unfinished request and of later pipelined requests are never touched, and a
 * multibulk request is never written at all. The caller must therefore pass a
 * writable buffer and must not expect a consumed inline request's raw bytes to
 * survive (e.g. for logging them verbatim).
 *
 * It is resumable: when a call returns RESP_INCOMPLETE, the parser remembers
 * how far it got, so a 100 MB bulk arriving in 16 KB pieces costs O(total),
 * not O(n^2). The next call must pass the same request start with at least
 * as many bytes as before.
 *
 * Limits are checked as soon as a length is read, before any byte of it is
 * waited for, so an oversized request is refused without being buffered.
 * The parser allocates nothing but the argv array it owns (bounded by
 * max_multibulk, grown as arguments arrive, kept across requests unless a
 * request needed more than 1024 entries), freed by resp_parser_free. */
#ifndef LUAHUB_RESP_H
#define LUAHUB_RESP_H

#include <stddef.h>

/* One argument: `off` bytes from the start of the request, `len` bytes long. */
/* One argument of a request as commands see it: points into the
 * connection's query buffer and is valid only during the command call. Not
 * NUL-terminated. */
typedef struct hstr {
    const char *p;
    size_t len;
} hstr;

typedef struct resp_arg {
    size_t off;
    size_t len;
} resp_arg;

typedef struct resp_limits {
    long long max_bulk;      /* largest accepted $len (proto-max-bulk-len) */
    long long max_multibulk; /* largest accepted *N (max-multibulk-len); also
                                the most words an inline line may have */
    size_t max_inline;       /* longest inline line, without \r\n (64 KiB in
                                Redis); also the longest `*N` / `$len` header
                                line that may be buffered without its \r */
} resp_limits;

typedef enum resp_status {
    RESP_OK = 1,         /* a whole request: see argc/argv/consumed */
    RESP_INCOMPLETE = 0, /* need more bytes; call again with the same start */
    RESP_ERROR = -1      /* protocol error: see err; close the connection */
} resp_status;

typedef struct resp_parser {
    /* results, valid after RESP_OK until the next call */
    int argc; /* 0 for an empty inline line or `*0`/`*-N`: skip it */
    resp_arg *argv;
    size_t consumed; /* bytes of the request, from its start, incl. \r\n */
    const char *err; /* after RESP_ERROR: Redis's text without "-ERR ", e.g.
                        "Protocol error: invalid bulk length" (never
                        contains \r or \n); valid until the next call */

    /* internal state (resumption) */
    int state;
    size_t pos;  /* how far into the request we have parsed */
    size_t scan; /* how far a line-end search has already looked */
    long long multibulk_left;
    long long bulk_len;
    int argv_cap;
    int is_inline;
    char errbuf[48]; /* storage for the "expected '$', got 'X'" text */
} resp_parser;

void resp_parser_init(resp_parser *p);
void resp_parser_free(resp_parser *p);

/* Parses the request starting at buf[0] (len bytes available). On RESP_OK the
 * parser is ready for the next request (which starts at buf + consumed); after
 * RESP_ERROR it is reset too, but the connection should be closed. buf must
 * be writable: completing an inline request may rewrite its bytes (see top).
 * Error texts match Redis's exactly where Redis has one:
 *   "Protocol error: invalid multibulk length"
 *   "Protocol error: invalid bulk length"
 *   "Protocol error: expected '$', got 'X'"
 *   "Protocol error: too big inline request"
 *   "Protocol error: too big mbulk count string"
 *   "Protocol error: too big bulk count string"
 *   "Protocol error: unbalanced quotes in request"
 * and where it has none (Redis skips the 2 bytes after a bulk unchecked and
 * does not bound inline words):
 *   "Protocol error: expected CRLF after bulk data"
 *   "Protocol error: too many arguments in inline request"
 *   "out of memory for request arguments"  */
resp_status resp_parse(resp_parser *p, char *buf, size_t len, const resp_limits *lim);

/* Parses s[0..n) as a strictly formatted decimal long long, like Redis's
 * string2ll: optional '-', no '+', no spaces, no leading zeros, no "-0".
 * Returns 1 and sets *out on success, 0 otherwise. Every integer a client
 * sends (headers and command arguments) goes through it. */
int resp_string2ll(const char *s, size_t n, long long *out);

#endif
