"""``python -m echoclients.locust``: print the shipped locustfile's path, for ``locust -f``."""

from pathlib import Path

print(Path(__file__).with_name("locustfile.py"))
