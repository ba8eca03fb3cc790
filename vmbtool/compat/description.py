"""Comparing two descriptions from the top: the format version, the file header, the
chunk header and the chunk types; `compare`, the entry (see `vmbtool.compat`)."""

from __future__ import annotations

from vmbtool.compat.findings import Report, canonical
from vmbtool.compat.nodes import CHUNK, FIXED, HEADER
from vmbtool.compat.structures import StructureWalk
from vmbtool.errors import InputError
from vmbtool.formats import version_tuple
from vmbtool.schema import type_text


def compare(old: dict, new: dict, reverse: bool = False) -> Report:
    """Every change between two descriptions that breaks the reader (see `vmbtool.compat`)."""
    comparer = Comparer(old, new, reverse)
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


class Comparer(StructureWalk):
    """The whole walk: the description's top, its chunk types, their structures."""

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
