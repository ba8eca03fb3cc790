"""The module-level names generated code uses: precompiled structs and literal tables
(enum tables too), each written once as a line of source (`definitions`) and named by
what it is.

Nothing is pickled and nothing of the grammars is imported: a value is a literal Python
can write back exactly (ints, strings, bytes, None, bools, and tuples and dicts of
them).

Also the writers' common base (`Writer`) and a Switch's table of branches.
"""

from __future__ import annotations

from typing import Any

from construct import Switch

from vmbtool.fastgen.tree import Unsupported


def literal(value: Any) -> str:
    """Source that evaluates to `value`, for the values that have one exactly."""
    kind = type(value)
    if value is None or kind in (bool, int, str, bytes):
        return repr(value)
    if kind is tuple:
        return "(" + "".join(f"{literal(v)}, " for v in value).rstrip(" ") + ")"
    if kind is dict:
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise Unsupported(f"{value!r}: no literal for a {kind.__name__}")


class Namespace:
    """The definitions of one generated module, shared by all its grammars."""

    def __init__(self) -> None:
        self.definitions: list[str] = []
        self.by_key: dict[Any, str] = {}

    def define(self, source: str, prefix: str, key: Any = None) -> str:
        key = ("source", source) if key is None else key
        if key in self.by_key:
            return self.by_key[key]
        name = f"_{prefix}{len(self.definitions)}"
        self.definitions.append(f"{name} = {source}")
        self.by_key[key] = name
        return name

    def const(self, value) -> str:
        """A value in the code: literal if short, else a module-level name."""
        text = literal(value)
        return text if len(text) <= 40 else self.define(text, "k")

    def table(self, value: dict | tuple, prefix: str) -> str:
        return self.define(literal(value), prefix)

    def enum_names(self, node) -> str:
        """An enum's table from numbers to its values (`fastpath.EnumIntegerString`s, as
        the grammar's own `decmapping`), written out: no grammar is imported for it."""
        table = {int(number): str(name) for number, name in node.decmapping.items()}
        return self.define(f"_enum_names({literal(table)})", "dm")

    def enum_numbers(self, node) -> str:
        """An enum's table from names to numbers (the grammar's `encmapping`), written
        out."""
        table = {str(name): int(number) for name, number in node.encmapping.items()}
        return self.define(literal(table), "em")

    def unpacker(self, fmt: str) -> str:
        return self.define(f"_Struct({fmt!r}).unpack_from", "S")

    def packer(self, fmt: str) -> str:
        return self.define(f"_Struct({fmt!r}).pack", "P")


def switch_table(ns: Namespace, node: Switch) -> tuple[str, list]:
    """A dict of the Switch's keys to branch numbers (same keys, so the same lookup
    semantics as `cases.get`) and the branches' constructs."""
    branches: list = []
    index: dict[int, int] = {}
    table = {}
    for key, case in node.cases.items():
        if id(case) not in index:
            index[id(case)] = len(branches)
            branches.append(case)
        table[key] = index[id(case)]
    return ns.table(table, "sw"), branches


class Writer:
    def __init__(self, ns: Namespace, indent: int) -> None:
        self.ns = ns
        self.lines: list[str] = []
        self.ind = indent
        self.count = 0

    def var(self, prefix: str = "v") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def line(self, text: str) -> None:
        self.lines.append("    " * self.ind + text)
