"""``echo-bench``: every backend under the same load, side by side, with tables and charts."""
