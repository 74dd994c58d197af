/* fuzz_resp.c -- libFuzzer target for net/resp.c, the request parser: the
 * input is a client's byte stream, fed in pieces whose size the first byte
 * picks (so resumption after RESP_INCOMPLETE is exercised), under small
 * limits (so every limit is reached). Every request must lie inside the
 * bytes given, every argument inside its request, an error must carry a
 * text, and parsing must always make progress. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t piece = (size_t)(data[0] % 17) + 1;
    data++;
    size--;
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    resp_limits lim = {4096, 64, 256};
    resp_parser p;
    resp_parser_init(&p);
    size_t start = 0, avail = 0;
    while (start < size) {
        avail = avail + piece < size - start ? avail + piece : size - start;
        resp_status st = resp_parse(&p, buf + start, avail, &lim);
        if (st == RESP_INCOMPLETE) {
            if (avail == size - start) break; /* the stream ends mid-request */
            continue;
        }
        if (st == RESP_ERROR) {
            if (!p.err || !*p.err || strchr(p.err, '\r') || strchr(p.err, '\n')) abort();
            break;
        }
        if (p.consumed == 0 || p.consumed > avail || p.argc < 0 || p.argc > lim.max_multibulk) abort();
        for (int i = 0; i < p.argc; i++)
            if (p.argv[i].off > p.consumed || p.argv[i].len > p.consumed - p.argv[i].off) abort();
        start += p.consumed;
        avail = 0;
    }
    resp_parser_free(&p);
    free(buf);
    return 0;
}
