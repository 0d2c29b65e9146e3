"""A good client's round trip while every connection slot is held by a slow attacker.

For each backend: ``--max-connections N`` slots, N attackers that trickle a
PROXY header one byte every half second (and connect again as soon as they are
cut, so the slots stay taken), and a well-behaved client that sends its header
and a message. Its round trip is bounded by the header deadline
(``--header-timeout``): it waits in the listen backlog until a slot frees, which
happens when the first attacker runs out of time. Before the deadline was
total, the attackers could hold the slots, and the good client, for as long as
they liked.

    python bench/slow_peers.py                          # every backend, ~1 minute
    python bench/slow_peers.py --backends thread,asyncio --no-write
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
from echoserver.backends import REGISTRY  # noqa: E402
from echoserver.sansio.proxy_protocol import encode_v1  # noqa: E402
from echoserver.spawn import ServerProcess  # noqa: E402

HEADER = encode_v1(("192.0.2.1", 1111), ("192.0.2.2", 2222))


def connect(address, timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


def attacker(address, stop: threading.Event) -> None:
    """Hold a slot: trickle the header, one byte per 0.5 s; when cut, connect again at once."""
    while not stop.is_set():
        try:
            with connect(address, timeout=5) as sock:
                for byte in HEADER[:-2]:  # never the CRLF: the header never completes
                    if stop.wait(0.5):
                        return
                    sock.send(bytes([byte]))
        except OSError:
            continue


def good_round_trip(address) -> float:
    started = time.monotonic()
    with connect(address, timeout=30) as sock:
        sock.settimeout(30)
        sock.sendall(HEADER + b"ping")
        echoed = b""
        while len(echoed) < 4 and (chunk := sock.recv(4)):
            echoed += chunk
        assert echoed == b"ping", echoed
    return time.monotonic() - started


def measure(backend: str, slots: int, deadline: float, rounds: int) -> list[float]:
    with ServerProcess(
        "--backend",
        backend,
        "--max-connections",
        str(slots),
        "--proxy-protocol",
        "required",
        "--header-timeout",
        str(deadline),
        "--grace",
        "1",
        ready_timeout=60,
    ) as server:
        return [attacked_round_trip(server.address, slots) for _ in range(rounds)]


def attacked_round_trip(address, slots: int) -> float:
    """One good client against a fresh set of attackers that took every slot first."""
    stop = threading.Event()
    attackers = [threading.Thread(target=attacker, args=(address, stop), daemon=True) for _ in range(slots)]
    for thread in attackers:
        thread.start()
    try:
        time.sleep(0.5)  # the attackers connect first: that is the scenario, not a readiness wait
        return good_round_trip(address)
    finally:
        stop.set()  # they close their sockets, and the server frees their slots at once
        for thread in attackers:
            thread.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(n for n, s in REGISTRY.items() if s.available))
    parser.add_argument("--slots", type=int, default=4, help="--max-connections, and as many attackers")
    parser.add_argument("--header-timeout", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="good clients, one after the other")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    command = " ".join(["python", "bench/slow_peers.py", *(sys.argv[1:] if argv is None else argv)])
    lines = [
        f"# A good client's round trip while {args.slots} slow attackers hold all {args.slots} slots",
        "",
        f"`{command}`: `--max-connections {args.slots} --proxy-protocol required --header-timeout "
        f"{args.header_timeout:g}`; each attacker trickles a PROXY header at one byte per 0.5 s and "
        "reconnects when cut. The round trip should stay under the header deadline (plus scheduling).",
        "",
        "| backend | round trips (s) | median | max | within the deadline + 1 s |",
        "|---|---|---|---|---|",
    ]
    for backend in (b.strip() for b in args.backends.split(",") if b.strip()):
        times = measure(backend, args.slots, args.header_timeout, args.rounds)
        ok = "yes" if max(times) <= args.header_timeout + 1 else "no"
        lines.append(
            f"| `{backend}` | {', '.join(f'{t:.2f}' for t in times)} | {statistics.median(times):.2f} | "
            f"{max(times):.2f} | {ok} |"
        )
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        (BENCH / "results" / "slow_peers.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
