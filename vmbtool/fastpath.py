"""What the generated fast paths (`vmbtool.generated`) share at run time.

The code in `vmbtool/generated/` is written ahead of time from the grammars by
`python3 -m vmbtool.fastgen` and checked in; it parses and builds exactly what the
plain grammar does, with precompiled `struct.Struct`s. When its input is something it
does not accept it raises `Refuse`, and only that: `vmbtool.codec` then runs the plain
grammar, which gives the answer or the precise error. Any other exception from
generated code is a bug and reaches the caller. `TooManyElements` is no refusal either:
the plain grammar would build the arrays the budget forbids.

Neither this module nor the generated code imports construct (nor the grammars of
`vmbtool.formats`, which do): a read whose every record the fast path takes never loads
it. What they build stands for construct's own values: `FieldContainer` for `Container`
(equal to it, printed as it, lacking only the private `_io` entry: `Container` equality
and everything here ignore `_` keys), `FieldList` for `ListContainer`,
`EnumIntegerString` and `EnumInteger` for the enum values of the same names. Each
grammar's generated code is a `CompiledGrammar`, named like the grammar it stands for,
which loads that grammar (and construct) only when it is asked for it.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["ELEMENT_BUDGET", "CompiledGrammar", "EnumInteger", "EnumIntegerString",
           "FieldContainer", "FieldList", "Refuse", "TooManyElements"]


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


class FieldContainer(dict):
    """The container the generated parsers build, standing for construct's `Container`:
    a dict whose fields read as attributes (about four times faster than construct's,
    whose `__getattr__` runs only after the ordinary lookup has failed and raised),
    equal to a `Container` of the same fields (entries named `_...` ignored, as
    `Container` does) and printed as one. (No grammar names a field after a dict method,
    which would hide the method.)"""

    __slots__ = ()

    def __getattribute__(self, name: str, _get=dict.get, _missing=_MISSING) -> Any:
        value = _get(self, name, _missing)
        return object.__getattribute__(self, name) if value is _missing else value

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, dict):
            return False
        mine = {k: v for k, v in self.items() if not _private(k)}
        theirs = {k: v for k, v in other.items() if not _private(k)}
        return mine == theirs

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> FieldContainer:
        return FieldContainer(self)

    def __repr__(self) -> str:
        return repr(_construct().Container(self))

    def __str__(self) -> str:
        return str(_construct().Container(self))


class FieldList(list):
    """The list the generated parsers build for an array, standing for construct's
    `ListContainer` (equal to it as lists are; printed as one)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(_construct().ListContainer(self))

    def __str__(self) -> str:
        return str(_construct().ListContainer(self))


class EnumIntegerString(str):
    """An enum field's value, standing for construct's class of the same name: the
    member's name, and its number as `int()` and `.intvalue`."""

    intvalue: int

    def __repr__(self) -> str:
        return f"EnumIntegerString.new({self.intvalue}, {str.__repr__(self)})"

    def __int__(self) -> int:
        return self.intvalue

    @staticmethod
    def new(intvalue: int, stringvalue: str) -> EnumIntegerString:
        value = EnumIntegerString(stringvalue)
        value.intvalue = intvalue
        return value


class EnumInteger(int):
    """A number a (non-strict) enum field has no name for, as construct gives it."""


def enum_names(mapping: dict[int, str]) -> dict[int, EnumIntegerString]:
    """An enum's table from numbers to its values (the generated parsers'), built once."""
    return {number: EnumIntegerString.new(number, name) for number, name in mapping.items()}


def _private(key: object) -> bool:
    return isinstance(key, str | bytes) and key[:1] in ("_", b"_")


def _construct() -> Any:
    """construct itself, for printing a container as construct does (never on a read)."""
    return importlib.import_module("construct")


def formats_module(name: str) -> Any:
    """`vmbtool.formats.<name>`, imported when a grammar is first asked for."""
    return importlib.import_module(f"vmbtool.formats.{name}")


class CompiledGrammar:
    """A grammar's generated code, as the generated modules name it and the codec runs it.

    `parse_from(data)` gives `(obj, consumed)`; `parse(data)` the object alone (trailing
    bytes ignored, as `grammar.parse`); `build(obj)` the bytes. Both raise `Refuse` for
    what they leave to the plain grammar. `scan_from`, when the grammar has one, is
    `parse_from` into tuples whose byte strings are views of the data (`codec.scan`),
    `pack` the build from such tuples (`codec.pack`). `size` is the grammar's size when it
    has one fixed size, `fields` a Struct's field names in its order, `prefixes` the
    `struct` formats of the counts and lengths in front of its fields
    (`codec.prefix_layout`). `grammar` is the plain grammar it stands for:
    given, or loaded (with construct) by `plain()` when first asked for."""

    __slots__ = ("_grammar", "build", "fields", "name", "pack", "parse_from", "plain",
                 "prefixes", "scan_from", "size")

    def __init__(self, grammar: Any, parse_from: Callable, build: Callable,
                 scan_from: Callable | None = None, pack: Callable | None = None, *,
                 name: str = "", plain: Callable[[], Any] | None = None,
                 size: int | None = None, fields: tuple[str, ...] = (),
                 prefixes: dict[str, str] | None = None) -> None:
        self._grammar = grammar
        self.plain = plain
        self.name = name
        self.parse_from = parse_from
        self.build = build
        self.scan_from = scan_from
        self.pack = pack
        self.size = size
        self.fields = fields
        self.prefixes = prefixes or {}

    @property
    def grammar(self) -> Any:
        if self._grammar is None and self.plain is not None:
            self._grammar = self.plain()
        return self._grammar

    def parse(self, data) -> Any:
        return self.parse_from(data)[0]

    def __repr__(self) -> str:
        return f"<CompiledGrammar of {self.name or repr(self._grammar)}>"


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
