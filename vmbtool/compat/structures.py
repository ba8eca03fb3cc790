"""Comparing two structures of a description field by field: fields paired by name (or,
renamed, by place and type), reordered, removed or appended, and what the reader makes
of a field only one side has, as where the structure ends lets it."""

from __future__ import annotations

from vmbtool.compat.findings import canonical
from vmbtool.compat.nodes import FIXED, Context, NodeWalk
from vmbtool.errors import InputError
from vmbtool.formats import version_tuple
from vmbtool.schema import type_text


class StructureWalk(NodeWalk):
    """The walk over types, with structures."""

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
