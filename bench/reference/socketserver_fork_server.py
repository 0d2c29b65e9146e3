"""Reference: the standard library's ``socketserver.ForkingTCPServer``, what a user would pick instead of ``fork``.

Usage: python socketserver_fork_server.py PORT   (0 picks a free port)

The handler is the same loop as the bare fork reference's; everything else
(accept, fork, reaping with ``collect_children``) is socketserver's own.
"""

import socket
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)


class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True
    request_queue_size = 1024
    max_children = 100_000  # socketserver's default of 40 would cap the idle-connection measurement

    def get_request(self):
        conn, address = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as every other server here
        return conn, address


def main():
    with Server(("127.0.0.1", int(sys.argv[1])), Echo) as server:
        print(f"listening on 127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
        server.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
