"""The clients of echoserver, installed as ``echoclients`` (the repository folder is ``clients/``).

- :mod:`echoclients.load`: ``echo-load``, the load generator;
- :mod:`echoclients.bench`: ``echo-bench``, every backend side by side;
- :mod:`echoclients.interactive`: ``echo-client`` and ``echo-probe`` (the health check).
"""
