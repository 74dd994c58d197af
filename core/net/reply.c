/* reply.c -- RESP2/RESP3 encoding of every reply and push (see reply.h). */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes a type byte, a decimal length/value and \r\n in one append. */
static void reply_header(conn *c, char type, long long n) {
    char buf[32];
    buf[0] = type;
    int len = 1;
    unsigned long long u = n < 0 ? -(unsigned long long)n : (unsigned long long)n;
    char tmp[24];
    int t = 0;
    do {
        tmp[t++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (n < 0) buf[len++] = '-';
    while (t) buf[len++] = tmp[--t];
    buf[len++] = '\r';
    buf[len++] = '\n';
    conn_write(c, buf, (size_t)len);
}

/* +s\r\n; s must not contain \r or \n. */
void reply_status(conn *c, const char *s) {
    conn_write(c, "+", 1);
    conn_write(c, s, strlen(s));
    conn_write(c, "\r\n", 2);
}

void reply_ok(conn *c) {
    conn_write(c, "+OK\r\n", 5);
}

/* -<s>\r\n with any \r or \n in s turned into spaces, so an error text
 * (which may come from a Lua handler) can never break the framing. */
void reply_error(conn *c, const char *s) {
    conn_write(c, "-", 1);
    while (*s) {
        size_t n = strcspn(s, "\r\n");
        conn_write(c, s, n);
        s += n;
        if (*s) {
            conn_write(c, " ", 1);
            s++;
        }
    }
    conn_write(c, "\r\n", 2);
}

void reply_errorf(conn *c, const char *fmt, ...) {
    textbuf b = {0};
    va_list ap;
    va_start(ap, fmt);
    textbuf_vprintf(&b, fmt, ap);
    va_end(ap);
    reply_error(c, b.oom ? "ERR out of memory" : b.p);
    textbuf_free(&b);
}

void reply_int(conn *c, long long v) {
    reply_header(c, ':', v);
}

void reply_bulk(conn *c, const char *p, size_t n) {
    reply_header(c, '$', (long long)n);
    conn_write(c, p, n);
    conn_write(c, "\r\n", 2);
}

void reply_cstr(conn *c, const char *s) {
    reply_bulk(c, s, strlen(s));
}

void reply_null(conn *c) {
    if (c->proto >= 3)
        conn_write(c, "_\r\n", 3);
    else
        conn_write(c, "$-1\r\n", 5);
}

void reply_null_array(conn *c) {
    if (c->proto >= 3)
        conn_write(c, "_\r\n", 3);
    else
        conn_write(c, "*-1\r\n", 5);
}

void reply_array(conn *c, long n) {
    reply_header(c, '*', n);
}

/* n key/value pairs follow. */
void reply_map(conn *c, long n) {
    if (c->proto >= 3)
        reply_header(c, '%', n);
    else
        reply_header(c, '*', 2 * n);
}

void reply_set(conn *c, long n) {
    reply_header(c, c->proto >= 3 ? '~' : '*', n);
}

void reply_push(conn *c, long n) {
    reply_header(c, c->proto >= 3 ? '>' : '*', n);
}

void reply_double(conn *c, double d) {
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.17g", d);
    if (c->proto >= 3) {
        conn_write(c, ",", 1);
        conn_write(c, buf, (size_t)n);
        conn_write(c, "\r\n", 2);
    } else {
        reply_bulk(c, buf, (size_t)n);
    }
}

/* A verbatim text string (RESP3 `=`, format "txt"), a bulk in RESP2. */
void reply_verbatim(conn *c, const char *p, size_t n) {
    if (c->proto < 3) {
        reply_bulk(c, p, n);
        return;
    }
    reply_header(c, '=', (long long)n + 4);
    conn_write(c, "txt:", 4);
    conn_write(c, p, n);
    conn_write(c, "\r\n", 2);
}

/* Writes "$<n>\r\n<bytes>\r\n" at p; returns the end. */
static char *put_bulk(char *p, const char *bytes, size_t n) {
    char digits[24];
    int k = 0;
    size_t v = n;
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    *p++ = '$';
    while (k) *p++ = digits[--k];
    *p++ = '\r', *p++ = '\n';
    memcpy(p, bytes, n);
    p += n;
    *p++ = '\r', *p++ = '\n';
    return p;
}

/* Formats with no printf: this runs once per publish on the fan-out path. */
size_t reply_format_message(char *out, int proto, const char *pat, size_t plen, const char *chan, size_t clen,
                            const char *msg, size_t mlen) {
    char *p = out;
    *p++ = proto >= 3 ? '>' : '*';
    if (pat) {
        memcpy(p, "4\r\n$8\r\npmessage\r\n", 17);
        p = put_bulk(p + 17, pat, plen);
    } else {
        memcpy(p, "3\r\n$7\r\nmessage\r\n", 16);
        p += 16;
    }
    p = put_bulk(p, chan, clen);
    p = put_bulk(p, msg, mlen);
    return (size_t)(p - out);
}

/*---- Text buffers -------------------------------------------------------*/

/* Makes room for n more bytes plus a NUL. Returns 0, or -1 (and sets oom). */
static int textbuf_reserve(textbuf *b, size_t n) {
    if (b->oom) return -1;
    if (b->cap - b->len > n) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void textbuf_append(textbuf *b, const char *p, size_t n) {
    if (textbuf_reserve(b, n)) return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void textbuf_vprintf(textbuf *b, const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n >= 0 && textbuf_reserve(b, (size_t)n) == 0) {
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, again);
        b->len += (size_t)n;
    }
    va_end(again);
}

void textbuf_printf(textbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    textbuf_vprintf(b, fmt, ap);
    va_end(ap);
}

void textbuf_free(textbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
