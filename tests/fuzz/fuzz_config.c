/* fuzz_config.c -- libFuzzer target for base/config.c: the config file and
 * the command-line flags. The first byte picks the door: even, the rest is
 * a config file (`--config FILE`); odd, the rest is argv, split at NUL
 * bytes. Either way the parser returns 0, or -1 with a message, and every
 * string option stays NUL-terminated inside its field. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"

static char path[64];
static int fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    config cfg;
    config_defaults(&cfg);
    char err[512] = "";
    int rc;
    if (data[0] % 2 == 0) {
        if (fd < 0) {
            strcpy(path, "/tmp/luahub-fuzz-config.XXXXXX");
            fd = mkstemp(path);
            if (fd < 0) return 0;
        }
        if (ftruncate(fd, 0) != 0 || pwrite(fd, data + 1, size - 1, 0) != (ssize_t)(size - 1)) return 0;
        char *argv[] = {"--config", path};
        rc = config_from_args(&cfg, 2, argv, err, sizeof err);
    } else {
        char *copy = malloc(size);
        char *argv[64];
        int argc = 0;
        if (!copy) return 0;
        memcpy(copy, data + 1, size - 1);
        copy[size - 1] = '\0';
        for (char *p = copy; p < copy + size && argc < 64; p += strlen(p) + 1) argv[argc++] = p;
        for (int i = 0; i < argc; i++)
            if (!strcmp(argv[i], "--config")) argc = 0; /* no reading arbitrary files (/dev/zero) */
        rc = config_from_args(&cfg, argc, argv, err, sizeof err);
        long long n;
        config_parse_memory(copy, &n);
        free(copy);
    }
    if (rc != 0 && (rc != -1 || !err[0])) abort();
    if (memchr(cfg.bind, '\0', sizeof cfg.bind) == NULL || memchr(cfg.handlers_dir, '\0', sizeof cfg.handlers_dir) == NULL)
        abort();
    return 0;
}
