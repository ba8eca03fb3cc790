"""What the generated fast paths (`vmbtool.generated`) share at run time.

The code in `vmbtool/generated/` is written ahead of time from the grammars by
`python3 -m vmbtool.fastgen` and checked in; it parses and builds exactly what the
plain grammar does, with precompiled `struct.Struct`s. When its input is something it
does not accept it raises `Refuse`, and only that: `vmbtool.codec` then runs the plain
grammar, which gives the answer or the precise error. Any other exception from
generated code is a bug and reaches the caller. `TooManyElements` is no refusal either:
the plain grammar would build the arrays the budget forbids.

Parsed containers are `FieldContainer`s, lacking construct's private `_io` entry (the
stream); `Container` equality and everything here ignore `_` keys.
"""

from __future__ import annotations

import uuid
from typing import Any

from construct import Container

__all__ = ["ELEMENT_BUDGET", "CompiledGrammar", "FieldContainer", "Refuse",
           "TooManyElements"]


class Refuse(Exception):
    """Raised by generated code: the input is not one it accepts; the plain grammar
    decides (the answer, or the refusal with the field path)."""


class TooManyElements(Exception):
    """Raised by generated code: one parse would build more array elements than a reader
    holds (`ELEMENT_BUDGET`). Not a refusal to retry with the plain grammar: that would
    build them."""


# What the arrays of integers (PFN lists) and of tiny structures (GPA and byte ranges)
# one parse builds may cost, in estimated bytes (about 40 an integer, 40 a wire byte of a
# structure): 48 MB holds the longest GPA range (1,048,577 pages) a u32 byte count can
# describe. Each parse starts with all of it (the generated `parse_*` functions set
# ELEMENTS[0]); arrays of larger records (packets, GPADLs, pending incoming entries) are
# bounded by the readers' caps instead
ELEMENT_BUDGET = 48 << 20
ELEMENTS = [ELEMENT_BUDGET]

# A scan (`codec.scan`) gives a record (depth 0) and the structures right inside it
# (depth 1) as tuples of their fields, in the grammar's order; deeper ones as containers.
SCAN_TUPLE_DEPTH = 2

_MISSING = object()


class FieldContainer(Container):
    """The `Container` the generated parsers build: the same dict, equal to and printed
    as construct's, but its fields read as attributes about four times faster.

    construct's `Container.__getattr__` runs only after the ordinary lookup has failed
    and raised; here the field is looked up first. (No grammar names a field after a
    dict method, which would hide the method.)"""

    __slots__ = ()

    def __getattribute__(self, name: str, _get=dict.get, _missing=_MISSING) -> Any:
        value = _get(self, name, _missing)
        return object.__getattribute__(self, name) if value is _missing else value


class CompiledGrammar:
    """A grammar's generated pair, as the codec holds it.

    `parse_from(data)` gives `(obj, consumed)`; `parse(data)` the object alone (trailing
    bytes ignored, as `grammar.parse`); `build(obj)` the bytes. Both raise `Refuse` for
    what they leave to the plain grammar. `scan_from`, when the grammar has one, is
    `parse_from` into tuples whose byte strings are views of the data (`codec.scan`),
    `pack` the build from such tuples (`codec.pack`)."""

    __slots__ = ("build", "grammar", "pack", "parse_from", "scan_from")

    def __init__(self, grammar, parse_from, build, scan_from=None, pack=None) -> None:
        self.grammar = grammar
        self.parse_from = parse_from
        self.build = build
        self.scan_from = scan_from
        self.pack = pack

    def parse(self, data) -> Any:
        return self.parse_from(data)[0]

    def __repr__(self) -> str:
        return f"<CompiledGrammar of {self.grammar!r}>"


GUID_TEXT: dict[bytes, str] = {}
GUID_BYTES: dict[str, bytes] = {}
_GUID_CACHE = 4096  # entries of each cache (GUIDs repeat: interface types, instances)


def guid_text(raw: bytes) -> str:
    """GuidAdapter's decoding (of 16 bytes: it cannot fail), remembered."""
    text = str(uuid.UUID(bytes_le=raw))
    if len(GUID_TEXT) >= _GUID_CACHE:
        GUID_TEXT.clear()
    GUID_TEXT[raw] = text
    return text


def guid_bytes(text) -> bytes:
    """GuidAdapter's encoding of a str, remembered; anything uuid.UUID does not take as
    a GUID (or not a str at all) is refused."""
    if not isinstance(text, str):
        raise Refuse
    try:
        raw = uuid.UUID(text).bytes_le
    except ValueError:
        raise Refuse from None
    if text.__class__ is str:
        if len(GUID_BYTES) >= _GUID_CACHE:
            GUID_BYTES.clear()
        GUID_BYTES[text] = raw
    return raw


def as_view(data) -> memoryview:
    """A byte-wise memoryview of a buffer (bytearray, memoryview of any format)."""
    view = memoryview(data)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view
