"""The command line through click's CliRunner: exit code, stdout and stderr each checked.

Conventions under test (STYLE.md, README): exit 0 success / yes, 1 no / failed, 2 usage
error; failures are exactly one `Error: <what> at <where>: <why>` line on stderr and
never a traceback (`--debug` adds one); `-` means stdin/stdout.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path

import pytest
from click.testing import Result
from conftest import cli

from vmbtool import __version__
from vmbtool.formats.chunk import ChunkType
from vmbtool.formats.header import MAGIC

COMMANDS = ("run", "save", "inspect", "diff", "validate", "restore", "decode", "encode")
SCENARIOS = ("storage", "network", "pipe")
KEY = b"VMBTOOL-TEST-KEY:zebra-umbrella-4217"
OTHER_KEY = b"VMBTOOL-WRONG-KEY:walrus-teapot-9931"
SEED, STEPS = 5, 60
# click's own usage errors read "Error: Invalid value for ..."; ours read "... at ...: ..."
OUR_ERROR = re.compile(r"^Error: \S.* at \S.*: \S.*$")
HEXDUMP_ROW = re.compile(r"^ {6}([0-9a-f]{8})  ((?:[0-9a-f]{2} )*[0-9a-f]{2}) +(.*)$")


def no_crash(result: Result) -> None:
    """CliRunner catches what escapes the command; only SystemExit is a normal ending."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(*result.exc_info))
        pytest.fail(f"uncaught exception (a traceback for the user):\n{tb}")


def ok(*args: object, **kw) -> Result:
    result = cli(*args, **kw)
    no_crash(result)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    assert "Error:" not in result.stderr
    return result


def error_line(result: Result, code: int = 1) -> str:
    """The one `Error:` line of a failed command (and no traceback)."""
    no_crash(result)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    if code == 1:
        assert OUR_ERROR.match(lines[0]), lines[0]
    return lines[0]


def fails(*args: object, code: int = 1, **kw) -> str:
    return error_line(cli(*args, **kw), code)


def doc_of(path: object, *extra: object, **kw) -> dict:
    return json.loads(ok("inspect", path, "--json", *extra, **kw).stdout)


def save(path: Path, *args: object, **kw) -> Path:
    ok("save", *args, "-o", path, **kw)
    return path


def flip_middle_byte(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def assert_key_hidden(result: Result) -> None:
    for text in (result.stdout, result.stderr):
        assert KEY.decode() not in text
        assert KEY.hex() not in text
        assert OTHER_KEY.decode() not in text


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> dict[str, Path]:
    """One blob per scenario plus uncompressed and signed storage blobs (same state)."""
    d = tmp_path_factory.mktemp("blobs")
    (d / "key").write_bytes(KEY)
    (d / "other.key").write_bytes(OTHER_KEY)
    out = {"key": d / "key", "other_key": d / "other.key"}
    for name in SCENARIOS:
        out[name] = save(d / f"{name}.vmb", "--scenario", name, "--seed", SEED,
                         "--steps", STEPS)
    out["plain"] = save(d / "plain.vmb", "--seed", SEED, "--steps", STEPS, "--no-compress")
    out["signed"] = save(d / "signed.vmb", "--seed", SEED, "--steps", STEPS,
                         "--key-file", out["key"])
    return out


# -- top level ---------------------------------------------------------------------


def test_version():
    result = ok("--version")
    assert result.stdout.strip() == f"vmbtool, version {__version__}"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_command(flag):
    result = ok(flag)
    assert result.stdout.startswith("Usage: ")
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", result.stdout, re.M), name
    assert "--debug" in result.stdout


@pytest.mark.parametrize("command, options", [
    ("run", ["--scenario", "--seed", "--steps", "--pause-at"]),
    ("save", ["--scenario", "--seed", "--steps", "--pause-at", "--chunk-size", "--level",
              "--no-compress", "--key-file", "--output"]),
    ("inspect", ["--json", "--packets", "--ring", "--gpadls", "--hexdump", "--filter",
                 "--key-file"]),
    ("diff", ["--json", "--ignore", "--key-file"]),
    ("validate", ["--json", "--key-file"]),
    ("restore", ["--run-steps", "--resave", "--level", "--json", "--key-file"]),
    ("decode", ["--output", "--key-file"]),
    ("encode", ["--output", "--key-file"]),
])
def test_command_help(command, options):
    result = ok(command, "--help")
    assert result.stdout.startswith(f"Usage: main {command} ")  # CliRunner's prog name
    for option in options:
        assert option in result.stdout, option


def test_no_command_is_a_usage_message():
    result = cli()
    no_crash(result)
    assert result.exit_code == 2  # click 8.2+: a group called without a command
    assert result.stderr.startswith("Usage: ")
    assert "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error():
    assert "No such command" in fails("frobnicate", code=2)


def test_debug_adds_a_traceback(tmp_path):
    result = cli("--debug", "inspect", tmp_path / "missing.vmb")
    assert result.exit_code == 2  # a missing input is trouble
    assert "Traceback" in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert lines == [f"Error: cannot read blob at {tmp_path / 'missing.vmb'}: "
                     "No such file or directory"]


# -- run ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_run_each_scenario(scenario):
    result = ok("run", "--scenario", scenario, "--seed", 3, "--steps", 40)
    lines = result.stdout.splitlines()
    assert lines[0] == f"scenario {scenario}, seed 3, 40 steps"
    assert any(f"({scenario}-0)" in line for line in lines)
    assert re.fullmatch(r"  \d+ events; last: 39:.*", lines[-1]), lines[-1]
    assert result.stderr == ""
    # deterministic: the same seed gives the same transcript
    assert ok("run", "--scenario", scenario, "--seed", 3, "--steps", 40).stdout == \
        result.stdout


def test_run_seed_and_steps_matter():
    one = ok("run", "--seed", 1, "--steps", 30).stdout
    assert ok("run", "--seed", 2, "--steps", 30).stdout != one
    assert ok("run", "--seed", 1, "--steps", 31).stdout != one


def test_run_defaults():
    assert ok("run").stdout.splitlines()[0] == "scenario storage, seed 1, 100 steps"


def test_run_pause_at():
    result = ok("run", "--steps", 30, "--pause-at", 10)
    assert result.stdout.splitlines()[0] == "scenario storage, seed 1, 30 steps"


# -- save --------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_save_each_scenario(tmp_path, scenario):
    path = tmp_path / "out.vmb"
    result = ok("save", "--scenario", scenario, "--seed", 9, "--steps", 30, "-o", path)
    assert result.stdout == ""
    doc = doc_of(path)
    size = path.stat().st_size
    channels = len(doc["channels"])
    assert result.stderr.strip() == (f"saved {scenario} seed 9 at step 30: {channels} "
                                     f"channel{'s' * (channels != 1)}, {size} bytes -> {path}")
    assert path.read_bytes().startswith(MAGIC)
    assert doc["scenario"]["scenario"] == scenario
    assert doc["scenario"]["seed"] == 9
    assert doc["scenario"]["steps_taken"] == 30
    assert doc["header"]["channel_count"] == len(doc["channels"]) >= 1
    assert all(ch["state"] == "paused" for ch in doc["channels"])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".vmbtool-tmp")]


def test_save_defaults(tmp_path):
    doc = doc_of(save(tmp_path / "d.vmb"))
    assert (doc["scenario"]["scenario"], doc["scenario"]["seed"],
            doc["scenario"]["steps_taken"]) == ("storage", 1, 100)
    assert (doc["header"]["compression"], doc["header"]["level"]) == ("zstd", 3)
    assert doc["header"]["signed"] is False


def test_save_seed_and_steps(tmp_path):
    a = save(tmp_path / "a.vmb", "--seed", 7, "--steps", 20)
    b = save(tmp_path / "b.vmb", "--seed", 8, "--steps", 20)
    c = save(tmp_path / "c.vmb", "--seed", 7, "--steps", 21)
    again = save(tmp_path / "again.vmb", "--seed", 7, "--steps", 20)
    assert doc_of(b)["scenario"]["seed"] == 8
    assert doc_of(c)["scenario"]["steps_taken"] == 21
    ok("diff", a, again)
    assert cli("diff", a, b).exit_code == 1
    assert cli("diff", a, c).exit_code == 1


def test_save_pause_at_matches_restore_and_run(tmp_path):
    a = save(tmp_path / "a.vmb", "--seed", 4, "--steps", 30)
    b = tmp_path / "b.vmb"
    ok("restore", a, "--run-steps", 20, "--resave", b)
    c = save(tmp_path / "c.vmb", "--seed", 4, "--steps", 50, "--pause-at", 30)
    ok("diff", b, c)
    # --pause-at is not a no-op: storage completes outstanding requests BUSY on pause
    plain = save(tmp_path / "plain.vmb", "--seed", 4, "--steps", 50)
    assert cli("diff", plain, c).exit_code == 1


def test_save_pause_at_past_steps_is_a_usage_error(tmp_path):
    # An option value that contradicts another is a usage error: exit 2 (STYLE.md).
    line = fails("save", "--steps", 10, "--pause-at", 11, "-o", tmp_path / "x.vmb", code=2)
    assert "--pause-at" in line
    assert not (tmp_path / "x.vmb").exists()


def test_save_chunk_size_does_not_change_the_state(blobs, tmp_path):
    small = save(tmp_path / "small.vmb", "--scenario", "network", "--seed", SEED,
                 "--steps", STEPS, "--chunk-size", 9000)
    ok("diff", small, blobs["network"])


def test_save_chunk_size_too_small_fails_and_writes_nothing(tmp_path):
    out = tmp_path / "x.vmb"
    line = fails("save", "--chunk-size", 64, "-o", out)
    assert line.startswith("Error: save failed at channels[0].")
    assert "STATUS_BUFFER_TOO_SMALL" in line
    assert list(tmp_path.iterdir()) == []


def test_save_level(blobs, tmp_path):
    high = save(tmp_path / "l19.vmb", "--seed", SEED, "--steps", STEPS, "--level", 19)
    doc = doc_of(high)
    assert (doc["header"]["compression"], doc["header"]["level"]) == ("zstd", 19)
    result = cli("diff", blobs["storage"], high)
    assert result.exit_code == 1
    assert result.stdout == "header.level: 3 → 19\n"


def test_save_no_compress(blobs):
    doc = doc_of(blobs["plain"])
    assert (doc["header"]["compression"], doc["header"]["level"]) == ("none", 0)
    assert blobs["plain"].stat().st_size > blobs["storage"].stat().st_size
    # the raw body starts right after the header with the first channel chunk; the
    # compressed one with a zstd frame (magic 0xFD2FB528)
    body = blobs["plain"].read_bytes()[doc["header"]["header_size"]:]
    assert int.from_bytes(body[:2], "little") == ChunkType.CHANNEL
    body = blobs["storage"].read_bytes()[doc["header"]["header_size"]:]
    assert body[:4] == b"\x28\xb5\x2f\xfd"
    changes = json.loads(cli("diff", blobs["storage"], blobs["plain"], "--json").stdout)
    assert {c["path"] for c in changes["changes"]} == {"header.compression", "header.level"}


def test_save_key_file_signs(blobs):
    doc = doc_of(blobs["signed"], "--key-file", blobs["key"])
    assert doc["header"]["signed"] is True
    assert doc["header"]["flags"] & 1
    assert KEY not in blobs["signed"].read_bytes()


def test_save_to_stdout(blobs):
    result = ok("save", "--seed", SEED, "--steps", STEPS, "-o", "-")
    assert result.stderr == ""
    assert result.stdout_bytes.startswith(MAGIC)
    assert json.loads(ok("inspect", "-", "--json", input=result.stdout_bytes).stdout)[
        "scenario"]["steps_taken"] == STEPS
    # the same state as the file written with -o FILE
    ok("validate", "-", input=result.stdout_bytes)


def test_save_needs_output():
    assert "-o" in fails("save", code=2)


@pytest.mark.parametrize("args", [
    ["--steps", "-1"], ["--steps", "many"], ["--seed", "-1"], ["--scenario", "bogus"],
    ["--level", "0"], ["--level", "20"], ["--chunk-size", "0"], ["--pause-at", "-1"],
    ["--bogus-option"],
])
def test_save_bad_option_values(tmp_path, args):
    line = fails("save", *args, "-o", tmp_path / "x.vmb", code=2)
    assert line.startswith("Error: ")
    assert not (tmp_path / "x.vmb").exists()


@pytest.mark.parametrize("args", [
    ["run", "--steps", "-5"], ["run", "--scenario", "nope"],
    ["restore", "x.vmb", "--run-steps", "-1"], ["restore", "x.vmb", "--level", "99"],
    ["inspect"], ["diff", "only-one.vmb"], ["validate"], ["decode"], ["encode", "x.json"],
])
def test_other_usage_errors(args):
    assert fails(*args, code=2).startswith("Error: ")


# -- inspect -----------------------------------------------------------------------


def test_inspect_summary(blobs):
    result = ok("inspect", blobs["network"])
    doc = doc_of(blobs["network"])
    out = result.stdout
    assert out.startswith(f"format 1.1, written by vmbtool {__version__} at ")
    assert "zstd level 3, unsigned" in out.splitlines()[0]
    assert f"scenario network, seed {SEED}, {STEPS} steps taken" in out
    for index, ch in enumerate(doc["channels"]):
        assert f'channel {index} "{ch["config"]["friendly_name"]}": {ch["state"]}' in out
        assert f"  packets: {len(ch['packets'])} (" in out
    assert out.count("  incoming [") == out.count("  outgoing [") == len(doc["channels"])
    assert "    txid " not in out  # packet list only on request
    assert result.stderr == ""


def test_inspect_json_schema(blobs):
    doc = doc_of(blobs["storage"])
    assert list(doc) == ["format", "header", "channels", "scenario", "extra_chunks", "end"]
    assert doc["format"] == {"major": 1, "minor": 1}
    ring = doc["channels"][0]["rings"]["outgoing"]
    assert "data" not in ring  # only with --hexdump
    assert set(ring) == {"write_index", "read_index", "interrupt_mask", "pending_send_size",
                         "feature_bits", "data_pages"}
    assert "data" in doc_of(blobs["storage"], "--hexdump")["channels"][0]["rings"]["outgoing"]


def test_inspect_packets(blobs):
    doc = doc_of(blobs["network"])
    out = ok("inspect", blobs["network"], "--packets").stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("    txid ")]
    expected = [(str(p["transaction_id"]), p["state"], p["type"])
                for ch in doc["channels"] for p in ch["packets"]]
    assert [(r[1], r[2], r[3]) for r in rows] == expected
    assert len(rows) > 100


def test_inspect_ring(blobs):
    doc = doc_of(blobs["storage"])
    out = ok("inspect", blobs["storage"], "--ring").stdout
    for direction in ("incoming", "outgoing"):
        r = doc["channels"][0]["rings"][direction]
        assert (f"    {direction}: interrupt_mask {r['interrupt_mask']}, pending_send_size "
                f"{r['pending_send_size']}, feature_bits {r['feature_bits']:#x}, "
                f"{r['data_pages']} data pages") in out.splitlines()
        used = (r["write_index"] - r["read_index"]) % (r["data_pages"] * 4096)
        assert f"read {r['read_index']} write {r['write_index']} used {used} " in out


def test_inspect_gpadls(blobs):
    doc = doc_of(blobs["network"])
    out = ok("inspect", blobs["network"], "--gpadls").stdout
    lines = [line for line in out.splitlines() if line.startswith("    GPADL ")]
    gpadls = [g for ch in doc["channels"] for g in ch["gpadls"]]
    assert len(lines) == len(gpadls) >= 1
    for line, g in zip(lines, gpadls, strict=True):
        assert line.startswith(f"    GPADL {g['handle']:#x}: {len(g['pfns'])} pages from PFN "
                               f"{g['pfns'][0]:#x}")
    assert "GPADL " not in ok("inspect", blobs["network"]).stdout.replace("GPADLs:", "")


def test_inspect_hexdump_shows_each_rings_unread_bytes(blobs):
    doc = doc_of(blobs["network"], "--hexdump")
    out = ok("inspect", blobs["network"], "--hexdump").stdout
    shown = bytearray()
    rows = 0
    for line in out.splitlines():
        m = HEXDUMP_ROW.match(line)
        if m:
            shown += bytes.fromhex(m.group(2).replace(" ", ""))
            rows += 1
    expected = bytearray()
    expected_rows = 0
    for ch in doc["channels"]:
        for direction in ("incoming", "outgoing"):
            r = ch["rings"][direction]
            data = bytes.fromhex(r["data"])
            used = (r["write_index"] - r["read_index"]) % len(data)
            expected += bytes(data[(r["read_index"] + i) % len(data)] for i in range(used))
            expected_rows += math.ceil(used / 16)
    assert len(expected) > 0
    assert rows == expected_rows
    assert shown == expected


def test_inspect_filter_channel(blobs):
    doc = doc_of(blobs["network"])
    out = ok("inspect", blobs["network"], "--filter", "channel=1").stdout
    assert 'channel 1 "' in out
    assert 'channel 0 "' not in out and 'channel 2 "' not in out
    rows = [line for line in out.splitlines() if line.startswith("    txid ")]
    assert len(rows) == len(doc["channels"][1]["packets"])


def test_inspect_filter_txid(blobs):
    doc = doc_of(blobs["network"])
    txid = doc["channels"][0]["packets"][0]["transaction_id"]
    out = ok("inspect", blobs["network"], "--filter", f"txid={txid}").stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("    txid ")]
    expected = sum(p["transaction_id"] == txid for ch in doc["channels"] for p in ch["packets"])
    assert len(rows) == expected >= 1
    assert all(r[1] == str(txid) for r in rows)


def test_inspect_filter_state_backlog(blobs):
    doc = doc_of(blobs["network"])
    out = ok("inspect", blobs["network"], "--filter", "state=backlog").stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("    txid ")]
    expected = sum(p["state"] == "backlog" for ch in doc["channels"] for p in ch["packets"])
    assert len(rows) == expected > 0
    assert {r[2] for r in rows} == {"backlog"}


def test_inspect_filter_combined_and_type(blobs):
    doc = doc_of(blobs["network"])
    out = ok("inspect", blobs["network"], "--filter", "channel=0,state=in-ring").stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("    txid ")]
    assert len(rows) == sum(p["state"] == "in-ring" for p in doc["channels"][0]["packets"]) > 0
    out = ok("inspect", blobs["network"], "--filter", "type=completion").stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("    txid ")]
    assert len(rows) == sum(p["type"] == "completion"
                            for ch in doc["channels"] for p in ch["packets"]) > 0
    assert {r[3] for r in rows} == {"completion"}


def test_inspect_filter_nothing_matches(blobs):
    out = ok("inspect", blobs["storage"], "--filter", "txid=999999").stdout
    assert "    no packet matches the filter" in out.splitlines()


def test_inspect_json_filter(blobs):
    full = doc_of(blobs["network"])
    doc = doc_of(blobs["network"], "--filter", "state=backlog")
    for whole, ch in zip(full["channels"], doc["channels"], strict=True):
        assert ch["packets"] == [p for p in whole["packets"] if p["state"] == "backlog"]
    # a channel filter leaves the other channels out, as the text does
    doc = doc_of(blobs["network"], "--filter", "channel=2")
    assert [len(ch["packets"]) for ch in doc["channels"]] == \
        [len(full["channels"][2]["packets"])]
    assert doc["filter"] == {"channel": [2]}


@pytest.mark.parametrize("expr", ["bogus=1", "channel", "channel=", "=3", "txid=1,colour=red",
                                  "state"])
def test_inspect_bad_filter(blobs, expr):
    line = fails("inspect", blobs["storage"], "--filter", expr, code=2)
    assert line.startswith("Error: bad filter at --filter ")
    assert "channel, txid, state, type" in line


def test_inspect_stdin(blobs):
    data = blobs["storage"].read_bytes()
    assert ok("inspect", "-", input=data).stdout.splitlines()[1:] == \
        ok("inspect", blobs["storage"]).stdout.splitlines()[1:]


def test_inspect_newer_major_format(blobs, tmp_path):
    data = bytearray(blobs["storage"].read_bytes())
    data[8:12] = struct.pack("<HH", 2, 0)  # format 2.0; nothing else fixed up
    path = tmp_path / "v2.vmb"
    path.write_bytes(bytes(data))
    result = cli("inspect", path)
    line = error_line(result)
    assert result.stdout.startswith("format 2.0 ")
    assert "cannot be decoded" in result.stdout
    assert "reads format 1.1" in result.stdout
    assert "2.0" in line and "header.format_major" in line
    result = cli("inspect", path, "--json")
    error_line(result)
    assert json.loads(result.stdout) == {"format": {"major": 2, "minor": 0}, "decoded": False}
    # validate gives the same answer as a verdict
    result = cli("validate", path)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{path}: INVALID at header.format_major")


# -- errors common to every reader ---------------------------------------------------


@pytest.fixture()
def damaged(blobs, tmp_path) -> dict[str, Path]:
    data = blobs["storage"].read_bytes()
    out = {"missing": tmp_path / "missing.vmb", "empty": tmp_path / "empty.vmb"}
    out["empty"].write_bytes(b"")
    for name, cut in (("short_header", 30), ("truncated", len(data) // 2),
                      ("last_byte_missing", len(data) - 1)):
        out[name] = tmp_path / f"{name}.vmb"
        out[name].write_bytes(data[:cut])
    out["truncated_raw"] = tmp_path / "truncated_raw.vmb"
    out["truncated_raw"].write_bytes(blobs["plain"].read_bytes()[:-10])
    out["flipped"] = flip_middle_byte(blobs["storage"], tmp_path / "flipped.vmb")
    out["flipped_raw"] = flip_middle_byte(blobs["plain"], tmp_path / "flipped_raw.vmb")
    out["not_a_blob"] = tmp_path / "text.vmb"
    out["not_a_blob"].write_text("hello, this is not a blob at all\n" * 4)
    return out


EXPECTED_ERRORS = {
    "missing": "Error: cannot read blob at {path}: No such file or directory",
    "empty": "Error: bad blob at header (offset 0): empty file",
    "short_header": "Error: bad blob at header (offset 0): truncated: file is 30 bytes",
    "truncated": "truncated",
    "last_byte_missing": "truncated",
    "truncated_raw": "truncated",
    "flipped": "Error: bad blob at body",
    "flipped_raw": "checksum mismatch",
    "not_a_blob": "Error: bad blob at header",
}


@pytest.mark.parametrize("case", list(EXPECTED_ERRORS))
@pytest.mark.parametrize("command", ["inspect", "decode", "restore"])
def test_damaged_blob_is_one_error_line(damaged, case, command):
    path = damaged[case]
    result = cli(command, path)
    line = error_line(result, code=2 if case == "missing" else 1)  # missing: trouble
    expected = EXPECTED_ERRORS[case].format(path=path)
    assert expected in line, line
    if command != "inspect":
        assert result.stdout == ""


def test_flipped_uncompressed_byte_names_the_chunk(damaged):
    line = fails("inspect", damaged["flipped_raw"])
    assert re.fullmatch(r"Error: bad blob at chunk@\d+\.crc32c: checksum mismatch", line), line


@pytest.mark.parametrize("case", [c for c in EXPECTED_ERRORS if c != "missing"])
def test_damaged_blob_is_an_invalid_verdict(damaged, case):  # missing: test_inputs
    path = damaged[case]
    result = cli("validate", path)
    no_crash(result)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{path}: INVALID at ")
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr.strip() == "0 valid, 1 invalid"


def test_diff_with_a_damaged_blob(blobs, damaged):
    # diff cannot answer: trouble (2), not "different" (1); the error names the side
    line = fails("diff", blobs["storage"], damaged["flipped"], code=2)
    assert line.startswith(f"Error: bad blob B ({damaged['flipped']}) at body")
    line = fails("diff", damaged["missing"], blobs["storage"], code=2)
    assert line == f"Error: cannot read blob A at {damaged['missing']}: No such file or directory"


# -- keys ----------------------------------------------------------------------------


def test_signed_blob_with_key(blobs):
    for command in (["inspect"], ["decode"], ["validate"], ["restore", "--run-steps", "5"]):
        result = ok(*command, blobs["signed"], "--key-file", blobs["key"])
        assert_key_hidden(result)


@pytest.mark.parametrize("command", ["inspect", "decode", "restore"])
def test_wrong_key(blobs, command):
    result = cli(command, blobs["signed"], "--key-file", blobs["other_key"])
    line = error_line(result)
    assert line.startswith("Error: bad blob at signature (offset ")
    assert "HMAC does not match" in line
    assert_key_hidden(result)


@pytest.mark.parametrize("command", ["inspect", "decode", "restore"])
def test_signed_blob_without_key(blobs, command):
    line = fails(command, blobs["signed"])
    assert line == ("Error: bad blob at signature: blob is signed: give its key "
                    "(--key-file) to verify and read it")


@pytest.mark.parametrize("command", ["restore", "validate"])
def test_unsigned_blob_with_key(blobs, command):
    """A key refuses an unsigned blob where it authenticates (a stripped signature
    must not pass); the views show an unsigned blob as unsigned (tests/test_keys.py)."""
    result = cli(command, blobs["storage"], "--key-file", blobs["key"])
    line = error_line(result) if command == "restore" else result.stdout.strip()
    assert line.endswith("header.flags (offset 16): blob is not signed but a key was "
                         "given (--allow-unsigned accepts unsigned blobs too)")
    assert_key_hidden(result)


def test_signed_blob_with_a_changed_byte(blobs, tmp_path):
    path = flip_middle_byte(blobs["signed"], tmp_path / "s.vmb")
    result = cli("inspect", path, "--key-file", blobs["key"])
    assert "HMAC does not match" in error_line(result)
    assert_key_hidden(result)


def test_validate_signature_verdicts(blobs):
    result = cli("validate", blobs["signed"], blobs["storage"], "--key-file", blobs["key"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{blobs['signed']}: valid (format 1.1")
    assert lines[1] == (f"{blobs['storage']}: INVALID at header.flags (offset 16): blob is "
                        "not signed but a key was given (--allow-unsigned accepts unsigned "
                        "blobs too)")
    assert_key_hidden(result)
    lines = cli("validate", blobs["signed"]).stdout.splitlines()
    assert lines == [f"{blobs['signed']}: INVALID at signature: blob is signed: give its "
                     "key (--key-file) to verify and read it"]


def test_key_file_problems(blobs, tmp_path):
    missing = tmp_path / "no.key"
    assert fails("inspect", blobs["signed"], "--key-file", missing, code=2) == \
        f"Error: cannot read key file at {missing}: No such file or directory"
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    assert fails("inspect", blobs["signed"], "--key-file", empty, code=2) == \
        f"Error: bad key file at {empty}: the key file is empty"
    assert "--key-file" in fails("inspect", blobs["signed"], "--key-file", tmp_path, code=2)


def test_key_from_environment(blobs, tmp_path):
    env = {"VMBTOOL_KEY_FILE": str(blobs["key"])}
    result = ok("inspect", blobs["signed"], env=env)
    assert "signed" in result.stdout.splitlines()[0]
    assert_key_hidden(result)
    out = tmp_path / "env-signed.vmb"
    result = ok("save", "--seed", SEED, "--steps", STEPS, "-o", out, env=env)
    assert_key_hidden(result)
    assert doc_of(out, "--key-file", blobs["key"])["header"]["signed"] is True
    assert_key_hidden(ok("decode", out, env=env))
    assert_key_hidden(ok("validate", out, env=env))
    assert_key_hidden(ok("restore", out, "--run-steps", 3, "--json", env=env))
    # the key really is used: a wrong one from the environment fails
    result = cli("inspect", blobs["signed"], env={"VMBTOOL_KEY_FILE": str(blobs["other_key"])})
    assert "HMAC does not match" in error_line(result)
    assert_key_hidden(result)
    # --key-file wins over the environment
    ok("inspect", blobs["signed"], "--key-file", blobs["key"],
       env={"VMBTOOL_KEY_FILE": str(blobs["other_key"])})


# -- diff ----------------------------------------------------------------------------


@pytest.fixture()
def edited(blobs, tmp_path) -> tuple[Path, int, int]:
    """The storage blob with one packet's send flags changed (through decode/encode)."""
    doc = json.loads(ok("decode", blobs["storage"]).stdout)
    packet = doc["channels"][0]["packets"][0]
    old = packet["flags"]
    packet["flags"] = old | 0x2
    src = tmp_path / "edited.json"
    src.write_text(json.dumps(doc))
    out = tmp_path / "edited.vmb"
    ok("encode", src, "-o", out)
    return out, packet["transaction_id"], old


def test_diff_equal(blobs):
    result = ok("diff", blobs["storage"], blobs["storage"])
    assert result.stdout == ""
    assert result.stderr.strip() == "equal"
    result = ok("diff", blobs["storage"], blobs["storage"], "--json")
    assert json.loads(result.stdout) == {"equal": True, "changes": []}


def test_diff_ignores_created_ns(blobs, tmp_path):
    doc = json.loads(ok("decode", blobs["storage"]).stdout)
    doc["header"]["created_ns"] += 123_456_789
    src = tmp_path / "t.json"
    src.write_text(json.dumps(doc))
    other = tmp_path / "t.vmb"
    ok("encode", src, "-o", other)
    assert other.read_bytes() != blobs["storage"].read_bytes()
    assert ok("diff", blobs["storage"], other).stdout == ""


def test_diff_names_the_packet(blobs, edited):
    path, txid, old = edited
    result = cli("diff", blobs["storage"], path)
    no_crash(result)
    assert result.exit_code == 1
    assert result.stdout == f"channels[0].packets[txid={txid}].flags: {old} → {old | 2}\n"
    assert result.stderr.strip() == "1 difference"
    result = cli("diff", blobs["storage"], path, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"equal": False, "changes": [
        {"path": f"channels[0].packets[txid={txid}].flags", "old": old, "new": old | 2}]}


def test_diff_of_two_steps(tmp_path):
    a = save(tmp_path / "a.vmb", "--seed", SEED, "--steps", STEPS)
    b = save(tmp_path / "b.vmb", "--seed", SEED, "--steps", STEPS + 1)
    result = cli("diff", a, b)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert f"scenario.steps_taken: {STEPS} → {STEPS + 1}" in lines
    assert any(re.match(r"channels\[0\]\.packets\[txid=\d+\]\.\w+: \S+ → \S+$", line)
               for line in lines), lines
    assert result.stderr.strip() == f"{len(lines)} differences"
    changes = json.loads(cli("diff", a, b, "--json").stdout)["changes"]
    assert [c["path"] for c in changes] == [line.split(": ")[0] for line in lines]
    # a packet present on one side only: "(absent)" in text, null in JSON
    for c, line in zip(changes, lines, strict=True):
        if line.endswith("→ (absent)"):
            assert c["new"] is None and isinstance(c["old"], dict)


@pytest.mark.parametrize("pattern", [
    "channels[0].packets[txid={txid}].flags",  # exact path
    "channels[0].packets",  # a prefix
    "channels",
    "channels*flags",  # fnmatch glob
])
def test_diff_ignore(blobs, edited, pattern):
    path, txid, _ = edited
    result = ok("diff", blobs["storage"], path, "--ignore", pattern.format(txid=txid))
    assert result.stdout == ""


@pytest.mark.parametrize("pattern", [
    "channels[*].packets",  # README's own example shape: `--ignore 'channels[*].rings'`
    "channels[0].packets[*].flags",
])
def test_diff_ignore_glob_over_bracketed_paths(blobs, edited, pattern):
    # Paths are printed with [index] / [txid=N]; a glob written over them must match.
    path, _, _ = edited
    result = cli("diff", blobs["storage"], path, "--ignore", pattern)
    no_crash(result)
    assert result.exit_code == 0, result.stdout


def test_diff_ignore_unrelated_path_still_differs(blobs, edited):
    path, _, _ = edited
    result = cli("diff", blobs["storage"], path, "--ignore", "scenario", "--ignore", "header")
    assert result.exit_code == 1
    assert result.stdout.startswith("channels[0].packets[")


def test_diff_signed(blobs):
    result = ok("diff", blobs["signed"], blobs["signed"], "--key-file", blobs["key"])
    assert_key_hidden(result)
    assert "signature" in fails("diff", blobs["signed"], blobs["storage"], code=2)


# -- validate --------------------------------------------------------------------------


def test_validate_several_valid(blobs):
    paths = [blobs[name] for name in ("storage", "network", "pipe", "plain")]
    result = ok("validate", *paths)
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    for path, line in zip(paths, lines, strict=True):
        doc = doc_of(path)
        packets = sum(len(ch["packets"]) for ch in doc["channels"])
        channels = len(doc["channels"])
        assert line == (f"{path}: valid (format 1.1, {channels} "
                        f"channel{'s' * (channels != 1)}, {packets} packets)")
    assert result.stderr.strip() == "4 valid, 0 invalid"


def test_validate_one_invalid_among_valid(blobs, tmp_path):
    bad = flip_middle_byte(blobs["plain"], tmp_path / "bad.vmb")
    paths = [blobs["storage"], bad, blobs["network"]]
    result = cli("validate", *paths)
    no_crash(result)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(p) for p in paths]
    assert [": valid (" in line for line in lines] == [True, False, True]
    assert lines[1].startswith(f"{bad}: INVALID at chunk@")
    assert "\x1b[" not in result.stdout  # not a terminal: no colour
    assert result.stderr.strip() == "2 valid, 1 invalid"
    assert "Error:" not in result.stderr


def test_validate_directory(blobs, tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    for name in ("pipe", "storage"):
        (d / f"{name}.vmb").write_bytes(blobs[name].read_bytes())
    (d / "notes.txt").write_text("not a blob")
    result = ok("validate", d)
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == \
        [str(d / "pipe.vmb"), str(d / "storage.vmb")]
    flip_middle_byte(blobs["storage"], d / "zz-bad.vmb")
    result = cli("validate", d, blobs["network"])
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 4
    assert result.stderr.strip() == "3 valid, 1 invalid"


def test_validate_empty_directory_is_a_usage_error(tmp_path):
    assert "no blobs to validate" in fails("validate", tmp_path, code=2)


def test_validate_json(blobs, tmp_path):
    bad = flip_middle_byte(blobs["plain"], tmp_path / "bad.vmb")
    result = cli("validate", blobs["storage"], bad, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    good, wrong = doc["blobs"]
    assert good == {"path": str(blobs["storage"]), "valid": True, "format": "1.1",
                    "channels": 1, "packets": good["packets"], "unlisted_problems": 0,
                    "unreadable": False, "problems": []}
    assert wrong["path"] == str(bad) and wrong["valid"] is False and wrong["format"] is None
    assert wrong["problems"][0]["where"].startswith("chunk@")
    assert wrong["problems"][0]["why"] == "checksum mismatch"
    assert result.stderr == ""
    assert json.loads(ok("validate", blobs["pipe"], "--json").stdout)["valid"] is True


def test_validate_semantic_problem(blobs, tmp_path):
    doc = json.loads(ok("decode", blobs["storage"]).stdout)
    doc["scenario"] = None
    doc["end"]["chunk_count"] -= 1  # counts are written as the JSON says
    src = tmp_path / "noscenario.json"
    src.write_text(json.dumps(doc))
    out = tmp_path / "noscenario.vmb"
    ok("encode", src, "-o", out)
    result = cli("validate", out)
    assert result.exit_code == 1
    assert result.stdout.strip() == (f"{out}: INVALID at scenario: missing: this blob cannot "
                                     "be continued")
    assert fails("restore", out) == \
        "Error: bad blob at scenario: missing: this blob cannot be continued"


def test_validate_stdin(blobs):
    result = ok("validate", "-", input=blobs["network"].read_bytes())
    assert result.stdout.startswith("-: valid (format 1.1, 3 channels")


# -- restore ---------------------------------------------------------------------------


def test_restore_text(blobs):
    result = ok("restore", blobs["network"], "--run-steps", 40)
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"restored network seed {SEED} at step {STEPS}: 3 channels, \d+ "
                        r"packets \(\d+ in the backlog\), \d+ pending incoming", lines[0])
    assert lines[1].startswith("ran 40 steps: ")
    assert re.fullmatch(r"backlog (drained|NOT drained); \d+ packets? in the backlog now",
                        lines[2])
    assert len(lines) == 3


def test_restore_json(blobs):
    before = doc_of(blobs["network"])
    rep = json.loads(ok("restore", blobs["network"], "--run-steps", 40, "--json").stdout)
    assert rep["scenario"] == "network" and rep["seed"] == SEED
    assert rep["restored_at_step"] == STEPS and rep["ran_steps"] == 40
    assert rep["steps_taken"] == STEPS + 40
    restored = rep["restored"]
    assert restored["channels"] == len(before["channels"])
    assert restored["backlog"] == sum(p["state"] == "backlog"
                                      for ch in before["channels"] for p in ch["packets"]) > 0
    assert restored["pending_incoming"] == sum(len(ch["pending_incoming"])
                                               for ch in before["channels"])
    in_blob = {(i, p["transaction_id"]) for i, ch in enumerate(before["channels"])
               for p in ch["packets"]}
    done = {(c["channel"], c["transaction_id"]) for c in rep["completed_transactions"]}
    assert done and done <= in_blob
    assert rep["backlog_drained"] is True
    assert isinstance(rep["backlog_now"], int)
    assert "resaved" not in rep


def test_restore_zero_steps(blobs):
    rep = json.loads(ok("restore", blobs["network"], "--run-steps", 0, "--json").stdout)
    longer = json.loads(ok("restore", blobs["network"], "--run-steps", 40, "--json").stdout)
    assert rep["ran_steps"] == 0 and rep["steps_taken"] == STEPS
    # starting the channels may already retire a few (the reader drains its ring) ...
    done = {(c["channel"], c["transaction_id"]) for c in rep["completed_transactions"]}
    assert done <= {(c["channel"], c["transaction_id"])
                    for c in longer["completed_transactions"]}
    assert len(done) < len(longer["completed_transactions"])
    # ... but without a step the backlog it was restored with is still there
    assert rep["backlog_drained"] is False
    assert rep["backlog_now"] >= 1


def test_restore_default_run_steps(blobs):
    rep = json.loads(ok("restore", blobs["storage"], "--json").stdout)
    assert rep["ran_steps"] == 50


def test_restore_resave(blobs, tmp_path):
    out = tmp_path / "again.vmb"
    result = ok("restore", blobs["storage"], "--run-steps", 7, "--resave", out)
    assert result.stdout.splitlines()[-1] == f"resaved -> {out}"
    doc = doc_of(out)
    assert doc["scenario"]["steps_taken"] == STEPS + 7
    assert (doc["header"]["compression"], doc["header"]["level"]) == ("zstd", 3)
    ok("validate", out)
    rep = json.loads(ok("restore", blobs["storage"], "--run-steps", 0, "--resave", out,
                        "--level", 12, "--json").stdout)
    assert rep["resaved"] == str(out)
    assert doc_of(out)["header"]["level"] == 12
    # restored and saved again without running: the same channels
    assert ok("diff", blobs["storage"], out, "--ignore", "header.level").stdout == ""


def test_restore_signed_resaves_signed(blobs, tmp_path):
    out = tmp_path / "signed-again.vmb"
    result = ok("restore", blobs["signed"], "--run-steps", 3, "--resave", out, "--key-file",
                blobs["key"])
    assert_key_hidden(result)
    assert doc_of(out, "--key-file", blobs["key"])["header"]["signed"] is True
    assert "signed" in fails("inspect", out)


def test_restore_stdin(blobs):
    rep = json.loads(ok("restore", "-", "--run-steps", 2, "--json",
                        input=blobs["pipe"].read_bytes()).stdout)
    assert rep["scenario"] == "pipe" and rep["steps_taken"] == STEPS + 2


# -- decode / encode ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["storage", "network", "pipe", "plain", "signed"])
def test_decode_encode_byte_identical(blobs, tmp_path, kind):
    key = ["--key-file", blobs["key"]] if kind == "signed" else []
    js = tmp_path / "b.json"
    result = ok("decode", blobs[kind], "-o", js, *key)
    assert result.stdout == "" and result.stderr == ""
    out = tmp_path / "b.vmb"
    result = ok("encode", js, "-o", out, *key)
    assert result.stdout == "" and result.stderr == ""
    assert out.read_bytes() == blobs[kind].read_bytes()
    if kind == "signed":
        assert_key_hidden(result)
        assert KEY.decode() not in js.read_text()


@pytest.mark.parametrize("kind", ["storage", "plain", "signed"])
def test_decode_encode_through_stdin_and_stdout(blobs, kind):
    key = ["--key-file", blobs["key"]] if kind == "signed" else []
    data = blobs[kind].read_bytes()
    text = ok("decode", "-", *key, input=data).stdout
    assert text == ok("decode", blobs[kind], *key).stdout
    doc = json.loads(text)
    assert doc["header"]["compression"] == ("none" if kind == "plain" else "zstd")
    assert doc["header"]["signed"] is (kind == "signed")
    result = ok("encode", "-", "-o", "-", *key, input=text)
    assert result.stdout_bytes == data
    assert result.stderr == ""


def test_decode_has_the_ring_data(blobs):
    doc = json.loads(ok("decode", blobs["storage"]).stdout)
    ring = doc["channels"][0]["rings"]["incoming"]
    assert len(bytes.fromhex(ring["data"])) == ring["data_pages"] * 4096


def test_encode_signed_document_needs_the_key(blobs, tmp_path):
    js = tmp_path / "s.json"
    ok("decode", blobs["signed"], "-o", js, "--key-file", blobs["key"])
    out = tmp_path / "x.vmb"
    assert fails("encode", js, "-o", out) == \
        "Error: bad blob at header.signed: the blob was signed: give the key to re-sign it"
    assert not out.exists()
    # re-signed with another key: readable with that key only
    result = ok("encode", js, "-o", out, "--key-file", blobs["other_key"])
    assert_key_hidden(result)
    ok("inspect", out, "--key-file", blobs["other_key"])
    assert "HMAC does not match" in fails("inspect", out, "--key-file", blobs["key"])


def test_encode_invalid_json(tmp_path):
    src = tmp_path / "bad.json"
    src.write_text("{not json")
    out = tmp_path / "x.vmb"
    line = fails("encode", src, "-o", out)
    assert line.startswith(f"Error: bad JSON at {src} (line 1, column 2): not JSON: ")
    assert not out.exists()
    assert "not JSON" in fails("encode", "-", "-o", out, input="[1, 2")


def test_encode_missing_file(tmp_path):
    src = tmp_path / "none.json"
    assert fails("encode", src, "-o", tmp_path / "x.vmb", code=2) == \
        f"Error: cannot read JSON at {src}: No such file or directory"


def _drop(path: str):
    def edit(doc: dict) -> None:
        *parents, last = path.split(".")
        node = doc
        for name in parents:
            node = node[int(name)] if isinstance(node, list) else node[name]
        del node[last]
    return edit


def _set(path: str, value):
    def edit(doc: dict) -> None:
        *parents, last = path.split(".")
        node = doc
        for name in parents:
            node = node[int(name)] if isinstance(node, list) else node[name]
        node[last] = value
    return edit


@pytest.mark.parametrize("edit, where", [
    (lambda doc: [1, 2], "$"),
    (_drop("header"), "header: missing"),
    (_drop("channels"), "channels: missing"),
    (_set("channels.0.packets.0.payload", "zz"), "channels[0].packets[0].payload"),
    (_set("channels.0.state", "weird"), "channels[0].state"),
    (_set("header.compression", "lz4"), "header.compression"),
    (_set("scenario.seed", "x"), "scenario.seed"),
    (_drop("header.level"), "header.level"),
    (_set("header.level", 35), "header.level: 35 is not a zstd level"),  # fuzzer, s9
    (_drop("format.major"), "format.major"),
    (_set("extra_chunks", [{"after_chunk": 0}]), "extra_chunks[0].type: missing"),
], ids=["not-an-object", "no-header", "no-channels", "bad-hex", "bad-state",
        "bad-compression", "bad-seed", "no-header-level", "header-level-past-zstd",
        "no-format-major", "extra-chunk-without-type"])
def test_encode_bad_document_is_one_error_line(blobs, tmp_path, edit, where):
    doc = json.loads(ok("decode", blobs["storage"]).stdout)
    doc = edit(doc) or doc
    src = tmp_path / "doc.json"
    src.write_text(json.dumps(doc))
    out = tmp_path / "x.vmb"
    line = fails("encode", src, "-o", out)
    assert line.startswith(f"Error: bad JSON at {where}"), line
    assert not out.exists()



def test_save_default_buffer_holds_any_chunk():
    """The CLI's default SaveContinue buffer is the library's: header + largest chunk."""
    from vmbtool import cli as cli_module
    from vmbtool.formats.chunk import CHUNK_HEADER_SIZE
    from vmbtool.formats.limits import MAX_CHUNK_LENGTH
    from vmbtool.snapshot import SAVE_BUFFER_SIZE

    assert cli_module.SAVE_BUFFER_SIZE == SAVE_BUFFER_SIZE == \
        CHUNK_HEADER_SIZE + MAX_CHUNK_LENGTH
