"""Logging set-up (text for people, one JSON object per line for containers) and the periodic stats line."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable

from echoserver.observability.stats import errors_of

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One object per line: ``ts``, ``level``, ``logger``, ``message``, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class StatsReporter:
    """Logs the rates since the previous line every ``interval`` seconds (``--stats-interval``)."""

    def __init__(self, snapshot: Callable[[], dict], interval: float) -> None:
        self.snapshot = snapshot
        self.interval = interval
        self.log = logging.getLogger("echoserver.stats")
        self._previous, self._then = snapshot(), time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="echo-stats", daemon=True)

    def start(self) -> StatsReporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()

    def due_in(self) -> float:
        """Seconds until the next line, for an owner that calls :meth:`tick` from its own loop."""
        return max(0.0, self._then + self.interval - time.monotonic())

    def tick(self) -> None:
        if self.due_in() == 0:
            self.report()

    def report(self) -> None:
        current, now = self.snapshot(), time.monotonic()
        rates = self.rates(self._previous, current, now - self._then)
        self.log.info(
            "stats: %(conn_per_s).1f conn/s, %(msgs_per_s).1f msgs/s, %(mb_in_per_s).3f MB/s in, "
            "%(mb_out_per_s).3f MB/s out, %(active)d active",
            rates,
            extra=rates,
        )
        self._previous, self._then = current, now

    @staticmethod
    def rates(before: dict, after: dict, seconds: float) -> dict:
        def rate(name: str) -> float:
            return round((after[name] - before[name]) / seconds, 1) if seconds > 0 else 0.0

        return {
            "conn_per_s": rate("accepted"),
            "msgs_per_s": rate("messages"),
            "mb_in_per_s": round(rate("bytes_in") / 1e6, 3),
            "mb_out_per_s": round(rate("bytes_out") / 1e6, 3),
            "active": after["active"],
            "errors": errors_of(after),
        }
