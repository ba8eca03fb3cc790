"""The one door to construct: every parse and build goes through here.

ConstructError becomes BlobError naming the field path and the byte offset; no other
module catches construct's errors.

Parse and build first try the grammar's fast path (`vmbtool.generated`, written from the
grammars ahead of time, same answers; see `vmbtool.fastpath`); what it refuses
(`fastpath.Refuse`) goes to the plain grammar, which gives the answer or the precise
error. Any other exception of the fast path is a bug and is not hidden. A grammar with
no generated code goes to construct. `use_fast_path(False)` or the environment variable
VMBTOOL_PLAIN_GRAMMARS=1 turns the fast path off.

A grammar is given either as the generated code that stands for it (what the readers'
usual paths name: `vmbtool.generated.packet.PacketRecord`, or `named("packet.
PacketRecord")`) or as the grammar object of `vmbtool.formats`. Construct is imported
only when a plain grammar is run or asked for: a read whose every record the generated
code takes never imports it.
"""

from __future__ import annotations

import importlib
import os
import re
import struct
from io import BytesIO
from typing import TYPE_CHECKING, Any

from vmbtool import fastpath
from vmbtool.errors import BlobError
from vmbtool.status import NtStatus

if TYPE_CHECKING:
    from construct import Construct, ConstructError

_enabled = os.environ.get("VMBTOOL_PLAIN_GRAMMARS", "") in ("", "0")


# the generated pairs by id of their grammar (a grammar of vmbtool.formats, alive as long
# as the process), and those of Structs by the ids of their fields (`_load`)
_BY_ID: dict[int, fastpath.CompiledGrammar] = {}
_BY_FIELDS: dict[tuple[int, ...], fastpath.CompiledGrammar] = {}
_loaded = False
# id(grammar) -> (grammar, its pair or None) for the grammars met that are not of the
# formats; the grammar is kept so its id is not reused while the entry lives
_found: dict[int, tuple[Construct, fastpath.CompiledGrammar | None]] = {}
_FOUND_LIMIT = 512


def _load() -> None:
    """Index the generated code by the grammars it stands for, when a grammar object is
    first met (this imports every grammar, and construct). A Struct made elsewhere of the
    very same fields as a generated one parses and builds as that one."""
    global _loaded
    from construct import Struct

    from vmbtool import generated

    for module in generated.modules():
        for fast in module.GRAMMARS:
            grammar = fast.grammar
            _BY_ID[id(grammar)] = fast
            if type(grammar) is Struct:
                _BY_FIELDS.setdefault(tuple(map(id, grammar.subcons)), fast)
    _loaded = True


def named(ref: str) -> Any:
    """The grammar of `vmbtool.formats` named `ref` ("packet.PacketRecord") as the
    generated code that stands for it (the plain grammar when it has none), without
    importing the grammars."""
    module, _, name = ref.partition(".")
    found = getattr(importlib.import_module(f"vmbtool.generated.{module}"), name, None)
    return found if found is not None else getattr(fastpath.formats_module(module), name)


def _plain(grammar: Any) -> Any:
    """The grammar object itself, of generated code or of a grammar."""
    return grammar.grammar if grammar.__class__ is fastpath.CompiledGrammar else grammar


def use_fast_path(enabled: bool = True) -> bool:
    """Turn the generated fast path on or off; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def fast_path_enabled() -> bool:
    return _enabled


def compiled(grammar: Construct | fastpath.CompiledGrammar) -> fastpath.CompiledGrammar | None:
    """The grammar's generated fast path, or None when it has none."""
    if grammar.__class__ is fastpath.CompiledGrammar:
        return grammar  # type: ignore[return-value]
    fast = _BY_ID.get(id(grammar))
    if fast is not None:
        return fast
    if not _loaded:
        _load()
        return compiled(grammar)
    entry = _found.get(id(grammar))
    if entry is not None and entry[0] is grammar:
        return entry[1]
    from construct import Struct

    if type(grammar) is Struct and getattr(grammar, "parsed", None) is None:
        fast = _BY_FIELDS.get(tuple(map(id, grammar.subcons)))
    if len(_found) >= _FOUND_LIMIT:
        _found.clear()
    _found[id(grammar)] = (grammar, fast)
    return fast


_PATH = r"\(parsing\)|\(building\)|\(sizeof\)"  # (compiled by `re` when first met)


def field_path(exc: ConstructError, base: str) -> str:
    path = getattr(exc, "path", None) or ""
    parts = [p.strip() for p in re.sub(_PATH, "", path).split("->") if p.strip()]
    return ".".join([base, *parts]) if parts else base


def reason(exc: ConstructError) -> str:
    """What went wrong, in plain words (`plainwords`), without construct's path."""
    from construct import StreamError

    from vmbtool import plainwords

    text = str(exc).splitlines()
    detail = plainwords.plain(text[-1]) if text else "malformed"
    if isinstance(exc, StreamError) and not detail.startswith("truncated"):
        return f"truncated: {detail}"
    return detail


def build_reason(exc: Exception) -> str:
    """Why a value could not be built: construct's own errors, and the Python errors a
    grammar's adapters raise on a value of the wrong type (uuid, int(), a missing key)."""
    from construct import ConstructError

    from vmbtool import plainwords

    if isinstance(exc, ConstructError):
        return reason(exc)
    if isinstance(exc, KeyError):
        return f"missing field {plainwords.value(str(exc))}"
    if isinstance(exc, OverflowError):
        return "a number too large for its field"
    if "UUID" in str(exc):
        return "not a GUID (expected like 12345678-9abc-def0-1234-56789abcdef0)"
    return "a value of the wrong type for its field"


def too_many_elements(where: str, offset: int) -> BlobError:
    """A structure whose PFN lists and GPA or byte ranges would pass what a reader holds:
    it is refused before they are built (the plain grammar is not asked: it would)."""
    return BlobError(f"{where} (offset {offset})", "more PFNs or ranges than a reader holds "
                     f"in one structure (about {fastpath.ELEMENT_BUDGET // 40:,} PFNs)",
                     NtStatus.INSUFFICIENT_RESOURCES)


def parse(grammar: Construct, data: bytes, where: str, offset: int = 0,
          exact: bool = True) -> Any:
    """Parse `data` with `grammar`; `where` names the structure, `offset` its position."""
    return _whole(grammar, data, where, offset, exact, False)


def scan(grammar: Construct, data: bytes, where: str, offset: int = 0) -> Any:
    """`parse` for a reader that checks what it parsed and keeps none of it: the record
    and the structures right inside it as tuples of their fields, in the grammar's
    order, and byte strings as views of `data` where the grammar's generated code has a
    scan (`fastpath.SCAN_TUPLE_DEPTH`). The same refusals, with the same words."""
    obj = usual_scan(grammar, data)
    return obj if obj is not None else _whole(grammar, data, where, offset, True, True)


def usual_scan(grammar: Construct, data: bytes) -> Any:
    """`scan` of the usual record, by the grammar's generated scan alone, with no
    wrapper call (a PACKET a packet); None for anything else, which `scan` takes as
    `parse_at` does, refusals and all."""
    fast = (grammar if grammar.__class__ is fastpath.CompiledGrammar else
            _BY_ID.get(id(grammar))) if _enabled else None
    if fast is None or fast.scan_from is None:
        return None
    try:
        obj, used = fast.scan_from(data)
    except (fastpath.Refuse, fastpath.TooManyElements):
        return None
    return obj if used == len(data) else None


def usual_parse_at(grammar: Construct, data: bytes, pos: int) -> tuple[Any, int] | None:
    """`parse_at` of the usual structure by the grammar's generated parse alone (what a
    lean read keeps of an array, in one call); None for anything else, which
    `parse_at` takes, refusals and all."""
    fast = compiled(grammar) if _enabled else None
    if fast is None:
        return None
    try:
        obj, used = fast.parse_from(memoryview(data)[pos:] if pos else data)
    except (fastpath.Refuse, fastpath.TooManyElements):
        return None
    return obj, pos + used


def _whole(grammar: Construct, data: bytes, where: str, offset: int, exact: bool,
           scanned: bool) -> Any:
    obj, end = parse_at(grammar, data, 0, where, offset, scan=scanned)
    left = len(data) - end
    if exact and left:
        raise BlobError(f"{where} (offset {offset + end})",
                        f"{left} bytes left over after the structure")
    return obj


def parse_at(grammar: Construct, data: bytes, pos: int, where: str, offset: int = 0,
             whole: str | None = None, scan: bool = False) -> tuple[Any, int]:
    """Parse one structure at `pos` of `data`: it and where it ends. Errors name `where`
    at `offset`; a lean reader parsing a chunk's elements one by one gives the offset of
    the chunk's data and, as `whole`, the name a parse of the whole chunk would refuse
    too many PFNs under. (The plain grammar's BytesIO is made only when it is asked: one
    over a whole chunk costs a copy of it.)"""
    if _enabled:
        fast = compiled(grammar)
        if fast is not None:
            scan_from = fast.scan_from if scan else None
            try:
                obj, used = (scan_from or fast.parse_from)(
                    memoryview(data)[pos:] if pos else data)
            except fastpath.TooManyElements:
                raise too_many_elements(whole or where, offset) from None
            except fastpath.Refuse:  # the plain grammar gives the answer or says why
                pass
            else:
                return (obj if scan_from or not scan else _scanned(_plain(grammar), obj)), \
                    pos + used
    from construct import ConstructError

    grammar = _plain(grammar)
    try:
        stream = BytesIO(data)
        stream.seek(pos)
        obj = grammar.parse_stream(stream)
        return (_scanned(grammar, obj) if scan else obj), stream.tell()
    except ConstructError as exc:
        raise BlobError(f"{field_path(exc, where)} (offset {offset})", reason(exc),
                        NtStatus.DATA_ERROR) from None


def _scanned(node: Any, obj: Any, depth: int = 0) -> Any:
    """A parsed object in the shape a scan gives it (`scan`): each Struct down to
    SCAN_TUPLE_DEPTH, through the wrappers around it, a tuple of its fields."""
    from construct import Struct

    while not isinstance(node, Struct):
        node = getattr(node, "subcon", None)
        if node is None:
            return obj
    if depth >= fastpath.SCAN_TUPLE_DEPTH:
        return obj
    return tuple(_scanned(sc, obj[sc.name], depth + 1) for sc in node.subcons)


def pack(grammar: Construct, obj: Any, where: str) -> bytes:
    """`build` from the shape a scan gives (`scan`: the record and the structures right
    inside it as tuples of their fields, in the grammar's order), with no container made
    where the grammar's generated code has a pack; the same refusals in the same words."""
    if _enabled:
        fast = compiled(grammar)
        if fast is not None and fast.pack is not None:
            try:
                return fast.pack(obj)
            except fastpath.Refuse:  # the plain grammar gives the answer or says why
                pass
    return build(grammar, _unscanned(_plain(grammar), obj), where)


def _unscanned(node: Any, obj: Any, depth: int = 0) -> Any:
    """What `_scanned` made of a parsed object, as a container again (a tuple that is
    not of the Struct's length is left as it is, for the build to refuse)."""
    from construct import Container, Struct

    while not isinstance(node, Struct):
        node = getattr(node, "subcon", None)
        if node is None:
            return obj
    if depth >= fastpath.SCAN_TUPLE_DEPTH or not isinstance(obj, tuple) or \
            len(obj) != len(node.subcons):
        return obj
    return Container({sc.name: _unscanned(sc, value, depth + 1)
                      for sc, value in zip(node.subcons, obj, strict=True)})


def build(grammar: Construct, obj: Any, where: str) -> bytes:
    if _enabled:
        fast = compiled(grammar)
        if fast is not None:
            try:
                return fast.build(obj)
            except fastpath.Refuse:  # the plain grammar gives the answer or says why
                pass
    from construct import ConstructError

    try:
        return _plain(grammar).build(obj)
    except (ConstructError, ValueError, TypeError, KeyError, OverflowError) as exc:
        path = field_path(exc, where) if isinstance(exc, ConstructError) else where
        raise BlobError(path, f"cannot encode: {build_reason(exc)}",
                        NtStatus.INVALID_PARAMETER) from None


def prefix_layout(grammar: Construct, field: str) -> struct.Struct:
    """The `struct.Struct` of the length or count in front of one field of a Struct
    grammar (a `Prefixed`, `PrefixedArray` or length-prefixed string): for a hot path
    that needs only that number (a PACKET's LibBuf size, an array's count), read as
    the grammar lays it out (for generated code, as the generator read it there)."""
    if grammar.__class__ is fastpath.CompiledGrammar and field in grammar.prefixes:
        return struct.Struct(grammar.prefixes[field])
    from construct import FocusedSeq, FormatField, Prefixed, Renamed, Subconstruct

    grammar = _plain(grammar)
    node: Any = grammar
    for sub in getattr(grammar, "subcons", ()):
        if sub.name == field:
            node = sub
            break
    else:
        raise KeyError(f"{field!r}: no such field")
    while isinstance(node, Renamed | Subconstruct) and not isinstance(node, Prefixed):
        if isinstance(node, FocusedSeq):
            break
        node = node.subcon
    if isinstance(node, FocusedSeq):  # PrefixedArray: FocusedSeq(count / Rebuild, items)
        node = node.subcons[0]
        while not isinstance(node, FormatField):
            node = node.subcon
        return struct.Struct(node.fmtstr)
    if isinstance(node, Prefixed) and isinstance(node.lengthfield, FormatField):
        return struct.Struct(node.lengthfield.fmtstr)
    raise TypeError(f"{field!r}: no fixed-width prefix")
