"""`vmbtool upgrade`: rewrite a blob in another minor version of the format.

The chunks are carried over as they are (an upgrade never re-interprets state); the
header, the END chunk, the seal and the signature are written anew for the target
version. Going down drops the chunk types the target does not know: never a required
one, and optional ones (statistics, the note) only when the caller allows the loss.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from vmbtool.blob import encode_blob, load_blob
from vmbtool.errors import UsageError, VmbtoolError
from vmbtool.formats import FORMAT_MAJOR, FORMAT_MINOR, version_tuple
from vmbtool.formats.chunk import CHUNK_TYPES, ChunkType, known_to
from vmbtool.status import NtStatus


@dataclass
class Upgrade:
    data: bytes
    source_version: str
    target_version: str
    chunks: int
    dropped: list[str] = field(default_factory=list)


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


def upgrade_blob(source: str | bytes, key: bytes | None = None,
                 to: tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR),
                 allow_loss: bool = False) -> Upgrade:
    """The blob rewritten as format `to`; refuses to drop required information."""
    blob = load_blob(source, key)
    known = known_to(to)
    body = [raw for raw in blob.chunks if raw.type != ChunkType.END]
    lost = [raw for raw in body if raw.type not in known]
    required = Counter(raw.type for raw in lost if raw.required)
    if required:
        raise VmbtoolError("cannot downgrade", f"format {to[0]}.{to[1]}",
                           f"it has no place for {', '.join(describe_loss(required))} "
                           "that a restore needs", NtStatus.REVISION_MISMATCH)
    optional = Counter(raw.type for raw in lost)
    if optional and not allow_loss:
        raise VmbtoolError("cannot downgrade", f"format {to[0]}.{to[1]}",
                           f"it would drop {', '.join(describe_loss(optional))}; "
                           "--allow-loss drops them", NtStatus.REVISION_MISMATCH)
    kept = [raw.framed for raw in body if raw.type in known]
    header = blob.header
    level = None if str(header.compression) == "none" else header.level
    data = encode_blob(kept, header.channel_count, level=level,
                       key=key if blob.signed else None, created_ns=header.created_ns,
                       minor=to[1])
    return Upgrade(data, blob.version, f"{to[0]}.{to[1]}", len(kept),
                   describe_loss(optional))
