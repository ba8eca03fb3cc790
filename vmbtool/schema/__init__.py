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

The package: `describe` derives the description from the grammars, `frozen` reads
and checks the frozen ones (and writes the JSON text), `render` puts one into words.
"""

from vmbtool.formats import version_tuple
from vmbtool.schema.describe import (
    _Deriver,
    current_version,
    describe_format,
    describe_frames,
    describe_limits,
    named_constructs,
)
from vmbtool.schema.frozen import (
    FROZEN_NAME,
    LATER_KEYS,
    MAX_DEPTH,
    SCHEMA_DIR,
    TOP_KEYS,
    VERSION,
    check_description,
    frozen_path,
    frozen_versions,
    load,
    to_json,
)
from vmbtool.schema.render import frame_lines, render_text, type_text

__all__ = [
    "FROZEN_NAME", "LATER_KEYS", "MAX_DEPTH", "SCHEMA_DIR", "TOP_KEYS", "VERSION",
    "_Deriver", "check_description", "current_version", "describe_format",
    "describe_frames", "describe_limits", "frame_lines", "frozen_path", "frozen_versions",
    "load", "named_constructs", "render_text", "to_json", "type_text", "version_tuple",
]
