"""TLS for every backend: one server-side context, built once from the configuration.

Blocking backends wrap each accepted socket in the thread, greenlet or child
that serves it (the handshake never runs on the accept loop); the event-loop
backends hand the context to ``connect_accepted_socket(ssl=...)``. gevent
builds its context from ``gevent.ssl`` so that handshakes and reads cooperate.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from echoserver.config import ConfigError, ServerConfig


def server_context(config: ServerConfig, ssl_module: ModuleType | None = None):
    """An ``SSLContext`` for ``--tls-cert``/``--tls-key`` (and ``--tls-client-ca``), or None without TLS.

    ``ssl`` is imported here, never at start-up: gevent must patch it first.
    """
    if not config.tls_cert:
        return None
    ssl: Any = ssl_module if ssl_module is not None else importlib.import_module("ssl")
    for option in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(config, option)
        if path and not os.path.isfile(path):
            flag = "--" + option.replace("_", "-")
            raise ConfigError(option, f"{flag} {path} does not exist or is not a file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (ssl.SSLError, OSError) as exc:
        files = (
            config.tls_cert if config.tls_key in ("", config.tls_cert) else f"{config.tls_cert} and {config.tls_key}"
        )
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ConfigError(
            "tls_cert",
            f"--tls-cert/--tls-key: cannot load {files}: {reason} (a PEM certificate and its private key are needed)",
        ) from None
    if config.tls_client_ca:
        try:
            context.load_verify_locations(cafile=config.tls_client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError("tls_client_ca", f"--tls-client-ca: cannot load the CA: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
