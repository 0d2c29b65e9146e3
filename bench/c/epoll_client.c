/*
 * epoll-client [--warmup W] HOST PORT CONNECTIONS SIZE SECONDS [PIPELINE]
 *
 * A closed-loop echo load generator that is never the bottleneck: one thread,
 * one epoll set, no allocation on the hot path. It opens CONNECTIONS TCP
 * connections, keeps PIPELINE messages of SIZE bytes in flight on each (send,
 * wait for the full echo, send the next), verifies every echoed byte against
 * what was sent, and after SECONDS prints one JSON line:
 *
 *   {"messages": N, "bytes": N, "seconds": S, "msgs_per_s": R, "errors": E,
 *    "mismatches": M, "cpu_s": C}
 *
 * With --warmup W (seconds, default 0; also --warmup=W, anywhere on the line)
 * the load runs for W seconds first, uncounted, and the SECONDS window starts
 * after it.
 *
 * messages: round trips completed (every byte echoed) within the window;
 * bytes: echoed bytes verified within the window; seconds: the window's
 * length; cpu_s: CPU time (user + system) this process used in the window;
 * errors: connections that failed (refused, reset, closed by the server
 * early); mismatches: echoed bytes that differed from what was sent. Errors
 * and mismatches count from the start, warmup included: every byte is
 * verified. Exit status 0 if errors and mismatches are both 0, 1 otherwise,
 * 2 on bad arguments.
 *
 * The payload of connection c at stream offset o is a function of (c, o) that
 * does not repeat with the message size, so a lost, duplicated, reordered or
 * cross-connection byte shows up as a mismatch.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_CHUNK (256 * 1024)
#define MAX_EVENTS 1024

struct conn {
    int fd;
    int index;
    int alive;
    int want_out;        /* EPOLLOUT registered */
    uint64_t sent;       /* bytes written */
    uint64_t received;   /* bytes read and verified */
    uint64_t allowed;    /* bytes we may have written: (completed + pipeline) * size */
};

static unsigned char io_buf[IO_CHUNK];

static inline unsigned char pattern(int c, uint64_t o) {
    uint64_t x = o * 0x9E3779B97F4A7C15ULL + (uint64_t)c * 0xBF58476D1CE4E5B9ULL;
    return (unsigned char)(x >> 56) ^ (unsigned char)(o >> 11);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int open_connection(const struct addrinfo *ai) {
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void set_out(int ep, struct conn *c, int want) {
    if (c->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void fail(int ep, struct conn *c, long *errors) {
    if (!c->alive) return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->alive = 0;
    (*errors)++;
}

/* Write as much of what is allowed as the socket takes. */
static void pump_out(int ep, struct conn *c, long *errors) {
    while (c->alive && c->sent < c->allowed) {
        uint64_t todo = c->allowed - c->sent;
        size_t n = todo < IO_CHUNK ? (size_t)todo : IO_CHUNK;
        for (size_t i = 0; i < n; i++) io_buf[i] = pattern(c->index, c->sent + i);
        ssize_t w = send(c->fd, io_buf, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_out(ep, c, 1);
                return;
            }
            if (errno == EINTR) continue;
            fail(ep, c, errors);
            return;
        }
        c->sent += (uint64_t)w;
    }
    if (c->alive) set_out(ep, c, 0);
}

static int usage(void) {
    fprintf(stderr, "usage: epoll-client [--warmup W] HOST PORT CONNECTIONS SIZE SECONDS [PIPELINE]\n");
    return 2;
}

int main(int argc, char **argv) {
    long connections, size, pipeline = 1;
    double seconds, warmup = 0;
    /* --warmup W or --warmup=W may come anywhere; the rest are positional. */
    char *args[6];
    int nargs = 0;
    for (int i = 1; i < argc; i++) {
        const char *value = NULL;
        if (strcmp(argv[i], "--warmup") == 0) {
            if (++i == argc) return usage();
            value = argv[i];
        } else if (strncmp(argv[i], "--warmup=", 9) == 0) {
            value = argv[i] + 9;
        } else if (nargs < 6) {
            args[nargs++] = argv[i];
            continue;
        } else {
            return usage();
        }
        if (parse_double(value, 0, 86400, &warmup)) return usage();
    }
    if (nargs < 5 || parse_long(args[2], 1, 1000000, &connections) ||
        parse_long(args[3], 1, 64L * 1024 * 1024, &size) || parse_double(args[4], 0, 86400, &seconds) ||
        seconds <= 0 || (nargs == 6 && parse_long(args[5], 1, 1024, &pipeline)))
        return usage();

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int gai = getaddrinfo(args[0], args[1], &hints, &ai);
    if (gai) {
        fprintf(stderr, "epoll-client: %s:%s: %s\n", args[0], args[1], gai_strerror(gai));
        return 2;
    }

    int ep = epoll_create1(0);
    struct conn *conns = calloc((size_t)connections, sizeof *conns);
    if (ep < 0 || !conns) {
        perror("epoll-client");
        return 1;
    }
    long errors = 0, mismatches = 0;
    for (long i = 0; i < connections; i++) {
        struct conn *c = &conns[i];
        c->index = (int)i;
        c->fd = open_connection(ai);
        if (c->fd < 0) {
            if (errors == 0) fprintf(stderr, "epoll-client: connect: %s\n", strerror(errno));
            errors++;
            continue;
        }
        c->alive = 1;
        c->allowed = (uint64_t)pipeline * (uint64_t)size;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    freeaddrinfo(ai);

    long messages = 0;
    uint64_t bytes = 0;
    int measuring = warmup <= 0;
    double start = now(), cpu_start = cpu_now();
    double window_start = start + warmup, deadline = window_start + seconds;
    for (long i = 0; i < connections; i++) pump_out(ep, &conns[i], &errors);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        double t = now();
        if (!measuring && t >= window_start) {
            /* The warmup is over: count from here, for a whole window however late. */
            measuring = 1;
            messages = 0;
            bytes = 0;
            window_start = t;
            deadline = t + seconds;
            cpu_start = cpu_now();
        }
        if (t >= deadline) break;
        double until = measuring ? deadline : window_start;
        int timeout_ms = (int)((until - t) * 1000) + 1;
        int n = epoll_wait(ep, events, MAX_EVENTS, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            errors++;
            break;
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = events[k].data.ptr;
            if (!c->alive) continue;
            if (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                for (;;) {
                    ssize_t r = recv(c->fd, io_buf, IO_CHUNK, 0);
                    if (r < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                        if (errno == EINTR) continue;
                        fail(ep, c, &errors);
                        break;
                    }
                    if (r == 0 || c->received + (uint64_t)r > c->sent) {
                        fail(ep, c, &errors); /* early close, or bytes we never sent */
                        break;
                    }
                    for (ssize_t i = 0; i < r; i++)
                        if (io_buf[i] != pattern(c->index, c->received + (uint64_t)i)) mismatches++;
                    uint64_t before = c->received / (uint64_t)size;
                    c->received += (uint64_t)r;
                    bytes += (uint64_t)r;
                    uint64_t done = c->received / (uint64_t)size - before;
                    if (done) {
                        messages += (long)done;
                        c->allowed += done * (uint64_t)size;
                    }
                    if ((size_t)r < IO_CHUNK) break;
                }
            }
            if (c->alive) pump_out(ep, c, &errors);
        }
    }
    double elapsed = now() - window_start, cpu = cpu_now() - cpu_start;
    for (long i = 0; i < connections; i++)
        if (conns[i].alive) close(conns[i].fd);
    close(ep);
    free(conns);

    printf("{\"messages\": %ld, \"bytes\": %llu, \"seconds\": %.3f, \"msgs_per_s\": %.1f, "
           "\"errors\": %ld, \"mismatches\": %ld, \"cpu_s\": %.3f}\n",
           messages, (unsigned long long)bytes, elapsed, messages / elapsed, errors, mismatches, cpu);
    return errors || mismatches ? 1 : 0;
}
