"""The C programs of ``bench/c`` (the epoll echo client and server), built on demand for the benchmarks.

from bench.cclient import build_client, build_server
client = build_client()   # bench/build/epoll-client, rebuilt when the source is newer
server = build_server()   # bench/build/epoll-server
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CLIENT_SOURCE = BENCH / "c" / "epoll_client.c"
CLIENT_BINARY = BENCH / "build" / "epoll-client"
SERVER_SOURCE = BENCH / "c" / "epoll_server.c"
SERVER_BINARY = BENCH / "build" / "epoll-server"


def build(source: Path, binary: Path) -> Path:
    """Compile ``source`` into ``binary`` unless an up-to-date one is there."""
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    if shutil.which("gcc") is None:
        sys.exit(f"bench: gcc is needed to build {source.relative_to(BENCH.parent)}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", str(binary), str(source)], check=True)
    return binary


def build_client() -> Path:
    return build(CLIENT_SOURCE, CLIENT_BINARY)


def build_server() -> Path:
    return build(SERVER_SOURCE, SERVER_BINARY)
