"""A machine-readable description of the blob format, derived from the grammars.

`describe_format()` walks the construct objects of `vmbtool.formats` (the file header,
the chunk header and every chunk type in `vmbtool.chunks.CHUNK_TYPES`) and returns a plain,
JSON-serialisable dict; nothing in it is written by hand. Frozen copies live in
`formats/schemas/v<major>.<minor>.json` (`vmbtool schema --json > ...`) and
`vmbtool.compat` compares two descriptions.

The description::

    {"format": "1.0", "major": 1, "minor": 0,
     "file_header":  {"prefix": NODE, "structure": NODE, "trailer": [FIELD], "size",
                      "max_size", "flags": {name: bit}},
     "chunk_header": {"structure": NODE, "size", "max_length", "flags": {name: bit}},
     "chunks": [{"type", "name", "required", "since", "structure": NODE}],  # by type
     "structures": {name: {"type": "struct", "name", "size", "fields": [FIELD]}}}

    FIELD ::= {"name", "offset" (null after a variable-size field), "size", "since",
               "type": NODE}
    NODE  ::= {"type": KIND, "size": bytes | null, ...}  one of
      int       "format": "u8" | "u16" | "i8" | "u32be" ...
      enum      "base": NODE, "values": {name: value}, "strict": bool
      flags     "base": NODE, "flags": {name: bit}, "strict": false
      flag      "base": NODE  (a byte that is 0 or 1: StrictFlag)
      guid      "base": NODE  (16 bytes in Windows GUID byte order)
      bytes     "length": n | "<expression>" | "greedy"
      string    "encoding", and "length": n, "padded": true | "prefix": NODE
      prefixed  "prefix": NODE, "subcon": NODE, "exact": bool (StrictPrefixed)
      array     "count": n | "<expression>" | NODE (a count prefix), "element": NODE
      switch    "on": "<expression>", "cases": {name: NODE}, "default": NODE
      struct    "ref": name (a named Structure) | "fields": [FIELD] (anonymous)
      const     "value": int | "bytes": hex, "base": NODE
      computed  "expr": "<expression>"
      pass, error, adapter ("class", "subcon"), other ("class", ...)

Named constructs (module-level names in vmbtool.formats) carry "name"; Structs among
them are described once in "structures" and referenced by "ref". A field's "since" is
the version its `Since` marker names (formats/common.py), else `<major>.0`.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import construct

import vmbtool.formats
from vmbtool import jsonread
from vmbtool.errors import InputError, UsageError, VmbtoolError
from vmbtool.formats import limits, version_tuple
from vmbtool.formats.common import GuidAdapter, Since, StrictEnum, StrictFlagAdapter, StrictPrefixed

SCHEMA_DIR = Path(vmbtool.formats.__file__).with_name("schemas")
VERSION = re.compile(r"^(\d+)\.(\d+)$")
FROZEN_NAME = re.compile(r"^v(\d+)\.(\d+)\.json$")
MAX_DEPTH = 64  # a description's nesting that compat follows (the frozen ones: 12)
TOP_KEYS = ("format", "major", "minor", "file_header", "chunk_header", "chunks", "structures")
# sections described since the frozen 1.0 and 1.1 descriptions were written: a description
# may lack them (compat then has nothing of them to compare)
LATER_KEYS = ("frames", "limits")
_FORMAT_CHARS = {"b": "i8", "B": "u8", "h": "i16", "H": "u16", "i": "i32", "I": "u32",
                 "l": "i32", "L": "u32", "q": "i64", "Q": "u64", "e": "f16", "f": "f32",
                 "d": "f64"}
# construct names these singletons like their classes
_GREEDY, _PASS, _ERROR = type(construct.GreedyBytes), type(construct.Pass), type(construct.Error)


def current_version() -> tuple[int, int]:
    """The format this vmbtool writes (read at call time: a test may pretend a newer)."""
    return vmbtool.formats.FORMAT_MAJOR, vmbtool.formats.FORMAT_MINOR


# -- deriving the description from the grammars -----------------------------------------


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


def to_json(description: dict) -> str:
    """Stable text: sorted keys, two-space indent, a final newline."""
    return json.dumps(description, indent=2, sort_keys=True) + "\n"


# -- frozen descriptions ------------------------------------------------------------------


def frozen_versions() -> list[str]:
    """Versions with a frozen description in formats/schemas, oldest first."""
    found = []
    for path in SCHEMA_DIR.glob("v*.json") if SCHEMA_DIR.is_dir() else []:
        match = FROZEN_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), int(match.group(2))))
    return [f"{a}.{b}" for a, b in sorted(found)]


def frozen_path(version: str) -> Path:
    return SCHEMA_DIR / f"v{version}.json"


def load(spec: str) -> dict:
    """`current`, a frozen version (`1.0`), a schema JSON file or `-` (stdin)."""
    from vmbtool.inputs import MAX_SCHEMA_SIZE, read_document

    if spec == "current":
        return describe_format()
    if VERSION.match(spec):
        path = frozen_path(spec)
        if not path.is_file():
            have = ", ".join(frozen_versions()) or "none"
            raise InputError("cannot read schema", spec,
                             f"no frozen description {path.name} (frozen: {have})")
        where, text = str(path), path.read_text(encoding="utf-8")
    else:
        data, where = read_document(spec, "schema", MAX_SCHEMA_SIZE)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError("bad schema", where, f"not UTF-8 text: {exc.reason}") from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise InputError("bad schema", where, "arrays or objects nested more than about "
                         f"{jsonread.JSON_READER_DEPTH:,} deep") from None
    except ValueError as exc:
        raise InputError("bad schema", f"{where} (line {getattr(exc, 'lineno', '?')})",
                         f"not JSON: {getattr(exc, 'msg', 'a number too long')}") from None
    deep = jsonread.too_deep(doc, MAX_DEPTH)
    if deep is not None:  # compat walks descriptions recursively: refused before it does
        raise InputError("bad schema", f"{where} ({deep})",
                         f"nested more than {MAX_DEPTH} deep (a description nests about "
                         "12 deep)")
    check_description(doc, where)
    return doc


def check_description(doc: Any, where: str) -> None:
    """The top-level shape compat relies on; deeper damage is reported as it is met."""
    if not isinstance(doc, dict):
        raise InputError("bad schema", where, "not a JSON object")
    missing = [key for key in TOP_KEYS if key not in doc]
    if missing:
        raise InputError("bad schema", where, f"no {missing[0]!r} (a vmbtool schema "
                           "description has " + ", ".join(TOP_KEYS) + ")")
    try:
        major, minor = version_tuple(doc["format"])
    except ValueError as exc:
        raise InputError("bad schema", f"{where} (format)", str(exc)) from None
    if (major, minor) != (doc["major"], doc["minor"]):
        raise InputError("bad schema", f"{where} (format)",
                           f"{doc['format']} disagrees with major {doc['major']}, "
                           f"minor {doc['minor']}")
    if not isinstance(doc["chunks"], list) or not isinstance(doc["structures"], dict):
        raise InputError("bad schema", where, "chunks must be a list, structures an object")


# -- human text ---------------------------------------------------------------------------


def type_text(node: dict, structures: dict | None = None) -> str:
    """One-line description of a node: `u32`, `enum u8 {none=0, zstd=1}`, ..."""
    kind = node.get("type")
    name = f" {node['name']}" if node.get("name") else ""
    if kind == "int":
        return node["format"]
    if kind == "enum":
        values = ", ".join(f"{k}={v}" for k, v in sorted(node["values"].items(),
                                                          key=lambda kv: (kv[1], kv[0])))
        return f"enum{name} {type_text(node['base'])} {{{values}}}"
    if kind == "flags":
        bits = ", ".join(f"{k}={v:#x}" for k, v in sorted(node["flags"].items(),
                                                          key=lambda kv: (kv[1], kv[0])))
        return f"flags {type_text(node['base'])} {{{bits}}}"
    if kind == "flag":
        return f"flag {type_text(node['base'])} (0 or 1)"
    if kind == "guid":
        return "guid (16 bytes, Windows byte order)"
    if kind == "bytes":
        length = node["length"]
        return "bytes (the rest)" if length == "greedy" else f"bytes[{length}]"
    if kind == "string":
        if "prefix" in node:
            return f"string {node['encoding']}, {type_text(node['prefix'])} length"
        if node.get("padded"):
            return f"string {node['encoding']}[{node['length']}], NUL-padded"
        return f"string {node['encoding']} of {type_text(node['subcon'])}"
    if kind == "prefixed":
        sub = node["subcon"]
        exact = ", exactly" if node.get("exact") else ""
        if sub.get("type") == "bytes" and sub.get("length") == "greedy":
            return f"bytes{name}, {type_text(node['prefix'])} length"
        return f"{type_text(node['prefix'])} length, then {type_text(sub)}{exact}"
    if kind == "array":
        count = node["count"]
        count = f"{type_text(count)} count" if isinstance(count, dict) else count
        return f"array[{count}] of {type_text(node['element'])}"
    if kind == "struct":
        return node["ref"] if "ref" in node else "struct (below)"
    if kind == "switch":
        return f"switch on {node['on']}: " + " | ".join(node["cases"])
    if kind == "const":
        value = node.get("value", node.get("bytes"))
        return f"const {value} ({type_text(node['base'])})"
    if kind == "computed":
        return f"computed {node['expr']}"
    if kind in ("pass", "error"):
        return "nothing" if kind == "pass" else "error (refused)"
    return f"{node.get('class', kind)}{name}"


def _size_text(value: Any) -> str:
    return "var" if value is None else str(value)


def _anonymous(node: dict, path: str) -> list[tuple[str, dict]]:
    """(dotted path, struct node) of the anonymous structs inside a node, in order."""
    found: list[tuple[str, dict]] = []
    kind = node.get("type")
    if kind == "struct" and "fields" in node:
        found.append((path, node))
        for field in node["fields"]:
            found += _anonymous(field["type"], f"{path}.{field['name']}")
        return found
    if kind == "switch":
        for case, sub in node["cases"].items():
            found += _anonymous(sub, f"{path}.{case}")
    for key in ("subcon", "element", "base"):
        if isinstance(node.get(key), dict):
            found += _anonymous(node[key], path)
    return found


def _struct_lines(title: str, struct: dict) -> list[str]:
    lines = [f"{title} ({_size_text(struct['size'])} bytes)"]
    rows = [("offset", "size", "field", "type")]
    for field in struct["fields"]:
        since = field.get("since")
        extra = f"  [since {since}]" if since and not since.endswith(".0") else ""
        rows.append((_size_text(field.get("offset")), _size_text(field.get("size")),
                     field["name"], type_text(field["type"]) + extra))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(width[i]) for i, cell in enumerate(row[:3]))
                     + "  " + row[3])
    return lines


def frame_lines(frames: dict | None, caps: dict | None) -> list[str]:
    """The frames after a body and the reader caps, for people (a description frozen
    before they were described has neither)."""
    lines: list[str] = []
    if frames:
        lines += ["", "frames after the body:"]
        for name in ("seal", "signature"):
            if name in frames:
                frame = frames[name]
                fields = ", ".join(f"{f['name']} {type_text(f['type'])}"
                                   for f in frame["structure"]["fields"])
                lines.append(f"  {name} (since {frame['since']}, {frame['size']} bytes): "
                             f"{fields}")
        skippable = frames.get("skippable")
        if skippable:
            lines.append(f"  skippable: magic {skippable['magic']:#010x}..."
                         f"{skippable['magic'] | ~skippable['mask'] & 0xFFFFFFFF:#010x}, "
                         "u32 frame_size, then frame_size bytes")
    if caps:
        lines += ["", "reader limits:"]
        lines += [f"  {name}  {value:,}" for name, value in sorted(caps.items())]
    return lines


def render_text(desc: dict) -> list[str]:
    """The description for people: the framing, the chunk table, every structure."""
    fh, ch = desc["file_header"], desc["chunk_header"]
    flags = ", ".join(f"{k}={v:#x}" for k, v in sorted(fh["flags"].items(),
                                                       key=lambda kv: kv[1]))
    cflags = ", ".join(f"{k}={v:#x}" for k, v in sorted(ch["flags"].items(),
                                                        key=lambda kv: kv[1]))
    lines = [f"vmbtool blob format {desc['format']} (derived from the grammars)", "",
             f"file header: {type_text(fh['prefix'])} prefix; {type_text(fh['structure'])}"
             f" then " + ", ".join(f"{type_text(t['type'])} {t['name']}" for t in
                                   fh["trailer"])
             + f": {_size_text(fh['size'])} bytes (at most {fh['max_size']}); "
             f"flags {flags}",
             f"chunk header: {type_text(ch['structure'])}: {_size_text(ch['size'])} bytes; "
             f"data at most {ch['max_length']} bytes; flags {cflags}", "", "chunks:"]
    rows = [("type", "name", "required", "since", "structure")]
    for chunk in desc["chunks"]:
        rows.append((f"{chunk['type']:#06x}", chunk["name"],
                     "yes" if chunk["required"] else "no", chunk["since"],
                     type_text(chunk["structure"])))
    width = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        lines.append("  " + "  ".join(c.ljust(width[i]) for i, c in enumerate(row)).rstrip())
    lines += frame_lines(desc.get("frames"), desc.get("limits"))
    lines += ["", "structures:"]
    for name, struct in sorted(desc["structures"].items()):
        lines.append("")
        lines += _struct_lines(name, struct)
        for path, inner in _anonymous(struct, name)[1:]:
            lines.append("")
            lines += _struct_lines(path, inner)
    for chunk in desc["chunks"]:
        for path, inner in _anonymous(chunk["structure"], f"chunks.{chunk['name']}"):
            lines.append("")
            lines += _struct_lines(path, inner)
    return lines
