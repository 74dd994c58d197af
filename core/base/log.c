/* log.c -- leveled logging to stderr (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int log_level = LOG_NOTICE;

static const char *level_names[] = {"debug", "verbose", "notice", "warning"};

/* Returns the level for a name ("debug", "verbose", "notice", "warning"; also
 * "info" as an alias of verbose), or -1. */
int log_level_parse(const char *name) {
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0) return i;
    if (strcasecmp(name, "info") == 0) return LOG_VERBOSE;
    return -1;
}

/* Copies the message m (n bytes) into out (room for cap bytes) with control
 * characters escaped (\n, \r, \xNN; a tab stays), so no text a handler or
 * a client supplies can end the line and forge another one. Returns the
 * bytes written; the message is cut if it does not fit. */
static size_t escape_controls(char *out, size_t cap, const char *m, size_t n) {
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)m[i];
        if (ch >= 0x20 && ch != 0x7f) {
            if (j + 1 > cap) break;
            out[j++] = (char)ch;
        } else if (ch == '\t') {
            if (j + 1 > cap) break;
            out[j++] = '\t';
        } else {
            if (j + 4 > cap) break;
            if (ch == '\n' || ch == '\r') {
                out[j++] = '\\';
                out[j++] = ch == '\n' ? 'n' : 'r';
            } else {
                j += (size_t)snprintf(out + j, cap - j + 1, "\\x%02x", ch);
            }
        }
    }
    return j;
}

/* Writes one line at `level` (if enabled) with a timestamp, as one write(2)
 * so lines from a crash handler or a child never interleave mid-line. The
 * message is always one line: control characters in it are escaped. */
void log_msg(int level, const char *fmt, ...) {
    if (level < log_level) return;
    char line[1024], msg[1024];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%d:M ", (int)getpid());
    n += (int)strftime(line + n, sizeof line - (size_t)n, "%d %b %Y %H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03d %c ", (int)(tv.tv_usec / 1000),
                  ".-*#"[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    if (m >= (int)sizeof msg) m = (int)sizeof msg - 1;
    n += (int)escape_controls(line + n, sizeof line - (size_t)n - 1, msg, (size_t)m);
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
