"""Tools for one connection at a time: ``echo-client`` (type and see) and ``echo-probe`` (a health check)."""
