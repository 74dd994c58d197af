/* log.h -- leveled logging to stderr, in Redis's line format:
 *   <pid>:<role> <day> <mon> <time>.<ms> <level-char> <message>
 * Levels are Redis's: debug, verbose, notice, warning. Messages below the
 * configured level cost one comparison. */
#ifndef LUAHUB_LOG_H
#define LUAHUB_LOG_H

enum { LOG_DEBUG = 0, LOG_VERBOSE, LOG_NOTICE, LOG_WARNING };

extern int log_level;

/* Parses a level name; returns the level, or -1 if the name is unknown. */
int log_level_parse(const char *name);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)   do { if (log_level <= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_verbose(...) do { if (log_level <= LOG_VERBOSE) log_msg(LOG_VERBOSE, __VA_ARGS__); } while (0)
#define log_notice(...)  log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)

#endif
