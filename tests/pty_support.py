"""Reading what a child process wrote to a pseudo-terminal (tests that give a command a
real terminal: colour, progress bars)."""

from __future__ import annotations

import os


def read_until_closed(master: int) -> bytes:
    """Everything written to the pty until the child closes its side (Linux reports
    that as EIO on the master)."""
    chunks = []
    while True:
        try:
            block = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not block:
            break
        chunks.append(block)
    return b"".join(chunks)
