/* config.c -- option table, config file and command-line parsing (config.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

enum opt_kind { OPT_STR, OPT_INT, OPT_MEM, OPT_LOGLEVEL, OPT_OCTAL, OPT_OBUF };

typedef struct option {
    const char *name;
    enum opt_kind kind;
    size_t off;  /* offsetof into config */
    size_t size; /* for strings */
    long long min, max;
    const char *help;
} option;

#define O(f) offsetof(config, f)
static const option options[] = {
    {"bind", OPT_STR, O(bind), sizeof(((config *)0)->bind), 0, 0, "address to listen on (default 127.0.0.1)"},
    {"port", OPT_INT, O(port), 0, 0, 65535, "TCP port, 0 to disable (default 7400)"},
    {"unixsocket", OPT_STR, O(unixsocket), sizeof(((config *)0)->unixsocket), 0, 0, "also listen on this unix socket"},
    {"unixsocketperm", OPT_OCTAL, O(unixsocketperm), 0, 0, 0777, "unix socket permissions (default 700)"},
    {"tcp-backlog", OPT_INT, O(tcp_backlog), 0, 1, 65535, "listen(2) backlog (default 511)"},
    {"handlers", OPT_STR, O(handlers_dir), sizeof(((config *)0)->handlers_dir), 0, 0,
     "directory of Lua handlers (default handlers/)"},
    {"loglevel", OPT_LOGLEVEL, O(loglevel), 0, 0, 0, "debug, verbose, notice, warning (default notice)"},
    {"maxclients", OPT_INT, O(maxclients), 0, 1, 1000000, "maximum connected clients (default 10000)"},
    {"timeout", OPT_INT, O(timeout), 0, 0, 1LL << 31, "close clients idle this many seconds, 0 = never (default 0)"},
    {"proto-max-bulk-len", OPT_MEM, O(proto_max_bulk_len), 0, 1024, 1LL << 40,
     "largest bulk string accepted (default 512mb)"},
    {"max-multibulk-len", OPT_INT, O(max_multibulk_len), 0, 1, 1LL << 31,
     "most arguments in one request (default 1048576)"},
    {"client-query-buffer-limit", OPT_MEM, O(client_query_buffer_limit), 0, 1024, 1LL << 40,
     "largest unprocessed input per client (default 1gb)"},
    {"client-output-buffer-limit", OPT_OBUF, 0, 0, 0, 0,
     "<normal|pubsub> <hard> <soft> <soft-seconds> (defaults: normal 256mb 0 0, pubsub 32mb 8mb 60)"},
    {"shutdown-timeout", OPT_INT, O(shutdown_timeout), 0, 0, 3600, "seconds to flush output on SIGTERM (default 5)"},
    {"handler-memory-limit", OPT_MEM, O(handler_memory_limit), 0, 64 * 1024, 1LL << 40,
     "memory cap per handler (default 64mb)"},
    {"handler-instruction-limit", OPT_INT, O(handler_instruction_limit), 0, 1000, 1LL << 40,
     "VM instructions per handler invocation (default 10000000)"},
    {"handler-time-slice", OPT_INT, O(handler_time_slice), 0, 1, 3600000,
     "ms one run of handler code may keep the loop, nested hub.call runs included (default 50)"},
    {"handler-queue-limit", OPT_INT, O(handler_queue_limit), 0, 1, 1LL << 31,
     "events queued per handler before new ones are dropped and counted (default 100000)"},
    {"handler-queue-memory", OPT_MEM, O(handler_queue_memory), 0, 1024, 1LL << 40,
     "bytes of events queued per handler before new ones are dropped and counted (default 64mb)"},
    {"handler-max-draining", OPT_INT, O(handler_max_draining), 0, 0, 1024,
     "retired versions per handler kept for their hub.call waiters; past it the oldest is closed (default 4)"},
    {"stats-max-names", OPT_INT, O(stats_max_names), 0, 1, 1LL << 31,
     "event names HUB.STATS tracks; past it the least recently seen is evicted (default 10000)"},
    {"stats-max-name-len", OPT_INT, O(stats_max_name_len), 0, 1, 1LL << 31,
     "longest event name HUB.STATS tracks; longer ones are only counted (default 1024)"},
    {"pattern-max-len", OPT_INT, O(pattern_max_len), 0, 1, 1LL << 20,
     "longest pattern PSUBSCRIBE, HUB.GSUBSCRIBE or a handler may subscribe, in bytes (default 1024)"},
    {"call-timeout", OPT_INT, O(call_timeout), 0, 0, 1LL << 31,
     "ms HUB.CALL waits for a remote listener's reply, 0 = forever (default 5000)"},
    {"dir", OPT_STR, O(dir), sizeof(((config *)0)->dir), 0, 0,
     "data directory of the stream store, made on first start (default ./data)"},
    {"durability", OPT_STR, O(durability), sizeof(((config *)0)->durability), 0, 0,
     "fsync (a commit survives power loss) or os (survives a crash or kill -9) (default os)"},
    {"stream-cache-memory", OPT_MEM, O(stream_cache_memory), 0, 0, 1LL << 40,
     "bytes of recent stream entries kept in memory, all streams together (default 64mb)"},
    {"stream-max-pending", OPT_INT, O(stream_max_pending), 0, 1, 1LL << 40,
     "pending entries per consumer group; past it XREADGROUP without NOACK fails (default 1000000)"},
};
#undef O

/* Fills in every default. */
void config_defaults(config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->bind, "127.0.0.1");
    cfg->port = 7400;
    cfg->unixsocketperm = 0700;
    cfg->tcp_backlog = 511;
    strcpy(cfg->handlers_dir, "handlers");
    cfg->loglevel = LOG_NOTICE;
    cfg->maxclients = 10000;
    cfg->proto_max_bulk_len = 512LL * 1024 * 1024;
    cfg->max_multibulk_len = 1024 * 1024;
    cfg->client_query_buffer_limit = 1024LL * 1024 * 1024;
    cfg->obuf_normal = (obuf_limit){256LL * 1024 * 1024, 0, 0};
    cfg->obuf_pubsub = (obuf_limit){32LL * 1024 * 1024, 8LL * 1024 * 1024, 60};
    cfg->shutdown_timeout = 5;
    cfg->handler_memory_limit = 64LL * 1024 * 1024;
    cfg->handler_instruction_limit = 10000000;
    cfg->handler_time_slice = 50;
    cfg->handler_queue_limit = 100000;
    cfg->handler_queue_memory = 64LL * 1024 * 1024;
    cfg->handler_max_draining = 4;
    cfg->stats_max_names = 10000;
    cfg->stats_max_name_len = 1024;
    cfg->pattern_max_len = 1024;
    cfg->call_timeout = 5000;
    strcpy(cfg->dir, "./data");
    strcpy(cfg->durability, "os");
    cfg->stream_cache_memory = 64LL * 1024 * 1024;
    cfg->stream_max_pending = 1000000;
}

/* Parses a size with Redis's units. Returns 0 on success, -1 if malformed. */
int config_parse_memory(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0) return -1;
    long long mul = 1;
    if (*end) {
        if (!strcasecmp(end, "k"))
            mul = 1000;
        else if (!strcasecmp(end, "kb"))
            mul = 1024;
        else if (!strcasecmp(end, "m"))
            mul = 1000 * 1000;
        else if (!strcasecmp(end, "mb"))
            mul = 1024 * 1024;
        else if (!strcasecmp(end, "g"))
            mul = 1000LL * 1000 * 1000;
        else if (!strcasecmp(end, "gb"))
            mul = 1024LL * 1024 * 1024;
        else
            return -1;
    }
    if (v > (1LL << 50) / mul) return -1;
    *out = v * mul;
    return 0;
}

/* Parses a whole decimal integer within [min, max]. Returns 0 or -1. */
static int parse_int(const char *s, long long min, long long max, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

/* Splits a value like "pubsub 32mb 8mb 60" given as one word (a flag's value)
 * into words, in place. Returns the number of words (at most max). */
static int split_words(char *s, char **words, int max) {
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, " \t", &save); tok && n < max; tok = strtok_r(NULL, " \t", &save)) words[n++] = tok;
    return n;
}

/* Sets client-output-buffer-limit from `class hard soft secs` words (several
 * classes may follow each other, as in redis.conf). Returns 0 or -1. */
static int set_obuf(config *cfg, int argc, char **argv, char *err, size_t errlen) {
    char *words[16];
    char buf[512] = "";
    /* Accept both `client-output-buffer-limit pubsub 1mb 0 0` and the flag form
     * `--client-output-buffer-limit "pubsub 1mb 0 0"`. */
    for (int i = 0; i < argc; i++) {
        if (strlen(buf) + strlen(argv[i]) + 2 >= sizeof buf) goto bad;
        strcat(buf, argv[i]);
        strcat(buf, " ");
    }
    int n = split_words(buf, words, 16);
    if (n == 0 || n % 4) goto bad;
    for (int i = 0; i < n; i += 4) {
        obuf_limit l;
        if (config_parse_memory(words[i + 1], &l.hard) || config_parse_memory(words[i + 2], &l.soft) ||
            parse_int(words[i + 3], 0, 1LL << 31, &l.soft_secs))
            goto bad;
        if (!strcasecmp(words[i], "pubsub"))
            cfg->obuf_pubsub = l;
        else if (!strcasecmp(words[i], "normal"))
            cfg->obuf_normal = l;
        else if (!strcasecmp(words[i], "replica") || !strcasecmp(words[i], "slave"))
            continue; /* accepted, unused */
        else
            goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen,
             "Invalid value for 'client-output-buffer-limit': expected <normal|pubsub> <hard> <soft> <soft-seconds>");
    return -1;
}

/* Sets one option from its words. Returns 0, or -1 with a message in err. */
int config_set(config *cfg, int argc, char **argv, char *err, size_t errlen) {
    const option *o = NULL;
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (!strcasecmp(argv[0], options[i].name)) o = &options[i];
    if (!o) {
        snprintf(err, errlen, "Unknown option '%.200s'", argv[0]);
        return -1;
    }
    if (o->kind == OPT_OBUF) return set_obuf(cfg, argc - 1, argv + 1, err, errlen);
    if (argc != 2) {
        snprintf(err, errlen, "Option '%s' takes exactly one value", o->name);
        return -1;
    }
    char *field = (char *)cfg + o->off;
    const char *v = argv[1];
    long long n;
    switch (o->kind) {
    case OPT_STR:
        if (strlen(v) >= o->size || (o->off == offsetof(config, dir) && !*v)) goto bad;
        if (o->off == offsetof(config, durability) && strcasecmp(v, "fsync") && strcasecmp(v, "os")) goto bad;
        strcpy(field, v);
        return 0;
    case OPT_INT:
        if (parse_int(v, o->min, o->max, &n)) goto bad;
        if (o->off == offsetof(config, port) || o->off == offsetof(config, tcp_backlog))
            *(int *)field = (int)n;
        else
            *(long long *)field = n;
        return 0;
    case OPT_MEM:
        if (config_parse_memory(v, &n) || n < o->min || n > o->max) goto bad;
        *(long long *)field = n;
        return 0;
    case OPT_LOGLEVEL:
        if ((n = log_level_parse(v)) < 0) goto bad;
        *(int *)field = (int)n;
        return 0;
    case OPT_OCTAL: {
        char *end;
        n = strtoll(v, &end, 8);
        if (*end || end == v || n < 0 || n > o->max) goto bad;
        *(int *)field = (int)n;
        return 0;
    }
    case OPT_OBUF:
        break;
    }
bad:
    snprintf(err, errlen, "Invalid value '%.200s' for option '%s'", v, o->name);
    return -1;
}

#define MAX_WORDS 32 /* words on one config-file line */

/* Splits one config-file line into words: whitespace-separated, "double
 * quoted" words may contain spaces. Returns the count, -1 on an unterminated
 * quote, or -2 if there are more than max words. Modifies line in place. */
static int split_line(char *line, char **words, int max) {
    int n = 0;
    char *p = line;
    while (*p) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p || *p == '#') break;
        if (n == max) return -2;
        if (*p == '"') {
            char *start = ++p;
            while (*p && *p != '"') p++;
            if (!*p) return -1;
            *p++ = '\0';
            words[n++] = start;
        } else {
            words[n++] = p;
            while (*p && !isspace((unsigned char)*p)) p++;
            if (*p) *p++ = '\0';
        }
    }
    return n;
}

/* Reads a redis.conf-style file. Returns 0, or -1 with err naming file:line. */
static int config_load_file(config *cfg, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "Can't open config file '%s': %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL, msg[512];
    size_t cap = 0;
    int lineno = 0, rc = 0;
    /* getline: a line of any length is one directive, never split */
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *words[MAX_WORDS];
        int n = split_line(line, words, MAX_WORDS);
        if (n == 0) continue;
        if (n == -1) {
            snprintf(msg, sizeof msg, "unbalanced quotes");
        } else if (n == -2) {
            snprintf(msg, sizeof msg, "too many words (at most %d on a line)", MAX_WORDS);
        } else if (n >= 2 && config_set(cfg, n, words, msg, sizeof msg) == 0) {
            continue;
        } else if (n < 2) {
            snprintf(msg, sizeof msg, "Option '%.200s' needs a value", words[0]);
        }
        snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
        rc = -1;
        break;
    }
    free(line);
    fclose(f);
    return rc;
}

/* Applies --config FILE, then every --key value flag (see config.h). */
int config_from_args(config *cfg, int argc, char **argv, char *err, size_t errlen) {
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--config needs a file");
                return -1;
            }
            if (config_load_file(cfg, argv[i + 1], err, errlen)) return -1;
        }
    }
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0) {
            snprintf(err, errlen, "Unexpected argument '%s' (options are --key value)", argv[i]);
            return -1;
        }
        char *words[8];
        int n = 0;
        words[n++] = argv[i] + 2;
        while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0 && n < 8) words[n++] = argv[++i];
        if (!strcmp(words[0], "config")) continue;
        if (n < 2) {
            snprintf(err, errlen, "Option '%s' needs a value", words[0]);
            return -1;
        }
        if (config_set(cfg, n, words, err, errlen)) return -1;
    }
    return 0;
}

/* Prints the option list with defaults (for --help). */
void config_usage(void) {
    printf("Usage: luahub [--config FILE] [--option value ...]\n\nOptions (also valid as `option value` lines in the "
           "config file):\n");
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        printf("  --%-28s %s\n", options[i].name, options[i].help);
}
