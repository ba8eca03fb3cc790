"""Semantic diff of two decoded blobs by field path.

Lists are matched by identity, not position: packets by transaction id (queued
completions by the transaction they complete), GPADLs by handle, pending incoming
packets by arrival number, channels by index.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vmbtool.errors import InputError, VmbtoolError

DEFAULT_IGNORES = ("header.created_ns",)


def read_side(side: str, source: str, read: Callable[[str], Any]) -> Any:
    """One of diff's two inputs, read by `read`. One that cannot be read, or is not a
    valid blob, leaves diff without an answer (exit 2, not "different"); the error names
    the side and its path, which a message about the blob's insides does not."""
    try:
        return read(source)
    except VmbtoolError as exc:
        named = side if exc.where.startswith(source) else f"{side} ({source})"
        raise InputError(f"{exc.what} {named}", exc.where, exc.why, exc.status) from None


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.path}: {show(self.old)} → {show(self.new)}"


MISSING = object()


def show(value: Any) -> str:
    if value is MISSING:
        return "(absent)"
    if isinstance(value, str) and len(value) > 40 and all(c in "0123456789abcdef" for c in value):
        return f"<{len(value) // 2} bytes>"
    if isinstance(value, (dict, list)):
        return "{…}" if isinstance(value, dict) else f"[{len(value)} items]"
    return str(value)


def packet_key(p: dict) -> str:
    if p.get("type") == "completion":
        return f"completion={p.get('transaction_id')}"
    return f"txid={p.get('transaction_id')}"


KEYS = {
    "packets": packet_key,
    "gpadls": lambda g: f"handle={g.get('handle')}",
    "pending_incoming": lambda e: f"number={e.get('number')}",
}


def keyed(name: str, items: list) -> dict[str, Any] | None:
    fn = KEYS.get(name)
    if fn is None or not all(isinstance(i, dict) for i in items):
        return None
    out = {fn(i): i for i in items}
    return out if len(out) == len(items) else None


def walk(a: Any, b: Any, path: str, name: str, out: list[Change]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            walk(a.get(k, MISSING), b.get(k, MISSING), f"{path}.{k}" if path else k, k, out)
        return
    if isinstance(a, list) and isinstance(b, list):
        ka, kb = keyed(name, a), keyed(name, b)
        if ka is not None and kb is not None:
            for k in list(ka) + [k for k in kb if k not in ka]:
                walk(ka.get(k, MISSING), kb.get(k, MISSING), f"{path}[{k}]", "", out)
            return
        for i in range(max(len(a), len(b))):
            walk(a[i] if i < len(a) else MISSING, b[i] if i < len(b) else MISSING,
                 f"{path}[{i}]", "", out)
        return
    if a != b:
        out.append(Change(path, a, b))


def diff(a: dict, b: dict, ignore: tuple[str, ...] = DEFAULT_IGNORES) -> list[Change]:
    changes: list[Change] = []
    walk(a, b, "", "", changes)
    return [c for c in changes if not ignored(c.path, ignore)]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """`*` matches anything; brackets are literal, as in the paths diff prints."""
    body = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.compile(rf"{body}(?:[.\[].*)?")


def ignored(path: str, patterns: tuple[str, ...]) -> bool:
    return any(pattern_regex(p).fullmatch(path) for p in patterns)
