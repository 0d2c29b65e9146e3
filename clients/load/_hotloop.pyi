from array import array

COLUMNS: tuple[str, ...]

def closed_loop(
    epfd: int,
    table: array,
    streams: list[tuple[bytes, memoryview]],
    latencies: array,
    size: int,
    deadline_ns: int,
    limit: int,
    /,
) -> tuple[int, int, int, list[tuple[int, int, bytes | int, int]]]: ...
