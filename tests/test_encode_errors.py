"""`encode`'s errors name the JSON path, what the field takes and the value given.

Systematic classes over a decoded fixture (each list cut to its first element, so every
path is one of its kind): every scalar given a list, every object given an unknown key,
every required key taken away; then a table of values out of type or range, hostile
documents (depth, huge numbers, huge arrays), and extra chunks (placement, and a size
the old quadratic merge could not encode in the test's time).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from conftest import ROOT, cli

from vmbtool.formats.limits import MAX_GPADLS_PER_CHANNEL, MAX_GUESTS, MAX_PACKETS_PER_CHANNEL

FIXTURE = ROOT / "fixtures" / "v1.1" / "network.vmb"
# keys encode does without (decode may leave them out, or write null)
OPTIONAL = {"note", "scenario", "extra_chunks", "end", "header.flags", "header.signed",
            "rings", "gpadls", "packets", "pending_incoming", "channel_end", "stats",
            "guests", "incoming", "outgoing", "data"}


def decoded() -> dict:
    result = cli("decode", FIXTURE)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


FULL = decoded()


def trimmed(doc: Any) -> Any:
    """Every list cut to its first element (one path of each kind)."""
    if isinstance(doc, dict):
        return {k: trimmed(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [trimmed(v) for v in doc[:1]]
    return doc


DOC = trimmed(FULL)
DOC["note"] = "a note"  # (the fixture has none: its path is tried too)
DOC["extra_chunks"] = [{"after_chunk": 1, "type": 0x0F00, "flags": 0, "data": "00"}]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any, Any]]:
    """(path, value, its parent, its key) of every value in `node`."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        here = (f"{path}.{key}" if path else key) if isinstance(key, str) else f"{path}[{key}]"
        yield here, value, node, key
        if isinstance(value, (dict, list)):
            yield from walk(value, here)


def at(doc: Any, path: str) -> tuple[Any, Any]:
    for here, _value, parent, key in walk(doc):
        if here == path:
            return parent, key
    raise KeyError(path)


def edited(path: str, value: Any = None, *, delete: bool = False, base: Any = DOC) -> str:
    doc = copy.deepcopy(base)
    parent, key = at(doc, path)
    if delete:
        del parent[key]
    else:
        parent[key] = value
    return json.dumps(doc)


def encode_error(text: str | bytes, tmp_path: Path, code: int = 1) -> str:
    out = tmp_path / "x.vmb"
    result = cli("encode", "-", "-o", out, input=text)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert not out.exists()
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


SCALARS = [path for path, value, _p, _k in walk(DOC) if not isinstance(value, (dict, list))]
OBJECTS = [""] + [path for path, value, _p, _k in walk(DOC) if isinstance(value, dict)]
REQUIRED = [path for path, _v, parent, key in walk(DOC)
            if isinstance(parent, dict) and key not in OPTIONAL
            and f"{path.rpartition('.')[0]}.{key}".lstrip(".") not in OPTIONAL
            and path != "channels[0].scenario"]


def test_the_classes_cover_the_document():
    assert len(SCALARS) > 100 and len(OBJECTS) > 20 and len(REQUIRED) > 100
    assert "channels[0].packets[0].external.body.ranges[0].byte_offset" in SCALARS
    assert "scenario.guests[0].offer" in OBJECTS


@pytest.mark.parametrize("path", SCALARS)
def test_every_scalar_of_the_wrong_type_is_named_by_its_path(path, tmp_path):
    line = encode_error(edited(path, []), tmp_path)
    assert line.startswith(f"Error: bad JSON at {path}: expected "), line
    assert line.endswith(", got a list of 0"), line


@pytest.mark.parametrize("path", OBJECTS)
def test_an_unknown_key_is_refused_with_its_path(path, tmp_path):
    doc = copy.deepcopy(DOC)
    target = at(doc, path)[0][at(doc, path)[1]] if path else doc
    target["surplus"] = 1
    line = encode_error(json.dumps(doc), tmp_path)
    where = f"{path}.surplus" if path else "surplus"
    assert line.startswith(f"Error: bad JSON at {where}: unknown key (this object takes "), line
    for key in list(target)[:-1]:
        assert key in line


@pytest.mark.parametrize("path", REQUIRED)
def test_a_missing_key_is_named(path, tmp_path):
    line = encode_error(edited(path, delete=True), tmp_path)
    assert line.startswith(f"Error: bad JSON at {path}: missing: expected "), line


P = "channels[0].packets[0]"
VALUES = {
    "negative id": (f"{P}.transaction_id", -1, "expected an integer 0..2**64-1, got -1"),
    "id past u64": (f"{P}.transaction_id", 2**64,
                    "expected an integer 0..2**64-1, got 18446744073709551616"),
    "a fraction": (f"{P}.ring_offset", 1.5, "expected an integer 0..2**32-1, got 1.5"),
    "true for a number": (f"{P}.flags", True, "expected an integer 0..2**32-1, got true"),
    "null for a number": (f"{P}.pointer", None, "expected an integer 0..2**64-1, got null"),
    "a string for a number": ("header.created_ns", "12",
                              'expected an integer 0..2**64-1, got "12"'),
    "level past i8": ("header.level", 128, "expected an integer -128..127, got 128"),
    "10**30": ("extra_chunks[0].after_chunk", 10**30,
               "expected an integer 0..2**32-1, got 1000000000000000000000000000000"),
    "a 60-digit number": ("format.major", 10**60,
                          "expected an integer 0..65535, got a number of about 60 digits"),
    "not a GUID": ("channels[0].offer.interface_type", "not-a-guid",
                   'expected a GUID like 12345678-9abc-def0-1234-56789abcdef0, got '
                   '"not-a-guid"'),
    "a number for a GUID": ("scenario.guests[0].offer.interface_instance", 7,
                            "expected a GUID like 12345678-9abc-def0-1234-56789abcdef0, "
                            "got 7"),
    "not hex": (f"{P}.payload", "zz", 'expected a hex string of at most 33,554,432 bytes, '
                                     'got "zz"'),
    "odd hex": (f"{P}.vsp_state", "abc", "expected a hex string"),
    "unknown packet type": (f"{P}.type", "bogus",
                            "expected one of inband, transfer_pages, data_using_gpadl, "
                            'gpa_direct, completion, got "bogus"'),
    "grammar's state name": (f"{P}.state", "in_ring",
                             "expected one of allocated, backlog, in-ring, "
                             'awaiting-completion, got "in_ring"'),
    "unknown compression": ("header.compression", "lz4",
                            'expected one of none, zstd, got "lz4"'),
    "unknown role": ("channels[0].role", "host",
                     'expected one of server, client, got "host"'),
    "a number for a flag": ("channels[0].gpadls[0].read_only", 1,
                            "expected true or false, got 1"),
    "a string for signed": ("header.signed", "no", 'expected true or false, got "no"'),
    "nested range": (f"{P}.external.body.ranges[0].byte_count", "x",
                     'expected an integer 0..2**32-1, got "x"'),
    "a body of another kind": (f"{P}.external.kind", "gpa_direct",
                               "unknown key (this object takes ranges)",
                               f"{P}.external.body.handle"),
    "writer not ascii": ("header.writer_version", "vmbtool é",
                         'expected ascii text of at most 16 bytes, got "vmbtool é"'),
    "writer too long": ("header.writer_version", "x" * 17,
                        "expected ascii text of at most 16 bytes, got 17 bytes"),
    "routine too long": (f"{P}.completion_routine", "r" * 256,
                         "expected ascii text of at most 255 bytes, got 256 bytes"),
    "friendly name too long": ("channels[0].config.friendly_name", "n" * 65536,
                               "expected utf8 text of at most 65,535 bytes, got 65,536 bytes"),
    "a server in a client state": ("channels[0].state", "opened",
                                   "expected a server state (disabled, enabled, started, "
                                   'stopped, paused, active) or a number, got "opened"'),
    "an unknown state": ("channels[0].state", "weird", 'got "weird"'),
    "a note that is not text": ("note", 5, "got 5"),
    "stats not an object": ("channels[0].stats", [1], "expected an object, got a list of 1"),
    "channels not a list": ("channels", {}, "expected a list, got an object"),
    "ring data of the wrong size": ("channels[0].rings.incoming.data", "00",
                                    "expected 4096 bytes, got 1"),
    "after the last chunk": ("extra_chunks[0].after_chunk", 10**6,
                             "1000000 is past the end: the chunks before the end chunk are "
                             "numbered 0.."),
    "500 levels where a number goes": (f"{P}.transaction_id",
                                       json.loads("[" * 500 + "]" * 500),
                                       "expected an integer 0..2**64-1, got a list of 1"),
}


@pytest.mark.parametrize("case", list(VALUES))
def test_a_value_out_of_type_or_range_names_path_expectation_and_value(case, tmp_path):
    path, value, says, *where = VALUES[case]
    line = encode_error(edited(path, value), tmp_path)
    assert line.startswith(f"Error: bad JSON at {where[0] if where else path}: "), line
    assert says in line, line


def many(n: int, item: Any) -> list:
    return [item] * n


ARRAYS = {
    "GPADLs": ("channels[0].gpadls", MAX_GPADLS_PER_CHANNEL, "GPADLs"),
    "packets": ("channels[0].packets", MAX_PACKETS_PER_CHANNEL, "packets"),
    "pending incoming": ("channels[0].pending_incoming", MAX_PACKETS_PER_CHANNEL,
                         "pending incoming packets"),
    "guests": ("scenario.guests", MAX_GUESTS, "guests"),
}


@pytest.mark.parametrize("case", list(ARRAYS))
def test_an_array_longer_than_a_reader_takes_is_refused_with_its_path(case, tmp_path):
    path, limit, what = ARRAYS[case]
    line = encode_error(edited(path, many(limit + 1, {})), tmp_path)
    assert line == (f"Error: bad JSON at {path}: {limit + 1:,} {what}, more than the "
                    f"{limit:,} a reader takes")


HOSTILE = {
    "arrays 100,000 deep": ("[" * 100_000 + "]" * 100_000,
                            "Error: bad JSON at stdin: arrays or objects nested more than "
                            "about 1,000 deep"),
    "objects 5,000 deep": ('{"a":' * 5000 + "1" + "}" * 5000,
                           "Error: bad JSON at stdin: arrays or objects nested more than "
                           "about 1,000 deep"),
    "a 5,000-digit number": ('{"format": ' + "9" * 5000 + "}",
                             "Error: bad JSON at stdin: not JSON that a reader takes: a "
                             "number with thousands of digits"),
    "not JSON": ('{"format": ', "Error: bad JSON at stdin (line 1, column 12): not JSON: "
                                "Expecting value"),
    "not UTF-8": (b'{"note": "\xff"}', "Error: bad JSON at stdin (offset 10): not JSON: not "
                                       "UTF-8 text"),
    "a blob": (FIXTURE.read_bytes(), "Error: bad JSON at stdin: a vmbtool blob, not JSON: "
                                     "`vmbtool decode` turns a blob into JSON"),
    "a list": ("[1, 2]", "Error: bad JSON at $: expected an object, got a list of 2"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_document_is_one_error_line(case, tmp_path):
    text, says = HOSTILE[case]
    assert encode_error(text, tmp_path) == says


@pytest.mark.parametrize("nesting", [5000, 100])
def test_compat_refuses_a_deep_description_with_its_path(nesting, tmp_path):
    described = json.loads(cli("schema", "--json").stdout)
    inner: Any = 1
    for _ in range(nesting if nesting < 1000 else 0):
        inner = {"a": inner}
    described["structures"]["deep"] = inner
    text = json.dumps(described)
    if nesting >= 1000:
        text = text.replace('"deep": 1', '"deep": ' + '{"a":' * nesting + "1" + "}" * nesting)
    path = tmp_path / "deep.json"
    path.write_text(text)
    for args in (["compat", path, "current"], ["compat", "current", path]):
        result = cli(*args)
        assert result.exit_code == 2  # a description that cannot be read: trouble
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"Error: bad schema at {path}")
        assert "nested more than" in lines[0]
        if nesting < 1000:
            assert f"(structures.deep{'.a' * 63}): nested more than 64 deep" in lines[0]


def extra(after: int, tag: int) -> dict:
    return {"after_chunk": after, "type": 0x0F00 + tag, "flags": 0, "data": f"{tag:02x}"}


def test_extra_chunks_land_where_decode_numbered_them(tmp_path):
    doc = copy.deepcopy(FULL)
    chunks = doc["end"]["chunk_count"]
    extras = [extra(0, 1), extra(3, 2), extra(4, 3), extra(9, 4), extra(chunks + 3, 5)]
    doc["extra_chunks"] = list(reversed(extras))  # (the document's order is not theirs)
    doc["end"]["chunk_count"] += len(extras)
    src, out = tmp_path / "x.json", tmp_path / "x.vmb"
    src.write_text(json.dumps(doc))
    assert cli("encode", src, "-o", out).exit_code == 0
    again = json.loads(cli("decode", out).stdout)
    assert again["extra_chunks"] == extras
    # two at one index follow in the document's order
    doc["extra_chunks"] = [extra(2, 1), extra(2, 2)]
    doc["end"]["chunk_count"] = chunks + 2
    src.write_text(json.dumps(doc))
    assert cli("encode", src, "-o", out).exit_code == 0
    assert json.loads(cli("decode", out).stdout)["extra_chunks"] == [extra(2, 1), extra(3, 2)]


def test_200k_extra_chunks_encode_in_place(tmp_path):
    """The merge is one pass: 200,000 extra chunks all at index 0 encode, in the
    document's order, before every other chunk. Inserting them one by one at the front,
    as encode once did, moved the whole list each time (about 30 s of list moves for
    these, minutes for a million) and reversed them; the timeout is a safety net only."""
    doc = copy.deepcopy(DOC)
    n = 200_000
    doc["extra_chunks"] = [{"after_chunk": 0, "type": 0x0F00, "flags": 0,
                            "data": f"{i:06x}"} for i in range(n)]
    src, out = tmp_path / "many.json", tmp_path / "many.vmb"
    src.write_text(json.dumps(doc))
    run = subprocess.run([sys.executable, "-m", "vmbtool", "encode", str(src), "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    body = zstandard.ZstdDecompressor().decompressobj().decompress(
        out.read_bytes()[doc["header"]["header_size"]:])
    size = 12 + 3  # a chunk header (type, flags, reserved, length, crc) and 3 data bytes
    for i in (0, 1, n // 2, n - 1):
        chunk = body[i * size:(i + 1) * size]
        assert chunk[:8] == bytes.fromhex("000f000003000000") and chunk[12:] == \
            i.to_bytes(3, "big"), i
    assert body[n * size:n * size + 2] != bytes.fromhex("000f")  # then the blob's own
