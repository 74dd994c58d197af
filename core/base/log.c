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

/* Writes one line at `level` (if enabled) with a timestamp, as one write(2)
 * so lines from a crash handler or a child never interleave mid-line. */
void log_msg(int level, const char *fmt, ...) {
    if (level < log_level) return;
    char line[1024];
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
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (m < 0) ? n : (n + m >= (int)sizeof line - 1 ? (int)sizeof line - 2 : n + m);
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
