/* reply.c -- RESP2/RESP3 encoding of every reply and push (see reply.h). */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
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

void reply_ok(conn *c) { conn_write(c, "+OK\r\n", 5); }

/* -<s>\r\n with any \r or \n in s turned into spaces, so an error text
 * (which may come from a Lua handler) can never break the framing. */
void reply_error(conn *c, const char *s) {
    char buf[1024];
    size_t n = 0;
    buf[n++] = '-';
    for (; *s && n < sizeof buf - 2; s++) buf[n++] = (*s == '\r' || *s == '\n') ? ' ' : *s;
    buf[n++] = '\r';
    buf[n++] = '\n';
    conn_write(c, buf, n);
}

void reply_errorf(conn *c, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    reply_error(c, buf);
}

void reply_int(conn *c, long long v) { reply_header(c, ':', v); }

void reply_bulk(conn *c, const char *p, size_t n) {
    reply_header(c, '$', (long long)n);
    conn_write(c, p, n);
    conn_write(c, "\r\n", 2);
}

void reply_cstr(conn *c, const char *s) { reply_bulk(c, s, strlen(s)); }

void reply_null(conn *c) {
    if (c->proto >= 3) conn_write(c, "_\r\n", 3);
    else conn_write(c, "$-1\r\n", 5);
}

void reply_null_array(conn *c) {
    if (c->proto >= 3) conn_write(c, "_\r\n", 3);
    else conn_write(c, "*-1\r\n", 5);
}

void reply_array(conn *c, long n) { reply_header(c, '*', n); }

/* n key/value pairs follow. */
void reply_map(conn *c, long n) {
    if (c->proto >= 3) reply_header(c, '%', n);
    else reply_header(c, '*', 2 * n);
}

void reply_set(conn *c, long n) { reply_header(c, c->proto >= 3 ? '~' : '*', n); }

void reply_push(conn *c, long n) { reply_header(c, c->proto >= 3 ? '>' : '*', n); }

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
