"""The one door to construct: every parse and build goes through here.

ConstructError becomes BlobError naming the field path and the byte offset; no other
module catches construct's errors.
"""

from __future__ import annotations

import re
from typing import Any

from construct import Construct, ConstructError, StreamError

from vmbtool.errors import BlobError
from vmbtool.status import NtStatus

_PATH = re.compile(r"\(parsing\)|\(building\)|\(sizeof\)")


def _field_path(exc: ConstructError, base: str) -> str:
    path = getattr(exc, "path", None) or ""
    parts = [p.strip() for p in _PATH.sub("", path).split("->") if p.strip()]
    return ".".join([base, *parts]) if parts else base


def _reason(exc: ConstructError) -> str:
    text = str(exc).splitlines()
    detail = text[-1] if text else type(exc).__name__
    if isinstance(exc, StreamError):
        return f"truncated: {detail}"
    return detail


def parse(grammar: Construct, data: bytes, where: str, offset: int = 0,
          exact: bool = True) -> Any:
    """Parse `data` with `grammar`; `where` names the structure, `offset` its position."""
    try:
        if not exact:
            return grammar.parse(data)
        # parse_stream + a tail check: bytes left over mean the structure is a lie
        from io import BytesIO

        stream = BytesIO(data)
        obj = grammar.parse_stream(stream)
        left = len(data) - stream.tell()
        if left:
            raise BlobError(f"{where} (offset {offset + stream.tell()})",
                            f"{left} bytes left over after the structure")
        return obj
    except ConstructError as exc:
        raise BlobError(f"{_field_path(exc, where)} (offset {offset})", _reason(exc),
                        NtStatus.DATA_ERROR) from None


def build(grammar: Construct, obj: Any, where: str) -> bytes:
    try:
        return grammar.build(obj)
    except (ConstructError, ValueError, TypeError, KeyError, OverflowError) as exc:
        reason = _reason(exc) if isinstance(exc, ConstructError) else str(exc)
        path = _field_path(exc, where) if isinstance(exc, ConstructError) else where
        raise BlobError(path, f"cannot encode: {reason}", NtStatus.INVALID_PARAMETER) from None
