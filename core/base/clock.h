/* clock.h -- wall-clock time in milliseconds since the epoch, the one
 * definition every module uses (event timestamps fall back to it when the
 * router has no loop clock; stats, handler bookkeeping and hub.now() use it
 * directly); and the cheap monotonic clock the hot path's time limits read. */
#ifndef LUAHUB_CLOCK_H
#define LUAHUB_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

static inline double clock_wall_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec * 1000.0 + (double)tv.tv_usec / 1000.0;
}

/* CLOCK_MONOTONIC_COARSE in nanoseconds: a few ns to read (the precise
 * clock costs about 20 ns, once per event on the Lua path), with the
 * kernel's tick as resolution (4 ms here). Good enough for limits measured
 * in tens of ms: the handler time slice and the drain's per-iteration
 * budget, which may each run one tick late. */
static inline int64_t clock_coarse_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
