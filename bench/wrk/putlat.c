/* Per-request write latencies, by connection: a closed-loop HTTP client that records every request.
 *
 *   cc -O2 -o putlat bench/wrk/putlat.c
 *   putlat HOST PORT CONNECTIONS SECONDS [VALUE_BYTES] [KEYS] > trace.txt
 *
 * Each of CONNECTIONS keep-alive connections sends PUT /v1/kv/k{random below KEYS} with a body of VALUE_BYTES
 * (default 100 and 10000, as bench/wrk/puts.lua), waits for the whole answer, and sends the next, for SECONDS.
 * With PUTLAT_GET=CONSISTENCY in the environment it sends GET /v1/kv/k{...}?consistency=CONSISTENCY instead (the
 * stale-read row's request, as bench/wrk/stale-gets.lua sends it with PUTLAT_GET=stale).
 * One thread, epoll, so it costs less CPU than wrk's two threads at these rates. At the end it prints one line per
 * request: "connection start_us latency_us status" (start relative to the first request). wrk reports percentiles
 * only; this trace shows whether a slow request waited while other connections were being answered (unfair
 * queueing) or while nothing was (a stall): bench/wrk/tail-shape.py reads it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    uint64_t start;
    char buf[8192];
    size_t have;
    const char *req;
    size_t req_len, req_sent;
} conn_t;

typedef struct {
    uint32_t conn;
    uint32_t status;
    uint64_t start, end;
} rec_t;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static char **requests;
static size_t *request_lens;
static int keys;

static int send_more(conn_t *c) {
    while (c->req_sent < c->req_len) {
        ssize_t n = send(c->fd, c->req + c->req_sent, c->req_len - c->req_sent, MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        c->req_sent += (size_t)n;
    }
    return 1;
}

static int start_request(conn_t *c) {
    int k = rand() % keys;
    c->req = requests[k];
    c->req_len = request_lens[k];
    c->req_sent = 0;
    c->start = now_ns();
    return send_more(c);
}

/* Returns the status once a whole answer is in the buffer (and removes it), 0 if more is needed, -1 on a bad one. */
static int take_answer(conn_t *c) {
    char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
    if (!end) return c->have == sizeof c->buf ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4, body = 0;
    int status = atoi(c->buf + 9);
    for (char *p = c->buf; p < end; p++) {
        if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) body = strtoul(p + 15, NULL, 10);
    }
    if (c->have < head + body) return c->have == sizeof c->buf ? -1 : 0;
    memmove(c->buf, c->buf + head + body, c->have - head - body);
    c->have -= head + body;
    return status;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: putlat HOST PORT CONNECTIONS SECONDS [VALUE_BYTES] [KEYS]\n");
        return 2;
    }
    int nconn = atoi(argv[3]);
    double seconds = atof(argv[4]);
    int value = argc > 5 ? atoi(argv[5]) : 100;
    keys = argc > 6 ? atoi(argv[6]) : 10000;
    srand((unsigned)now_ns());
    char *body = malloc((size_t)value);
    for (int i = 0; i < value; i++) body[i] = (char)('a' + rand() % 26);
    requests = calloc((size_t)keys, sizeof *requests);
    request_lens = calloc((size_t)keys, sizeof *request_lens);
    const char *get = getenv("PUTLAT_GET");
    if (get && *get) value = 0;
    for (int k = 0; k < keys; k++) {
        char head[256];
        int h = get && *get ? snprintf(head, sizeof head, "GET /v1/kv/k%d?consistency=%s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", k, get, argv[1], argv[2])
                            : snprintf(head, sizeof head,
                         "PUT /v1/kv/k%d HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", k,
                         argv[1], argv[2], value);
        requests[k] = malloc((size_t)h + (size_t)value);
        memcpy(requests[k], head, (size_t)h);
        memcpy(requests[k] + h, body, (size_t)value);
        request_lens[k] = (size_t)h + (size_t)value;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &addr.sin_addr);
    int ep = epoll_create1(0);
    conn_t *conns = calloc((size_t)nconn, sizeof *conns);
    size_t cap = 1 << 20, count = 0;
    rec_t *recs = malloc(cap * sizeof *recs);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t t0 = now_ns(), stop = t0 + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < nconn; i++) {
        conn_t *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            perror("connect");
            return 1;
        }
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    for (int i = 0; i < nconn; i++) {
        if (start_request(&conns[i]) < 0) {
            perror("send");
            return 1;
        }
    }
    struct epoll_event evs[256];
    long errors = 0;
    while (now_ns() < stop) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < n; e++) {
            conn_t *c = &conns[evs[e].data.u32];
            if (evs[e].events & EPOLLOUT && send_more(c) < 0) errors++;
            if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            for (;;) {
                ssize_t r = recv(c->fd, c->buf + c->have, sizeof c->buf - c->have, 0);
                if (r <= 0) {
                    if (r == 0 || errno != EAGAIN) {
                        fprintf(stderr, "connection %u closed after %zu answers: %.*s\n", evs[e].data.u32, count, (int)c->have, c->buf);
                        return 1;
                    }
                    break;
                }
                c->have += (size_t)r;
                int status;
                while ((status = take_answer(c)) != 0) {
                    if (status < 0) {
                        fprintf(stderr, "bad answer on connection %u\n", evs[e].data.u32);
                        return 1;
                    }
                    uint64_t t = now_ns();
                    if (count == cap) recs = realloc(recs, (cap *= 2) * sizeof *recs);
                    recs[count++] = (rec_t){evs[e].data.u32, (uint32_t)status, c->start - t0, t - t0};
                    if (t < stop && start_request(c) < 0) errors++;
                }
            }
        }
    }
    for (size_t i = 0; i < count; i++) {
        printf("%u %.1f %.1f %u\n", recs[i].conn, recs[i].start / 1e3, (recs[i].end - recs[i].start) / 1e3, recs[i].status);
    }
    fprintf(stderr, "putlat: %zu answers in %.1f s, %ld send errors; started at %lld.%06ld (Unix time)\n", count, seconds, errors,
            (long long)wall.tv_sec, wall.tv_nsec / 1000);
    return 0;
}
