"""Sockets before a backend sees them: binding listeners (TCP, IPv6, Unix) and the TLS context."""
