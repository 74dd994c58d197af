/* reply.h -- every byte of protocol the hub sends is written here. Commands
 * call these helpers; RESP2 versus RESP3 is decided in this one place
 * (maps become flat arrays, pushes become arrays, null becomes $-1 ...). */
#ifndef LUAHUB_REPLY_H
#define LUAHUB_REPLY_H

#include <stdarg.h>
#include <stddef.h>

#include "conn.h"

void reply_status(conn *c, const char *s); /* +s */
void reply_ok(conn *c);                    /* +OK */
/* -ERR-style error. `s` starts with its code ("ERR ...", "NOPROTO ...");
 * \r and \n in it are replaced by spaces, as Redis does. */
void reply_error(conn *c, const char *s);
void reply_errorf(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void reply_int(conn *c, long long v);
void reply_bulk(conn *c, const char *p, size_t n);
void reply_cstr(conn *c, const char *s);               /* bulk from a C string */
void reply_null(conn *c);                              /* $-1 / _ */
void reply_null_array(conn *c);                        /* *-1 / _ */
void reply_array(conn *c, long n);                     /* *n */
void reply_map(conn *c, long n);                       /* %n / *2n (n pairs) */
void reply_set(conn *c, long n);                       /* ~n / *n */
void reply_push(conn *c, long n);                      /* >n / *n */
void reply_double(conn *c, double d);                  /* ,d / bulk */
void reply_verbatim(conn *c, const char *p, size_t n); /* =n txt: / bulk */

/* A pub/sub message frame, [message, chan, msg] or [pmessage, pat, chan, msg]
 * (a push in RESP3), formatted into `out`, which must hold at least
 * REPLY_MESSAGE_SIZE bytes; pat NULL for a channel match. Returns the length.
 * Connections encode a publish once and copy it to every subscriber (conn.c). */
#define REPLY_MESSAGE_SIZE(plen, clen, mlen) ((plen) + (clen) + (mlen) + 96)
size_t reply_format_message(char *out, int proto, const char *pat, size_t plen, const char *chan, size_t clen,
                            const char *msg, size_t mlen);

/* Text assembled for one reply (CLIENT LIST, CLIENT INFO): it grows as
 * needed, so nothing is ever cut off. Zero-initialise; p is NUL-terminated
 * once anything was added. oom is set (and the text frozen) if an allocation
 * failed: the caller replies with an error instead. */
typedef struct textbuf {
    char *p;
    size_t len, cap;
    int oom;
} textbuf;
void textbuf_append(textbuf *b, const char *p, size_t n);
void textbuf_printf(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void textbuf_vprintf(textbuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void textbuf_free(textbuf *b);

#endif
