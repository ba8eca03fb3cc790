"""A file that is not a blob says what it looks like, in every command that reads blobs.

Each kind of wrong file (compressed, `vmbtool decode` JSON, other JSON, text, programs,
unknown bytes) goes through validate, inspect, decode, restore, upgrade (exit 1: a
readable input that is not a blob) and diff (exit 2: diff cannot answer), and the one
`Error:` line (validate: the verdict line) names what the file is, in plain words.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import zipfile
from pathlib import Path

import pytest
import zstandard
from conftest import ROOT, cli

BLOB = ROOT / "fixtures" / "v1.1" / "storage.vmb"
COMMANDS = ("validate", "inspect", "decode", "restore", "upgrade", "diff")


def decode_json(indent: int | None = 1, reorder: bool = False) -> bytes:
    result = cli("decode", BLOB)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    if reorder:  # a tool that sorted the keys: known by its keys, not its first bytes
        doc = dict(sorted(doc.items()))
    return json.dumps(doc, indent=indent).encode()


def zip_of(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("storage.vmb", data)
    return out.getvalue()


BLOB_BYTES = BLOB.read_bytes()
# name: (the file's bytes, what the error must say)
CASES: dict[str, tuple[bytes, str]] = {
    "zstd": (zstandard.ZstdCompressor().compress(BLOB_BYTES),
             "not a blob but a zstd-compressed file: if it holds a blob, decompress it with "
             "`zstd -d` first"),
    "zstd skippable frame": (bytes.fromhex("502a4d18") + bytes(12),
                             "zstd-compressed file"),
    "gzip": (gzip.compress(BLOB_BYTES), "not a blob but a gzip-compressed file: if it holds "
             "a blob, decompress it with `gzip -d` first"),
    "xz": (lzma.compress(BLOB_BYTES), "an xz-compressed file"),
    "bzip2": (bz2.compress(BLOB_BYTES), "a bzip2-compressed file"),
    "zip": (zip_of(BLOB_BYTES), "a zip archive"),
    "decode json": (decode_json(), "not a blob but `vmbtool decode` JSON: turn it back into "
                    "a blob with `vmbtool encode`"),
    "decode json, compact": (decode_json(None), "`vmbtool decode` JSON"),
    "decode json, keys sorted": (decode_json(None, reorder=True), "`vmbtool decode` JSON"),
    "other json object": (b'{"name": "not a blob", "n": [1, 2]}\n',
                          "not a blob but a JSON document"),
    "json array": (b"[1, 2, 3]", "not a blob but a JSON document"),
    "ascii text": (b"hello, this is a note\nsecond line\n", "not a blob but a text file"),
    "utf-8 text with bom": ("\ufeffgrüße, 日本語\n".encode(), "not a blob but a text file"),
    "elf": (b"\x7fELF\x02\x01\x01" + bytes(57), "not a blob but an ELF executable"),
    "pe": (b"MZ\x90\x00\x03" + bytes(59), "not a blob but a Windows (PE/MZ) executable"),
    "unknown binary": (bytes(range(0x80, 0xA0)),
                       "not a blob: unknown binary data (first bytes 80 81 82 83 84 85 86 "
                       "87 …)"),
    "unknown binary, short": (b"\x01\x02\x03", "unknown binary data (first bytes 01 02 03)"),
    "magic cut short": (b"VMBSA", "truncated: the file ends after 5 bytes of a blob's magic"),
    "magic and little else": (b"VMBSAVE\x00\x01", "truncated: file is 9 bytes"),
    "empty": (b"", "empty file"),
    "magic with a bit flipped": (b"VMBSAVF\x00" + BLOB_BYTES[8:],
                                 "a damaged blob, or not a blob: its first bytes (56 4d 42 53 "
                                 "41 56 46 00 …) are nearly a blob's magic (56 4d 42 53 41 56 "
                                 "45 00)"),
}


def run(command: str, path: Path, tmp_path: Path):
    args = {"validate": ["validate", path], "inspect": ["inspect", path],
            "decode": ["decode", path], "restore": ["restore", path, "--run-steps", "1"],
            "upgrade": ["upgrade", path, "-o", tmp_path / "out.vmb"],
            "diff": ["diff", BLOB, path]}[command]
    return cli(*args)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(CASES))
def test_a_file_that_is_not_a_blob_says_what_it_is(tmp_path, case, command):
    data, says = CASES[case]
    path = tmp_path / "given.vmb"
    path.write_bytes(data)
    result = run(command, path, tmp_path)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if command == "validate":
        assert result.exit_code == 1
        assert result.stdout.startswith(f"{path}: INVALID at header")
        assert says in result.stdout
        return
    assert result.exit_code == (2 if command == "diff" else 1), result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    side = f"B ({path}) " if command == "diff" else ""
    assert lines[0].startswith(f"Error: bad blob {side}at header"), lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "out.vmb").exists()


def test_stdin_that_is_not_a_blob(tmp_path):
    result = cli("inspect", "-", input=CASES["gzip"][0])
    assert result.exit_code == 1
    assert "gzip-compressed file" in result.stderr


def test_the_bytes_shown_are_hex_never_a_python_repr(tmp_path):
    path = tmp_path / "x.vmb"
    path.write_bytes(b"'\"\\\x00\xff" + bytes(20))
    result = cli("inspect", path)
    assert result.stderr == ("Error: bad blob at header.magic (offset 0): not a blob: unknown "
                             "binary data (first bytes 27 22 5c 00 ff 00 00 00 …)\n")
