/* config.h -- the hub's options: defaults, `--config FILE` (redis.conf style
 * `key value` lines, # comments, "quoted values"), and `--key value` flags,
 * which override the file. Every option has the same name in both places.
 * An unknown key or a bad value is a startup error that names the key. */
#ifndef LUAHUB_CONFIG_H
#define LUAHUB_CONFIG_H

#include <stddef.h>

typedef struct obuf_limit {
    long long hard;     /* bytes; 0 = none */
    long long soft;     /* bytes; 0 = none */
    long long soft_secs;/* how long output may stay above soft */
} obuf_limit;

typedef struct config {
    char bind[64];
    int port;                 /* 0 disables TCP */
    char unixsocket[256];     /* empty: none */
    int unixsocketperm;       /* octal, e.g. 700 */
    int tcp_backlog;
    char handlers_dir[512];
    int loglevel;
    long long maxclients;
    long long timeout;        /* idle seconds before closing a client; 0 = never */
    long long proto_max_bulk_len;
    long long max_multibulk_len;
    long long client_query_buffer_limit;
    obuf_limit obuf_normal;
    obuf_limit obuf_pubsub;
    long long shutdown_timeout;      /* seconds to flush output on SIGTERM */
    long long handler_memory_limit;  /* bytes per handler lua_State */
    long long handler_instruction_limit; /* VM instructions per invocation */
    long long handler_time_slice;    /* ms an outermost handler invocation may run (>= 1) */
    long long handler_queue_limit;   /* events queued per handler */
    long long handler_queue_memory;  /* bytes of events queued per handler */
    long long handler_max_draining;  /* retired versions kept per handler */
    long long stats_max_names;       /* event names HUB.STATS tracks (LRU bound) */
    long long stats_max_name_len;    /* longer event names are not tracked by HUB.STATS */
    long long pattern_max_len;       /* longest PSUBSCRIBE / group / handler pattern, bytes */
    long long call_timeout;          /* ms a HUB.CALL waits for a remote listener; 0 = forever */
    char dir[512];                   /* data directory (the stream store) */
    char durability[8];              /* "fsync" or "os" */
    long long stream_cache_memory;   /* bytes of hot stream entries in memory, all streams */
    long long stream_max_pending;    /* pending entries per consumer group */
} config;

/* Fills in every default. */
void config_defaults(config *cfg);

/* Applies argv (after the program name): `--config FILE` first, then every
 * `--key value` flag. On error writes a message naming the key into err and
 * returns -1. `--help`/`--version` are handled by the caller first. */
int config_from_args(config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Sets one option from its words (key, then values). Returns 0, or -1 with a
 * message in err. */
int config_set(config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Parses "512", "64kb", "1mb", "2gb", "1k", "1m", "1g" (Redis's units: k/m/g
 * are powers of 1000, kb/mb/gb of 1024). Returns 0 or -1. */
int config_parse_memory(const char *s, long long *out);

/* Prints the option list with defaults (for --help). */
void config_usage(void);

#endif
