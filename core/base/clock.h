/* clock.h -- wall-clock time in milliseconds since the epoch, the one
 * definition every module uses (event timestamps fall back to it when the
 * router has no loop clock; stats, handler bookkeeping and hub.now() use it
 * directly). */
#ifndef LUAHUB_CLOCK_H
#define LUAHUB_CLOCK_H

#include <sys/time.h>

static inline double clock_wall_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec * 1000.0 + (double)tv.tv_usec / 1000.0;
}

#endif
