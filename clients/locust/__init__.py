"""Locust integration: verified echo round trips as Locust requests, and an exact latency merge.

``EchoUser`` is a Locust ``User`` (abstract: subclass it, or run the shipped
locustfile, whose path ``python -m echoclients.locust`` prints). Importing
this package imports Locust, and with it gevent's monkey-patching, so nothing
else in ``echoclients`` imports it. Install with ``pip install 'echoserver[locust]'``.
See docs/locust.md.
"""

from echoclients.locust.user import EchoMismatch, EchoUser

__all__ = ["EchoMismatch", "EchoUser"]
