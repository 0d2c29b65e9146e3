"""The clients: ``echo-load`` (load generator), ``echo-bench`` (every backend side by side), ``echo-client``.

``clients.probe`` (``echo-probe``, the health check) lives here too.
"""
