"""Reference: a bare fork-per-connection echo server with SIGCHLD reaping, the tutorial shape.

Usage: python fork_server.py PORT   (0 picks a free port)
"""

import os
import signal
import socket
import sys


def reap(signum, frame):
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def handle(conn):
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)


def main():
    signal.signal(signal.SIGCHLD, reap)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(1024)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", file=sys.stderr, flush=True)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            status = 1
            try:
                handle(conn)
                status = 0
            finally:
                os._exit(status)
        conn.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
