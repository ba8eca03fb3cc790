"""FORMAT.md against the grammars: a grammar change without a doc change fails here.

Every `### <Name>` section of FORMAT.md documents one construct Struct (a grammar exported
by a vmbtool.formats module, or an anonymous Struct reached from one by a dotted path
such as `ExternalData.body.gpa_direct`) with one `| offset | size | field | meaning |`
table; `#### vmbtool.<module>.<NAME>` sections document the scenarios' struct.Struct
layouts the same way. The chunk type table must match vmbtool.chunks.CHUNK_TYPES.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import construct
import pytest

import vmbtool.formats
from vmbtool import blob as blob_module
from vmbtool.formats import FORMAT_MAJOR, FORMAT_MINOR, frames, limits
from vmbtool.formats.chunk import CHUNK_TYPES
from vmbtool.formats.common import StrictEnum
from vmbtool.formats.limits import MAX_CHUNK_LENGTH
from vmbtool.sim.config import ClientState, ServerState

FORMAT_MD = Path(vmbtool.formats.__file__).with_name("FORMAT.md")
STRUCT_COLUMNS = ["offset", "size", "field", "meaning"]
CHUNK_COLUMNS = ["type", "name", "required", "grammar"]
ENUM_COLUMNS = ["grammar field", "values"]
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$")
# the scenarios' opaque state records FORMAT.md must lay out (SaveBufs and VSP/VSC state)
SCENARIO_LAYOUTS = [
    "vmbtool.scenarios.storage.TRANSFER_STATE",
    "vmbtool.scenarios.storage.HOST_REQUEST",
    "vmbtool.scenarios.storage.GUEST_REQUEST",
    "vmbtool.scenarios.network.RECEIVE_STATE",
]


# -- reading FORMAT.md ----------------------------------------------------------------


def cells(line: str) -> list[str]:
    return [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]


def tables(lines: list[str]) -> Iterator[tuple[list[str], list[list[str]]]]:
    """(header, rows) of every markdown table in `lines`, separator rows dropped."""
    block: list[str] = []
    for line in [*lines, ""]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if block:
            header, *rows = (cells(row) for row in block)
            yield header, [r for r in rows if not all(set(c) <= set("-: ") for c in r)]
            block = []


def sections(text: str) -> dict[str, tuple[int, list[str]]]:
    """Heading -> (level, lines) for every `###` and `####` heading."""
    found: dict[str, tuple[int, list[str]]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = HEADING.match(line)
        if match:
            level, title = len(match.group(1)), match.group(2)
            if level in (3, 4):
                assert title not in found, f"FORMAT.md has two sections named {title!r}"
                current = []
                found[title] = (level, current)
            else:
                current = None
            continue
        if current is not None:
            current.append(line)
    return found


def structure_table(name: str, lines: list[str]) -> list[list[str]]:
    found = [rows for header, rows in tables(lines) if header == STRUCT_COLUMNS]
    assert len(found) == 1, (f"FORMAT.md section {name!r} needs exactly one "
                             f"| offset | size | field | meaning | table, has {len(found)}")
    for row in found[0]:
        assert len(row) == 4, f"FORMAT.md section {name!r}: malformed row {row}"
    return found[0]


def find_table(text: str, columns: list[str]) -> list[list[str]]:
    found = [rows for header, rows in tables(text.splitlines()) if header == columns]
    assert len(found) == 1, f"FORMAT.md needs exactly one table with columns {columns}"
    return found[0]


DOC = FORMAT_MD.read_text(encoding="utf-8")
SECTIONS = sections(DOC)
GRAMMAR_SECTIONS = sorted(name for name, (level, _) in SECTIONS.items() if level == 3)
LAYOUT_SECTIONS = sorted(name for name, (level, _) in SECTIONS.items() if level == 4)


# -- the grammars ---------------------------------------------------------------------


def exported_structs() -> dict[str, construct.Struct]:
    """Every public Struct at module level in vmbtool.formats, by its Python name."""
    found: dict[str, construct.Struct] = {}
    for info in pkgutil.iter_modules(vmbtool.formats.__path__):
        module = importlib.import_module(f"vmbtool.formats.{info.name}")
        for name, value in vars(module).items():
            if name.startswith("_") or not isinstance(value, construct.Struct):
                continue
            assert found.setdefault(name, value) is value, f"two Structs named {name}"
    return found


EXPORTED = exported_structs()
EXPORTED_NAMES = {id(grammar): name for name, grammar in EXPORTED.items()}


def unwrap(obj: construct.Construct) -> construct.Construct:
    while isinstance(obj, construct.Renamed):
        obj = obj.subcon
    return obj


def resolve(path: str) -> construct.Construct:
    """`Grammar` or `Grammar.field[.case...]`: a field of a Struct, a case of a Switch."""
    first, *rest = path.split(".")
    assert first in EXPORTED, f"{first!r} is not a Struct exported by vmbtool.formats"
    obj: construct.Construct = EXPORTED[first]
    for part in rest:
        obj = unwrap(obj)
        if isinstance(obj, construct.Struct):
            by_name = {sc.name: sc for sc in obj.subcons}
            assert part in by_name, f"{path}: no field {part!r}"
            obj = by_name[part]
        elif isinstance(obj, construct.Switch):
            assert part in obj.cases, f"{path}: no case {part!r}"
            obj = obj.cases[part]
        else:
            raise AssertionError(f"{path}: cannot descend into {type(obj).__name__}")
    return unwrap(obj)


def anonymous_structs(obj: construct.Construct, path: str,
                      seen: set[int]) -> Iterator[tuple[str, construct.Struct]]:
    """Structs inside a grammar that no module exports, by their dotted path (from the
    nearest exported grammar: the path does not depend on which grammar is walked first)."""
    obj = unwrap(obj)
    if id(obj) in seen:
        return
    seen.add(id(obj))
    path = EXPORTED_NAMES.get(id(obj), path)
    if isinstance(obj, construct.Struct):
        for sc in obj.subcons:
            inner = unwrap(sc)
            if isinstance(inner, construct.Struct) and not any(
                    inner is s for s in EXPORTED.values()):
                yield f"{path}.{sc.name}", inner
            yield from anonymous_structs(inner, f"{path}.{sc.name}", seen)
    elif isinstance(obj, construct.Switch):
        for case, sub in obj.cases.items():
            if not isinstance(case, str):
                continue  # numeric aliases of the named cases (for compiled builders)
            inner = unwrap(sub)
            if isinstance(inner, construct.Struct) and not any(
                    inner is s for s in EXPORTED.values()):
                yield f"{path}.{case}", inner
            yield from anonymous_structs(inner, f"{path}.{case}", seen)
    elif isinstance(obj, construct.FocusedSeq | construct.Sequence):
        for sc in obj.subcons:
            yield from anonymous_structs(sc, path, seen)
    elif isinstance(obj, construct.Subconstruct):
        yield from anonymous_structs(obj.subcon, path, seen)


def fixed_size(sc: construct.Construct) -> int | None:
    try:
        return sc.sizeof()
    except (construct.SizeofError, KeyError, AttributeError):
        return None


def expected_rows(grammar: construct.Struct) -> list[list[str]]:
    """[offset, size, field] as FORMAT.md must give them."""
    rows, offset = [], 0
    for sc in grammar.subcons:
        size = fixed_size(sc)
        rows.append([str(offset) if offset is not None else "var",
                     str(size) if size is not None else "var", sc.name])
        offset = offset + size if offset is not None and size is not None else None
    return rows


# -- the tests ------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAMMAR_SECTIONS)
def test_section_names_a_struct_grammar(name):
    assert isinstance(resolve(name), construct.Struct), f"### {name} is not a Struct"


@pytest.mark.parametrize("name", GRAMMAR_SECTIONS)
def test_table_fields_are_the_grammar_fields_in_order(name):
    grammar = resolve(name)
    rows = structure_table(name, SECTIONS[name][1])
    assert [row[2] for row in rows] == [sc.name for sc in grammar.subcons]


@pytest.mark.parametrize("name", GRAMMAR_SECTIONS)
def test_table_offsets_and_sizes_match_the_grammar(name):
    grammar = resolve(name)
    rows = structure_table(name, SECTIONS[name][1])
    documented = [[row[0], row[1], row[2]] for row in rows]
    assert documented == expected_rows(grammar)
    for row, sc in zip(rows, grammar.subcons, strict=True):
        size = fixed_size(sc)
        if size is not None:
            assert int(row[1]) == sc.sizeof(), f"{name}.{sc.name}"


def test_every_exported_struct_grammar_is_documented():
    documented = {id(resolve(name)) for name in GRAMMAR_SECTIONS}
    missing = [name for name, grammar in EXPORTED.items() if id(grammar) not in documented]
    assert not missing, f"FORMAT.md has no ### section for {missing}"
    for expected in ("FileHeader", "HeaderPrefix", "ChunkHeader", "ChannelContext",
                     "RingState", "Gpadl", "GpadlTable", "PacketContext", "PacketRecord",
                     "Incoming", "PendingIncoming", "GuestChannel", "ScenarioState",
                     "ChannelEnd", "BlobEnd", "ExternalData", "GpaRange", "ByteRange"):
        assert expected in EXPORTED and expected in GRAMMAR_SECTIONS


def test_every_anonymous_struct_inside_a_grammar_is_documented():
    seen: set[int] = set()
    nested = [path for name, grammar in EXPORTED.items()
              for path, _ in anonymous_structs(grammar, name, seen)]
    assert nested, "expected the ExternalData body cases"
    missing = [path for path in nested if path not in GRAMMAR_SECTIONS]
    assert not missing, f"FORMAT.md has no ### section for {missing}"


def test_chunk_type_table_matches_the_registry():
    rows = find_table(DOC, CHUNK_COLUMNS)
    by_object = {id(g): name for name, g in EXPORTED.items()}
    documented = {}
    for number, name, required, grammar in rows:
        assert required in ("yes", "no"), f"chunk {number}: required is yes or no"
        assert int(number, 0) not in documented, f"chunk {number} listed twice"
        documented[int(number, 0)] = (name, required == "yes", grammar)
    registry = {int(t): (k.name, k.required, by_object.get(id(k.grammar)))
                for t, k in CHUNK_TYPES.items()}
    assert documented == registry


def parse_enum_values(text: str) -> dict[int, str]:
    pairs = re.findall(r"(\d+)(?: \(0x[0-9A-Fa-f]+\))? (\w+)", text)
    return {int(value): name for value, name in pairs}


def test_enum_table_matches_the_grammars():
    rows = find_table(DOC, ENUM_COLUMNS)
    documented = {}
    for fields, values in rows:
        for path in re.sub(r"\s*\(\w+\)", "", fields).split(","):
            documented[path.strip()] = parse_enum_values(values)
    grammar_enums = {f"{name}.{sc.name}": unwrap(sc) for name, grammar in EXPORTED.items()
                     for sc in grammar.subcons if isinstance(unwrap(sc), StrictEnum)}
    assert set(documented) == set(grammar_enums)
    for path, enum in grammar_enums.items():
        assert documented[path] == {v: str(n) for v, n in enum.decmapping.items()}, path


def test_channel_state_table_matches_the_simulation():
    columns = ["value", "ServerState (role server)", "ClientState (role client)"]
    rows = find_table(DOC, columns)
    server = {int(v): s.split(":")[0].strip() for v, s, _ in rows}
    client = {int(v): c.split(":")[0].strip() for v, _, c in rows}
    assert server == {s.value: s.name.lower() for s in ServerState}
    assert client == {c.value: c.name.lower() for c in ClientState}


def struct_fields(layout: struct.Struct) -> list[int]:
    fmt = layout.format.lstrip("<>=!@")
    sizes = []
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", fmt):
        if code in "sp":
            sizes.append(int(count or 1))
        else:
            sizes.extend([struct.calcsize("<" + code)] * int(count or 1))
    return sizes


def test_every_scenario_layout_is_documented():
    assert sorted(SCENARIO_LAYOUTS) == LAYOUT_SECTIONS


@pytest.mark.parametrize("name", LAYOUT_SECTIONS)
def test_scenario_layout_matches_its_struct(name):
    module_name, attr = name.rsplit(".", 1)
    layout = getattr(importlib.import_module(module_name), attr)
    assert isinstance(layout, struct.Struct), name
    rows = structure_table(name, SECTIONS[name][1])
    sizes = struct_fields(layout)
    assert [int(row[1]) for row in rows] == sizes
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    assert [int(row[0]) for row in rows] == offsets
    assert sum(sizes) == layout.size


def test_constants_the_doc_states():
    assert blob_module.HEADER_SIZE == 56 and "56" in DOC
    assert MAX_CHUNK_LENGTH == 32 * 1024 * 1024 and f"{MAX_CHUNK_LENGTH:,}" in DOC
    assert limits.MAX_HEADER_SIZE == 4096 and "56..4096" in DOC
    assert limits.MAX_WINDOW_SIZE == 8 * 1024 * 1024 and "8 MiB" in DOC
    for magic in (frames.SIGNATURE_MAGIC, frames.SEAL_MAGIC, frames.ZSTD_MAGIC):
        assert f"{magic:#010X}".replace("0X", "0x") in DOC
    assert frames.SignatureFrame.sizeof() == 44 and "44-byte" in DOC
    assert frames.SealFrame.sizeof() == 16 and "16-byte" in DOC
    assert f"{FORMAT_MAJOR}.{FORMAT_MINOR}" in DOC.splitlines()[0]


def test_limits_table_names_every_reader_cap_with_its_value():
    """Each cap of formats/limits.py is named in FORMAT.md's Limits table, in a row that
    states its value (as `33,554,432`, say)."""
    rows = [row for header, rows in tables(DOC.splitlines())
            if header == ["limit", "value", "where"] for row in rows]
    caps = {name: value for name, value in vars(limits).items() if name.startswith("MAX_")}
    assert caps, "formats/limits.py has no caps"
    for name, value in caps.items():
        named = [row for row in rows if name in row[1]]
        assert named, f"FORMAT.md's Limits table does not name {name}"
        assert any(f"{value:,}" in row[1] for row in named), \
            f"FORMAT.md's Limits row for {name} does not state {value:,}"


def test_the_parser_sees_a_wrong_field_name():
    """The checks above can fail: a renamed field in a copy of the doc is caught."""
    broken = DOC.replace("| 1 | 4 | write_index |", "| 1 | 4 | write_idx |")
    assert broken != DOC
    rows = structure_table("RingState", sections(broken)["RingState"][1])
    assert [r[2] for r in rows] != [sc.name for sc in resolve("RingState").subcons]
