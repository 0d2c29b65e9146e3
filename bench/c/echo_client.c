/*
 * Minimal closed-loop epoll echo client: the compiled reference that
 * bench/loadgen_vs_c.py holds echo-load against.
 *
 *   echo_client HOST PORT CONNECTIONS SIZE WARMUP_S DURATION_S
 *
 * One thread, non-blocking sockets, one message in flight per connection,
 * every echoed byte compared with what was sent. Prints one JSON line:
 * {"messages": N, "duration_s": S, "msgs_per_s": R, "cpu_s": C, "mismatches": M, "errors": E}
 * where cpu_s is the CPU time (user + system) this process used during the window.
 * Exit status 1 when any mismatch or error was seen.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    size_t got;          /* bytes of the current echo received so far */
    unsigned char *msg;  /* what this connection sends */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int connect_to(const char *host, const char *port) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_all(int fd, const unsigned char *buf, size_t len) {
    /* A 64-byte message fits a fresh socket buffer; a short send is an error here. */
    return send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT CONNECTIONS SIZE WARMUP_S DURATION_S\n", argv[0]);
        return 2;
    }
    int nconn = atoi(argv[3]);
    size_t size = (size_t)atoi(argv[4]);
    double warmup = atof(argv[5]), duration = atof(argv[6]);
    struct conn *conns = calloc(nconn, sizeof *conns);
    unsigned char *rbuf = malloc(size);
    int ep = epoll_create1(0);
    long mismatches = 0, errors = 0;

    for (int i = 0; i < nconn; i++) {
        conns[i].fd = connect_to(argv[1], argv[2]);
        if (conns[i].fd < 0) {
            fprintf(stderr, "connect failed: %s\n", strerror(errno));
            return 1;
        }
        conns[i].msg = malloc(size);
        for (size_t j = 0; j < size; j++) conns[i].msg[j] = (unsigned char)('a' + (i + j) % 26);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
        if (send_all(conns[i].fd, conns[i].msg, size)) errors++;
    }

    struct epoll_event events[256];
    double start = now_s(), window_start = start + warmup, end = window_start + duration;
    long counted = 0;
    int measuring = 0;
    double cpu_start = 0;
    for (;;) {
        int n = epoll_wait(ep, events, 256, 100);
        double t = now_s();
        if (!measuring && t >= window_start) { measuring = 1; counted = 0; cpu_start = cpu_s(); }
        if (t >= end) break;
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            ssize_t r = recv(c->fd, rbuf, size - c->got, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            if (memcmp(rbuf, c->msg + c->got, (size_t)r) != 0) mismatches++;
            c->got += (size_t)r;
            if (c->got == size) {
                c->got = 0;
                counted++;
                if (send_all(c->fd, c->msg, size)) errors++;
            }
        }
    }
    double elapsed = now_s() - window_start, cpu = cpu_s() - cpu_start;
    printf("{\"messages\": %ld, \"duration_s\": %.3f, \"msgs_per_s\": %.1f, \"cpu_s\": %.3f, "
           "\"mismatches\": %ld, \"errors\": %ld}\n",
           counted, elapsed, counted / elapsed, cpu, mismatches, errors);
    return mismatches || errors ? 1 : 0;
}
