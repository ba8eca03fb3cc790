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

from vmbtool.compat.description import compare
from vmbtool.compat.findings import Finding, Report, canonical

__all__ = ["Finding", "Report", "canonical", "compare"]
