/* loadgen.c -- the load generator behind `make bench` (bench/run.sh).
 *
 *   loadgen pubsub [--pubs N] [--subs N] [--size B] [--rate R] [...]
 *   loadgen call   [--conns N] [--pipeline P] [--fcall] [--rate R] [--listener N] [...]
 *   loadgen call   --cmd "XADD key * data" [--conns N] [--pipeline P] [...]
 *   loadgen consume --key K --entries N [--conns N] [--count C]
 *   loadgen mem    --pid PID (--conns N | --channels N)
 *
 * Every run prints exactly one JSON object on stdout (or {"error":...} and
 * exit status 1).  `loadgen --help` lists the options.
 *
 * Design notes
 *  - Raw non-blocking sockets on libev, 1..N worker threads (connections are
 *    dealt round-robin, subscribers first, so with --threads 2 a 1->1 run puts
 *    the publisher and the subscriber on different threads).  Replies are read
 *    with a minimal RESP scanner that never allocates: a subscriber only needs
 *    to count `message` frames and look at the payload's first 16 bytes.
 *    Measured against hiredis's reader (redisReaderFeed/GetReply, which builds
 *    a reply object tree per frame) this is several times cheaper per frame --
 *    see bench/README.md.
 *  - Every payload starts with 16 hex digits: a CLOCK_MONOTONIC nanosecond
 *    time.  In saturation mode it is the actual send time; in fixed-rate mode
 *    (--rate) it is the *intended* send time of message k (start + k/rate), so
 *    a stall anywhere -- server, kernel or this generator -- shows up as
 *    latency instead of silently lowering the send rate (no coordinated
 *    omission).  Request/reply keeps the intended times in a FIFO per
 *    connection instead (replies come back in order).
 *  - Saturation: each publisher keeps at most --window PUBLISHes unacknowledged,
 *    and all publishers pause while the slowest subscriber is more than
 *    --maxlag messages behind (end-to-end flow control, so the server's
 *    pub/sub output-buffer limit is never what ends a run, and queues stay
 *    bounded).
 *  - Latency goes into a log-linear histogram (128 sub-buckets per power of
 *    two: under 0.8 % relative error), like HdrHistogram; percentiles report the
 *    bucket's upper edge.  Only messages whose (intended) send time falls in
 *    the measurement window are recorded, and they are recorded even if they
 *    arrive during the drain that follows it.
 *  - call --listener N: N more connections act as remote unicast listeners
 *    (HUB.LISTEN) in the same event loop: each answers every request frame
 *    [request, id, name, payload] with HUB.REPLY id payload, all the replies
 *    to one read written back in one batch (pipelined), and counts the +OKs.
 *    The newest HUB.LISTEN takes a name over, so N > 1 listeners hold
 *    distinct names NAME.0 .. NAME.<N-1>; caller i calls NAME.<i mod N>.
 *  - call --cmd "WORDS": any command instead of HUB.CALL/FCALL, the payload
 *    appended as its last argument (pipelined XADD: --cmd XADD,key,*,data;
 *    words are separated by spaces or commas).
 *  - consume: pre-fills a stream with --entries N (pipelined XADD), creates a
 *    group at 0, then --conns consumers loop XREADGROUP COUNT --count and XACK
 *    the ids they got (the XACK and the next XREADGROUP in one write) until
 *    the stream is drained; the rate is entries acked per second from the
 *    first read to the last ack (no warm-up: a drained stream is the end).
 */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* options                                                                   */

static struct {
    const char *host, *label, *channel, *sub_channel, *psub, *call_name, *cmd, *key;
    int count;
    long entries;
    int port, pubs, subs, conns, pipeline, window, threads, size, tick_us;
    int idle_patterns, fcall, channels, pid, listeners;
    long maxlag;
    double rate, warmup, duration, drain;
} o = {
    .host = "127.0.0.1", .label = "", .channel = "bench.ch", .call_name = "echo.v1",
    .key = "bench.stream", .count = 100, .entries = 100000,
    .port = 6379, .pubs = 1, .subs = 1, .conns = -1, .pipeline = 1, .window = 512,
    .threads = 1, .size = 64, .tick_us = 50, .maxlag = 0,
    .warmup = 1.0, .duration = 3.0, .drain = 2.0,
};

static const char *mode;

/* ------------------------------------------------------------------------ */
/* small helpers                                                             */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", (unsigned)(unsigned char)*s);
        else putchar(*s);
    }
    putchar('"');
}

static void die(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    printf("{\"label\":");
    json_str(o.label);
    printf(",\"mode\":\"%s\",\"error\":", mode ? mode : "?");
    json_str(msg);
    printf("}\n");
    fflush(stdout);
    fprintf(stderr, "loadgen: %s\n", msg);
    _exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) die("out of memory");
    return p;
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n);
    if (!p) die("out of memory");
    return p;
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

static const char HEX[] = "0123456789abcdef";

static inline void hex16(char *d, uint64_t v) {
    for (int i = 15; i >= 0; i--, v >>= 4) d[i] = HEX[v & 15];
}

static inline int unhex16(const char *s, uint64_t *v) {
    uint64_t r = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') r = r << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f') r = r << 4 | (uint64_t)(c - 'a' + 10);
        else return 0;
    }
    *v = r;
    return 1;
}

/* utime+stime of a process, in seconds (all its threads). */
static double proc_cpu(int pid) {
    char path[64], buf[1024];
    if (pid > 0) snprintf(path, sizeof path, "/proc/%d/stat", pid);
    else snprintf(path, sizeof path, "/proc/self/stat");
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may contain spaces */
    if (!p) return -1;
    unsigned long ut = 0, st = 0;
    /* after ")": state(3) ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long vmrss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) { kb = atol(line + 6); break; }
    fclose(f);
    return kb;
}

/* ------------------------------------------------------------------------ */
/* log-linear latency histogram (nanoseconds)                                */

#define H_BITS 8
#define H_SUB (1u << H_BITS) /* exact below H_SUB ns, then H_SUB/2 buckets per power of two */
#define H_SHIFTS 36          /* up to 2^44 ns, about 4.9 hours */
#define H_N (H_SUB + H_SHIFTS * H_SUB)

typedef struct {
    uint64_t b[H_N];
    uint64_t n, max;
    double sum;
} hist;

static inline unsigned h_index(uint64_t v) {
    if (v < H_SUB) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - H_BITS + 1; /* v >> shift is in [H_SUB/2, H_SUB) */
    if (shift > H_SHIFTS) return H_N - 1;
    return shift * (H_SUB / 2) + (unsigned)(v >> shift);
}

/* the largest value that lands in bucket i */
static uint64_t h_upper(unsigned i) {
    if (i < H_SUB) return i;
    unsigned shift = (i - H_SUB) / (H_SUB / 2) + 1;
    uint64_t sub = (i - H_SUB) % (H_SUB / 2) + H_SUB / 2;
    return ((sub + 1) << shift) - 1;
}

static inline void h_add(hist *h, uint64_t v) {
    h->b[h_index(v)]++;
    h->n++;
    h->sum += (double)v;
    if (v > h->max) h->max = v;
}

static void h_merge(hist *d, const hist *s) {
    for (unsigned i = 0; i < H_N; i++) d->b[i] += s->b[i];
    d->n += s->n;
    d->sum += s->sum;
    if (s->max > d->max) d->max = s->max;
}

static uint64_t h_pct(const hist *h, double p) {
    if (!h->n) return 0;
    uint64_t want = (uint64_t)((double)h->n * p / 100.0 + 0.999999);
    if (want < 1) want = 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < H_N; i++) {
        acc += h->b[i];
        if (acc >= want) {
            uint64_t u = h_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

static void h_print(const hist *h) {
    printf(",\"lat_n\":%llu", (unsigned long long)h->n);
    if (!h->n) return;
    printf(",\"mean_us\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f",
           h->sum / (double)h->n / 1e3, h_pct(h, 50) / 1e3, h_pct(h, 90) / 1e3, h_pct(h, 99) / 1e3,
           h_pct(h, 99.9) / 1e3, h->max / 1e3);
}

/* ------------------------------------------------------------------------ */
/* minimal RESP2 scanner                                                     */

typedef struct {
    char type;       /* + - : $ * */
    const char *s;   /* simple/bulk string bytes */
    long long len;   /* string length (-1 nil), integer value, array count */
} relem;

typedef struct {
    relem top;
    int n;           /* top-level array: elements captured in el[] */
    relem el[4];
} rframe;

static const char resp_bad_;
#define BAD (&resp_bad_)

static const char *r_int(const char *p, const char *e, long long *v) {
    int neg = 0;
    long long x = 0;
    if (p < e && *p == '-') neg = 1, p++;
    while (p < e && *p >= '0' && *p <= '9') x = x * 10 + (*p++ - '0');
    if (e - p < 2) return NULL;
    if (p[0] != '\r' || p[1] != '\n') return BAD;
    *v = neg ? -x : x;
    return p + 2;
}

/* One value at p: pointer past it, NULL if incomplete, BAD if malformed. */
static const char *r_value(const char *p, const char *e, relem *out, rframe *f, int depth) {
    if (p >= e) return NULL;
    if (depth > 8) return BAD;
    char t = *p++;
    const char *q;
    long long n;
    out->type = t;
    switch (t) {
    case '+':
    case '-': {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        if (!nl) return NULL;
        out->s = p;
        out->len = nl - p - (nl > p && nl[-1] == '\r');
        return nl + 1;
    }
    case ':':
        return r_int(p, e, &out->len);
    case '$':
        q = r_int(p, e, &n);
        if (!q || q == BAD) return q;
        out->len = n < 0 ? -1 : n;
        out->s = q;
        if (n < 0) return q;
        if (e - q < n + 2) return NULL;
        return q + n + 2;
    case '*':
        q = r_int(p, e, &n);
        if (!q || q == BAD) return q;
        out->len = n;
        for (long long i = 0; i < n; i++) {
            relem tmp = {0};
            relem *dst = (f && i < 4) ? &f->el[i] : &tmp;
            q = r_value(q, e, dst, NULL, depth + 1);
            if (!q || q == BAD) return q;
        }
        if (f) f->n = n < 0 ? 0 : n < 4 ? (int)n : 4;
        return q;
    default:
        return BAD;
    }
}

/* bytes consumed by one top-level reply, 0 if incomplete, -1 if malformed */
static long resp_parse(const char *p, const char *e, rframe *f) {
    f->n = 0;
    const char *q = r_value(p, e, &f->top, f, 0);
    if (!q) return 0;
    if (q == BAD) return -1;
    return q - p;
}

/* Appends one command in RESP to a growable buffer. */
typedef struct {
    char *p;
    size_t len, cap;
} buf;

static void b_reserve(buf *b, size_t n) {
    if (b->len + n <= b->cap) return;
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + n) c *= 2;
    b->p = xrealloc(b->p, c);
    b->cap = c;
}

static void b_add(buf *b, const void *s, size_t n) {
    b_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void b_fmt(buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    b_add(b, tmp, (size_t)n);
}

static void b_arg(buf *b, const char *s, size_t n) {
    b_fmt(b, "$%zu\r\n", n);
    b_add(b, s, n);
    b_add(b, "\r\n", 2);
}

/* ------------------------------------------------------------------------ */
/* blocking setup helpers                                                    */

static int tcp_connect(void) {
    static struct addrinfo *res; /* resolved once */
    if (!res) {
        char port[16];
        snprintf(port, sizeof port, "%d", o.port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        int rc = getaddrinfo(o.host, port, &hints, &res);
        if (rc) die("getaddrinfo %s: %s", o.host, gai_strerror(rc));
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    if (connect(fd, res->ai_addr, res->ai_addrlen) < 0) die("connect %s:%d: %s", o.host, o.port, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {10, 0}; /* setup reads never hang forever */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("write: %s", strerror(errno));
        p += w, n -= (size_t)w;
    }
}

/* Reads n replies from a blocking socket; each must be an array (when
 * want_array) whose first element names a subscription kind, or any non-error
 * reply. The first error reply aborts the run with its text. */
static void read_replies(int fd, long n, int want_array) {
    static buf rb;
    size_t off = 0;
    rb.len = 0;
    while (n > 0) {
        rframe f;
        long r = resp_parse(rb.p + off, rb.p + rb.len, &f);
        if (r < 0) die("protocol error during setup");
        if (r == 0) {
            memmove(rb.p, rb.p + off, rb.len - off);
            rb.len -= off, off = 0;
            b_reserve(&rb, 65536);
            ssize_t got = read(fd, rb.p + rb.len, rb.cap - rb.len);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) die("setup read: %s", got ? strerror(errno) : "connection closed");
            rb.len += (size_t)got;
            continue;
        }
        if (f.top.type == '-') die("server replied: %.*s", (int)f.top.len, f.top.s);
        if (want_array && f.top.type != '*') die("unexpected setup reply type %c", f.top.type);
        off += (size_t)r;
        n--;
    }
    if (off != rb.len) die("unexpected extra data during setup");
}

static void set_nonblock(int fd) {
    struct timeval tv = {0, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* ------------------------------------------------------------------------ */
/* connections and workers                                                   */

enum { K_PUB, K_SUB, K_CALL, K_LIS };

typedef struct worker worker;

typedef struct conn {
    int fd, kind, idx;
    worker *w;
    ev_io rio, wio;
    char *rb;
    size_t rlen, rcap;
    char *ob;
    size_t olen, ocap, ooff;
    /* counters written by the owning thread, read by any (relaxed atomics):
     * pub: sent = PUBLISHes written, done = acks; sub: done = messages;
     * call: sent = calls written, done = replies, errors = error replies;
     * listener: sent = HUB.REPLYs written, done = +OKs, errors = error
     * replies, overrun = frames other than request/+OK (replaced, ...) */
    uint64_t sent, done, errors, overrun;
    const buf *tpl;  /* call: this connection's command (NULL: g_tpl) */
    size_t tso;      /* ... and where its timestamp goes */
    uint64_t k;      /* fixed rate: index of the next message */
    uint64_t start;  /* fixed rate: intended time of message 0 */
    double iv;       /* fixed rate: ns between messages */
    int stalled;     /* pub: paused by end-to-end flow control */
    uint64_t *ring;  /* call: intended send times, FIFO */
    uint32_t rmask, rhead, rtail;
} conn;

struct worker {
    struct ev_loop *loop;
    pthread_t th;
    ev_async wake;
    ev_io tick;
    int tfd;
    ev_timer kick;
    conn **c;
    int n;
    hist h;
};

static conn *g_pubs, *g_subs, *g_calls, *g_lis;
static int g_npubs, g_nsubs, g_ncalls, g_nlis;
static worker *g_w;
static uint64_t g_t0;                    /* when sending starts */
static uint64_t g_ws = UINT64_MAX;       /* measurement window [g_ws, g_we) */
static uint64_t g_we = UINT64_MAX;
static int g_stop_send;
static buf g_tpl;                        /* one command, payload included */
static size_t g_ts_off;                  /* where the 16 hex digits go */

static void flush(conn *c);

static void ob_reserve(conn *c, size_t n) {
    if (c->olen + n <= c->ocap) return;
    size_t cap = c->ocap ? c->ocap * 2 : 65536;
    while (cap < c->olen + n) cap *= 2;
    if (cap > ((size_t)1 << 30)) die("generator overrun: output buffer over 1 GB (server not reading?)");
    c->ob = xrealloc(c->ob, cap);
    c->ocap = cap;
}

static void add_msg(conn *c, uint64_t ts) {
    const buf *t = c->tpl ? c->tpl : &g_tpl;
    ob_reserve(c, t->len);
    char *d = c->ob + c->olen;
    memcpy(d, t->p, t->len);
    hex16(d + (c->tpl ? c->tso : g_ts_off), ts);
    c->olen += t->len;
}

/* listener: appends HUB.REPLY id payload (the payload echoed) */
static void add_reply(conn *c, const relem *id, const relem *pl) {
    ob_reserve(c, (size_t)(id->len + pl->len) + 64);
    char *d = c->ob + c->olen;
    d += sprintf(d, "*3\r\n$9\r\nHUB.REPLY\r\n$%lld\r\n", id->len);
    memcpy(d, id->s, (size_t)id->len), d += id->len;
    d += sprintf(d, "\r\n$%lld\r\n", pl->len);
    memcpy(d, pl->s, (size_t)pl->len), d += pl->len;
    memcpy(d, "\r\n", 2), d += 2;
    c->olen = (size_t)(d - c->ob);
}

/* listener: [request, id, name, payload] with bulk strings */
static int is_request(const rframe *f) {
    return f->top.type == '*' && f->n == 4 && f->el[0].type == '$' && f->el[0].len == 7 &&
           !memcmp(f->el[0].s, "request", 7) && f->el[1].type == '$' && f->el[1].len > 0 && f->el[3].type == '$' &&
           f->el[3].len >= 0;
}

static void flush(conn *c) {
    while (c->ooff < c->olen) {
        ssize_t n = write(c->fd, c->ob + c->ooff, c->olen - c->ooff);
        if (n > 0) {
            c->ooff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!ev_is_active(&c->wio)) ev_io_start(c->w->loop, &c->wio);
            return;
        }
        die("write: %s", n < 0 ? strerror(errno) : "closed");
    }
    c->ooff = c->olen = 0;
    if (ev_is_active(&c->wio)) ev_io_stop(c->w->loop, &c->wio);
}

/* messages the slowest subscriber still has to receive */
static long long lag_now(void) {
    uint64_t s = 0, m = UINT64_MAX;
    for (int i = 0; i < g_npubs; i++) s += LOAD(g_pubs[i].sent);
    for (int i = 0; i < g_nsubs; i++) {
        uint64_t d = LOAD(g_subs[i].done);
        if (d < m) m = d;
    }
    return (long long)(s - m);
}

/* fixed rate: how many messages are due by `now` */
static uint64_t due(conn *c, uint64_t now) {
    return now < c->start ? 0 : (uint64_t)((double)(now - c->start) / c->iv) + 1;
}

static void pub_fill(conn *c, uint64_t now) {
    if (LOAD(g_stop_send)) return;
    uint64_t sent = c->sent;
    if (o.rate > 0) {
        for (uint64_t d = due(c, now); c->k < d; c->k++, sent++)
            add_msg(c, c->start + (uint64_t)((double)c->k * c->iv));
    } else {
        if (c->ooff < c->olen) return; /* socket full: wait for it */
        long long room = (long long)o.window - (long long)(sent - c->done);
        if (room <= 0) return;
        if (o.maxlag > 0 && g_nsubs) {
            long long lr = o.maxlag - lag_now();
            if (lr <= 0) {
                c->stalled = 1;
                return;
            }
            if (lr < room) room = lr;
        }
        c->stalled = 0;
        for (; room > 0; room--, sent++) add_msg(c, now);
    }
    STORE(c->sent, sent);
    flush(c);
}

static void call_fill(conn *c, uint64_t now) {
    if (LOAD(g_stop_send)) return;
    uint64_t sent = c->sent;
    if (o.rate > 0) {
        for (uint64_t d = due(c, now); c->k < d; c->k++) {
            uint64_t t = c->start + (uint64_t)((double)c->k * c->iv);
            if (c->rhead - c->rtail > c->rmask) { /* too many in flight */
                STORE(c->overrun, c->overrun + 1);
                continue;
            }
            c->ring[c->rhead++ & c->rmask] = t;
            add_msg(c, t);
            sent++;
        }
    } else {
        if (c->ooff < c->olen) return;
        while (sent - c->done < (uint64_t)o.pipeline) {
            c->ring[c->rhead++ & c->rmask] = now;
            add_msg(c, now);
            sent++;
        }
    }
    STORE(c->sent, sent);
    flush(c);
}

static void kick_stalled(worker *w, uint64_t now) {
    for (int i = 0; i < w->n; i++)
        if (w->c[i]->kind == K_PUB && w->c[i]->stalled) pub_fill(w->c[i], now);
}

/* Scans complete replies in c->rb[0..rlen) received at time t; returns the
 * bytes consumed. */
static size_t process(conn *c, uint64_t t) {
    const char *p = c->rb, *e = c->rb + c->rlen;
    uint64_t ws = LOAD(g_ws), we = LOAD(g_we);
    uint64_t n = 0, errs = 0;
    hist *h = &c->w->h;
    rframe f;
    long r;
    while ((r = resp_parse(p, e, &f)) > 0) {
        p += r;
        if (c->kind == K_LIS) {
            if (is_request(&f)) add_reply(c, &f.el[1], &f.el[3]), c->sent++;
            else if (f.top.type == '+') n++;
            else if (f.top.type == '-') errs++;
            else STORE(c->overrun, c->overrun + 1);
        } else if (c->kind == K_SUB) {
            /* message: [message, channel, payload]; pmessage: [pmessage, pattern, channel, payload] */
            if (f.top.type == '*' && (f.n == 3 || f.n == 4) && f.el[0].type == '$' &&
                f.el[0].len == (f.n == 3 ? 7 : 8) && f.el[0].s[0] == (f.n == 3 ? 'm' : 'p')) {
                n++;
                const relem *pl = &f.el[f.n - 1];
                uint64_t ts;
                if (pl->type == '$' && pl->len >= 16 && unhex16(pl->s, &ts) && ts >= ws && ts < we)
                    h_add(h, t > ts ? t - ts : 0);
            }
        } else {
            n++;
            if (f.top.type == '-') errs++;
            if (c->kind == K_CALL) {
                if (c->rtail == c->rhead) die("reply without a request");
                uint64_t ts = c->ring[c->rtail++ & c->rmask];
                if (f.top.type != '-' && ts >= ws && ts < we) h_add(h, t > ts ? t - ts : 0);
            }
        }
    }
    if (r < 0) die("protocol error from server (conn %d)", c->idx);
    if (n) STORE(c->done, c->done + n);
    if (errs) STORE(c->errors, c->errors + errs);
    if (c->kind == K_LIS) STORE(c->sent, c->sent);
    return (size_t)(p - c->rb);
}

static void on_read(struct ev_loop *loop, ev_io *wt, int revents) {
    conn *c = wt->data;
    for (int rounds = 0; rounds < 4; rounds++) {
        if (c->rcap - c->rlen < 16384) {
            c->rcap *= 2;
            c->rb = xrealloc(c->rb, c->rcap);
        }
        size_t space = c->rcap - c->rlen;
        ssize_t got = read(c->fd, c->rb + c->rlen, space);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (got <= 0) die("connection %d closed by server%s%s", c->idx, got ? ": " : "", got ? strerror(errno) : "");
        c->rlen += (size_t)got;
        size_t used = process(c, now_ns());
        memmove(c->rb, c->rb + used, c->rlen - used);
        c->rlen -= used;
        if ((size_t)got < space) break;
    }
    uint64_t now = now_ns();
    if (c->kind == K_PUB && o.rate <= 0) pub_fill(c, now);
    else if (c->kind == K_SUB && o.rate <= 0) kick_stalled(c->w, now);
    else if (c->kind == K_CALL && o.rate <= 0) call_fill(c, now);
    else if (c->kind == K_LIS) flush(c); /* this read's replies, in one write */
}

static void on_write(struct ev_loop *loop, ev_io *wt, int revents) {
    conn *c = wt->data;
    flush(c);
    if (c->ooff == c->olen && o.rate <= 0) {
        if (c->kind == K_PUB) pub_fill(c, now_ns());
        else if (c->kind == K_CALL) call_fill(c, now_ns());
    }
}

static void on_tick(struct ev_loop *loop, ev_io *wt, int revents) {
    worker *w = wt->data;
    uint64_t x;
    if (read(w->tfd, &x, sizeof x) < 0) return;
    uint64_t now = now_ns();
    for (int i = 0; i < w->n; i++) {
        if (w->c[i]->kind == K_PUB) pub_fill(w->c[i], now);
        else if (w->c[i]->kind == K_CALL) call_fill(w->c[i], now);
    }
}

static void on_kick(struct ev_loop *loop, ev_timer *t, int revents) {
    worker *w = t->data;
    uint64_t now = now_ns();
    for (int i = 0; i < w->n; i++) {
        conn *c = w->c[i];
        if (c->kind == K_PUB && (c->stalled || c->sent == c->done)) pub_fill(c, now);
    }
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents) { ev_break(loop, EVBREAK_ALL); }

static void *worker_main(void *arg) {
    worker *w = arg;
    sleep_until(g_t0);
    uint64_t now = now_ns();
    if (o.rate <= 0)
        for (int i = 0; i < w->n; i++) {
            if (w->c[i]->kind == K_PUB) pub_fill(w->c[i], now);
            else if (w->c[i]->kind == K_CALL) call_fill(w->c[i], now);
        }
    ev_run(w->loop, 0);
    return NULL;
}

static void conn_init(conn *c, int fd, int kind, int idx, size_t rcap) {
    memset(c, 0, sizeof *c);
    c->fd = fd, c->kind = kind, c->idx = idx;
    c->rcap = rcap;
    c->rb = xmalloc(rcap);
}

/* Deals connections to workers and creates their loops. */
static void workers_init(void) {
    int total = g_nsubs + g_npubs + g_ncalls + g_nlis;
    if (o.threads < 1) o.threads = 1;
    if (o.threads > total) o.threads = total > 0 ? total : 1;
    g_w = calloc((size_t)o.threads, sizeof *g_w);
    for (int i = 0; i < o.threads; i++) {
        worker *w = &g_w[i];
        w->loop = ev_loop_new(EVFLAG_AUTO);
        w->c = xmalloc(sizeof(conn *) * (size_t)total);
        ev_async_init(&w->wake, on_wake);
        ev_async_start(w->loop, &w->wake);
        w->tfd = -1;
    }
    int k = 0;
    conn *all[4] = {g_subs, g_lis, g_pubs, g_calls};
    int cnt[4] = {g_nsubs, g_nlis, g_npubs, g_ncalls};
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < cnt[g]; i++, k++) {
            conn *c = &all[g][i];
            worker *w = &g_w[k % o.threads];
            c->w = w;
            w->c[w->n++] = c;
            set_nonblock(c->fd);
            ev_io_init(&c->rio, on_read, c->fd, EV_READ);
            c->rio.data = c;
            ev_io_start(w->loop, &c->rio);
            ev_io_init(&c->wio, on_write, c->fd, EV_WRITE);
            c->wio.data = c;
        }
    for (int i = 0; i < o.threads; i++) {
        worker *w = &g_w[i];
        int senders = 0;
        for (int j = 0; j < w->n; j++) senders += w->c[j]->kind == K_PUB || w->c[j]->kind == K_CALL;
        if (!senders) continue;
        if (o.rate > 0) {
            w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
            if (w->tfd < 0) die("timerfd: %s", strerror(errno));
            struct itimerspec its = {
                .it_interval = {0, (long)o.tick_us * 1000},
                .it_value = {(time_t)(g_t0 / 1000000000u), (long)(g_t0 % 1000000000u)},
            };
            timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
            ev_io_init(&w->tick, on_tick, w->tfd, EV_READ);
            w->tick.data = w;
            ev_io_start(w->loop, &w->tick);
        } else {
            ev_timer_init(&w->kick, on_kick, 0.001, 0.001);
            w->kick.data = w;
            ev_timer_start(w->loop, &w->kick);
        }
    }
}

static void set_rates(conn *cs, int n) {
    for (int i = 0; i < n; i++) {
        cs[i].iv = 1e9 * n / o.rate;
        cs[i].start = g_t0 + (uint64_t)(cs[i].iv * i / n); /* spread phases */
    }
}

static void workers_run_and_measure(void);

/* Splits a copy of s at spaces and commas into at most max words of argv (commas
 * let bench/run.sh pass a command as one word); returns the count. */
static int split_words(const char *s, const char **argv, int max) {
    char *copy = strdup(s), *save = NULL;
    int n = 0;
    if (!copy) die("out of memory");
    for (char *w = strtok_r(copy, " ,", &save); w; w = strtok_r(NULL, " ,", &save)) {
        if (n == max) die("--cmd has more than %d words", max);
        argv[n++] = w;
    }
    if (!n) die("--cmd is empty");
    return n;
}

/* ------------------------------------------------------------------------ */
/* subcommands                                                               */

static void build_template(int argc, const char **argv, size_t payload_arg) {
    /* every argument literal except argv[payload_arg], which is the payload */
    g_tpl.len = 0;
    b_fmt(&g_tpl, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        if ((size_t)i != payload_arg) {
            b_arg(&g_tpl, argv[i], strlen(argv[i]));
            continue;
        }
        b_fmt(&g_tpl, "$%d\r\n", o.size);
        g_ts_off = g_tpl.len;
        b_reserve(&g_tpl, (size_t)o.size + 2);
        memset(g_tpl.p + g_tpl.len, 'x', (size_t)o.size);
        hex16(g_tpl.p + g_tpl.len, 0);
        g_tpl.len += (size_t)o.size;
        b_add(&g_tpl, "\r\n", 2);
    }
}

static void snapshot(uint64_t *done, uint64_t *sent, uint64_t *err) {
    *done = *sent = *err = 0;
    for (int i = 0; i < g_nsubs; i++) *done += LOAD(g_subs[i].done);
    for (int i = 0; i < g_npubs; i++) *sent += LOAD(g_pubs[i].sent);
    for (int i = 0; i < g_ncalls; i++) {
        *done += LOAD(g_calls[i].done);
        *sent += LOAD(g_calls[i].sent);
        *err += LOAD(g_calls[i].errors);
    }
}

static void cmd_pubsub(void) {
    if (o.size < 16) die("--size must be at least 16 (the payload carries a timestamp)");
    /* At most 2,048 messages (or ~2 MB of large ones, but >= 256) in flight to
     * the slowest subscriber: deep enough to saturate, far below the 8 MB soft /
     * 32 MB hard pub/sub output-buffer limits, and without the very deep
     * queues that measured slower *and* noisier on both servers (10->10). */
    if (o.maxlag <= 0) {
        long by_bytes = (2L << 20) / (o.size + 64);
        o.maxlag = by_bytes > 2048 ? 2048 : by_bytes < 256 ? 256 : by_bytes;
    }
    g_npubs = o.pubs, g_nsubs = o.subs;
    g_pubs = calloc((size_t)o.pubs, sizeof(conn));
    g_subs = calloc((size_t)o.subs, sizeof(conn));
    const char *subch = o.psub ? o.psub : o.sub_channel ? o.sub_channel : o.channel;
    buf cmd = {0};

    /* subscribers first, confirmed before anything is published */
    for (int i = 0; i < o.subs; i++) {
        int fd = tcp_connect();
        cmd.len = 0;
        b_fmt(&cmd, "*2\r\n");
        b_arg(&cmd, o.psub ? "PSUBSCRIBE" : "SUBSCRIBE", o.psub ? 10 : 9);
        b_arg(&cmd, subch, strlen(subch));
        write_all(fd, cmd.p, cmd.len);
        read_replies(fd, 1, 1);
        conn_init(&g_subs[i], fd, K_SUB, i, 1 << 18);
    }
    /* idle patterns on a connection of their own, never matching */
    int pfd = -1;
    if (o.idle_patterns > 0) {
        pfd = tcp_connect();
        for (int i = 0; i < o.idle_patterns; i += 1000) {
            int n = o.idle_patterns - i < 1000 ? o.idle_patterns - i : 1000;
            cmd.len = 0;
            b_fmt(&cmd, "*%d\r\n", n + 1);
            b_arg(&cmd, "PSUBSCRIBE", 10);
            for (int j = i; j < i + n; j++) {
                char pat[64];
                int l = snprintf(pat, sizeof pat, "idle.%d.*", j);
                b_arg(&cmd, pat, (size_t)l);
            }
            write_all(pfd, cmd.p, cmd.len);
        }
        read_replies(pfd, o.idle_patterns, 1);
    }
    for (int i = 0; i < o.pubs; i++) conn_init(&g_pubs[i], tcp_connect(), K_PUB, i, 1 << 16);

    const char *argv[3] = {"PUBLISH", o.channel, NULL};
    build_template(3, argv, 2);
    g_t0 = now_ns() + 20000000u;
    if (o.rate > 0) set_rates(g_pubs, o.pubs);
    workers_init();
    workers_run_and_measure();
    if (pfd >= 0) close(pfd);
}

/* Blocking: reads one request frame on a listener's socket and answers it. */
static void answer_one(conn *l) {
    size_t have = 0;
    for (;;) {
        rframe f;
        long r = resp_parse(l->rb, l->rb + have, &f);
        if (r < 0) die("protocol error on listener %d during setup", l->idx);
        if (r > 0) {
            if (f.top.type == '-') die("listener %d: server replied: %.*s", l->idx, (int)f.top.len, f.top.s);
            if (!is_request(&f)) die("listener %d: expected a request frame during setup", l->idx);
            if ((size_t)r != have) die("listener %d: unexpected extra data during setup", l->idx);
            add_reply(l, &f.el[1], &f.el[3]);
            write_all(l->fd, l->ob, l->olen);
            l->olen = 0;
            read_replies(l->fd, 1, 0); /* +OK */
            return;
        }
        if (have == l->rcap) l->rb = xrealloc(l->rb, l->rcap *= 2);
        ssize_t got = read(l->fd, l->rb + have, l->rcap - have);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) die("listener %d: setup read: %s", l->idx, got ? strerror(errno) : "connection closed");
        have += (size_t)got;
    }
}

/* --listener N: N listener connections, each HUB.LISTENs its name (the
 * --name itself if N is 1, else NAME.<j>), callers get NAME.<i mod N>; one
 * probe call per name, answered here, before the load starts. */
static void listeners_setup(const char **argv, int argc) {
    if (o.fcall) die("--listener is for HUB.CALL, not --fcall");
    if (o.listeners > o.conns) die("--listener N needs N <= --conns");
    g_nlis = o.listeners;
    g_lis = calloc((size_t)g_nlis, sizeof(conn));
    buf *tpls = calloc((size_t)g_nlis, sizeof(buf));
    size_t *tso = calloc((size_t)g_nlis, sizeof(size_t));
    char (*names)[256] = calloc((size_t)g_nlis, 256);
    buf cmd = {0};
    for (int j = 0; j < g_nlis; j++) {
        if (g_nlis == 1) snprintf(names[j], 256, "%s", o.call_name);
        else snprintf(names[j], 256, "%s.%d", o.call_name, j);
        argv[1] = names[j];
        build_template(argc, argv, (size_t)argc - 1);
        b_add(&tpls[j], g_tpl.p, g_tpl.len);
        tso[j] = g_ts_off;
        conn *l = &g_lis[j];
        conn_init(l, tcp_connect(), K_LIS, j, 1 << 16);
        cmd.len = 0;
        b_fmt(&cmd, "*2\r\n");
        b_arg(&cmd, "HUB.LISTEN", 10);
        b_arg(&cmd, names[j], strlen(names[j]));
        write_all(l->fd, cmd.p, cmd.len);
        read_replies(l->fd, 1, 1); /* [listen, name, 1] */
    }
    for (int i = 0; i < o.conns; i++) g_calls[i].tpl = &tpls[i % g_nlis], g_calls[i].tso = tso[i % g_nlis];
    for (int j = 0; j < g_nlis; j++) {
        write_all(g_calls[j].fd, tpls[j].p, tpls[j].len);
        answer_one(&g_lis[j]);
        read_replies(g_calls[j].fd, 1, 0);
    }
    free(cmd.p);
}

static void cmd_call(void) {
    if (o.size < 16) die("--size must be at least 16");
    g_ncalls = o.conns;
    g_calls = calloc((size_t)o.conns, sizeof(conn));
    for (int i = 0; i < o.conns; i++) {
        conn *c = &g_calls[i];
        conn_init(c, tcp_connect(), K_CALL, i, 1 << 16);
        uint32_t ring = 1;
        while (ring < (o.rate > 0 ? 65536u : (uint32_t)o.pipeline)) ring <<= 1;
        c->ring = xmalloc(sizeof(uint64_t) * ring);
        c->rmask = ring - 1;
    }
    buf cmd = {0};
    const char *argv[20];
    int argc;
    if (o.listeners > 0 && o.cmd) die("--listener is for HUB.CALL, not --cmd");
    if (o.fcall) {
        static const char lib[] =
            "#!lua name=bench\nredis.register_function('echo', function(keys, args) return args[1] end)";
        b_fmt(&cmd, "*4\r\n");
        b_arg(&cmd, "FUNCTION", 8);
        b_arg(&cmd, "LOAD", 4);
        b_arg(&cmd, "REPLACE", 7);
        b_arg(&cmd, lib, sizeof lib - 1);
        write_all(g_calls[0].fd, cmd.p, cmd.len);
        read_replies(g_calls[0].fd, 1, 0);
        argv[0] = "FCALL", argv[1] = "echo", argv[2] = "0", argc = 4;
    } else if (o.cmd) {
        argc = split_words(o.cmd, argv, 19) + 1;
    } else {
        argv[0] = "HUB.CALL", argv[1] = o.call_name, argc = 3;
    }
    build_template(argc, argv, (size_t)argc - 1);
    if (o.listeners > 0) {
        listeners_setup(argv, argc);
    } else {
        /* one probe call so that "unknown command" is an error, not a 0 */
        write_all(g_calls[0].fd, g_tpl.p, g_tpl.len);
        read_replies(g_calls[0].fd, 1, 0);
    }
    g_t0 = now_ns() + 20000000u;
    if (o.rate > 0) set_rates(g_calls, o.conns);
    workers_init();
    workers_run_and_measure();
}

/* A header "T<int>\r\n" at *q of a reply already known to be complete. */
static long long rd_hdr(const char **q, const char *e, char t) {
    long long v = 0;
    if (*q >= e || **q != t) die("unexpected XREADGROUP reply (wanted '%c', got '%c')", t, *q < e ? **q : '?');
    *q = r_int(*q + 1, e, &v);
    if (!*q || *q == BAD) die("malformed XREADGROUP reply");
    return v;
}

/* One complete XREADGROUP reply at p (RESP2: nil or [[key, [[id, fields]...]]]):
 * appends its entry ids to ack as bulk arguments, returns how many. */
static long xrg_ids(const char *p, const char *e, buf *ack) {
    const char *q = p;
    long n = 0;
    long long ns = rd_hdr(&q, e, '*');
    for (long long i = 0; i < ns; i++) {
        if (rd_hdr(&q, e, '*') != 2) die("XREADGROUP: a stream is not [key, entries]");
        relem el;
        q = r_value(q, e, &el, NULL, 0); /* the key */
        long long ne = rd_hdr(&q, e, '*');
        for (long long j = 0; j < ne; j++) {
            if (rd_hdr(&q, e, '*') != 2) die("XREADGROUP: an entry is not [id, fields]");
            q = r_value(q, e, &el, NULL, 0);
            if (el.type != '$' || el.len <= 0) die("XREADGROUP: an entry id is not a string");
            b_arg(ack, el.s, (size_t)el.len);
            n++;
            q = r_value(q, e, &el, NULL, 0); /* fields (nil if deleted) */
        }
    }
    return n;
}

typedef struct {
    int fd;
    char *rb;
    size_t rlen, rcap;
    int want_ack, want_read; /* replies still expected */
} ccon;

/* Writes XREADGROUP GROUP bench c<i> COUNT n STREAMS key > (after XACK ids, if any). */
static void consume_send(ccon *c, int i, const buf *ids, long nids) {
    static buf out;
    char cname[32], cnt[32];
    out.len = 0;
    if (nids > 0) {
        b_fmt(&out, "*%ld\r\n", nids + 3);
        b_arg(&out, "XACK", 4);
        b_arg(&out, o.key, strlen(o.key));
        b_arg(&out, "bench", 5);
        b_add(&out, ids->p, ids->len);
        c->want_ack++;
    }
    int cl = snprintf(cname, sizeof cname, "c%d", i), nl = snprintf(cnt, sizeof cnt, "%d", o.count);
    b_fmt(&out, "*9\r\n");
    b_arg(&out, "XREADGROUP", 10);
    b_arg(&out, "GROUP", 5);
    b_arg(&out, "bench", 5);
    b_arg(&out, cname, (size_t)cl);
    b_arg(&out, "COUNT", 5);
    b_arg(&out, cnt, (size_t)nl);
    b_arg(&out, "STREAMS", 7);
    b_arg(&out, o.key, strlen(o.key));
    b_arg(&out, ">", 1);
    c->want_read++;
    write_all(c->fd, out.p, out.len);
}

static void cmd_consume(void) {
    if (o.entries < 1 || o.count < 1 || o.conns < 1) die("consume needs --entries, --count, --conns >= 1");
    /* fill: batches of 500 pipelined XADDs */
    int fd = tcp_connect();
    const char *argv[5] = {"XADD", o.key, "*", "data", NULL};
    build_template(5, argv, 4);
    buf batch = {0};
    uint64_t f0 = now_ns();
    for (long i = 0; i < o.entries; i += 500) {
        long k = o.entries - i < 500 ? o.entries - i : 500;
        batch.len = 0;
        for (long j = 0; j < k; j++) b_add(&batch, g_tpl.p, g_tpl.len);
        write_all(fd, batch.p, batch.len);
        read_replies(fd, k, 0);
    }
    double fill_s = (double)(now_ns() - f0) / 1e9;
    static const char grp_fmt[] = "*5\r\n$6\r\nXGROUP\r\n$6\r\nCREATE\r\n$%zu\r\n%s\r\n$5\r\nbench\r\n$1\r\n0\r\n";
    batch.len = 0;
    b_reserve(&batch, strlen(o.key) + 128);
    batch.len = (size_t)sprintf(batch.p, grp_fmt, strlen(o.key), o.key);
    write_all(fd, batch.p, batch.len);
    read_replies(fd, 1, 0);
    close(fd);

    ccon *cs = calloc((size_t)o.conns, sizeof *cs);
    struct pollfd *pf = calloc((size_t)o.conns, sizeof *pf);
    buf ids = {0};
    for (int i = 0; i < o.conns; i++) {
        cs[i].fd = tcp_connect();
        cs[i].rcap = 1 << 18;
        cs[i].rb = xmalloc(cs[i].rcap);
    }
    long long acked = 0;
    int live = o.conns;
    double cs1 = proc_cpu(o.pid), cg1 = proc_cpu(0);
    uint64_t t0 = now_ns(), deadline = t0 + 300000000000ull;
    for (int i = 0; i < o.conns; i++) consume_send(&cs[i], i, &ids, 0);
    while (live > 0) {
        int np = 0;
        for (int i = 0; i < o.conns; i++)
            if (cs[i].want_ack + cs[i].want_read) pf[np].fd = cs[i].fd, pf[np].events = POLLIN, np++;
        if (poll(pf, (nfds_t)np, 1000) < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        if (now_ns() > deadline) die("consume: not drained within 300 s (%lld of %ld acked)", acked, o.entries);
        for (int i = 0, k = 0; i < o.conns; i++) {
            ccon *c = &cs[i];
            if (!(c->want_ack + c->want_read)) continue;
            if (!(pf[k++].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (c->rcap - c->rlen < 65536) c->rb = xrealloc(c->rb, c->rcap *= 2);
            ssize_t got = read(c->fd, c->rb + c->rlen, c->rcap - c->rlen);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) die("consumer %d: %s", i, got ? strerror(errno) : "connection closed");
            c->rlen += (size_t)got;
            size_t off = 0;
            rframe f;
            long r;
            while ((r = resp_parse(c->rb + off, c->rb + c->rlen, &f)) > 0) {
                const char *p = c->rb + off;
                off += (size_t)r;
                if (f.top.type == '-') die("consumer %d: server replied: %.*s", i, (int)f.top.len, f.top.s);
                if (f.top.type == ':' && c->want_ack) {
                    acked += f.top.len;
                    c->want_ack--;
                    continue;
                }
                if (!c->want_read) die("consumer %d: unexpected reply", i);
                c->want_read--;
                ids.len = 0;
                long n = (f.top.type == '*' && f.top.len > 0) ? xrg_ids(p, p + r, &ids) : 0;
                if (n > 0) consume_send(c, i, &ids, n);
            }
            if (r < 0) die("consumer %d: protocol error", i);
            memmove(c->rb, c->rb + off, c->rlen - off);
            c->rlen -= off;
            if (!(c->want_ack + c->want_read)) live--;
        }
    }
    uint64_t t1 = now_ns();
    double dt = (double)(t1 - t0) / 1e9, cs2 = proc_cpu(o.pid), cg2 = proc_cpu(0);
    printf("{\"label\":");
    json_str(o.label);
    printf(",\"mode\":\"consume\",\"entries\":%ld,\"conns\":%d,\"count\":%d,\"size\":%d,\"consumed_per_s\":%.0f,"
           "\"acked\":%lld,\"lost\":%lld,\"fill_per_s\":%.0f,\"secs\":%.3f",
           o.entries, o.conns, o.count, o.size, (double)acked / dt, acked,
           acked < o.entries ? o.entries - acked : 0, (double)o.entries / fill_s, dt);
    if (o.pid > 0 && cs1 >= 0 && cs2 >= 0) printf(",\"srv_cpu\":%.2f", (cs2 - cs1) / dt);
    if (cg1 >= 0 && cg2 >= 0) printf(",\"gen_cpu\":%.2f", (cg2 - cg1) / dt);
    printf("}\n");
    fflush(stdout);
}

static void workers_run_and_measure(void) {
    for (int i = 0; i < o.threads; i++) pthread_create(&g_w[i].th, NULL, worker_main, &g_w[i]);

    uint64_t t1 = g_t0 + (uint64_t)(o.warmup * 1e9);
    sleep_until(t1);
    uint64_t d1, s1, e1, d2, s2, e2;
    double cs1 = proc_cpu(o.pid), cg1 = proc_cpu(0);
    snapshot(&d1, &s1, &e1);
    t1 = now_ns();
    STORE(g_ws, t1); /* messages sent (or due) from now on are timed */
    sleep_until(t1 + (uint64_t)(o.duration * 1e9));
    snapshot(&d2, &s2, &e2);
    uint64_t t2 = now_ns();
    double cs2 = proc_cpu(o.pid), cg2 = proc_cpu(0);
    STORE(g_we, t2);
    STORE(g_stop_send, 1);

    /* drain: wait for what was sent to arrive (or for progress to stop) */
    uint64_t expect_done, last = 0, last_t = now_ns(), dl = last_t + (uint64_t)(o.drain * 1e9);
    uint64_t done, sent, err;
    for (;;) {
        snapshot(&done, &sent, &err);
        expect_done = g_nsubs ? sent * (uint64_t)g_nsubs : sent;
        uint64_t now = now_ns();
        uint64_t lsent = 0, ldone = 0;
        for (int i = 0; i < g_nlis; i++) /* every HUB.REPLY answered too */
            lsent += LOAD(g_lis[i].sent), ldone += LOAD(g_lis[i].done) + LOAD(g_lis[i].errors);
        if ((done >= expect_done && ldone >= lsent) || now > dl) break;
        if (done != last) last = done, last_t = now;
        else if (now - last_t > 300000000u) break;
        sleep_until(now + 2000000u);
    }
    for (int i = 0; i < o.threads; i++) ev_async_send(g_w[i].loop, &g_w[i].wake);
    for (int i = 0; i < o.threads; i++) pthread_join(g_w[i].th, NULL);

    hist *h = calloc(1, sizeof *h);
    for (int i = 0; i < o.threads; i++) h_merge(h, &g_w[i].h);
    uint64_t overrun = 0;
    for (int i = 0; i < g_ncalls; i++) overrun += g_calls[i].overrun;
    double dt = (double)(t2 - t1) / 1e9;
    double rate = (double)((d2 - d1) - (e2 - e1)) / dt;
    if (d2 - d1 <= e2 - e1)
        die("nothing %s during the measurement window (%llu sent, %llu errors)",
            g_nsubs ? "delivered" : "answered", (unsigned long long)sent, (unsigned long long)err);

    printf("{\"label\":");
    json_str(o.label);
    printf(",\"mode\":\"%s\",\"kind\":\"%s\",\"size\":%d,\"threads\":%d", mode, o.rate > 0 ? "fixed" : "saturation",
           o.size, o.threads);
    if (!strcmp(mode, "pubsub"))
        printf(",\"pubs\":%d,\"subs\":%d,\"idle_patterns\":%d,\"window\":%d,\"maxlag\":%ld,\"msgs_per_s\":%.0f,"
               "\"pub_per_s\":%.0f,\"published\":%llu,\"delivered\":%llu,\"lost\":%llu,\"extra\":%llu",
               o.pubs, o.subs, o.idle_patterns, o.window, o.maxlag, rate, (double)(s2 - s1) / dt,
               (unsigned long long)sent, (unsigned long long)done,
               (unsigned long long)(expect_done > done ? expect_done - done : 0),
               (unsigned long long)(done > expect_done ? done - expect_done : 0));
    else
        printf(",\"conns\":%d,\"pipeline\":%d,\"calls_per_s\":%.0f,\"calls\":%llu,\"errors\":%llu,\"overrun\":%llu",
               o.conns, o.pipeline, rate, (unsigned long long)done, (unsigned long long)err,
               (unsigned long long)overrun);
    if (g_nlis) {
        uint64_t ls = 0, ld = 0, le = 0, lo = 0;
        for (int i = 0; i < g_nlis; i++)
            ls += g_lis[i].sent, ld += g_lis[i].done, le += g_lis[i].errors, lo += g_lis[i].overrun;
        printf(",\"listeners\":%d,\"lis_replies\":%llu,\"lis_ok\":%llu,\"lis_errors\":%llu,\"lis_other\":%llu", g_nlis,
               (unsigned long long)ls, (unsigned long long)ld, (unsigned long long)le, (unsigned long long)lo);
    }
    if (o.rate > 0) printf(",\"rate\":%.0f", o.rate);
    printf(",\"secs\":%.3f", dt);
    if (o.pid > 0 && cs1 >= 0 && cs2 >= 0) printf(",\"srv_cpu\":%.2f", (cs2 - cs1) / dt);
    if (cg1 >= 0 && cg2 >= 0) printf(",\"gen_cpu\":%.2f", (cg2 - cg1) / dt);
    h_print(h);
    printf("}\n");
    fflush(stdout);
}

static void cmd_mem(void) {
    if (o.pid <= 0) die("mem needs --pid");
    if ((o.channels > 0) == (o.conns > 0)) die("mem needs exactly one of --conns N, --channels N");
    struct timespec settle = {0, 100000000}; /* let the server finish allocating */
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    long before, after;
    long n;
    if (o.channels > 0) {
        n = o.channels;
        int fd = tcp_connect();
        write_all(fd, ping, sizeof ping - 1);
        read_replies(fd, 1, 0);
        nanosleep(&settle, NULL);
        before = vmrss_kb(o.pid);
        buf cmd = {0};
        for (long i = 0; i < n; i += 1000) {
            long k = n - i < 1000 ? n - i : 1000;
            cmd.len = 0;
            b_fmt(&cmd, "*%ld\r\n", k + 1);
            b_arg(&cmd, "SUBSCRIBE", 9);
            for (long j = i; j < i + k; j++) {
                char ch[64];
                int l = snprintf(ch, sizeof ch, "mem.channel.%ld", j);
                b_arg(&cmd, ch, (size_t)l);
            }
            write_all(fd, cmd.p, cmd.len);
            read_replies(fd, k, 1);
        }
        nanosleep(&settle, NULL);
        after = vmrss_kb(o.pid);
        close(fd);
    } else {
        n = o.conns;
        nanosleep(&settle, NULL);
        before = vmrss_kb(o.pid);
        int *fds = xmalloc(sizeof(int) * (size_t)n);
        /* in batches, so the listen backlog never overflows (a dropped SYN
         * costs a 1 s retransmit) */
        for (long b = 0; b < n; b += 100) {
            long e = b + 100 < n ? b + 100 : n;
            for (long i = b; i < e; i++) fds[i] = tcp_connect();
            for (long i = b; i < e; i++) write_all(fds[i], ping, sizeof ping - 1);
            for (long i = b; i < e; i++) read_replies(fds[i], 1, 0);
        }
        nanosleep(&settle, NULL);
        after = vmrss_kb(o.pid);
        for (long i = 0; i < n; i++) close(fds[i]);
    }
    if (before < 0 || after < 0) die("cannot read /proc/%d/status", o.pid);
    printf("{\"label\":");
    json_str(o.label);
    printf(",\"mode\":\"mem\",\"what\":\"%s\",\"n\":%ld,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
           "\"bytes_per\":%.0f}\n",
           o.channels > 0 ? "channels" : "conns", n, before, after, (double)(after - before) * 1024.0 / (double)n);
}

/* ------------------------------------------------------------------------ */

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen pubsub|call|mem [options]\n"
            " common:  --host H --port P --label S --pid PID (server, for CPU/RSS)\n"
            "          --warmup S --duration S --drain S --threads N --size B\n"
            "          --rate R (total msgs or calls per second; 0 = saturate) --tick-us U\n"
            " pubsub:  --pubs N --subs N --channel C --sub-channel C | --psub PATTERN\n"
            "          --window N (unacked PUBLISHes per publisher) --maxlag N\n"
            "          --idle-patterns N (another connection PSUBSCRIBEs idle.<i>.*)\n"
            " call:    --conns N --pipeline P --name NAME (HUB.CALL NAME payload) | --fcall\n"
            "          (FUNCTION LOAD a library, then FCALL echo 0 payload)\n"
            "          --listener N: N more connections HUB.LISTEN and answer the calls\n"
            "          (HUB.REPLY id payload); N > 1: names NAME.0..NAME.<N-1>\n"
            "          --cmd W1,W2,..: that command (words split at commas or spaces)\n"
            "          with the payload as its last argument\n"
            " consume: --key K --entries N --conns N --count C (XADD N entries, then\n"
            "          XREADGROUP COUNT C + XACK until drained; rate from the first read)\n"
            " mem:     --pid PID and --conns N (idle connections) | --channels N (one conn)\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') usage();
    mode = argv[1];
    signal(SIGPIPE, SIG_IGN);
    static const struct option opts[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"label", 1, 0, 'L'}, {"pid", 1, 0, 'P'},
        {"warmup", 1, 0, 'w'}, {"duration", 1, 0, 'd'}, {"drain", 1, 0, 'D'}, {"threads", 1, 0, 't'},
        {"size", 1, 0, 's'}, {"rate", 1, 0, 'r'}, {"tick-us", 1, 0, 'T'}, {"pubs", 1, 0, 'b'},
        {"subs", 1, 0, 'S'}, {"channel", 1, 0, 'c'}, {"sub-channel", 1, 0, 'C'}, {"psub", 1, 0, 'x'},
        {"window", 1, 0, 'W'}, {"maxlag", 1, 0, 'm'}, {"idle-patterns", 1, 0, 'i'}, {"conns", 1, 0, 'n'},
        {"pipeline", 1, 0, 'l'}, {"name", 1, 0, 'N'}, {"fcall", 0, 0, 'f'}, {"channels", 1, 0, 'k'},
        {"listener", 1, 0, 'R'}, {"cmd", 1, 0, 'X'}, {"key", 1, 0, 'K'}, {"entries", 1, 0, 'E'},
        {"count", 1, 0, 'O'}, {"help", 0, 0, '?'}, {0, 0, 0, 0},
    };
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'h': o.host = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 'L': o.label = optarg; break;
        case 'P': o.pid = atoi(optarg); break;
        case 'w': o.warmup = atof(optarg); break;
        case 'd': o.duration = atof(optarg); break;
        case 'D': o.drain = atof(optarg); break;
        case 't': o.threads = atoi(optarg); break;
        case 's': o.size = atoi(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 'T': o.tick_us = atoi(optarg); break;
        case 'b': o.pubs = atoi(optarg); break;
        case 'S': o.subs = atoi(optarg); break;
        case 'c': o.channel = optarg; break;
        case 'C': o.sub_channel = optarg; break;
        case 'x': o.psub = optarg; break;
        case 'W': o.window = atoi(optarg); break;
        case 'm': o.maxlag = atol(optarg); break;
        case 'i': o.idle_patterns = atoi(optarg); break;
        case 'n': o.conns = atoi(optarg); break;
        case 'l': o.pipeline = atoi(optarg); break;
        case 'N': o.call_name = optarg; break;
        case 'f': o.fcall = 1; break;
        case 'k': o.channels = atoi(optarg); break;
        case 'R': o.listeners = atoi(optarg); break;
        case 'X': o.cmd = optarg; break;
        case 'K': o.key = optarg; break;
        case 'E': o.entries = atol(optarg); break;
        case 'O': o.count = atoi(optarg); break;
        default: usage();
        }
    }
    if (optind != argc) usage();
    if (o.tick_us < 1) o.tick_us = 1;
    if (o.window < 1) o.window = 1;
    if (o.pipeline < 1) o.pipeline = 1;
    if (!strcmp(mode, "pubsub")) {
        if (o.pubs < 1 || o.subs < 0) die("--pubs must be >= 1 and --subs >= 0");
        cmd_pubsub();
    } else if (!strcmp(mode, "call")) {
        if (o.conns < 0) o.conns = 50;
        if (o.conns < 1) die("--conns must be >= 1");
        cmd_call();
    } else if (!strcmp(mode, "consume")) {
        if (o.conns < 0) o.conns = 4;
        cmd_consume();
    } else if (!strcmp(mode, "mem")) {
        cmd_mem();
    } else {
        usage();
    }
    return 0;
}
