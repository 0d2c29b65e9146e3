"""Concurrent TCP echo servers on six Python concurrency models, one core and one CLI.

The public API is re-exported lazily: ``import echoserver`` imports nothing
else, so that the CLI can monkey-patch for gevent before ``socket`` and
``threading`` are touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "ServerConfig": "echoserver.config",
    "ConfigError": "echoserver.config",
    "serve": "echoserver.server",
    "running_server": "echoserver.server",
    "RunningServer": "echoserver.server",
    "Stats": "echoserver.observability.stats",
    "make_handler": "echoserver.sansio.handlers",
    "REGISTRY": "echoserver.backends",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:
    from echoserver.backends import REGISTRY
    from echoserver.config import ConfigError, ServerConfig
    from echoserver.observability.stats import Stats
    from echoserver.sansio.handlers import make_handler
    from echoserver.server import RunningServer, running_server, serve


def __getattr__(name: str) -> object:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'echoserver' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
