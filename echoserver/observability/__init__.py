"""What the server tells about itself: counters, Prometheus metrics, logs, the stats line and the ready line."""
