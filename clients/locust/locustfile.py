"""The shipped locustfile: ``locust -f "$(python -m echoclients.locust)" --host 127.0.0.1:8080``.

Every option of ours starts with ``--echo-`` (``locust --help`` lists them);
on several machines, give them to the master: it hands them to the workers.
"""

from echoclients.locust import EchoUser


class EchoServerUser(EchoUser):
    """One persistent connection per user, one verified round trip per task, no think time."""
