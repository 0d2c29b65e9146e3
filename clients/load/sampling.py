"""Who is the bottleneck: the client's own CPU, and the server's when its PID is known.

A load generator that is saturated measures itself. Each process samples its
own CPU time over the window; with ``--server-pid`` (``echo-bench`` passes
it) the server's CPU and memory, children included (the fork backend), are
sampled over the same window. A Python process is saturated near one core,
whatever its thread count: the GIL lets one thread run Python at a time.
"""

from __future__ import annotations

import time

import psutil

SATURATED_PERCENT = 90.0


class CpuProbe:
    """Marked by the first worker at the window's start and end; the rest reads the marks."""

    def __init__(self, server_pid: int = 0) -> None:
        self.server_pid = server_pid
        self.marks: dict[str, tuple] = {}
        self.rss_before = _own_rss()  # before any connection exists: what they add is theirs
        self.server_before = self._server_memory() if server_pid else None  # likewise for the server
        self.rss_connected = 0
        self.server_connected: tuple | None = None

    def mark(self, moment: str) -> None:
        """``connected`` (every connection open, no message sent yet), then ``start`` and ``end`` of the window."""
        if moment == "connected":
            # What holding the connections costs the server, before traffic grows its buffers and heap.
            self.server_connected = self._server_memory() if self.server_pid else None
            return
        memory = self._server_memory() if moment == "end" else None
        if moment == "start":  # every connection of this process is open by now (the barrier)
            self.rss_connected = _own_rss()
        self.marks[moment] = (time.monotonic(), time.process_time(), self._server_cpu(), memory)

    def client_summary(self) -> dict:
        percent = self._percent(1)
        growth = (
            {"per_process_rss_growth": [max(0, self.rss_connected - self.rss_before)]} if self.rss_connected else {}
        )
        if percent is None:
            return {"per_process_percent": [], "saturated": False} | growth
        return {"per_process_percent": [percent], "saturated": percent >= SATURATED_PERCENT} | growth

    def server_summary(self) -> dict | None:
        if not self.server_pid or "end" not in self.marks:
            return None
        rss, pss, processes = self.marks["end"][3] or (None, None, None)
        before = self.server_before[1] if self.server_before else None
        return {
            "pid": self.server_pid,
            "processes": processes,
            "cpu_percent": self._percent(2),
            "rss_mb": rss,
            "pss_mb": pss,
            "pss_mb_before": before,
            "pss_mb_connected": self.server_connected[1] if self.server_connected else None,
        }

    def _percent(self, field: int) -> float | None:
        if "start" not in self.marks or "end" not in self.marks:
            return None
        start, end = self.marks["start"], self.marks["end"]
        wall = end[0] - start[0]
        if wall <= 0 or start[field] is None or end[field] is None:
            return None
        return round(100.0 * (end[field] - start[field]) / wall, 1)

    def _processes(self) -> list:
        try:
            server = psutil.Process(self.server_pid)
            return [server, *server.children(recursive=True)]
        except psutil.Error:
            return []

    def _server_cpu(self) -> float | None:
        if not self.server_pid:
            return None
        total = 0.0
        for n, process in enumerate(self._processes()):
            try:
                times = process.cpu_times()
                total += times.user + times.system
                if n == 0:  # children already reaped by the server (fork backend)
                    total += times.children_user + times.children_system
            except psutil.Error:
                pass  # a fork child that just exited
        return total

    def _server_memory(self) -> tuple[float, float, int] | None:
        """(RSS, PSS) in MiB and the process count, children included. RSS counts a fork child's pages shared with
        its parent once per process; PSS splits them fairly, so it is the figure to compare."""
        if not self.server_pid:
            return None
        rss = pss = 0
        processes = self._processes()
        for process in processes:
            try:
                memory = process.memory_full_info()
                rss, pss = rss + memory.rss, pss + getattr(memory, "pss", memory.rss)
            except psutil.Error:
                pass
        return round(rss / 2**20, 1), round(pss / 2**20, 1), len(processes)


def _own_rss() -> int:
    try:
        return psutil.Process().memory_info().rss
    except psutil.Error:
        return 0


def judge_bottleneck(result: dict) -> None:
    """Set ``client_bound``: the client was saturated while the server was not (None: can't tell).

    An open loop (``--rate``) spends the last tens of microseconds before each
    send polling, so it is busy whenever its sends are close together; what
    says whether it held the server back there is its punctuality, ``client_late``.
    """
    if result.get("rate") and "client_late" in result:
        result["client_bound"] = bool(result["client_late"])
        return
    client_saturated = (result.get("cpu") or {}).get("saturated", False)
    server = result.get("server") or {}
    server_percent = server.get("cpu_percent")
    if not client_saturated:
        result["client_bound"] = False
    elif server_percent is None:
        result["client_bound"] = None
    else:
        result["client_bound"] = server_percent < SATURATED_PERCENT
