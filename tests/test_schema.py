"""The format description (vmbtool.schema) and its frozen versions (formats/schemas/).

A grammar change fails here until it is either no change to the description of the
current version or a new version with its own frozen file; every frozen version must
stay readable by the current grammars (vmbtool.compat, forward direction).
"""

from __future__ import annotations

import copy
import json

import construct
import pytest
from click.testing import CliRunner
from construct import Int8ul, Int16ul, Int32ul, Struct

import vmbtool.blob as blob_module
import vmbtool.formats
from vmbtool.cli import main
from vmbtool.compat import compare
from vmbtool.errors import VmbtoolError
from vmbtool.formats import limits
from vmbtool.formats.chunk import CHUNK_TYPES, ChunkKind, ChunkType
from vmbtool.formats.common import Since, StrictEnum
from vmbtool.formats.end import ChannelEnd
from vmbtool.formats.header import FileHeader
from vmbtool.schema import (
    LATER_KEYS,
    SCHEMA_DIR,
    _Deriver,
    current_version,
    describe_format,
    frozen_path,
    frozen_versions,
    load,
    render_text,
    to_json,
    type_text,
    version_tuple,
)

CURRENT = describe_format()
MAJOR, MINOR = current_version()
FROZEN = frozen_versions()


def freeze_command(version: str) -> str:
    return f"vmbtool schema --json > formats/schemas/v{version}.json"


def frozen_mismatch(current: dict, frozen: dict | None) -> str | None:
    """Why the current description and the frozen one of its version disagree."""
    version = current["format"]
    if frozen is None:
        return (f"format {version} has no frozen description. Freeze it:\n    "
                f"{freeze_command(version)}")
    # frames and limits were described after 1.0 and 1.1 were frozen: a frozen file that
    # lacks a section is compared on the sections it has
    current = {key: value for key, value in current.items()
               if key in frozen or key not in LATER_KEYS}
    if to_json(frozen) == to_json(current):
        return None
    report = compare(frozen, current)
    changes = "\n".join(f"  {f.line()}" for f in report.findings + report.notes)
    return (f"the grammars no longer match formats/schemas/v{version}.json:\n{changes}\n"
            f"If format {version} has been released, leave v{version}.json alone: bump "
            "FORMAT_MINOR (compatible change) or FORMAT_MAJOR in formats/__init__.py, mark what "
            "is new with since (ChunkKind(..., since=...), Since(...) in formats/common.py) "
            "and freeze the new version. If it is still in development, freeze it again:\n"
            f"    {freeze_command(version)}")


# -- the frozen files --------------------------------------------------------------------


def test_the_current_version_is_frozen_and_matches_the_grammars():
    version = CURRENT["format"]
    frozen = load(version) if frozen_path(version).is_file() else None
    problem = frozen_mismatch(CURRENT, frozen)
    assert problem is None, problem


def test_the_mismatch_message_says_how_to_freeze():
    changed = copy.deepcopy(CURRENT)
    changed["structures"]["ChannelEnd"]["fields"].pop()
    message = frozen_mismatch(changed, CURRENT)
    assert "field_removed" in message and freeze_command(CURRENT["format"]) in message
    assert "bump FORMAT_MINOR" in message
    assert freeze_command(CURRENT["format"]) in frozen_mismatch(CURRENT, None)


def test_format_1_0_is_frozen():
    assert "1.0" in FROZEN
    assert (SCHEMA_DIR / "v1.0.json").is_file()


@pytest.mark.parametrize("version", FROZEN)
def test_frozen_file_is_a_description_of_its_version(version):
    text = frozen_path(version).read_text(encoding="utf-8")
    doc = load(version)
    assert doc["format"] == version
    assert (doc["major"], doc["minor"]) == version_tuple(version)
    assert text == to_json(doc), "frozen files are written by `vmbtool schema --json`"


@pytest.mark.parametrize("version", FROZEN)
def test_every_frozen_version_is_readable_by_the_current_grammars(version):
    report = compare(load(version), CURRENT)
    if version_tuple(version)[0] != MAJOR:
        pytest.skip(f"{version} is of another major version")
    problems = "\n".join(f"  {f.line()}" for f in report.findings)
    assert report.compatible, (
        f"the current grammars ({CURRENT['format']}) cannot read format {version} blobs:\n"
        f"{problems}\n(`vmbtool compat {version} current` says the same)")


def test_frozen_versions_are_sorted_and_none_is_newer_than_the_code():
    assert FROZEN == sorted(FROZEN, key=version_tuple)
    assert all(version_tuple(v) <= (MAJOR, MINOR) for v in FROZEN), \
        f"a frozen version is newer than this vmbtool's format {MAJOR}.{MINOR}"


def test_package_data_ships_the_frozen_files():
    """The frozen descriptions are package data of `vmbtool.formats.schemas`, a package
    the wheel lists (setuptools warns about a data directory it does not)."""
    import fnmatch
    import tomllib

    config = tomllib.loads((SCHEMA_DIR.parent.parent / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    assert "vmbtool.formats.schemas" in setuptools["packages"]
    patterns = setuptools["package-data"]["vmbtool.formats.schemas"]
    frozen = sorted(p.name for p in SCHEMA_DIR.glob("*.json"))
    assert frozen and all(any(fnmatch.fnmatch(name, pat) for pat in patterns)
                          for name in frozen)


# -- what the description says -------------------------------------------------------------


def test_description_is_deterministic_and_json():
    again = describe_format()
    assert to_json(again) == to_json(CURRENT)
    assert json.loads(to_json(CURRENT)) == CURRENT
    assert list(CURRENT["structures"]) == sorted(CURRENT["structures"])


def test_top_level_shape():
    assert CURRENT["format"] == f"{MAJOR}.{MINOR}"
    assert (CURRENT["major"], CURRENT["minor"]) == (MAJOR, MINOR)
    assert set(CURRENT) == {"format", "major", "minor", "file_header", "chunk_header",
                            "chunks", "structures", "frames", "limits"}


def test_chunks_are_the_registry():
    assert [c["type"] for c in CURRENT["chunks"]] == sorted(CHUNK_TYPES)
    for chunk in CURRENT["chunks"]:
        kind = CHUNK_TYPES[chunk["type"]]
        assert chunk["name"] == kind.name and chunk["required"] == kind.required
        assert chunk["since"] == kind.since
        assert chunk["structure"]["type"] == "struct"
        assert chunk["structure"]["ref"] in CURRENT["structures"]


def test_headers_and_limits():
    fh, ch = CURRENT["file_header"], CURRENT["chunk_header"]
    assert fh["structure"] == {"type": "struct", "ref": "FileHeader", "size": 52}
    assert fh["prefix"] == {"type": "struct", "ref": "HeaderPrefix", "size": 16}
    assert fh["size"] == blob_module.HEADER_SIZE == 56
    assert fh["max_size"] == limits.MAX_HEADER_SIZE
    assert fh["flags"] == {"signed": 1}
    assert [t["name"] for t in fh["trailer"]] == ["header_crc32c"]
    assert ch["structure"]["ref"] == "ChunkHeader" and ch["size"] == 12
    assert ch["max_length"] == limits.MAX_CHUNK_LENGTH and ch["flags"] == {"required": 1}


def fields(name: str) -> dict[str, dict]:
    return {f["name"]: f for f in CURRENT["structures"][name]["fields"]}


def test_structures_follow_the_grammars():
    header = fields("FileHeader")
    assert [f["name"] for f in CURRENT["structures"]["FileHeader"]["fields"]] == \
        [sc.name for sc in FileHeader.subcons]
    assert [(f["offset"], f["size"]) for f in header.values()] == [
        (0, 8), (8, 2), (10, 2), (12, 4), (16, 4), (20, 1), (21, 1), (22, 2), (24, 16),
        (40, 8), (48, 4)]
    assert header["magic"]["type"] == {"type": "const", "bytes": "564d425341564500",
                                       "base": {"type": "bytes", "length": 8, "size": 8},
                                       "size": 8}
    assert header["level"]["type"]["format"] == "i8"
    assert header["compression"]["type"]["values"] == {"none": 0, "zstd": 1}
    assert header["compression"]["type"]["strict"] is True
    assert header["writer_version"]["type"] == {"type": "string", "encoding": "ascii",
                                                "length": 16, "padded": True, "size": 16}
    ring = fields("RingState")
    assert ring["data"]["type"] == {"type": "bytes", "length": "(this['data_pages'] * 4096)",
                                    "size": None}
    assert ring["data"]["offset"] == 25
    channel = fields("ChannelContext")
    assert channel["interface_type"]["type"]["type"] == "guid"
    assert channel["friendly_name"]["type"]["prefix"]["format"] == "u16"
    assert channel["next_transaction_id"]["offset"] is None
    record = fields("PacketRecord")
    assert record["lib_buf"]["type"]["exact"] is True
    assert record["lib_buf"]["type"]["subcon"]["ref"] == "PacketContext"
    assert record["save_buf"]["type"]["exact"] is False
    gpadl = fields("Gpadl")
    assert gpadl["read_only"]["type"]["type"] == "flag"
    assert gpadl["pfns"]["type"]["count"]["format"] == "u32"
    assert gpadl["pfns"]["type"]["element"]["format"] == "u64"


def test_enums_carry_their_value_maps_and_names():
    packet = fields("PacketContext")
    assert packet["type"]["type"]["name"] == "PacketType"
    assert packet["type"]["type"]["values"] == {
        "inband": 6, "transfer_pages": 7, "data_using_gpadl": 8, "gpa_direct": 9,
        "completion": 11}
    assert packet["state"]["type"]["name"] == "PacketState"


def test_switch_keeps_named_cases_only():
    body = fields("ExternalData")["body"]["type"]
    assert body["type"] == "switch" and body["on"] == "this['kind']"
    assert set(body["cases"]) == {"none", "gpa_direct", "transfer_pages", "data_using_gpadl"}
    assert body["default"]["type"] == "error"
    assert body["cases"]["gpa_direct"]["fields"][0]["type"]["element"]["ref"] == "GpaRange"


def test_every_structure_is_a_struct_grammar_of_vmbtool_formats():
    import importlib
    import pkgutil

    import vmbtool.formats

    exported = {name for info in pkgutil.iter_modules(vmbtool.formats.__path__)
                for name, value in vars(importlib.import_module(
                    f"vmbtool.formats.{info.name}")).items()
                if isinstance(value, construct.Struct) and not name.startswith("_")}
    assert set(CURRENT["structures"]) <= exported
    assert {"FileHeader", "HeaderPrefix", "ChunkHeader", "PacketContext", "ExternalData",
            "GuestChannel"} <= set(CURRENT["structures"])


def test_text_rendering_names_every_structure():
    text = "\n".join(render_text(CURRENT))
    for name in CURRENT["structures"]:
        assert f"\n{name} (" in text
    assert "ExternalData.body.gpa_direct (" in text
    assert "0x00ff  end" in text


def test_type_text():
    packet = fields("PacketContext")
    assert type_text(packet["payload"]["type"]) == "bytes, u32 length"
    assert type_text(packet["state"]["type"]).startswith("enum PacketState u8 {allocated=0")
    assert type_text(fields("GpadlTable")["gpadls"]["type"]) == "array[u32 count] of Gpadl"


# -- versions: since on chunk kinds and fields ---------------------------------------------


def test_since_field_parses_as_absent_and_builds_nothing_for_none():
    grammar = Struct("a" / Int8ul, Since("1.1", "b" / Int16ul))
    assert grammar.parse(b"\x01").b is None
    assert grammar.parse(b"\x01\x02\x00").b == 2
    assert grammar.build({"a": 1, "b": None}) == b"\x01"
    assert grammar.build({"a": 1, "b": 2}) == b"\x01\x02\x00"
    compiled = grammar.compile()
    assert compiled.parse(b"\x01").b is None and compiled.parse(b"\x01\x02\x00").b == 2
    assert Struct("a" / Int8ul, "b" / Since("1.1", Int16ul, default=7)).parse(b"\x01").b == 7
    with pytest.raises(ValueError):
        Since("next", Int8ul)


def test_derivation_of_since_fields():
    grammar = Struct("a" / Int8ul, Since("1.1", "b" / Int32ul), Since("1.2", "c" / Int8ul))
    now = _Deriver((1, 2), (1, 2)).node(grammar, "X")
    assert [(f["name"], f["since"], f["offset"]) for f in now["fields"]] == [
        ("a", "1.0", 0), ("b", "1.1", 1), ("c", "1.2", 5)]
    assert now["size"] == 6
    older = _Deriver((1, 2), (1, 0)).node(grammar, "X")
    assert [f["name"] for f in older["fields"]] == ["a"] and older["size"] == 1
    with pytest.raises(VmbtoolError, match="bump FORMAT_MINOR"):
        _Deriver((1, 1), (1, 1)).node(grammar, "X")
    backwards = Struct("a" / Int8ul, Since("1.2", "b" / Int32ul), Since("1.1", "c" / Int8ul))
    with pytest.raises(VmbtoolError, match="must come last"):
        _Deriver((1, 2), (1, 2)).node(backwards, "X")
    with pytest.raises(VmbtoolError, match="nothing deeper"):
        _Deriver((1, 2), (1, 2)).node(construct.Array(2, Since("1.1", Int8ul)), "X")


def test_unknown_constructs_are_described_not_refused():
    node = _Deriver((1, 0), (1, 0)).node(construct.VarInt, "X")
    assert node["type"] == "other" and node["class"] == "VarInt" and node["size"] is None


def test_as_of_is_limited_to_the_current_major():
    with pytest.raises(VmbtoolError):
        describe_format(f"{MAJOR}.{MINOR + 1}")
    with pytest.raises(VmbtoolError):
        describe_format(f"{MAJOR + 1}.0")
    assert describe_format(f"{MAJOR}.0")["format"] == f"{MAJOR}.0"


@pytest.fixture
def next_minor(monkeypatch):
    """The code as if it were the next minor version (what the lead's v1.1 work does)."""
    monkeypatch.setattr(vmbtool.formats, "FORMAT_MINOR", MINOR + 1)
    return f"{MAJOR}.{MINOR + 1}"


STATISTICS = Struct("channels" / Int32ul, "kind" / StrictEnum(Int8ul, full=0, delta=1))


def test_a_new_optional_chunk_in_a_new_minor_is_compatible(monkeypatch, next_minor):
    monkeypatch.setitem(CHUNK_TYPES, 0x20, ChunkKind(0x20, "statistics", STATISTICS, False,
                                                  since=next_minor))
    later = describe_format()
    assert later["format"] == next_minor
    assert [c["name"] for c in later["chunks"] if c["since"] == next_minor] == ["statistics"]
    assert to_json(describe_format(CURRENT["format"])) == to_json(CURRENT)
    for reverse in (False, True):
        report = compare(CURRENT, later, reverse=reverse)
        assert report.compatible, [f.line() for f in report.findings]
        assert [n.kind for n in report.notes] == ["chunk_added"]


def test_a_chunk_added_without_its_since_is_caught(monkeypatch, next_minor):
    monkeypatch.setitem(CHUNK_TYPES, 0x20, ChunkKind(0x20, "statistics", STATISTICS, False))
    report = compare(CURRENT, describe_format())
    assert [f.kind for f in report.findings] == ["since_mismatch"]
    assert 'since="' in report.findings[0].why


def test_a_since_field_appended_to_a_chunk_reads_old_blobs(monkeypatch, next_minor):
    grown = Struct(*ChannelEnd.subcons, Since(next_minor, "statistics_count" / Int32ul))
    kind = CHUNK_TYPES[ChunkType.CHANNEL_END]
    monkeypatch.setitem(CHUNK_TYPES, kind.type, ChunkKind(kind.type, kind.name, grown, True))
    later = describe_format()
    forward = compare(CURRENT, later)
    assert forward.compatible and [n.kind for n in forward.notes] == ["field_added"]
    backward = compare(CURRENT, later, reverse=True)
    assert [f.kind for f in backward.findings] == ["field_added"]
    assert grown.parse(ChannelEnd.build({"gpadl_count": 1, "packet_count": 2,
                                         "incoming_count": 3})).statistics_count is None


def test_cli_schema_json_is_the_description():
    result = CliRunner().invoke(main, ["schema", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout == to_json(CURRENT)
    text = CliRunner().invoke(main, ["schema"])
    assert text.exit_code == 0 and text.stdout.startswith(
        f"vmbtool blob format {CURRENT['format']}")
    older = CliRunner().invoke(main, ["schema", "--json", "--as-of", f"{MAJOR}.0"])
    assert older.exit_code == 0 and json.loads(older.stdout)["format"] == f"{MAJOR}.0"
    bad = CliRunner().invoke(main, ["schema", "--as-of", "latest"])
    assert bad.exit_code == 2
    newer = CliRunner().invoke(main, ["schema", "--as-of", f"{MAJOR}.{MINOR + 1}"])
    assert newer.exit_code == 2  # a usage mistake
    assert newer.stderr.startswith("Error: cannot describe the format at ")


def test_frames_and_limits_are_described_from_formats():
    from vmbtool.formats import frames

    seal, signature = CURRENT["frames"]["seal"], CURRENT["frames"]["signature"]
    assert (seal["since"], seal["size"]) == ("1.1", frames.SealFrame.sizeof())
    assert (signature["since"], signature["size"]) == ("1.0", frames.SignatureFrame.sizeof())
    assert [f["name"] for f in seal["structure"]["fields"]] == \
        [sc.name for sc in frames.SealFrame.subcons]
    assert "seal" not in describe_format("1.0")["frames"]  # 1.0 bodies have no seal
    assert CURRENT["frames"]["skippable"]["magic"] == frames.SKIPPABLE_MAGIC
    assert CURRENT["limits"] == {name.lower(): value for name, value in vars(limits).items()
                                 if name.startswith("MAX_")}
    text = "\n".join(render_text(CURRENT))
    assert "seal (since 1.1, 16 bytes)" in text and "max_chunk_length  33,554,432" in text
