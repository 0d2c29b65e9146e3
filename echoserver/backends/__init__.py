"""The backend registry: names resolve here and nowhere else.

Each entry names its class by dotted path, so that an optional dependency
(gevent, uvloop) is imported only when that backend is asked for. A seventh
backend is one new module in this package and one line in ``REGISTRY``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from echoserver.backends.base import Backend


@dataclass(frozen=True)
class BackendSpec:
    name: str
    target: str  # "package.module:ClassName"
    summary: str
    requires: tuple[str, ...] = ()  # importable packages it needs
    extra: str = ""  # the pip extra that installs them
    # "module:function" the CLI calls before importing anything else (gevent's monkey-patching)
    prepare: str = ""
    min_python: tuple[int, int] = (3, 10)
    # Why its dependency is not there on a free-threaded build (where pip install would not
    # help): said instead of the pip hint. Empty: the dependency installs there like anywhere.
    free_threading: str = ""

    def missing(self) -> list[str]:
        return [pkg for pkg in self.requires if importlib.util.find_spec(pkg) is None]

    @property
    def available(self) -> bool:
        return not self.why_unavailable()

    def why_unavailable(self) -> str:
        if sys.version_info < self.min_python:
            return "needs Python {}.{} or newer; this is {}.{}".format(*self.min_python, *sys.version_info[:2])
        missing = self.missing()
        if not missing:
            return ""
        from echoserver.observability.gil import free_threaded_build

        if self.free_threading and free_threaded_build():
            return self.free_threading
        return f"needs {', '.join(missing)}: pip install 'echoserver[{self.extra or missing[0]}]'"


REGISTRY: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            "thread",
            "echoserver.backends.thread:ThreadPerConnectionBackend",
            "one OS thread per connection; simple, but every connection costs a thread stack",
        ),
        BackendSpec(
            "threadpool",
            "echoserver.backends.threadpool:ThreadPoolBackend",
            "a fixed ThreadPoolExecutor (--pool-size); connections beyond the pool wait their turn",
        ),
        BackendSpec(
            "fork",
            "echoserver.backends.fork:ForkPerConnectionBackend",
            "os.fork() per connection; each client gets its own process and its own GIL",
        ),
        BackendSpec(
            "gevent",
            "echoserver.backends.gevent:GeventBackend",
            "greenlets on gevent's event loop, stdlib monkey-patched",
            ("gevent",),
            "gevent",
            prepare="gevent.monkey:patch_all",
            free_threading="gevent does not install on free-threaded CPython 3.13 "
            "(its build needs cffi, which refuses 3.13t)",
        ),
        BackendSpec(
            "asyncio",
            "echoserver.backends.asyncio:AsyncioBackend",
            "an asyncio.Protocol on the standard library event loop",
        ),
        BackendSpec(
            "uvloop",
            "echoserver.backends.uvloop:UvloopBackend",
            "the same asyncio.Protocol on uvloop (libuv)",
            ("uvloop",),
            "uvloop",
        ),
        BackendSpec(
            "interpreters",
            "echoserver.backends.interpreters:SubinterpreterBackend",
            "--interpreters N subinterpreters, each with its own GIL, accepting on the one listener",
            min_python=(3, 13),
        ),
    )
}


class UnknownBackend(LookupError):
    """An unknown name, or a backend whose package is not installed; the message says which."""


def spec(name: str) -> BackendSpec:
    try:
        found = REGISTRY[name]
    except KeyError:
        raise UnknownBackend(f"unknown backend {name!r}; choose one of: {', '.join(available_names())}") from None
    if not found.available:
        raise UnknownBackend(
            f"backend {name!r} is not available ({found.why_unavailable()}); available: {', '.join(available_names())}"
        )
    return found


def available_names() -> list[str]:
    return [name for name, found in REGISTRY.items() if found.available]


def prepare_process(name: str) -> None:
    """Run the backend's process-wide set-up, if it has one and is installed; never fails.

    Called first thing by the CLI, before it has parsed (let alone validated) its
    options, so an unknown name is left for the proper error later.
    """
    found = REGISTRY.get(name)
    if found and found.prepare and found.available:
        module_name, _, function = found.prepare.partition(":")
        getattr(importlib.import_module(module_name), function)()


def load(name: str) -> type[Backend]:
    module_name, _, class_name = spec(name).target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
