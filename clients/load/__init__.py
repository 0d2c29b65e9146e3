"""``echo-load``: drive an echo server, verify every byte, report throughput and latency."""
