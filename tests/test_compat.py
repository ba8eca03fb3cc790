"""vmbtool.compat on deliberately broken copies of the frozen 1.0 description, and the
`vmbtool compat` command.

Every broken copy is given the next minor version, so what is found is the change itself
and not the (separately tested) "same version, different description" finding.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable

import pytest
from click.testing import Result
from conftest import cli

from vmbtool.compat import compare
from vmbtool.errors import VmbtoolError
from vmbtool.schema import load, to_json

FROZEN = load("1.0")
OUR_ERROR = re.compile(r"^Error: \S.* at \S.*: \S.*$")
U32 = {"type": "int", "format": "u32", "size": 4}


def fields(doc: dict, name: str) -> list[dict]:
    return doc["structures"][name]["fields"]


def chunk(doc: dict, name: str) -> dict:
    return next(c for c in doc["chunks"] if c["name"] == name)


def changed(mutate: Callable[[dict], object], version: str = "1.1") -> dict:
    doc = copy.deepcopy(FROZEN)
    mutate(doc)
    doc["format"] = version
    doc["major"], doc["minor"] = (int(x) for x in version.split("."))
    return doc


def kinds(report) -> list[tuple[str, str]]:
    return [(f.kind, f.path) for f in report.findings]


def field(name: str, since: str = "1.1", offset: int | None = None) -> dict:
    return {"name": name, "offset": offset, "since": since, "size": 4, "type": dict(U32)}


# -- the breaking changes -----------------------------------------------------------------


def remove_field(d):
    fields(d, "PacketContext").pop(3)  # send_flags


def reorder_fields(d):
    ring = fields(d, "RingState")
    ring[1], ring[2] = ring[2], ring[1]  # write_index <-> read_index


def change_size(d):
    fields(d, "ChannelEnd")[1]["type"] = {"type": "int", "format": "u64", "size": 8}


def change_type(d):
    fields(d, "ChannelEnd")[1]["type"] = {"type": "int", "format": "i32", "size": 4}


def change_bytes_length(d):
    fields(d, "BlobEnd")[3]["type"] = {"type": "bytes", "length": 20, "size": 20}


def add_required_chunk(d):
    d["chunks"].append({"type": 0x20, "name": "statistics", "required": True, "since": "1.1",
                        "structure": {"type": "struct", "ref": "ChannelEnd", "size": 12}})


def renumber_chunk(d):
    chunk(d, "ring")["type"] = 0x22


def rename_chunk_type(d):
    chunk(d, "gpadls")["name"] = "gpadl_table"


def narrow_enum(d):
    del fields(d, "PacketContext")[1]["type"]["values"]["backlog"]


def renumber_enum(d):
    fields(d, "RingState")[0]["type"]["values"]["outgoing"] = 2


def remove_flag_bit(d):
    del d["file_header"]["flags"]["signed"]


def renumber_flag_bit(d):
    d["chunk_header"]["flags"]["required"] = 2


def remove_chunk_header_field(d):
    fields(d, "ChunkHeader").pop(2)  # reserved


def insert_file_header_field(d):
    fields(d, "FileHeader").insert(5, field("extra_flags", offset=20))


def append_unmarked_field(d):
    fields(d, "ChannelEnd").append(field("statistics", since="1.0", offset=12))


def append_nested_field(d):
    fields(d, "Incoming").append(field("priority"))  # inside an array: no end to see


def remove_switch_case(d):
    del fields(d, "ExternalData")[1]["type"]["cases"]["gpa_direct"]


def change_const(d):
    fields(d, "HeaderPrefix")[0]["type"]["bytes"] = "564d425341564532"


def narrow_chunk_limit(d):
    d["chunk_header"]["max_length"] = 1 << 20


def change_trailer(d):
    d["file_header"]["trailer"][0]["type"] = {"type": "int", "format": "u64", "size": 8}


def remove_required_chunk(d):
    d["chunks"] = [c for c in d["chunks"] if c["name"] != "pending_incoming"]


def make_chunk_required_optional(d):
    chunk(d, "scenario")["required"] = False


LIB_BUF = "chunks.packet.structure.fields[0].subcon"

BREAKING = [
    ("removed field", remove_field, "field_removed", f"{LIB_BUF}.fields[3]"),
    ("reordered fields", reorder_fields, "field_reordered", "chunks.ring.structure.fields[2]"),
    ("changed size", change_size, "size_changed", "chunks.channel_end.structure.fields[1]"),
    ("changed type", change_type, "type_changed", "chunks.channel_end.structure.fields[1]"),
    ("changed bytes length", change_bytes_length, "size_changed",
     "chunks.end.structure.fields[3]"),
    ("new required chunk", add_required_chunk, "required_chunk_added", "chunks.statistics"),
    ("renumbered chunk type", renumber_chunk, "chunk_renumbered", "chunks.ring.type"),
    ("renamed chunk type", rename_chunk_type, "chunk_renumbered", "chunks.gpadl_table.type"),
    ("narrowed enum", narrow_enum, "enum_narrowed", f"{LIB_BUF}.fields[1].values"),
    ("renumbered enum value", renumber_enum, "enum_renumbered",
     "chunks.ring.structure.fields[0].values.outgoing"),
    ("removed flag bit", remove_flag_bit, "flags_removed", "file_header.flags"),
    ("renumbered flag bit", renumber_flag_bit, "flags_renumbered",
     "chunk_header.flags.required"),
    ("chunk header layout", remove_chunk_header_field, "field_removed",
     "chunk_header.structure.fields[2]"),
    ("file header layout", insert_file_header_field, "field_added",
     "file_header.structure.fields[5]"),
    ("appended field without Since", append_unmarked_field, "field_added",
     "chunks.channel_end.structure.fields[3]"),
    ("appended field in an array element", append_nested_field, "field_added",
     "chunks.pending_incoming.structure.fields[0].element.fields[6]"),
    ("removed switch case", remove_switch_case, "case_removed", f"{LIB_BUF}.fields[8]."
     "fields[1].cases"),
    ("changed magic", change_const, "const_changed", "file_header.prefix.fields[0]"),
    ("narrowed chunk limit", narrow_chunk_limit, "limit_narrowed", "chunk_header.max_length"),
    ("changed header trailer", change_trailer, "header_layout_changed", "file_header.trailer"),
    ("removed required chunk", remove_required_chunk, "chunk_removed",
     "chunks.pending_incoming"),
]


@pytest.mark.parametrize("mutate, kind, path",
                         [pytest.param(m, k, p, id=label) for label, m, k, p in BREAKING])
def test_each_breaking_change_is_found(mutate, kind, path):
    report = compare(FROZEN, changed(mutate))
    assert not report.compatible
    assert (kind, path) in kinds(report), kinds(report)
    finding = next(f for f in report.findings if (f.kind, f.path) == (kind, path))
    assert finding.why and (finding.old, finding.new) != (None, None)
    json.dumps(finding.as_json())


def test_a_finding_names_what_changed():
    report = compare(FROZEN, changed(remove_field))
    (finding,) = report.findings
    assert finding.old == {"name": "send_flags", "type": "u32", "size": 4, "since": "1.0"}
    assert finding.new is None
    assert "PacketContext.send_flags" in finding.why
    assert finding.as_json() == {"kind": "field_removed", "path": f"{LIB_BUF}.fields[3]",
                                 "old": finding.old, "new": None, "why": finding.why}
    json.dumps(finding.as_json())


def test_required_chunk_without_major_bump_says_so():
    (finding,) = compare(FROZEN, changed(add_required_chunk)).findings
    assert "new major version" in finding.why


def test_a_major_bump_is_always_incompatible():
    report = compare(FROZEN, changed(lambda d: None, "2.0"))
    assert kinds(report) == [("major_changed", "format")]
    with_chunk = compare(FROZEN, changed(add_required_chunk, "2.0"))
    assert "new major version" not in with_chunk.findings[-1].why


def test_same_version_different_description_is_an_unversioned_change():
    same = changed(lambda d: chunk(d, "end").update(since="1.0"), "1.0")
    assert to_json(same) == to_json(FROZEN)
    assert compare(FROZEN, same).compatible
    optional = changed(lambda d: d["chunks"].append(
        {"type": 0x20, "name": "statistics", "required": False, "since": "1.0",
         "structure": {"type": "struct", "ref": "ChannelEnd", "size": 12}}), "1.0")
    report = compare(FROZEN, optional)
    assert kinds(report) == [("unversioned_change", "format")]
    assert "vmbtool schema --json > formats/schemas/v1.1.json" in report.findings[0].why
    assert "vmbtool schema --json > formats/schemas/v1.0.json" in report.findings[0].why


def test_since_must_be_later_than_old():
    unmarked = changed(lambda d: d["chunks"].append(
        {"type": 0x20, "name": "statistics", "required": False, "since": "1.0",
         "structure": {"type": "struct", "ref": "ChannelEnd", "size": 12}}))
    report = compare(FROZEN, unmarked)
    assert kinds(report) == [("since_mismatch", "chunks.statistics.since")]
    assert 'since="1.1"' in report.findings[0].why
    early = changed(lambda d: fields(d, "ChannelEnd").append(
        field("statistics_count", since="1.0", offset=12)), "1.2")
    early["structures"]["ChannelEnd"]["fields"][-1]["since"] = "1.1"
    report = compare(changed(lambda d: None, "1.1"), early)
    assert kinds(report) == [("since_mismatch", "chunks.channel_end.structure.fields[3]")]


def test_made_optional_breaks_old_readers_only():
    assert compare(FROZEN, changed(make_chunk_required_optional)).compatible
    report = compare(FROZEN, changed(make_chunk_required_optional), reverse=True)
    assert kinds(report) == [("chunk_required_changed", "chunks.scenario.required")]


def test_a_renamed_structure_is_followed_by_reference():
    def rename(d):
        d["structures"]["ChannelClose"] = {**d["structures"].pop("ChannelEnd"),
                                           "name": "ChannelClose"}
        chunk(d, "channel_end")["structure"]["ref"] = "ChannelClose"

    report = compare(FROZEN, changed(rename))
    assert report.compatible
    assert [n.kind for n in report.notes] == ["structure_renamed"]


# -- identical, and the compatible changes ----------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
def test_identical_descriptions_are_compatible(reverse):
    report = compare(FROZEN, copy.deepcopy(FROZEN), reverse=reverse)
    assert report.compatible and not report.findings and not report.notes


def add_optional_chunk(d):
    d["chunks"].append({"type": 0x20, "name": "statistics", "required": False, "since": "1.1",
                        "structure": {"type": "struct", "ref": "ChannelEnd", "size": 12}})


def append_since_field(d):
    fields(d, "ChannelEnd").append(field("statistics_count", offset=12))


def append_header_field(d):
    fields(d, "FileHeader").append(field("upgraded_from", offset=52))


def rename_field(d):
    fields(d, "ChannelEnd")[2]["name"] = "pending_count"


def widen_enum(d):
    fields(d, "PacketContext")[1]["type"]["values"]["cancelled"] = 4


def add_flag_bit(d):
    d["file_header"]["flags"]["upgraded"] = 2


def add_switch_case(d):
    fields(d, "ExternalData")[1]["type"]["cases"]["mdl"] = {"type": "pass", "size": 0}


# (label, change, compatible forward, compatible reverse, the reverse finding)
DIRECTIONAL = [
    ("optional chunk", add_optional_chunk, True, True, None),
    ("Since field appended to a chunk", append_since_field, True, False,
     ("field_added", "chunks.channel_end.structure.fields[3]")),
    ("field appended to the file header", append_header_field, True, True, None),
    ("renamed field", rename_field, True, True, None),
    ("widened enum", widen_enum, True, False, ("enum_widened", f"{LIB_BUF}.fields[1].values")),
    ("new flag bit", add_flag_bit, True, False, ("flags_added", "file_header.flags")),
    ("new switch case", add_switch_case, True, False,
     ("case_added", f"{LIB_BUF}.fields[8].fields[1].cases")),
    ("new required chunk", add_required_chunk, False, False,
     ("required_chunk_added", "chunks.statistics")),
    ("narrowed enum", narrow_enum, False, True, None),
    ("removed flag bit", remove_flag_bit, False, True, None),
]


@pytest.mark.parametrize("mutate, forward, backward, finding",
                         [pytest.param(m, f, b, x, id=label)
                          for label, m, f, b, x in DIRECTIONAL])
def test_both_directions(mutate, forward, backward, finding):
    new = changed(mutate)
    ahead = compare(FROZEN, new)
    assert ahead.compatible is forward, kinds(ahead)
    back = compare(FROZEN, new, reverse=True)
    assert back.compatible is backward, kinds(back)
    if finding:
        assert finding in kinds(back)
    assert ahead.notes or back.notes or not (forward and backward)


# -- the command ---------------------------------------------------------------------------


def no_traceback(result: Result) -> None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}")


def error_line(result: Result) -> str:
    no_traceback(result)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)  # trouble
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and OUR_ERROR.match(lines[0]), result.stderr
    assert result.stdout == ""
    return lines[0]


@pytest.fixture
def broken(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(to_json(changed(narrow_enum)))
    return path


def test_cli_compatible_exits_0():
    result = cli("compat", "1.0", "current")
    no_traceback(result)
    assert result.exit_code == 0, result.output
    assert "compatible" in result.stderr and "Error" not in result.stderr


def test_cli_incompatible_exits_1_and_lists_findings(broken):
    result = cli("compat", "1.0", broken)
    no_traceback(result)
    assert result.exit_code == 1
    assert result.stdout.startswith("enum_narrowed at chunks.packet.structure.")
    assert "not compatible: 1 finding\n" in result.stderr


def test_cli_reverse(broken):
    result = cli("compat", "1.0", broken, "--reverse")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("note: enum_narrowed at ")
    widened = broken.with_name("widened.json")
    widened.write_text(to_json(changed(widen_enum)))
    assert cli("compat", "1.0", widened).exit_code == 0
    assert cli("compat", "1.0", widened, "--reverse").exit_code == 1


def test_cli_json(broken):
    result = cli("compat", broken, "1.0", "--json")  # the 1.1 copy as OLD: 1.0 is NEW
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["compatible"] is True and doc["direction"] == "forward"
    assert doc["old"] == "1.1" and doc["new"] == "1.0"
    assert [n["kind"] for n in doc["notes"]] == ["version_order", "enum_widened"]
    result = cli("compat", "1.0", broken, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["compatible"] is False
    assert set(doc["findings"][0]) == {"kind", "path", "old", "new", "why"}


def test_cli_files_and_frozen_versions_are_the_same(tmp_path):
    path = tmp_path / "v1.0.json"
    path.write_text(to_json(FROZEN))
    assert cli("compat", path, "1.0").exit_code == 0
    assert cli("compat", "current", "current").exit_code == 0


@pytest.mark.parametrize("content, where, why", [
    (None, "missing.json", "No such file or directory"),
    ("{", "bad.json (line 1)", "not JSON"),
    ("[]", "bad.json", "not a JSON object"),
    ('{"format": "1.0"}', "bad.json", "no 'major'"),
    ('{"format": "one", "major": 1, "minor": 0, "file_header": {}, "chunk_header": {}, '
     '"chunks": [], "structures": {}}', "bad.json (format)", "is not a <major>.<minor>"),
])
def test_cli_bad_inputs_are_one_error_line(tmp_path, content, where, why):
    path = tmp_path / where.split(" ")[0]
    if content is not None:
        path.write_text(content)
    line = error_line(cli("compat", path, "current"))
    assert f" at {tmp_path / where}: " in line and why in line


def test_cli_malformed_description_is_one_error_line(tmp_path):
    damaged = copy.deepcopy(FROZEN)
    del chunk(damaged, "ring")["structure"]
    path = tmp_path / "damaged.json"
    path.write_text(to_json(damaged))
    line = error_line(cli("compat", path, "1.0"))
    assert line.startswith("Error: bad schema at chunks.ring: malformed description")
    assert "KeyError" not in line and "'structure'" in line  # Python's names are not shown
    dangling = copy.deepcopy(FROZEN)
    del dangling["structures"]["Gpadl"]
    path.write_text(to_json(dangling))
    line = error_line(cli("compat", "1.0", path))
    assert "no structure named 'Gpadl'" in line


def test_cli_unknown_frozen_version():
    line = error_line(cli("compat", "9.9", "current"))
    assert line.startswith("Error: cannot read schema at 9.9: no frozen description v9.9.json")


def test_cli_usage_error():
    result = cli("compat", "1.0")
    assert result.exit_code == 2


def test_compare_raises_our_error_on_garbage():
    with pytest.raises(VmbtoolError):
        compare(FROZEN, {**FROZEN, "chunks": [{"type": 1}]})


# -- the frames and limits sections (described after 1.0 and 1.1 were frozen) ------------


def test_the_frozen_versions_read_with_the_current_description_in_both_directions():
    """Adding frames and limits to the description leaves both frozen versions
    compatible with the current code, either way round."""
    from vmbtool.schema import describe_format

    current = describe_format()
    assert "frames" in current and "limits" in current
    for version in ("1.0", "1.1"):
        frozen = load(version)
        assert "frames" not in frozen and "limits" not in frozen
        for reverse in (False, True):
            report = compare(frozen, current, reverse=reverse)
            assert report.compatible, [f.line() for f in report.findings]
            assert "unversioned_change" not in [n.kind for n in report.notes]


def _current() -> dict:
    from vmbtool.schema import describe_format

    return describe_format()


def test_a_changed_seal_frame_is_a_finding():
    old = _current()
    new = copy.deepcopy(old)
    new["format"], new["minor"] = "1.2", 2
    fields = new["frames"]["seal"]["structure"]["fields"]
    tag = next(f for f in fields if f["name"] == "tag")
    tag["type"]["bytes"] = b"SEAm".hex()
    report = compare(old, new)
    assert [(f.kind, f.path) for f in report.findings] == [("frame_changed", "frames.seal")]


def test_a_frame_the_reader_does_not_know_is_a_finding_one_it_knows_is_a_note():
    old = _current()
    new = copy.deepcopy(old)
    new["format"], new["minor"] = "1.2", 2
    new["frames"]["trailer"] = copy.deepcopy(new["frames"]["seal"])
    assert [f.kind for f in compare(old, new, reverse=True).findings] == ["frame_added"]
    forward = compare(old, new)
    assert forward.compatible and [n.kind for n in forward.notes] == ["frame_added"]


def test_a_narrowed_limit_is_a_finding_a_widened_one_a_note():
    old = _current()
    new = copy.deepcopy(old)
    new["format"], new["minor"] = "1.2", 2
    new["limits"]["max_guests"] //= 2
    new["limits"]["max_skipped_chunks"] *= 2
    forward = compare(old, new)
    assert [(f.kind, f.path) for f in forward.findings] == [
        ("limit_narrowed", "limits.max_guests")]
    assert [(n.kind, n.path) for n in forward.notes] == [
        ("limit_widened", "limits.max_skipped_chunks")]
    backward = compare(old, new, reverse=True)
    assert [(f.kind, f.path) for f in backward.findings] == [
        ("limit_narrowed", "limits.max_skipped_chunks")]


def test_a_changed_frame_under_the_same_version_is_an_unversioned_change():
    old = _current()
    new = copy.deepcopy(old)
    new["frames"]["signature"]["structure"]["fields"][-1]["size"] = 64
    kinds = [f.kind for f in compare(old, new).findings]
    assert "frame_changed" in kinds and "unversioned_change" in kinds
