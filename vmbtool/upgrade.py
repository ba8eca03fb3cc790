"""`vmbtool upgrade`: rewrite a blob in another minor version of the format.

The chunks are carried over as they are (an upgrade never re-interprets state); the
header, the END chunk, the seal and the signature are written anew for the target
version. Going down drops the chunk types the target does not know: never a required
one, and optional ones (statistics, the note) only when the caller allows the loss.

The blob is read once, channel by channel (each channel checked as a whole read checks
it), and written as it is read to a spooled file: nothing is handed on before the read
has checked the END chunk's counts and digest, and nothing at all when it refuses.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from vmbtool.blob.consumers import Relay
from vmbtool.blob.reader import BlobReader
from vmbtool.blob.writer import SPOOL_MAX, BlobWriter, encode_header
from vmbtool.chunks import RawChunk
from vmbtool.errors import UsageError, VmbtoolError
from vmbtool.formats import FORMAT_MAJOR, FORMAT_MINOR, version_tuple
from vmbtool.formats.chunk import CHUNK_TYPES, ChunkType, known_to
from vmbtool.status import NtStatus


@dataclass
class Upgrade:
    """The rewritten blob: `data`, a spooled file of `size` bytes (an `Output.write`
    piece), its owner's to close; `take()` reads it whole and closes it."""

    data: IO[bytes]
    size: int
    source_version: str
    target_version: str
    chunks: int
    dropped: list[str] = field(default_factory=list)

    def take(self) -> bytes:
        with self.data:
            self.data.seek(0)
            return self.data.read()


def parse_version(text: str) -> tuple[int, int]:
    """`1.0` -> (1, 0); only versions this vmbtool can write."""
    try:
        version = version_tuple(text)
    except ValueError:
        raise UsageError("bad option", "--to", f"{text!r} is not <major>.<minor>") from None
    if version[0] != FORMAT_MAJOR or version[1] > FORMAT_MINOR:
        raise UsageError("bad option", "--to", f"this vmbtool writes formats "
                         f"{FORMAT_MAJOR}.0 to {FORMAT_MAJOR}.{FORMAT_MINOR}, not {text}")
    return version


def describe_loss(types: Counter) -> list[str]:
    out = []
    for chunk_type, count in sorted(types.items()):
        kind = CHUNK_TYPES.get(chunk_type)
        name = kind.name if kind else f"chunk type {chunk_type:#06x}"
        out.append(f"{count} {name} chunk{'s' if count > 1 else ''}")
    return out


def upgrade_blob(source: str | bytes | IO[bytes], key: bytes | None = None,
                 to: tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR),
                 allow_loss: bool = False) -> Upgrade:
    """The blob rewritten as format `to`; refuses to drop required information.

    A required chunk the target has no place for is refused where it is met; the
    optional ones are counted to the end of the read, then refused (all of them named)
    unless `allow_loss`."""
    known = known_to(to)
    lost: Counter = Counter()
    out = tempfile.SpooledTemporaryFile(SPOOL_MAX)
    writer: BlobWriter | None = None
    try:
        with BlobReader(source, key, Relay()) as reader:
            header = reader.header
            level = None if str(header.compression) == "none" else header.level
            writer = BlobWriter(out, encode_header(
                header.channel_count, level=level, signed=reader.signed,
                created_ns=header.created_ns, minor=to[1]), level,
                key if reader.signed else None)

            def carry(chunks: Iterable[RawChunk]) -> None:
                for raw in chunks:
                    if raw.type == ChunkType.END:
                        continue
                    if raw.type in known:
                        writer.add(raw.framed)
                        continue
                    if raw.required:
                        raise VmbtoolError("cannot downgrade", f"format {to[0]}.{to[1]}",
                                           f"it has no place for "
                                           f"{', '.join(describe_loss(Counter([raw.type])))} "
                                           "that a restore needs", NtStatus.REVISION_MISMATCH)
                    lost[raw.type] += 1

            for _channel in reader.channels():
                del _channel  # (the channel's parsed state goes before the next one's)
                carry(reader.chunks)
                reader.chunks.clear()
            carry(reader.chunks)
            reader.chunks.clear()
            source_version = reader.version
        if lost and not allow_loss:
            raise VmbtoolError("cannot downgrade", f"format {to[0]}.{to[1]}",
                               f"it would drop {', '.join(describe_loss(lost))}; "
                               "--allow-loss drops them", NtStatus.REVISION_MISMATCH)
        size = writer.finish()
    except BaseException:
        if writer is not None:
            writer.close()
        out.close()
        raise
    out.seek(0)
    return Upgrade(out, size, source_version, f"{to[0]}.{to[1]}", writer.chunks,
                   describe_loss(lost))
