"""The description for people: one line a type (`type_text`), the framing, the chunk
table, the frames and limits, and a table of every structure (`render_text`)."""

from __future__ import annotations

from typing import Any


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
