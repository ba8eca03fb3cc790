"""Comparing two types of a description, node by node (integers, enums, flag words,
strings, byte strings, length-prefixed structures, arrays, switches, constants), for the
reader and the writer the direction makes them; the walk's bookkeeping (`NodeWalk`).
Structures are compared by `vmbtool.compat.structures`, the description's top by
`vmbtool.compat.description`."""

from __future__ import annotations

from typing import Any, NamedTuple

from vmbtool.compat.findings import Finding, Report, canonical
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


def _bits(flags: dict) -> int:
    mask = 0
    for bit in flags.values():
        mask |= int(bit)
    return mask


class NodeWalk:
    """One comparison's state and the walk over types; `struct` is the structures'."""

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

    def struct(self, o: dict, n: dict, path: str, where: str, ctx: Context) -> None:
        raise NotImplementedError  # vmbtool.compat.structures.StructureWalk
