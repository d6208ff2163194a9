"""Ports for mlx.launch's ring backend in tests (its ranks listen on p, p + 1, ...)."""
import os
import random
import socket
import time


def free_ports(n):
    """A port p with p .. p + n - 1 free, drawn below Linux's ephemeral range (32768-60999).

    A port the kernel hands out with bind(0) can be given next to a client socket of another test's ring
    connecting at the same moment (pytest-xdist runs two files at once), so a rank failed to listen and
    mlx.launch, which does not pass a rank's exit code on, returned 0 with no output written."""
    rng = random.Random(os.getpid() * 1000003 + time.monotonic_ns())
    for _ in range(200):
        p = rng.randrange(20000, 32000)
        try:
            for port in range(p, p + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return p
        except OSError:
            continue
    raise RuntimeError("no free run of ports")
