"""Text from a blob or a file name never reaches the terminal raw.

A blob's note, writer version, scenario name, channel and guest friendly names, packet
completion routines and an unknown chunk's data are all set to hostile text (a title-
setting OSC, a screen clear, CR/LF/TAB, DEL, C1 controls, bidirectional overrides and
isolates, a line separator, and a newline followed by a forged verdict); the blob is
saved under a hostile file name too. Every text view (inspect with every detail flag,
validate, diff, restore, upgrade, save, the `Error:` line) must show each such character
escaped (`\\x1b`, `\\n`, `\\u202e`) and nothing raw. `decode` and `--json` are JSON, which
json.dumps escapes, and are not text views.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import Result
from conftest import cli

# utf-8 fields (note, friendly names) take everything; ascii fields (writer version: 16
# bytes, scenario name, completion routine) the ascii part
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\r\n\tFORGED: valid\x7f\x85\x9b\u202e\u2066\u200f\u2028"
HOSTILE_SHOWN = (r"\x1b]0;pwned\x07\x1b[2J\r\n\tFORGED: valid\x7f\x85\x9b\u202e\u2066"
                 r"\u200f\u2028")
ASCII = "\x1b]0;t\x07\nFORGED"
ASCII_SHOWN = r"\x1b]0;t\x07\nFORGED"
NAME = "evil\x1b[2J\nFORGED: valid\u202e.vmb"
NAME_SHOWN = r"evil\x1b[2J\nFORGED: valid\u202e.vmb"
# written independently of vmbtool.text: what must never be printed raw (a newline only
# as the end of a line, checked by FORGED never starting one)
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                 "\ud800-\udfff]")


def shown(result: Result) -> str:
    """stdout and stderr, checked: valid UTF-8, no raw control or bidi character, no line
    forged by an embedded newline, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    text = result.stdout_bytes.decode("utf-8") + result.stderr_bytes.decode("utf-8")
    raw = RAW.search(text)
    assert raw is None, f"raw {raw.group()!r} at {raw.start()}: {text[:2000]!r}"
    assert not [line for line in text.splitlines() if line.startswith("FORGED")], text
    assert "Traceback" not in text
    return text


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> dict[str, Path]:
    """clean, and hostile variants: `restorable` (note, writer version, an unknown chunk:
    it validates and restores), `named` (+ friendly names: invalid for the VSP),
    `everything` (+ scenario name and completion routines)."""
    folder = tmp_path_factory.mktemp("hostile")
    clean = folder / "clean.vmb"
    assert cli("save", "--steps", 30, "--note", "plain", "-o", clean).exit_code == 0
    doc = json.loads(cli("decode", clean).stdout)
    doc["note"] = HOSTILE
    doc["header"]["writer_version"] = ASCII
    doc["extra_chunks"] = [{"after_chunk": 2, "type": 0x7F00, "flags": 0,
                            "data": HOSTILE.encode().hex()}]
    doc["end"]["chunk_count"] += 1
    variants = {"restorable": json.loads(json.dumps(doc))}
    for ch in doc["channels"] + doc["scenario"]["guests"]:
        ch["config"]["friendly_name"] = HOSTILE
    variants["named"] = json.loads(json.dumps(doc))
    doc["scenario"]["scenario"] = ASCII
    for ch in doc["channels"]:
        for packet in ch["packets"]:
            if packet["completion_routine"]:
                packet["completion_routine"] = ASCII
    variants["everything"] = doc
    out = {"clean": clean}
    for name, variant in variants.items():
        source = folder / f"{name}.json"
        source.write_text(json.dumps(variant))
        out[name] = folder / f"{name}.vmb"
        assert cli("encode", source, "-o", out[name]).exit_code == 0
    # the restorable blob again, under a hostile name, in a folder of its own
    shelf = folder / "shelf"
    shelf.mkdir()
    out["hostile name"] = shelf / NAME
    out["hostile name"].write_bytes(out["restorable"].read_bytes())
    return out


INSPECT_FLAGS = [[], ["--packets"], ["--ring"], ["--gpadls"], ["--hexdump"],
                 ["--packets", "--ring", "--gpadls", "--hexdump"],
                 ["--filter", "channel=0,state=in_ring,state=awaiting-completion"]]


@pytest.mark.parametrize("flags", INSPECT_FLAGS, ids=lambda f: " ".join(f) or "summary")
def test_inspect_escapes_every_text_field(blobs, flags):
    text = shown(cli("inspect", blobs["everything"], *flags))
    assert f"written by vmbtool {ASCII_SHOWN} at " in text
    assert f"note: {HOSTILE_SHOWN}\n" in text
    assert f"scenario {ASCII_SHOWN}, seed 1, 30 steps taken" in text
    assert f'channel 0 "{HOSTILE_SHOWN}": paused\n' in text
    if "--packets" in flags or "--filter" in flags:
        assert f" routine {ASCII_SHOWN} vsp " in text


def test_inspect_a_restorable_hostile_blob(blobs):
    text = shown(cli("inspect", blobs["hostile name"], "--packets"))
    assert f"note: {HOSTILE_SHOWN}\n" in text
    assert "routine storvsp_transfer_done" in text


@pytest.mark.parametrize("variant, verdict", [
    ("restorable", "valid (format 1.1, 1 channel, 17 packets)"),
    ("named", f"INVALID at channels[0].context.friendly_name: blob has {HOSTILE_SHOWN}"),
])
def test_validate_verdict_is_one_line(blobs, variant, verdict):
    result = cli("validate", blobs[variant])
    text = shown(result)
    line, = result.stdout.splitlines()  # one verdict line: nothing forged
    assert line.startswith(f"{blobs[variant]}: {verdict}"), line
    assert text.endswith(f"{int(variant == 'restorable')} valid, "
                         f"{int(variant != 'restorable')} invalid\n")


def test_validate_a_folder_with_hostile_file_names(blobs, tmp_path):
    folder = blobs["hostile name"].parent
    undecodable = folder / os.fsdecode(b"latin-\xff-name.vmb")  # not UTF-8: a surrogate
    undecodable.write_bytes(blobs["clean"].read_bytes())
    try:
        result = cli("validate", "--jobs", 1, folder)
        text = shown(result)
        lines = result.stdout.splitlines()
        assert len(lines) == 2, lines
        assert f"{folder}/{NAME_SHOWN}: valid (format 1.1, 1 channel, 17 packets)" in lines
        assert f"{folder}/latin-\\udcff-name.vmb: valid (format 1.1, 1 channel, " \
               f"17 packets)" in lines
        assert text.endswith("2 valid, 0 invalid\n")
    finally:
        undecodable.unlink()


@pytest.mark.parametrize("order", ["clean first", "hostile first"])
def test_diff_escapes_old_and_new(blobs, order):
    a, b = blobs["clean"], blobs["everything"]
    if order == "hostile first":
        a, b = b, a
    result = cli("diff", a, b)
    assert result.exit_code == 1
    text = shown(result)
    pairs = [("0.1.0", ASCII_SHOWN), ("plain", HOSTILE_SHOWN), ("storage-0", HOSTILE_SHOWN),
             ("storvsp_transfer_done", ASCII_SHOWN)]
    for old, new in pairs:
        if order == "hostile first":
            old, new = new, old
        assert f": {old} → {new}\n" in text, (old, new)
    assert re.search(r"^\d+ differences$", result.stderr, re.M)


def test_restore_report_escapes_the_resave_path(blobs, tmp_path):
    resave = tmp_path / NAME
    result = cli("restore", blobs["hostile name"], "--run-steps", 5, "--resave", resave)
    assert result.exit_code == 0, result.stderr
    text = shown(result)
    assert text.startswith("restored storage seed 1 at step 30: 1 channel, 17 packets")
    assert f"resaved -> {tmp_path}/{NAME_SHOWN}\n" in text
    assert resave.exists()


def test_restore_error_escapes_the_friendly_name(blobs):
    result = cli("restore", blobs["named"])
    assert result.exit_code == 1
    assert shown(result) == (f"Error: bad blob at channels[0].context.friendly_name: blob "
                             f"has {HOSTILE_SHOWN}, the storage VSP configures storage-0\n")


def test_upgrade_and_save_messages_escape_the_output_path(blobs, tmp_path):
    target = tmp_path / NAME
    result = cli("upgrade", blobs["hostile name"], "-o", target, "--allow-loss")
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(rf"format 1\.1 -> 1\.1: \d+ chunks, \d+ bytes -> "
                        rf"{re.escape(f'{tmp_path}/{NAME_SHOWN}')}; dropped .*\n",
                        shown(result))
    target.unlink()
    result = cli("save", "--steps", 3, "--note", HOSTILE, "-o", target)
    assert result.exit_code == 0, result.stderr
    assert shown(result).endswith(f"bytes -> {tmp_path}/{NAME_SHOWN}\n")
    assert f"note: {HOSTILE_SHOWN}\n" in shown(cli("inspect", target))


@pytest.mark.parametrize("args, expected", [
    (["inspect", f"missing/{NAME}"], f"at missing/{NAME_SHOWN}: "),
    (["inspect", "BLOB", "--filter", "state=\x1b[2J\u202e"],
     "at --filter 'state=\\x1b[2J\\u202e': state is one of "),
    (["diff", "BLOB", f"missing/{NAME}"], f"missing/{NAME_SHOWN}"),
    (["restore", f"missing/{NAME}"], f"at missing/{NAME_SHOWN}: "),
    (["upgrade", f"missing/{NAME}", "-o", "x.vmb"], f"missing/{NAME_SHOWN}"),
])
def test_the_error_line_is_escaped(blobs, args, expected):
    args = [str(blobs["clean"]) if a == "BLOB" else a for a in args]
    result = cli(*args)
    assert result.exit_code != 0
    line, = [line for line in shown(result).splitlines() if line.startswith("Error: ")]
    assert expected in line, line


def test_every_character_escape_shows_is_one_isprintable_refuses():
    """`escape` passes a printable str through untouched without its pattern: that holds
    only while no character the pattern escapes is printable to Python."""
    from vmbtool.text import UNSAFE, escape

    unsafe = re.compile(UNSAFE)
    shown = [c for c in map(chr, range(0x110000)) if unsafe.match(c)]
    assert len(shown) == 32 + 33 + 1 + 2 + 7 + 4 + 2048
    assert not [c for c in shown if c.isprintable()]
    assert escape("plain ünïcode name.vmb") == "plain ünïcode name.vmb"
    assert escape("\u00a0nbsp") == "\u00a0nbsp"  # not printable to Python, not escaped
    assert escape("a\u202eb\x1b") == "a\\u202eb\\x1b"
