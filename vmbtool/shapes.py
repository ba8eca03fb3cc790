"""What a JSON value must be: the shapes `vmbtool.docshape` builds decode's document
from. Each checks a value where it stands and names its JSON path, what it takes and
what it was given (`show`, cut short).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from vmbtool.errors import JsonError
from vmbtool.text import escape

SHOWN_CHARS = 40
SHOWN_DIGITS = 40


def show(value: Any) -> str:
    """A JSON value as the user wrote it, cut short."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        if value.bit_length() > SHOWN_DIGITS * 3.33:  # (str() of a huge int is refused)
            return f"a number of about {int(value.bit_length() / 3.32)} digits"
        return str(value)
    if isinstance(value, str):  # quoted as JSON, anything unsafe escaped
        text = escape(json.dumps(value[:SHOWN_CHARS], ensure_ascii=False))
        return text + ("…" if len(value) > SHOWN_CHARS else "")
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return json.dumps(value)


def bad(path: str, expected: str, value: Any) -> JsonError:
    return JsonError(path, f"expected {expected}, got {show(value)}")


class Shape:
    """What one JSON value must be."""

    expected = "a value"

    def check(self, value: Any, path: str) -> None:
        raise NotImplementedError


@dataclass
class Integer(Shape):
    low: int
    high: int
    expected: str = ""

    def __post_init__(self) -> None:
        self.expected = self.expected or f"an integer {span(self.low, self.high)}"

    def check(self, value: Any, path: str) -> None:
        if type(value) is not int or not self.low <= value <= self.high:  # (bool is not)
            raise bad(path, self.expected, value)


def span(low: int, high: int) -> str:
    def bound(n: int) -> str:
        for bits in (16, 32, 63, 64):
            if n == 2**bits - 1 and bits > 16:
                return f"2**{bits}-1"
            if n == -(2**bits):
                return f"-2**{bits}"
        return str(n)
    return f"{bound(low)}..{bound(high)}"


@dataclass
class Boolean(Shape):
    expected: str = "true or false"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise bad(path, self.expected, value)


@dataclass
class Choice(Shape):
    names: tuple[str, ...]
    numbers: Integer | None = None  # a number is taken too (a value without a name)

    def __post_init__(self) -> None:
        self.expected = "one of " + ", ".join(self.names) + \
            (f" or {self.numbers.expected}" if self.numbers else "")

    def check(self, value: Any, path: str) -> None:
        if self.numbers is not None and isinstance(value, int) and not isinstance(value, bool):
            self.numbers.check(value, path)
        elif not (isinstance(value, str) and value in self.names):
            raise bad(path, self.expected, value)


@dataclass
class Text(Shape):
    max_bytes: int
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        self.expected = f"{self.encoding} text of at most {self.max_bytes:,} bytes"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise bad(path, self.expected, value)
        try:
            size = len(value.encode(self.encoding))
        except UnicodeEncodeError:
            raise bad(path, self.expected, value) from None
        if size > self.max_bytes:
            raise JsonError(path, f"expected {self.expected}, got {size:,} bytes")


@dataclass
class Hex(Shape):
    """Bytes as a hex string (any case), of at most `max_bytes` or exactly `exact`."""

    max_bytes: int = 2**32 - 1
    exact: int | None = None

    def __post_init__(self) -> None:
        self.expected = "a hex string" + (f" of {self.exact} bytes" if self.exact is not None
                                          else f" of at most {self.max_bytes:,} bytes")

    def check(self, value: Any, path: str) -> None:
        try:
            data = bytes.fromhex(value)
        except (TypeError, ValueError):
            raise bad(path, self.expected, value) from None
        if (self.exact is not None and len(data) != self.exact) or len(data) > self.max_bytes:
            raise JsonError(path, f"expected {self.expected}, got {len(data):,} bytes")


@dataclass
class Guid(Shape):
    expected: str = "a GUID like 12345678-9abc-def0-1234-56789abcdef0"

    def check(self, value: Any, path: str) -> None:
        try:
            uuid.UUID(value)
        except (TypeError, ValueError, AttributeError):
            raise bad(path, self.expected, value) from None


@dataclass
class Null(Shape):
    expected: str = "null"

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            raise bad(path, self.expected, value)


@dataclass
class Nullable(Shape):
    shape: Shape

    def __post_init__(self) -> None:
        self.expected = f"{self.shape.expected} or null"

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            self.shape.check(value, path)


@dataclass
class List(Shape):
    item: Shape
    max_items: int
    what: str = "entries"

    def __post_init__(self) -> None:
        self.expected = "a list"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise bad(path, self.expected, value)
        if len(value) > self.max_items:
            raise JsonError(path, f"{len(value):,} {self.what}, more than the "
                            f"{self.max_items:,} a reader takes")
        for index, item in enumerate(value):
            self.item.check(item, f"{path}[{index}]")


@dataclass
class Tagged(Shape):
    """A value whose shape its object's `tag` field chooses (a grammar's Switch)."""

    tag: str
    cases: dict[str, Shape]


@dataclass
class Object(Shape):
    fields: dict[str, Shape]
    optional: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self.expected = "an object"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise bad(path, self.expected, value)
        prefix = "" if path == "$" else f"{path}."
        if not self.fields.keys() >= value.keys():
            key = next(k for k in value if k not in self.fields)
            raise JsonError(prefix + key, "unknown key (this object takes "
                            + ", ".join(self.fields) + ")")
        for name, shape in self.fields.items():
            if name not in value:
                if name in self.optional:
                    continue
                raise JsonError(prefix + name, f"missing: expected {shape.expected}")
            if isinstance(shape, Tagged):  # the tag was checked before: it comes first
                shape = shape.cases[value[shape.tag]]
            shape.check(value[name], prefix + name)
