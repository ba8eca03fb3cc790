"""Deriving the description from the grammars: `describe_format()` walks the construct
objects of `vmbtool.formats` (the shape it returns: the package's docstring)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import construct

import vmbtool.formats
from vmbtool.errors import UsageError, VmbtoolError
from vmbtool.formats import limits, version_tuple
from vmbtool.formats.common import GuidAdapter, Since, StrictEnum, StrictFlagAdapter, StrictPrefixed

_FORMAT_CHARS = {"b": "i8", "B": "u8", "h": "i16", "H": "u16", "i": "i32", "I": "u32",
                 "l": "i32", "L": "u32", "q": "i64", "Q": "u64", "e": "f16", "f": "f32",
                 "d": "f64"}
# construct names these singletons like their classes
_GREEDY, _PASS, _ERROR = type(construct.GreedyBytes), type(construct.Pass), type(construct.Error)


def current_version() -> tuple[int, int]:
    """The format this vmbtool writes (read at call time: a test may pretend a newer)."""
    return vmbtool.formats.FORMAT_MAJOR, vmbtool.formats.FORMAT_MINOR


def named_constructs() -> dict[int, str]:
    """id(construct) -> its module-level name in vmbtool.formats (first name, sorted)."""
    names: dict[int, str] = {}
    for info in sorted(pkgutil.iter_modules(vmbtool.formats.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"vmbtool.formats.{info.name}")
        for name, value in sorted(vars(module).items()):
            if name.startswith("_") or not isinstance(value, construct.Construct):
                continue
            if getattr(construct, name, None) is value:
                continue  # construct's own primitives (Int32ul, GreedyBytes, ...)
            names.setdefault(id(value), name)
    return names


def _size(obj: construct.Construct) -> int | None:
    try:
        return obj.sizeof()
    except (construct.SizeofError, KeyError, AttributeError, TypeError):
        return None


def _expr(value: Any) -> Any:
    """An int as is; a construct expression (this.x * 4096) as its stable text."""
    if isinstance(value, int):
        return value
    if isinstance(value, construct.expr.ExprMixin):
        return repr(value)
    return "callable"


class _Deriver:
    def __init__(self, current: tuple[int, int], as_of: tuple[int, int]) -> None:
        self.names = named_constructs()
        self.current = current
        self.major, self.minor = as_of
        self.base = f"{self.major}.0"
        self.structures: dict[str, dict] = {}
        self._building: set[str] = set()

    def fail(self, where: str, why: str) -> VmbtoolError:
        return VmbtoolError("cannot describe the grammars", where, why)

    # a Struct: named ones once in `structures`, anonymous ones inline
    def struct(self, obj: construct.Struct, where: str) -> dict:
        name = self.names.get(id(obj))
        if name is None:
            return self.struct_body(obj, where)
        if name not in self.structures and name not in self._building:
            self._building.add(name)
            self.structures[name] = {**self.struct_body(obj, name), "name": name}
            self._building.discard(name)
        return {"type": "struct", "ref": name, "size": self.structures[name]["size"]
                if name in self.structures else None}

    def struct_body(self, obj: construct.Struct, where: str) -> dict:
        fields, offset, gated = [], 0, None
        for index, sc in enumerate(obj.subcons):
            field = self.field(sc, f"{where}.{sc.name or index}")
            if gated and version_tuple(field["since"]) < version_tuple(gated):
                raise self.fail(f"{where}.{field['name']}",
                                f"since {field['since']} after a field since {gated}: "
                                "later fields must come last")
            if field["since"] != self.base:
                gated = field["since"]
            if not self.exists(field["since"], f"{where}.{field['name']}"):
                continue  # appended by a later minor than the one described
            field["offset"] = offset
            size = field["size"]
            offset = offset + size if offset is not None and size is not None else None
            fields.append(field)
        size = offset if all(f["size"] is not None for f in fields) else None
        return {"type": "struct", "fields": fields, "size": size}

    def exists(self, since: str, where: str) -> bool:
        """Whether something added in `since` is part of the version described; a
        version later than the current format is a mistake in the grammars."""
        try:
            version = version_tuple(since)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        if version[0] != self.current[0] or version > self.current:
            raise self.fail(where, f"marked since {since}, but the format is "
                            f"{self.current[0]}.{self.current[1]} (bump FORMAT_MINOR in "
                            "formats/__init__.py)")
        return version <= (self.major, self.minor)

    def field(self, sc: construct.Construct, where: str) -> dict:
        if not sc.name:
            raise self.fail(where, f"unnamed {type(sc).__name__} in a Struct")
        since, inner = self.base, sc
        while isinstance(inner, construct.Renamed | Since):
            if isinstance(inner, Since):
                since = inner.since
            inner = inner.subcon
        try:
            version_tuple(since)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        node = self.node(inner, where)
        return {"name": sc.name, "since": since, "size": node["size"], "type": node}

    def node(self, obj: construct.Construct, where: str) -> dict:
        while isinstance(obj, construct.Renamed):
            obj = obj.subcon
        if isinstance(obj, Since):
            raise self.fail(where, "Since marks a field of a Struct, nothing deeper")
        described = self._node(obj, where)
        name = self.names.get(id(obj))
        if name and described["type"] != "struct":
            described["name"] = name
        described.setdefault("size", _size(obj))
        return described

    def _node(self, obj: construct.Construct, where: str) -> dict:
        c = construct
        if isinstance(obj, c.Struct):
            return self.struct(obj, where)
        if isinstance(obj, c.FormatField):
            order, char = obj.fmtstr[0], obj.fmtstr[1]
            suffix = "be" if order == ">" and obj.length > 1 else ""
            return {"type": "int", "format": _FORMAT_CHARS.get(char, char) + suffix}
        if isinstance(obj, c.BytesInteger):
            bits = obj.length * 8 if isinstance(obj.length, int) else "n"
            return {"type": "int", "format": f"{'i' if obj.signed else 'u'}{bits}"
                    f"{'' if obj.swapped else 'be'}"}
        if isinstance(obj, c.FlagsEnum):
            return {"type": "flags", "base": self.node(obj.subcon, where),
                    "flags": dict(obj.flags), "strict": False}
        if isinstance(obj, c.Enum):
            return {"type": "enum", "base": self.node(obj.subcon, where),
                    "values": {str(k): int(v) for k, v in obj.encmapping.items()},
                    "strict": isinstance(obj, StrictEnum)}
        if isinstance(obj, StrictFlagAdapter):
            return {"type": "flag", "base": self.node(obj.subcon, where)}
        if isinstance(obj, GuidAdapter):
            return {"type": "guid", "base": self.node(obj.subcon, where)}
        if isinstance(obj, c.StringEncoded):
            return self.string(obj, where)
        if isinstance(obj, c.Const):
            value = obj.value
            out = {"type": "const", "base": self.node(obj.subcon, where)}
            if isinstance(value, bytes | bytearray):
                out["bytes"] = bytes(value).hex()
            else:
                out["value"] = value
            return out
        if isinstance(obj, c.Bytes):
            return {"type": "bytes", "length": _expr(obj.length)}
        if isinstance(obj, _GREEDY):
            return {"type": "bytes", "length": "greedy"}
        if isinstance(obj, c.Prefixed):
            return {"type": "prefixed", "prefix": self.node(obj.lengthfield, where),
                    "subcon": self.node(obj.subcon, where),
                    "exact": isinstance(obj, StrictPrefixed)}
        if isinstance(obj, c.FocusedSeq):
            array = self.prefixed_array(obj, where)
            if array is not None:
                return array
        if isinstance(obj, c.Array):
            return {"type": "array", "count": _expr(obj.count),
                    "element": self.node(obj.subcon, f"{where}[]")}
        if isinstance(obj, c.Switch):
            return self.switch(obj, where)
        if isinstance(obj, c.Computed):
            return {"type": "computed", "expr": _expr(obj.func), "size": 0}
        if isinstance(obj, _PASS):
            return {"type": "pass", "size": 0}
        if isinstance(obj, _ERROR):
            return {"type": "error", "size": 0}
        if isinstance(obj, c.Adapter):
            return {"type": "adapter", "class": type(obj).__name__,
                    "subcon": self.node(obj.subcon, where)}
        return self.other(obj, where)

    def string(self, obj: construct.StringEncoded, where: str) -> dict:
        inner = obj.subcon
        out: dict[str, Any] = {"type": "string", "encoding": obj.encoding}
        if isinstance(inner, construct.FixedSized) and isinstance(inner.subcon,
                                                                  construct.NullStripped):
            out.update(length=_expr(inner.length), padded=True)
        elif isinstance(inner, construct.Prefixed) and isinstance(inner.subcon, _GREEDY):
            out["prefix"] = self.node(inner.lengthfield, where)
        else:
            out["subcon"] = self.node(inner, where)
        return out

    def prefixed_array(self, obj: construct.FocusedSeq, where: str) -> dict | None:
        """construct's PrefixedArray macro: FocusedSeq(count / Rebuild, items / Array)."""
        subcons = list(obj.subcons)
        if len(subcons) != 2 or [s.name for s in subcons] != ["count", "items"]:
            return None
        count, items = (s.subcon if isinstance(s, construct.Renamed) else s for s in subcons)
        if not isinstance(count, construct.Rebuild) or not isinstance(items, construct.Array):
            return None
        return {"type": "array", "count": self.node(count.subcon, where),
                "element": self.node(items.subcon, f"{where}[]")}

    def switch(self, obj: construct.Switch, where: str) -> dict:
        cases: dict[str, dict] = {}
        named = {id(sub) for key, sub in obj.cases.items() if isinstance(key, str)}
        for key, sub in obj.cases.items():
            if not isinstance(key, str) and id(sub) in named:
                continue  # a numeric alias of a named case (compiled builders need them)
            cases[str(key)] = self.node(sub, f"{where}.{key}")
        return {"type": "switch", "on": _expr(obj.keyfunc), "cases": cases,
                "default": self.node(obj.default, where)}

    def other(self, obj: construct.Construct, where: str) -> dict:
        out: dict[str, Any] = {"type": "other", "class": type(obj).__name__}
        if isinstance(obj, construct.Subconstruct):
            out["subcon"] = self.node(obj.subcon, where)
        elif hasattr(obj, "subcons"):
            out["subcons"] = [self.node(sc, where) for sc in obj.subcons]
        return out


def _flag_names(known: int, named: dict[str, int]) -> dict[str, int]:
    flags = dict(named)
    rest = known & ~sum(named.values())
    for bit in range(64):
        if rest >> bit & 1:
            flags[f"bit{bit}"] = 1 << bit
    return flags


def describe_format(as_of: str | None = None) -> dict:
    """The current format, as the grammars, the chunk registry and the limits say.

    `as_of` ("1.0") describes an earlier minor of the current major instead: without the
    chunk types and fields marked as added later (`since`)."""
    from vmbtool.formats.chunk import CHUNK_TYPES, FLAG_REQUIRED, KNOWN_CHUNK_FLAGS, ChunkHeader
    from vmbtool.formats.header import (
        FLAG_SIGNED,
        KNOWN_HEADER_FLAGS,
        FileHeader,
        HeaderPrefix,
        HeaderTrailer,
    )

    current = current_version()
    major, minor = current if as_of is None else version_tuple(as_of)
    if major != current[0] or (major, minor) > current:
        raise UsageError("cannot describe the format", str(as_of),
                         f"this vmbtool writes {current[0]}.{current[1]}; it can describe "
                           f"{current[0]}.0 to {current[0]}.{current[1]}")
    d = _Deriver(current, (major, minor))
    header = d.node(FileHeader, "FileHeader")
    # the trailer sits at header_size - 4 whatever a newer minor appended: no offset
    trailer = [{**f, "offset": None} for f in d.struct_body(HeaderTrailer, "trailer")["fields"]]
    header_size = header["size"] + HeaderTrailer.sizeof() if header["size"] is not None \
        else None
    file_header = {
        "prefix": d.node(HeaderPrefix, "HeaderPrefix"), "structure": header,
        "trailer": trailer, "size": header_size, "max_size": limits.MAX_HEADER_SIZE,
        "flags": _flag_names(KNOWN_HEADER_FLAGS, {"signed": FLAG_SIGNED})}
    chunk_header = {
        "structure": d.node(ChunkHeader, "ChunkHeader"),
        "size": d.structures["ChunkHeader"]["size"],
        "max_length": limits.MAX_CHUNK_LENGTH,
        "flags": _flag_names(KNOWN_CHUNK_FLAGS, {"required": FLAG_REQUIRED})}
    chunks = []
    for number in sorted(CHUNK_TYPES):
        kind = CHUNK_TYPES[number]
        since = getattr(kind, "since", d.base)
        if not d.exists(since, f"chunks.{kind.name}.since"):
            continue
        chunks.append({"type": int(number), "name": kind.name, "required": bool(kind.required),
                       "since": since, "structure": d.node(kind.grammar, kind.name)})
    return {"format": f"{major}.{minor}", "major": major, "minor": minor,
            "file_header": file_header, "chunk_header": chunk_header, "chunks": chunks,
            "structures": dict(sorted(d.structures.items())),
            "frames": describe_frames(d), "limits": describe_limits()}


def describe_frames(d: _Deriver) -> dict:
    """The frames after a body (FORMAT.md "The seal frame", "The signature frame"): each
    frame's layout and the format version that added it. Described inline, not among
    "structures", so that the descriptions frozen before frames were described still
    compare equal on what they hold."""
    from vmbtool.formats import frames

    found: dict[str, Any] = {
        "skippable": {"magic": frames.SKIPPABLE_MAGIC, "mask": frames.SKIPPABLE_MAGIC_MASK,
                      "structure": d.struct_body(frames.SkippableFrameHeader, "skippable")}}
    sealed_since = f"{frames.SEALED_SINCE[0]}.{frames.SEALED_SINCE[1]}"
    for name, grammar, since in (("seal", frames.SealFrame, sealed_since),
                                 ("signature", frames.SignatureFrame, d.base)):
        if d.exists(since, f"frames.{name}.since"):
            body = d.struct_body(grammar, name)
            found[name] = {"since": since, "size": body["size"], "structure": body}
    return found


def describe_limits() -> dict[str, int]:
    """Every reader cap of formats/limits.py, by its name in lower case."""
    return {name.lower(): value for name, value in sorted(vars(limits).items())
            if name.startswith("MAX_") and isinstance(value, int)}
