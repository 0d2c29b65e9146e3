"""``echo-bench`` scenarios: what load to offer, and (for servers it starts) how to configure them.

Each scenario is there to make one property of the concurrency models visible.
``server_args`` only apply when ``echo-bench`` starts the servers; servers
given with ``--target`` must already be configured alike (for example
``ECHOSERVER_CPU_WORK`` in their environment).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scenario:
    name: str
    teaches: str
    server_args: tuple[str, ...] = ()
    load: dict = field(default_factory=dict)  # LoadSpec fields; the command line overrides them
    # LoadSpec fields of heavy clients that run beside the measured ones (see mixed.py); None: none
    heavy: dict | None = None


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "echo",
            "plain echo, 64-byte messages: the per-message overhead of each model",
            load={"clients": 20, "size": 64},
        ),
        Scenario(
            "cpu",
            "5,000 pure-Python iterations per message: threads serialise on the GIL, processes (fork) do not",
            ("--cpu-work", "5000"),
            load={"clients": 8, "size": 64},
        ),
        Scenario(
            "io",
            "20 ms of simulated IO per message: greenlets and the event loop overlap the waits, "
            "a 64-thread pool caps concurrency",
            ("--io-delay", "20"),
            load={"clients": 200, "size": 64, "timeout": 30.0},
        ),
        Scenario(
            "many",
            "1,000 mostly idle connections (2 msg/s each): memory per connection, from the server's PSS",
            ("--max-children", "1100"),
            load={"clients": 1000, "size": 64, "rate": 2000.0, "timeout": 30.0, "connect_timeout": 20.0},
        ),
        Scenario(
            "mixed",
            "16 tiny-echo clients (open loop, 500 msg/s) measured alone, then beside one client whose "
            "every message costs 20,000 pure-Python iterations: the GIL's convoy effect",
            ("--cpu-work", "20000", "--cpu-work-on", "marked"),
            load={"clients": 16, "size": 64, "rate": 500.0, "payload": "ascii", "timeout": 30.0},
            heavy={"clients": 1, "size": 64, "payload": "marked", "timeout": 60.0},
        ),
        Scenario(
            "c100k",
            "100,000 connections held open (~1 msg/s each) over 8 server workers and 6 echo-load "
            "processes: descriptor limits, source ports, memory per connection at scale",
            ("--workers", "8", "--backlog", "4096"),
            load={
                "clients": 100_000,
                "processes": 6,
                "size": 64,
                "rate": 100_000.0,
                "connect_rate": 5000.0,
                "timeout": 30.0,
                "connect_timeout": 30.0,
            },
        ),
    )
}
