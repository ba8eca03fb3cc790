"""Frozen descriptions: `formats/schemas/v<major>.<minor>.json`, written by
`vmbtool schema --json > ...` (`to_json`), read back and checked by `load`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import vmbtool.formats
from vmbtool import jsonread
from vmbtool.errors import InputError
from vmbtool.formats import version_tuple
from vmbtool.schema.describe import describe_format

SCHEMA_DIR = Path(vmbtool.formats.__file__).with_name("schemas")
VERSION = re.compile(r"^(\d+)\.(\d+)$")
FROZEN_NAME = re.compile(r"^v(\d+)\.(\d+)\.json$")
MAX_DEPTH = 64  # a description's nesting that compat follows (the frozen ones: 12)
TOP_KEYS = ("format", "major", "minor", "file_header", "chunk_header", "chunks", "structures")
# sections described since the frozen 1.0 and 1.1 descriptions were written: a description
# may lack them (compat then has nothing of them to compare)
LATER_KEYS = ("frames", "limits")


def to_json(description: dict) -> str:
    """Stable text: sorted keys, two-space indent, a final newline."""
    return json.dumps(description, indent=2, sort_keys=True) + "\n"


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
