"""Sans-IO pieces: bytes in, bytes out, no sockets. Handlers, fault pacing and the PROXY protocol parser.

Nothing here imports a socket, a backend or an event loop, so every backend shares them and they are
tested without a network (the layout contract in ``pyproject.toml`` keeps it that way).
"""
