"""Where a blob's bytes come from: a path, stdin or a stream spooled once its header
is checked, bytes in memory, an open file; and the header checked before a stream is kept."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import IO

from vmbtool import inputs
from vmbtool.blob.envelope import read_stream_header


def open_source(source: str | bytes | IO[bytes]) -> tuple[IO[bytes], int]:
    """A seekable stream and its size. A path or `-` that is no regular file (stdin, a
    pipe, a FIFO, a /proc file) is spooled once its header is checked (`inputs`)."""
    if hasattr(source, "read"):
        size = source.seek(0, os.SEEK_END)
        source.seek(0)
        return source, size
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source), len(source)
    return inputs.open_blob(source, read_stream_header)


@contextlib.contextmanager
def rereadable(source: str | bytes | IO[bytes]) -> Iterator[str | bytes | IO[bytes]]:
    """A source that can be read more than once: a stream (stdin, a pipe) is spooled
    first."""
    if not isinstance(source, str) or not inputs.names_a_stream(source):
        yield source
        return
    f, _size = open_source(source)
    try:
        yield f
    finally:
        f.close()
