"""Can one version of the blob format read blobs another wrote?

`compare(old, new)` takes two schema descriptions (`vmbtool.schema`) and reports every
change that stops NEW from reading blobs OLD wrote (the forward direction); with
`reverse=True`, what stops OLD from reading blobs NEW writes. Both directions are the
same question asked of a reader and a writer: forward, NEW reads and OLD wrote; reverse,
OLD reads and NEW wrote. A change the reader copes with is a *note*, not a *finding*;
the description is compatible when there are no findings.

What a reader copes with, as the format's readers work (FORMAT.md "Versioning"):

- a chunk type it does not know whose required bit is clear (skipped);
- fields appended at the end of a structure whose end it knows (a chunk's structure,
  a length-prefixed structure, FileHeader): missing ones when the grammar marks them
  `Since` a version later than the writer's (they parse as absent), extra ones only
  where it skips what it does not read (FileHeader, up to `header_size`; a Prefixed that
  is not exact) -- a chunk is parsed exactly, so a 1.0 reader refuses appended fields;
- enum values, flag bits and switch cases it knows but the writer never writes;
- renamed fields, enum names and structures (the bytes do not change).

Anything else is a finding: removed, inserted or reordered fields, changed sizes or
types, enum values or flag bits the writer may write and the reader refuses, renumbered
enum values and chunk types, a required chunk type added (or the required bit changed
the wrong way), changed header framing, a different major version, and a changed
description that still claims the same version.

Each finding (and note) is {"kind", "path", "old", "new", "why"}. `path` is where in the
description, walked from a root (`file_header`, `chunk_header`, `chunks.<name>`) with
named structures resolved in place: `chunks.packet.structure.fields[0].subcon.fields[3]`
is field 3 of the PacketContext inside field 0 (lib_buf) of the packet chunk. A named
structure reached twice is compared once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from vmbtool.errors import InputError
from vmbtool.formats import version_tuple
from vmbtool.schema import type_text


class Context(NamedTuple):
    """What the reader knows about where a structure ends."""

    end_known: bool  # missing trailing fields can be detected (parse as absent)
    skips_rest: bool  # bytes after the fields it knows are skipped, not refused


FIXED = Context(False, False)  # inside a structure, an array, a switch case
CHUNK = Context(True, False)  # a chunk's data: exactly `length` bytes, parsed exactly
HEADER = Context(True, True)  # FileHeader: header_size says where it ends; the rest skipped

SCALARS = ("int", "enum", "flags", "flag")


@dataclass(frozen=True)
class Finding:
    kind: str
    path: str
    old: Any
    new: Any
    why: str

    def as_json(self) -> dict:
        return {"kind": self.kind, "path": self.path, "old": self.old, "new": self.new,
                "why": self.why}

    def line(self) -> str:
        return f"{self.kind} at {self.path}: {self.why}"


@dataclass
class Report:
    old: str
    new: str
    reverse: bool
    findings: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return not self.findings

    @property
    def question(self) -> str:
        if self.reverse:
            return f"can {self.old} (OLD) read blobs {self.new} (NEW) writes?"
        return f"can {self.new} (NEW) read blobs {self.old} (OLD) wrote?"

    def as_json(self) -> dict:
        return {"old": self.old, "new": self.new,
                "direction": "reverse" if self.reverse else "forward",
                "compatible": self.compatible,
                "findings": [f.as_json() for f in self.findings],
                "notes": [n.as_json() for n in self.notes]}


def compare(old: dict, new: dict, reverse: bool = False) -> Report:
    """Every change between two descriptions that breaks the reader (see the module)."""
    comparer = _Comparer(old, new, reverse)
    try:
        comparer.run()
    except KeyError as exc:
        raise InputError("bad schema", comparer.cursor or "description",
                         f"malformed description (no {str(exc.args[0])[:40]!r} where one "
                         "belongs)") from None
    except (TypeError, AttributeError, ValueError, IndexError):
        raise InputError("bad schema", comparer.cursor or "description",
                         "malformed description (a value of the wrong type)") from None
    return comparer.report


def canonical(value: Any, names: bool = True) -> str:
    if not names:
        value = _without_names(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _without_names(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_names(v) for k, v in value.items() if k != "name"}
    if isinstance(value, list):
        return [_without_names(v) for v in value]
    return value


def _bits(flags: dict) -> int:
    mask = 0
    for bit in flags.values():
        mask |= int(bit)
    return mask


class _Comparer:
    def __init__(self, old: dict, new: dict, reverse: bool) -> None:
        self.old, self.new, self.reverse = old, new, reverse
        self.ov, self.nv = str(old["format"]), str(new["format"])
        self.report = Report(self.ov, self.nv, reverse)
        self.seen: set[tuple] = set()
        self.cursor = ""
        self.same_major = old["major"] == new["major"]
        # `since` can only be checked against an older OLD (same version: unversioned_change)
        self.check_since = version_tuple(self.ov) < version_tuple(self.nv)
        if reverse:
            self.R, self.W = f"{self.ov} (OLD)", f"{self.nv} (NEW)"
        else:
            self.R, self.W = f"{self.nv} (NEW)", f"{self.ov} (OLD)"

    # -- helpers ----------------------------------------------------------------------

    def add(self, kind: str, path: str, old: Any, new: Any, why: str,
            breaking: bool = True) -> None:
        found = Finding(kind, path, old, new, why)
        (self.report.findings if breaking else self.report.notes).append(found)

    def rw(self, old: Any, new: Any) -> tuple[Any, Any]:
        """(reader's, writer's) of a pair given as (OLD's, NEW's)."""
        return (old, new) if self.reverse else (new, old)

    def gone_or_added(self, in_new: bool) -> str:
        return "added" if in_new else "removed"

    # -- the walk ---------------------------------------------------------------------

    def run(self) -> None:
        old, new = self.old, self.new
        self.cursor = "format"
        if not self.same_major:
            self.add("major_changed", "format", self.ov, self.nv,
                     f"a vmbtool reads blobs of its own major version only: {self.R} "
                     f"refuses every {self.W} blob (REVISION_MISMATCH)")
        elif version_tuple(self.nv) < version_tuple(self.ov):
            self.add("version_order", "format", self.ov, self.nv,
                     f"NEW ({self.nv}) is older than OLD ({self.ov})", breaking=False)
        self.file_header(old["file_header"], new["file_header"])
        self.chunk_header(old["chunk_header"], new["chunk_header"])
        self.chunks(old["chunks"], new["chunks"])
        if "frames" in old and "frames" in new:
            self.frames(old["frames"], new["frames"])
        if "limits" in old and "limits" in new:
            self.limits(old["limits"], new["limits"])
        self.cursor = "format"
        # a section only one description has was described later, not changed: the two
        # are compared on what both describe
        shared = [key for key in old if key in new]
        if self.ov == self.nv and canonical({k: old[k] for k in shared}) != \
                canonical({k: new[k] for k in shared}):
            major, minor = version_tuple(self.nv)
            self.add("unversioned_change", "format", self.ov, self.nv,
                     f"the two descriptions differ but both say format {self.nv}: blobs of "
                     f"one version would have two layouts. If {self.nv} is released, bump "
                     "FORMAT_MINOR (or FORMAT_MAJOR) in formats/__init__.py and freeze the new "
                     f"version: vmbtool schema --json > formats/schemas/v{major}.{minor + 1}"
                     f".json; if it is still in development, freeze it again: vmbtool "
                     f"schema --json > formats/schemas/v{self.nv}.json")

    def file_header(self, old: dict, new: dict) -> None:
        self.cursor = "file_header"
        self.node(old["prefix"], new["prefix"], "file_header.prefix", "HeaderPrefix", FIXED)
        self.node(old["structure"], new["structure"], "file_header.structure", "FileHeader",
                  HEADER)
        if canonical(old["trailer"], names=False) != canonical(new["trailer"], names=False):
            self.add("header_layout_changed", "file_header.trailer",
                     [f"{type_text(t['type'])} {t['name']}" for t in old["trailer"]],
                     [f"{type_text(t['type'])} {t['name']}" for t in new["trailer"]],
                     "what follows the header fields (header_crc32c) changed: every reader "
                     "finds it at header_size - 4")
        reader, writer = self.rw(old, new)
        if writer["size"] is not None and reader["max_size"] < writer["size"]:
            self.add("header_layout_changed", "file_header.max_size", old["max_size"],
                     new["max_size"], f"{self.R} refuses headers over {reader['max_size']} "
                     f"bytes; {self.W} writes {writer['size']}")
        self.flags(old["flags"], new["flags"], "file_header.flags", "FileHeader.flags", True)

    def chunk_header(self, old: dict, new: dict) -> None:
        self.cursor = "chunk_header"
        self.node(old["structure"], new["structure"], "chunk_header.structure", "ChunkHeader",
                  FIXED)
        reader, writer = self.rw(old, new)
        if reader["max_length"] < writer["max_length"]:
            self.add("limit_narrowed", "chunk_header.max_length", old["max_length"],
                     new["max_length"], f"{self.R} refuses chunks over {reader['max_length']} "
                     f"bytes; {self.W} writes up to {writer['max_length']}")
        elif old["max_length"] != new["max_length"]:
            self.add("limit_widened", "chunk_header.max_length", old["max_length"],
                     new["max_length"], f"{self.R} accepts every chunk length {self.W} "
                     "writes", breaking=False)
        self.flags(old["flags"], new["flags"], "chunk_header.flags", "ChunkHeader.flags", True)

    # -- frames and limits (described since 1.1 was frozen) -------------------------------

    def frames(self, old: dict, new: dict) -> None:
        """The seal, signature and skippable frames: a reader finds them by their bytes,
        so any change to a frame both versions have is a finding; a frame only the
        reader knows is one the writer never writes."""
        self.cursor = "frames"
        for name in sorted(set(old) | set(new)):
            path = f"frames.{name}"
            if name in old and name in new:
                if canonical(old[name], names=False) != canonical(new[name], names=False):
                    self.add("frame_changed", path, old[name].get("size"),
                             new[name].get("size"), f"the {name} frame's layout changed: "
                             f"{self.R} does not recognise the frame {self.W} writes")
                continue
            reader, _writer = self.rw(old, new)
            if name in reader:
                self.add("frame_added", path, None, None, f"{self.W} writes no {name} "
                         f"frame, {self.R} knows one", breaking=False)
            else:
                self.add("frame_added", path, None, None, f"{self.W} writes a {name} frame "
                         f"{self.R} does not know: it refuses the bytes after the body")

    def limits(self, old: dict, new: dict) -> None:
        """Reader caps: a reader with a lower cap refuses what a writer with a higher
        one writes."""
        self.cursor = "limits"
        reader, writer = self.rw(old, new)
        for name in sorted(set(old) & set(new)):
            if reader[name] < writer[name]:
                self.add("limit_narrowed", f"limits.{name}", old[name], new[name],
                         f"{self.R} refuses past {reader[name]}; {self.W} writes up to "
                         f"{writer[name]}")
            elif old[name] != new[name]:
                self.add("limit_widened", f"limits.{name}", old[name], new[name],
                         f"{self.R} accepts all {self.W} writes", breaking=False)

    # -- chunk types ------------------------------------------------------------------

    def chunks(self, old: list, new: list) -> None:
        o_type = {c["type"]: c for c in old}
        n_type = {c["type"]: c for c in new}
        o_name = {c["name"]: c for c in old}
        n_name = {c["name"]: c for c in new}
        for number in sorted(set(o_type) | set(n_type)):
            oc, nc = o_type.get(number), n_type.get(number)
            self.cursor = f"chunks.{(nc or oc)['name']}"
            if oc and nc:
                if oc["name"] != nc["name"]:
                    self.add("chunk_renumbered", f"chunks.{nc['name']}.type",
                             {"type": number, "name": oc["name"]},
                             {"type": number, "name": nc["name"]},
                             f"type {number:#06x} is {oc['name']} in OLD and {nc['name']} "
                             f"in NEW: {self.R} parses {self.W}'s chunks of that type with "
                             "the wrong grammar")
                self.chunk_pair(oc, nc)
            elif oc and oc["name"] not in n_name:
                self.chunk_only(oc, in_new=False)
            elif nc and nc["name"] not in o_name:
                self.chunk_only(nc, in_new=True)
        for name in sorted(set(o_name) & set(n_name)):
            oc, nc = o_name[name], n_name[name]
            if oc["type"] == nc["type"]:
                continue
            self.cursor = f"chunks.{name}"
            self.add("chunk_renumbered", f"chunks.{name}.type",
                     {"type": oc["type"], "name": name}, {"type": nc["type"], "name": name},
                     f"{name} is chunk type {oc['type']:#06x} in OLD and {nc['type']:#06x} "
                     f"in NEW: {self.R} does not find {self.W}'s {name} chunks")

    def chunk_only(self, chunk: dict, in_new: bool) -> None:
        name, path = chunk["name"], f"chunks.{chunk['name']}"
        summary = {"type": chunk["type"], "name": name, "required": chunk["required"],
                   "since": chunk["since"]}
        old, new = (None, summary) if in_new else (summary, None)
        if in_new and self.check_since and \
                version_tuple(chunk["since"]) <= version_tuple(self.ov):
            self.add("since_mismatch", f"{path}.since", None, chunk["since"],
                     f"{name} is marked since {chunk['since']}, but {self.ov} (OLD) has no "
                     f"such chunk: give its ChunkKind since=\"{self.nv}\"")
        reader_knows = in_new != self.reverse  # forward, NEW reads: it knows NEW's chunks
        if not chunk["required"]:
            self.add(f"chunk_{self.gone_or_added(in_new)}", path, old, new,
                     f"optional chunk type {chunk['type']:#06x} ({name}): "
                     + (f"{self.R} skips it" if not reader_knows else
                        f"{self.R} does without it"), breaking=False)
            return
        if in_new:
            why = (f"{self.R} refuses a required chunk type it does not know "
                   "(REVISION_MISMATCH)" if self.reverse else
                   f"{self.R} requires {name} chunks, which {self.W} blobs never have")
            if self.same_major:
                why += "; a new required chunk type needs a new major version (or make it "\
                       "optional: required=False)"
            self.add("required_chunk_added", path, old, new, why)
        else:
            why = (f"{self.R} requires {name} chunks, which {self.W} no longer writes"
                   if self.reverse else
                   f"{self.W} blobs have required {name} chunks, a type {self.R} does not "
                   "know (REVISION_MISMATCH)")
            self.add("chunk_removed", path, old, new, why)

    def chunk_pair(self, oc: dict, nc: dict) -> None:
        path = f"chunks.{nc['name']}"
        if oc["required"] != nc["required"]:
            reader, writer = self.rw(oc, nc)
            breaking = reader["required"] and not writer["required"]
            self.add("chunk_required_changed", f"{path}.required", oc["required"],
                     nc["required"],
                     f"{self.R} requires {nc['name']} chunks, {self.W} treats them as "
                     "optional and may leave them out" if breaking else
                     f"{self.R} treats {nc['name']} chunks as optional and knows them",
                     breaking=breaking)
        if oc["since"] != nc["since"]:
            self.add("since_changed", f"{path}.since", oc["since"], nc["since"],
                     f"{nc['name']} chunks are marked since {nc['since']}, were "
                     f"{oc['since']}", breaking=False)
        ref = nc["structure"].get("ref") or nc["name"]
        self.node(oc["structure"], nc["structure"], f"{path}.structure", ref, CHUNK)

    # -- flag words -------------------------------------------------------------------

    def flags(self, old: dict, new: dict, path: str, where: str, strict: bool) -> None:
        for name in sorted(set(old) & set(new)):
            if old[name] != new[name]:
                self.add("flags_renumbered", f"{path}.{name}", old[name], new[name],
                         f"{where} bit {name} is {old[name]:#x} in OLD, {new[name]:#x} in "
                         f"NEW: {self.R} reads {self.W}'s bits as the wrong flags")
        reader, writer = self.rw(old, new)
        unknown = _bits(writer) & ~_bits(reader)
        if unknown:
            names = sorted(n for n, b in writer.items() if int(b) & unknown)
            kind = "flags_added" if self.reverse else "flags_removed"
            why = (f"{where}: {self.W} may set {', '.join(names)} ({unknown:#x}), which "
                   f"{self.R} does not know" + (" and refuses" if strict else ""))
            self.add(kind, path, {n: old[n] for n in names if n in old},
                     {n: new[n] for n in names if n in new}, why, breaking=strict)
        extra = _bits(reader) & ~_bits(writer)
        if extra:
            names = sorted(n for n, b in reader.items() if int(b) & extra)
            kind = "flags_removed" if self.reverse else "flags_added"
            self.add(kind, path, {n: old[n] for n in names if n in old},
                     {n: new[n] for n in names if n in new},
                     f"{where}: {self.R} knows {', '.join(names)}, {self.W} never sets it",
                     breaking=False)

    # -- structures ---------------------------------------------------------------------

    def resolve(self, node: dict, description: dict, path: str) -> list:
        if "ref" in node:
            structure = description["structures"].get(node["ref"])
            if structure is None:
                raise InputError("bad schema", path, f"no structure named {node['ref']!r}")
            return structure["fields"]
        return node["fields"]

    def struct(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        if "ref" in o and "ref" in n:
            key = (o["ref"], n["ref"], ctx)
            if key in self.seen:
                return
            self.seen.add(key)
            where = n["ref"]
            if o["ref"] != n["ref"]:
                self.add("structure_renamed", path, o["ref"], n["ref"],
                         f"{o['ref']} is called {n['ref']} in NEW", breaking=False)
        self.fields(self.resolve(o, self.old, path), self.resolve(n, self.new, path), path,
                    where, ctx)

    def fields(self, of: list, nf: list, path: str, where: str, ctx: Context) -> None:
        n_index = {f["name"]: i for i, f in enumerate(nf)}
        pairs: dict[int, int] = {oi: n_index[f["name"]] for oi, f in enumerate(of)
                                 if f["name"] in n_index}
        taken = set(pairs.values())
        for i in range(min(len(of), len(nf))):  # same place, same type, another name
            if i in pairs or i in taken:
                continue
            if canonical(of[i]["type"], names=False) == canonical(nf[i]["type"], names=False):
                pairs[i] = i
                taken.add(i)
                self.add("field_renamed", f"{path}.fields[{i}]", of[i]["name"], nf[i]["name"],
                         f"{where}.{of[i]['name']} is called {nf[i]['name']} in NEW; the "
                         "bytes are the same", breaking=False)
        order = sorted(pairs)
        new_order = sorted(pairs.values())
        for rank, oi in enumerate(order):
            ni = pairs[oi]
            if new_order[rank] != ni:
                self.add("field_reordered", f"{path}.fields[{ni}]",
                         {"name": of[oi]["name"], "index": oi},
                         {"name": nf[ni]["name"], "index": ni},
                         f"{where}.{nf[ni]['name']} moved from field {oi} to {ni}: "
                         f"{self.R} reads {self.W}'s bytes into the wrong fields")
        removed = [oi for oi in range(len(of)) if oi not in pairs]
        added = [ni for ni in range(len(nf)) if ni not in taken]
        last_o = max(pairs, default=-1)
        last_n = max(taken, default=-1)
        for oi in removed:
            self.extra_field(of[oi], oi, False, oi > last_o, path, where, ctx)
        for ni in added:
            self.extra_field(nf[ni], ni, True, ni > last_n, path, where, ctx)
        for oi in order:
            ni = pairs[oi]
            o_field, n_field = of[oi], nf[ni]
            if o_field.get("since") != n_field.get("since"):
                self.add("since_changed", f"{path}.fields[{ni}]", o_field.get("since"),
                         n_field.get("since"), f"{where}.{n_field['name']} is marked since "
                         f"{n_field.get('since')}, was {o_field.get('since')}", breaking=False)
            self.node(o_field["type"], n_field["type"], f"{path}.fields[{ni}]",
                      f"{where}.{n_field['name']}", FIXED)

    def extra_field(self, f: dict, index: int, in_new: bool, trailing: bool, path: str,
                    where: str, ctx: Context) -> None:
        """A field only one side has: the reader's (expected, never written) or the
        writer's (written, not known)."""
        kind = f"field_{self.gone_or_added(in_new)}"
        name = f"{where}.{f['name']}"
        here = f"{path}.fields[{index}]"
        summary = {"name": f["name"], "type": type_text(f["type"]), "size": f.get("size"),
                   "since": f.get("since")}
        old, new = (None, summary) if in_new else (summary, None)
        reader_side = in_new != self.reverse
        if reader_side:  # the reader expects it; the writer never wrote it
            since = f.get("since") or ""
            base = f"{since.split('.')[0]}.0"
            writer_version = self.ov if in_new else self.nv
            if not trailing:
                why = (f"{self.R} expects {name} among fields {self.W} wrote: every field "
                       "after it is misread")
            elif since == base or not since:
                why = (f"{self.R} reads {name} from every blob, but {self.W} blobs do not have "
                       f"it: append it with Since(\"{self.nv}\", ...) (formats/common.py)")
            elif not ctx.end_known:
                why = (f"{name} (since {since}) is appended where {self.R} cannot tell it is "
                       "absent: only the end of a chunk's structure, of a length-prefixed "
                       "structure or of FileHeader can grow")
            elif self.check_since and version_tuple(since) <= version_tuple(writer_version):
                self.add("since_mismatch", here, old, new,
                         f"{name} is marked since {since}, but {self.W} does not have it")
                return
            else:
                self.add(kind, here, old, new, f"{name} (since {since}) is absent from "
                         f"{self.W} blobs and {self.R} reads it as absent", breaking=False)
                return
        else:  # the writer writes it; the reader does not know it
            if not trailing:
                why = (f"{self.W} writes {name} where {self.R} expects other fields: every "
                       "field after it is misread")
            elif ctx.skips_rest:
                self.add(kind, here, old, new, f"{self.R} skips {name}, which {self.W} "
                         "writes after the fields it knows", breaking=False)
                return
            elif ctx.end_known:
                why = (f"{self.R} parses the structure exactly and refuses the bytes of "
                       f"{name} that {self.W} writes after it")
            else:
                why = (f"{self.R} does not know {name}: it reads {self.W}'s bytes of it as "
                       "whatever comes next")
        self.add(kind, here, old, new, why)

    # -- types --------------------------------------------------------------------------

    def node(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        self.cursor = path
        ot, nt = o["type"], n["type"]
        if ot == nt == "struct":
            self.struct(o, n, path, where, ctx)
            return
        if ot in SCALARS and nt in SCALARS:
            self.scalar(o, n, path, where)
            return
        if ot != nt:
            self.changed(o, n, path, where)
            return
        handler = getattr(self, f"node_{ot}", None)
        if handler is not None:
            handler(o, n, path, where, ctx)
        elif canonical(o, names=False) != canonical(n, names=False):
            self.changed(o, n, path, where)

    def changed(self, o: dict, n: dict, path: str, where: str) -> None:
        sizes = o.get("size"), n.get("size")
        if None not in sizes and sizes[0] != sizes[1]:
            self.add("size_changed", path, sizes[0], sizes[1],
                     f"{where} is {sizes[0]} bytes in OLD ({type_text(o)}), {sizes[1]} in "
                     f"NEW ({type_text(n)})")
        else:
            self.add("type_changed", path, type_text(o), type_text(n),
                     f"{where} is {type_text(o)} in OLD, {type_text(n)} in NEW")

    def scalar(self, o: dict, n: dict, path: str, where: str) -> None:
        ob = o if o["type"] == "int" else o["base"]
        nb = n if n["type"] == "int" else n["base"]
        if ob.get("format") != nb.get("format"):
            self.changed(ob, nb, path, where)
            return
        if o["type"] == n["type"] == "enum":
            self.enum(o, n, path, where)
            return
        if o["type"] == n["type"] == "flags":
            self.flags(o["flags"], n["flags"], path, where,
                       strict=bool(self.rw(o, n)[0].get("strict")))
            return
        if o["type"] == n["type"]:
            return
        reader, writer = self.rw(o, n)
        accepts_all = reader["type"] == "int" or (
            reader["type"] in ("enum", "flags") and not reader.get("strict"))
        if reader["type"] == "enum" and writer["type"] == "flag":
            accepts_all = {0, 1} <= set(reader["values"].values())
        self.add("type_changed", path, type_text(o), type_text(n),
                 f"{where} is {type_text(o)} in OLD, {type_text(n)} in NEW"
                 + ("" if not accepts_all else f"; {self.R} accepts every value"),
                 breaking=not accepts_all)

    def enum(self, o: dict, n: dict, path: str, where: str) -> None:
        ov, nv = o["values"], n["values"]
        for name in sorted(set(ov) & set(nv)):
            if ov[name] != nv[name]:
                self.add("enum_renumbered", f"{path}.values.{name}", ov[name], nv[name],
                         f"{where}: {name} is {ov[name]} in OLD, {nv[name]} in NEW, so "
                         f"{self.R} reads {self.W}'s values as other names or refuses them")
        reader, writer = self.rw(o, n)
        r_values, w_values = set(reader["values"].values()), set(writer["values"].values())
        missing = sorted(w_values - r_values)
        refuses = bool(reader.get("strict"))
        if not writer.get("strict") and refuses:
            self.add("enum_narrowed", path, type_text(o), type_text(n),
                     f"{where}: {self.W} may write any value, {self.R} only its names")
        if missing:
            kind = "enum_widened" if self.reverse else "enum_narrowed"
            w_names = {v: k for k, v in writer["values"].items()}
            lost = {w_names[v]: v for v in missing}
            self.add(kind, f"{path}.values", *((lost, None) if not self.reverse else
                                              (None, lost)),
                     f"{where}: {self.W} may write "
                     + ", ".join(f"{k}={v}" for k, v in lost.items())
                     + f", which {self.R} " + ("refuses (StrictEnum)" if refuses else
                                               "does not name"),
                     breaking=refuses)
        extra = sorted(r_values - w_values)
        if extra:
            r_names = {v: k for k, v in reader["values"].items()}
            more = {r_names[v]: v for v in extra}
            self.add("enum_narrowed" if self.reverse else "enum_widened", f"{path}.values",
                     *((None, more) if not self.reverse else (more, None)),
                     f"{where}: {self.R} knows " + ", ".join(f"{k}={v}" for k, v in
                                                           more.items())
                     + f", which {self.W} never writes", breaking=False)
        o_names = {v: k for k, v in ov.items()}
        n_names = {v: k for k, v in nv.items()}
        for value in sorted(set(o_names) & set(n_names)):
            if o_names[value] != n_names[value] and o_names[value] not in nv \
                    and n_names[value] not in ov:
                self.add("enum_renamed", f"{path}.values", {o_names[value]: value},
                         {n_names[value]: value},
                         f"{where}: value {value} is {o_names[value]} in OLD, "
                         f"{n_names[value]} in NEW; the bytes are the same", breaking=False)

    def node_bytes(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        if o["length"] != n["length"]:
            self.add("size_changed", path, o["length"], n["length"],
                     f"{where} is {type_text(o)} in OLD, {type_text(n)} in NEW")

    def node_string(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        if o["encoding"] != n["encoding"]:
            reader, writer = self.rw(o, n)
            widens = reader["encoding"] == "utf8" and writer["encoding"] == "ascii"
            self.add("type_changed", path, o["encoding"], n["encoding"],
                     f"{where} is {o['encoding']} text in OLD, {n['encoding']} in NEW"
                     + (f"; {self.R} reads every {self.W} string" if widens else ""),
                     breaking=not widens)
        if "prefix" in o and "prefix" in n:
            self.node(o["prefix"], n["prefix"], f"{path}.prefix", f"{where} (length)", FIXED)
        elif "subcon" in o and "subcon" in n:
            self.node(o["subcon"], n["subcon"], f"{path}.subcon", where, FIXED)
        elif (o.get("length"), o.get("padded")) != (n.get("length"), n.get("padded")):
            self.changed(o, n, path, where)

    def node_prefixed(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        self.node(o["prefix"], n["prefix"], f"{path}.prefix", f"{where} (length)", FIXED)
        reader, writer = self.rw(o, n)
        if o.get("exact") != n.get("exact"):
            self.add("exactness_changed", path, o.get("exact"), n.get("exact"),
                     f"{where}: {self.R} " + ("refuses" if reader.get("exact") else "skips")
                     + " bytes after the structure inside the length", breaking=False)
        inner = Context(True, not reader.get("exact", False))
        self.node(o["subcon"], n["subcon"], f"{path}.subcon", where, inner)

    def node_array(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        oc, nc = o["count"], n["count"]
        if isinstance(oc, dict) and isinstance(nc, dict):
            self.node(oc, nc, f"{path}.count", f"{where} (count)", FIXED)
        elif oc != nc:
            self.add("size_changed", f"{path}.count", oc if not isinstance(oc, dict) else
                     type_text(oc), nc if not isinstance(nc, dict) else type_text(nc),
                     f"{where}: the element count is {type_text(o)} in OLD, {type_text(n)} "
                     "in NEW")
        self.node(o["element"], n["element"], f"{path}.element", f"{where}[]", FIXED)

    def node_switch(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        if o["on"] != n["on"]:
            self.add("type_changed", path, o["on"], n["on"],
                     f"{where} switches on {o['on']} in OLD, {n['on']} in NEW")
        reader, writer = self.rw(o, n)
        unknown = sorted(set(writer["cases"]) - set(reader["cases"]))
        if unknown:
            kind = "case_added" if self.reverse else "case_removed"
            self.add(kind, f"{path}.cases", *((unknown, None) if not self.reverse else
                                              (None, unknown)),
                     f"{where}: {self.W} may write case " + ", ".join(unknown)
                     + f", which {self.R} does not know")
        extra = sorted(set(reader["cases"]) - set(writer["cases"]))
        if extra:
            self.add("case_removed" if self.reverse else "case_added", f"{path}.cases",
                     *((None, extra) if not self.reverse else (extra, None)),
                     f"{where}: {self.R} knows case " + ", ".join(extra)
                     + f", which {self.W} never writes", breaking=False)
        for case in [c for c in o["cases"] if c in n["cases"]]:
            self.node(o["cases"][case], n["cases"][case], f"{path}.cases.{case}",
                      f"{where}.{case}", FIXED)
        if canonical(o["default"], names=False) != canonical(n["default"], names=False):
            self.node(o["default"], n["default"], f"{path}.default", f"{where} (default)",
                      FIXED)

    def node_const(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        self.node(o["base"], n["base"], f"{path}.base", where, FIXED)
        if (o.get("value"), o.get("bytes")) != (n.get("value"), n.get("bytes")):
            self.add("const_changed", path, o.get("value", o.get("bytes")),
                     n.get("value", n.get("bytes")),
                     f"{where} must be {o.get('value', o.get('bytes'))} in OLD, "
                     f"{n.get('value', n.get('bytes'))} in NEW: {self.R} refuses "
                     f"{self.W}'s value")

    def node_computed(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        if o["expr"] != n["expr"]:
            self.add("computed_changed", path, o["expr"], n["expr"],
                     f"{where} is computed, not stored: {o['expr']} in OLD, {n['expr']} "
                     "in NEW", breaking=False)

    def node_pass(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        return

    node_error = node_pass
