"""The C epoll echo client (``bench/c/epoll_client.c``), built on demand for the benchmarks that drive load with it.

from bench.cclient import build_client
binary = build_client()   # bench/build/epoll-client, rebuilt when the source is newer
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CLIENT_SOURCE = BENCH / "c" / "epoll_client.c"
CLIENT_BINARY = BENCH / "build" / "epoll-client"


def build_client() -> Path:
    """Compile the epoll client into bench/build/ unless an up-to-date binary is there."""
    if CLIENT_BINARY.exists() and CLIENT_BINARY.stat().st_mtime >= CLIENT_SOURCE.stat().st_mtime:
        return CLIENT_BINARY
    if shutil.which("gcc") is None:
        sys.exit("bench: gcc is needed to build bench/c/epoll_client.c")
    CLIENT_BINARY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", str(CLIENT_BINARY), str(CLIENT_SOURCE)], check=True)
    return CLIENT_BINARY
