/*
 * epoll-server: the fastest echo server this machine can run in one thread, so
 * that bench/loadgen_vs_c.py measures the load generators and not the server.
 *
 *   epoll-server PORT          (listens on 127.0.0.1; prints "ready PORT" once it does)
 *
 * Level-triggered epoll, one read of up to 64 KiB per event, written straight
 * back; a reply the kernel does not take whole is finished before the next read
 * on that connection (EPOLLOUT). Stops on SIGTERM or SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (64 * 1024)
#define MAX_FD 65536

struct pending {
    char *data;
    size_t len, off;
};

static volatile sig_atomic_t stopping;
static struct pending owed[MAX_FD];
static char buf[BUF];

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void drop(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(owed[fd].data);
    owed[fd] = (struct pending){0};
}

/* Write what is owed; 1 when all of it went, 0 when the kernel is full, -1 on error. */
static int flush(int fd) {
    struct pending *p = &owed[fd];
    while (p->off < p->len) {
        ssize_t w = send(fd, p->data + p->off, p->len - p->off, MSG_NOSIGNAL);
        if (w < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno == EINTR ? flush(fd) : -1;
        p->off += (size_t)w;
    }
    free(p->data);
    *p = (struct pending){0};
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: epoll-server PORT\n");
        return 2;
    }
    int port = atoi(argv[1]);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        perror("epoll-server");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, events[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("ready %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    while (!stopping) {
        int n = epoll_wait(ep, events, 256, 200);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAX_FD) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            if (owed[fd].data) { /* EPOLLOUT: finish the reply before reading more */
                int done = flush(fd);
                if (done < 0) drop(ep, fd);
                if (done > 0) {
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
                }
                continue;
            }
            ssize_t r = recv(fd, buf, BUF, 0);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
            if (r <= 0) {
                drop(ep, fd);
                continue;
            }
            ssize_t w = send(fd, buf, (size_t)r, MSG_NOSIGNAL);
            if (w == r) continue;
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                drop(ep, fd);
                continue;
            }
            size_t off = w < 0 ? 0 : (size_t)w;
            owed[fd] = (struct pending){malloc((size_t)r - off), (size_t)r - off, 0};
            if (!owed[fd].data) {
                drop(ep, fd);
                continue;
            }
            memcpy(owed[fd].data, buf + off, (size_t)r - off);
            struct epoll_event cev = {.events = EPOLLOUT, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
        }
    }
    return 0;
}
