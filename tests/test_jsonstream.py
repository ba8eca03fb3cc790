"""decode and diff a channel at a time (issue 15, one pass): the same text and the same
changes as the whole-blob path (kept here as the oracle), in memory that grows with the
largest channel, not with the blob."""

from __future__ import annotations

import copy
import itertools
import json
from functools import cache
from pathlib import Path

import pytest
from conftest import FIXTURE_DIR, FIXTURE_KEY, cli, peak

from vmbtool import jsonstream, jsonview
from vmbtool.blob import load_blob
from vmbtool.diff import DEFAULT_IGNORES
from vmbtool.diff import diff as whole_diff
from vmbtool.errors import InputError
from vmbtool.jsonstream import decode_spooled, diff_blobs
from vmbtool.snapshot import save_blob
from vmbtool.tools import run_scenario

FIXTURES = sorted(FIXTURE_DIR.glob("*/*.vmb"))


def key_of(path: Path) -> bytes | None:
    return FIXTURE_KEY if "signed" in path.name else None


def oracle_doc(source: str | bytes, key: bytes | None = None) -> dict:
    """The whole blob's document, as decode made it before (the test's oracle)."""
    return jsonview.decode(load_blob(source, key))


def oracle_text(source: str | bytes, key: bytes | None = None) -> bytes:
    return (json.dumps(oracle_doc(source, key), indent=1) + "\n").encode()


def streamed_text(source: str, key: bytes | None = None) -> bytes:
    with decode_spooled(source, key) as pieces:
        return b"".join(p if isinstance(p, bytes) else (p.seek(0), p.read())[1]
                        for p in pieces)


@cache
def scenario_blob(scenario: str, steps: int, seed: int = 3, minor: int | None = None,
                  note: str | None = None, level: int | None = 3) -> bytes:
    sim = run_scenario(scenario, seed, steps, None)
    extra = {} if minor is None else {"minor": minor}
    return save_blob(sim, level=level, note=note, created_ns=steps, **extra)


def with_channels(doc: dict, count: int, extra_chunks: list | None = None) -> bytes:
    """A blob of `doc`'s first channel `count` times (and these optional chunks)."""
    doc = copy.deepcopy(doc)
    doc["channels"] = [copy.deepcopy(doc["channels"][0]) for _ in range(count)]
    doc["header"]["channel_count"] = count
    doc["extra_chunks"] = extra_chunks or []
    per_channel = [1 + len(ch["rings"]) + len(ch["packets"]) + 3 + ("stats" in ch)
                   for ch in doc["channels"]]
    doc["end"] = {"channel_count": count,
                  "packet_count": sum(len(ch["packets"]) for ch in doc["channels"]),
                  "chunk_count": sum(per_channel) + ("note" in doc) +
                  (doc["scenario"] is not None) + len(doc["extra_chunks"])}
    return jsonview.encode(doc)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


GENERATED = [("storage", 40), ("storage", 150), ("network", 60), ("network", 200),
             ("pipe", 30), ("pipe", 120)]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_decode_of_every_fixture_is_the_whole_decode(path):
    assert streamed_text(str(path), key_of(path)) == oracle_text(str(path), key_of(path))


@pytest.mark.parametrize(("scenario", "steps"), GENERATED)
def test_decode_of_scenario_blobs_is_the_whole_decode(tmp_path, scenario, steps):
    path = write(tmp_path, "a.vmb", scenario_blob(scenario, steps))
    assert streamed_text(path) == oracle_text(path)


@pytest.mark.parametrize("variant", ["1.0", "note", "uncompressed"])
def test_decode_of_other_shapes_is_the_whole_decode(tmp_path, variant):
    data = {"1.0": lambda: scenario_blob("network", 80, minor=0),
            "note": lambda: scenario_blob("pipe", 80, note="a note ünï \"quoted\"\n"),
            "uncompressed": lambda: scenario_blob("storage", 80, level=None)}[variant]()
    path = write(tmp_path, "a.vmb", data)
    assert streamed_text(path) == oracle_text(path)


def test_decode_of_many_channels_and_unknown_chunks_is_the_whole_decode(tmp_path):
    doc = oracle_doc(str(FIXTURE_DIR / "v1.1" / "storage.vmb"))
    extras = [{"after_chunk": 0, "type": 0x7001, "flags": 0, "data": "abcd"},
              {"after_chunk": 30, "type": 0x7002, "flags": 0, "data": ""}]
    path = write(tmp_path, "many.vmb", with_channels(doc, 5, extras))
    text = streamed_text(path)
    assert text == oracle_text(path)
    assert len(json.loads(text)["extra_chunks"]) == 2


def test_decode_of_a_blob_without_channels_is_the_whole_decode(tmp_path):
    doc = oracle_doc(str(FIXTURE_DIR / "v1.1" / "pipe.vmb"))
    doc = {**doc, "channels": [], "header": {**doc["header"], "channel_count": 0},
           "end": {**doc["end"], "channel_count": 0, "packet_count": 0,
                   "chunk_count": ("note" in doc) + (doc["scenario"] is not None)}}
    path = write(tmp_path, "none.vmb", jsonview.encode(doc))
    assert streamed_text(path) == oracle_text(path)


def test_the_decode_command_writes_the_whole_decode(tmp_path):
    blob = FIXTURE_DIR / "v1.1" / "storage-signed.vmb"
    out = tmp_path / "out.json"
    result = cli("decode", blob, "-o", out, "--key-file", FIXTURE_DIR / "v1" / "test-key")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == oracle_text(str(blob), FIXTURE_KEY)
    result = cli("decode", blob, "--key-file", FIXTURE_DIR / "v1" / "test-key")
    assert result.stdout_bytes == oracle_text(str(blob), FIXTURE_KEY)


def damaged_digest(data: bytes) -> bytes:
    """`data` with its END digest made over another header: the error comes last."""
    doc = oracle_doc(data)
    other = jsonview.encode({**doc, "header": {**doc["header"], "created_ns": 12345}})
    size = doc["header"]["header_size"]
    return data[:size] + other[size:]


def test_a_damaged_end_digest_leaves_no_output(tmp_path):
    blob = write(tmp_path, "bad.vmb", damaged_digest(scenario_blob("storage", 150)))
    with pytest.raises(Exception, match="digest"):
        oracle_doc(blob)
    out = tmp_path / "out.json"
    result = cli("decode", blob, "-o", out)
    assert result.exit_code == 1  # a bad blob, as the whole read said
    assert "end.digest" in result.stderr and "digest of the blob does not match" in \
        result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "bad.vmb"]
    result = cli("decode", blob)
    assert result.exit_code == 1 and result.stdout_bytes == b""


@pytest.mark.parametrize("bad_side", ["A", "B"])
def test_diff_of_a_damaged_end_digest_exits_2_without_changes(tmp_path, bad_side):
    good = write(tmp_path, "good.vmb", scenario_blob("storage", 40))
    bad = write(tmp_path, "bad.vmb", damaged_digest(scenario_blob("storage", 150)))
    a, b = (bad, good) if bad_side == "A" else (good, bad)
    result = cli("diff", a, b)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{bad_side} ({bad})" in result.stderr
    assert "digest of the blob does not match" in result.stderr


def test_an_error_of_a_comes_before_an_earlier_error_of_b(tmp_path):
    """A was read whole before B: its late error still wins over B's early one."""
    late = write(tmp_path, "late.vmb", damaged_digest(scenario_blob("storage", 150)))
    early = write(tmp_path, "early.vmb", b"not a blob at all, not at all")
    with pytest.raises(InputError, match="digest") as caught:
        diff_blobs(late, early, None, DEFAULT_IGNORES)
    assert caught.value.what.endswith(f"A ({late})")
    with pytest.raises(InputError) as caught:
        diff_blobs(early, late, None, DEFAULT_IGNORES)
    assert caught.value.what.endswith(f"A ({early})")


def pairs(tmp_path: Path) -> list[tuple[str, str, bytes | None]]:
    unsigned = [p for p in FIXTURES if "signed" not in p.name]
    out = [(str(a), str(b), None) for a, b in itertools.product(unsigned, repeat=2)]
    signed = [p for p in FIXTURES if "signed" in p.name]
    out += [(str(a), str(b), FIXTURE_KEY) for a, b in itertools.product(signed, repeat=2)]
    blobs = {f"{s}-{n}": write(tmp_path, f"{s}-{n}.vmb", scenario_blob(s, n))
             for s, n in GENERATED}
    blobs["network-1.0"] = write(tmp_path, "n10.vmb", scenario_blob("network", 60, minor=0))
    blobs["pipe-note"] = write(tmp_path, "pn.vmb", scenario_blob("pipe", 30, note="hi"))
    doc = oracle_doc(str(FIXTURE_DIR / "v1.1" / "storage.vmb"))
    blobs["storage-x3"] = write(tmp_path, "x3.vmb", with_channels(doc, 3))
    blobs["storage-x5"] = write(tmp_path, "x5.vmb", with_channels(doc, 5, [
        {"after_chunk": 4, "type": 0x7001, "flags": 0, "data": "00"}]))
    out += [(a, b, None) for a, b in itertools.product(blobs.values(), repeat=2)]
    return out


IGNORES = [(), ("channels[0]",), ("channels[*].packets*", "scenario"), ("*.stats",)]


def test_diff_channel_by_channel_is_the_whole_diff(tmp_path):
    docs: dict[tuple[str, bytes | None], dict] = {}

    def doc(path: str, key: bytes | None) -> dict:
        if (path, key) not in docs:
            docs[path, key] = oracle_doc(path, key)
        return docs[path, key]

    checked = 0
    for a, b, key in pairs(tmp_path):
        for extra in IGNORES:
            ignore = DEFAULT_IGNORES + extra
            expect = whole_diff(doc(a, key), doc(b, key), ignore)
            assert diff_blobs(a, b, key, ignore) == expect, (a, b, ignore)
            checked += bool(expect)
    assert checked > 100


def test_channels_on_one_side_only_are_reported_whole(tmp_path):
    doc = oracle_doc(str(FIXTURE_DIR / "v1.1" / "storage.vmb"))
    two, four = (write(tmp_path, f"{n}.vmb", with_channels(doc, n)) for n in (2, 4))
    for a, b in ((two, four), (four, two)):
        for as_json in ((), ("--json",)):
            result = cli("diff", a, b, *as_json)
            assert result.exit_code == 1
            changes = whole_diff(oracle_doc(a), oracle_doc(b))
            paths = [c.path for c in changes]
            assert "channels[2]" in paths and "channels[3]" in paths
            if as_json:
                got = json.loads(result.stdout)["changes"]
                assert [c["path"] for c in got] == paths
                alone = got[paths.index("channels[3]")]
                assert alone["old" if a == four else "new"] == doc["channels"][0]
                assert alone["new" if a == four else "old"] is None
            else:
                assert result.stdout.splitlines() == [str(c) for c in changes]


def test_decode_holds_one_channel_not_the_blob(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "SPOOL_IN_MEMORY", 1)  # the text goes to disk at once
    doc = oracle_doc(scenario_blob("storage", 150))
    one = write(tmp_path, "one.vmb", with_channels(doc, 1))
    many = write(tmp_path, "many.vmb", with_channels(doc, 24))
    streamed_one = peak(lambda: list(_drain(one)))
    streamed_many = peak(lambda: list(_drain(many)))
    whole_many = peak(lambda: oracle_text(many))
    print(f"peaks: streamed 1 channel {streamed_one}, 24 channels {streamed_many}; "
          f"whole 24 channels {whole_many}")
    assert streamed_many < 1.5 * streamed_one
    assert whole_many > 8 * streamed_many


def _drain(path: str):
    with decode_spooled(path, None) as pieces:
        yield len(pieces)


def test_a_spool_that_cannot_be_written_is_an_output_error(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(jsonstream, "SPOOL_IN_MEMORY", 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    out = tmp_path / "out.json"
    result = cli("decode", FIXTURE_DIR / "v1.1" / "storage.vmb", "-o", out)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: cannot write output at {out}: ")
    assert "while spooling it in" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


# -- inspect --json: the document read channel by channel --------------------------------


@pytest.mark.parametrize("with_data", [False, True])
def test_read_doc_is_the_whole_decode_document(with_data):
    """inspect --json's document (jsonstream.read_doc) equals the whole decode of every
    fixture, with and without the rings' data."""
    from vmbtool import jsonview
    from vmbtool.blob import load_blob
    from vmbtool.jsonstream import read_doc

    for path in sorted(FIXTURE_DIR.glob("v*/*.vmb")):
        key = FIXTURE_KEY if path.stem.endswith("-signed") else None
        whole = jsonview.decode(load_blob(str(path), key), with_data=with_data)
        assert read_doc(str(path), key, with_data) == whole, path.name
