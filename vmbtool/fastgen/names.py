"""The module-level names generated code uses: precompiled structs, literal tables and
references to the grammar's own objects (enum tables), each written once as a line of
source (`definitions`) and named by what it is.

Nothing is pickled: a value is either a literal Python can write back exactly (ints,
strings, bytes, None, bools, and tuples and dicts of them) or an expression over the
names a formats module defines (`Roots`), which the generated module imports.

Also the writers' common base (`Writer`) and a Switch's table of branches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from construct import Renamed, Struct, Switch

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


class Roots:
    """Where the nodes of the grammars are: a source expression for each, reached from
    the names formats modules define (`add`), the first way found kept."""

    def __init__(self) -> None:
        self.paths: dict[int, tuple[str, str | None, str]] = {}  # id -> expr, module, root
        self.keep: list[Any] = []  # the nodes, so their ids stay theirs

    def add_all(self, named: Iterable[tuple[str, Any, str | None]]) -> None:
        """Nodes by (name, node, formats module or None), then everything inside them,
        breadth first: a node gets the shortest expression there is."""
        pending = deque((name, name, node, module) for name, node, module in named)
        while pending:
            root, expr, current, module = pending.popleft()
            if id(current) in self.paths:
                continue
            self.paths[id(current)] = (expr, module, root)
            self.keep.append(current)
            pending.extend((root, e, n, module) for e, n in self._children(expr, current))

    @staticmethod
    def _children(expr: str, node) -> Iterable[tuple[str, Any]]:
        for i, sub in enumerate(getattr(node, "subcons", None) or ()):
            name = getattr(sub, "name", None)
            by_name = type(node) is Struct and isinstance(name, str) and name.isidentifier() \
                and getattr(node, name, None) is sub  # (a field not named like a method)
            yield (f"{expr}.{name}" if by_name else f"{expr}.subcons[{i}]"), sub
        for attr in ("subcon", "lengthfield"):
            sub = getattr(node, attr, None)
            if sub is not None and hasattr(sub, "_parse"):
                yield f"{expr}.{attr}", sub
        if type(node) is Switch:
            for key, case in node.cases.items():
                yield f"{expr}.cases[{literal(key)}]", case
            yield f"{expr}.default", node.default

    def find(self, node) -> tuple[str, str | None, str]:
        found = self.paths.get(id(node))
        if found is None:
            shown = node.subcon if type(node) is Renamed else node
            raise Unsupported(f"{shown!r}: not reachable from a name of the formats")
        return found


class Namespace:
    """The definitions of one generated module, shared by all its grammars."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots
        self.definitions: list[str] = []
        self.by_key: dict[Any, str] = {}
        self.imports: set[tuple[str | None, str]] = set()  # (module, name) of roots used

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

    def reference(self, node, attribute: str, prefix: str) -> str:
        """`node.attribute` of the grammar itself (an enum's tables: its own
        EnumIntegerStrings), through the formats name the node is reached from."""
        expr, module, root = self.roots.find(node)
        self.imports.add((module, root))
        return self.define(f"{expr}.{attribute}", prefix)

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
