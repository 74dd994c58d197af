/* unit.h -- the tiny test framework the C unit tests share.
 *
 * A test is a function registered with TEST(name). CHECK(expr) records a
 * failure (with file and line) and keeps going; the test counts as failed if
 * any CHECK in it failed. UNIT_MAIN() runs every registered test and prints
 * "N passed, N failed" as its final line; the exit code is non-zero on any
 * failure. tests/run.sh adds these counts into the suite total. */
#ifndef LUAHUB_UNIT_H
#define LUAHUB_UNIT_H

#include <stdio.h>
#include <string.h>

typedef void (*unit_fn)(void);
struct unit_test { const char *name; unit_fn fn; };

#define UNIT_MAX_TESTS 256
static struct unit_test unit_tests[UNIT_MAX_TESTS];
static int unit_ntests;
static int unit_cur_failed;

#define TEST(name)                                                          \
    static void test_##name(void);                                          \
    __attribute__((constructor)) static void unit_reg_##name(void) {        \
        if (unit_ntests < UNIT_MAX_TESTS)                                   \
            unit_tests[unit_ntests++] = (struct unit_test){#name, test_##name}; \
    }                                                                       \
    static void test_##name(void)

#define CHECK(expr)                                                         \
    do {                                                                    \
        if (!(expr)) {                                                      \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__,        \
                    __LINE__, #expr);                                       \
            unit_cur_failed = 1;                                            \
        }                                                                   \
    } while (0)

/* CHECK with a printf-style explanation, for loops over generated cases. */
#define CHECKF(expr, ...)                                                   \
    do {                                                                    \
        if (!(expr)) {                                                      \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__,        \
                    __LINE__, #expr);                                       \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            unit_cur_failed = 1;                                            \
        }                                                                   \
    } while (0)

#define UNIT_MAIN()                                                         \
    int main(void) {                                                        \
        int passed = 0, failed = 0;                                         \
        for (int i = 0; i < unit_ntests; i++) {                             \
            unit_cur_failed = 0;                                            \
            unit_tests[i].fn();                                             \
            if (unit_cur_failed) {                                          \
                failed++;                                                   \
                fprintf(stderr, "FAIL %s\n", unit_tests[i].name);           \
            } else {                                                        \
                passed++;                                                   \
                printf("ok   %s\n", unit_tests[i].name);                    \
            }                                                               \
        }                                                                   \
        printf("%d passed, %d failed\n", passed, failed);                   \
        return failed ? 1 : 0;                                              \
    }

#endif
