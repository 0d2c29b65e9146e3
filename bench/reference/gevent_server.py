"""Reference: a bare monkey-patched gevent echo server (StreamServer), the tutorial shape.

Usage: python gevent_server.py PORT   (0 picks a free port)
"""

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402
import sys  # noqa: E402

from gevent.server import StreamServer  # noqa: E402


def handle(conn, address):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)


def main():
    server = StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=1024)
    server.start()
    print(f"listening on 127.0.0.1:{server.server_port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
