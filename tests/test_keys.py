"""Signed and unsigned blobs side by side: a key verifies every signed blob; where a
blob is authenticated (validate, restore, upgrade) an unsigned one passes only with
--allow-unsigned, so a stripped signature never passes by default; the views (inspect,
diff, decode) show an unsigned blob as unsigned; inspect shows a signed blob's header
without the key, marked unverified, and parses nothing of its body."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURE_DIR, FIXTURE_KEY_FILE, cli


@pytest.fixture
def mixed(tmp_path) -> Path:
    """The repository's own v1 fixtures: three unsigned blobs and a signed one."""
    for blob in (FIXTURE_DIR / "v1").glob("*.vmb"):
        shutil.copy(blob, tmp_path / blob.name)
    return tmp_path


def stripped(signed: Path, out: Path) -> Path:
    """The signed blob's content re-encoded without a signature (decode with the key,
    encode without): an attacker's sound unsigned copy."""
    doc = json.loads(cli("decode", signed, "--key-file", FIXTURE_KEY_FILE).stdout)
    doc["header"]["signed"] = False
    doc["header"]["flags"] = 0
    (out.parent / "doc.json").write_text(json.dumps(doc))
    result = cli("encode", out.parent / "doc.json", "-o", out)
    assert result.exit_code == 0, result.output
    return out


def test_a_mixed_folder_validates_clean_in_one_run_when_unsigned_is_allowed(mixed):
    result = cli("validate", mixed, "--key-file", FIXTURE_KEY_FILE, "--allow-unsigned")
    assert result.exit_code == 0, result.output
    assert result.stdout.count(": valid") == 4


@pytest.mark.parametrize("extra", [[], ["--jobs", "2"]])
def test_without_allow_unsigned_a_key_refuses_the_unsigned_ones(mixed, extra):
    result = cli("validate", mixed, "--key-file", FIXTURE_KEY_FILE, *extra)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert sum(": valid" in line for line in lines) == 1  # the signed one
    assert sum("blob is not signed but a key was given" in line for line in lines) == 3


def test_a_stripped_signature_never_passes_by_default(mixed, tmp_path):
    bare = stripped(mixed / "storage-signed.vmb", tmp_path / "bare.vmb")
    assert cli("validate", bare, "--key-file", FIXTURE_KEY_FILE).exit_code == 1
    assert cli("restore", bare, "--key-file", FIXTURE_KEY_FILE).exit_code == 1
    # the copy is itself a sound unsigned blob: only the key's policy refuses it
    assert cli("validate", bare).exit_code == 0
    assert cli("validate", bare, "--key-file", FIXTURE_KEY_FILE, "--allow-unsigned").exit_code == 0


def test_a_signed_blob_is_still_verified_when_unsigned_ones_are_allowed(mixed):
    data = bytearray((mixed / "storage-signed.vmb").read_bytes())
    data[len(data) // 2] ^= 0x40
    (mixed / "storage-signed.vmb").write_bytes(bytes(data))
    result = cli("validate", mixed / "storage-signed.vmb", "--key-file", FIXTURE_KEY_FILE,
                 "--allow-unsigned")
    assert result.exit_code == 1
    assert "HMAC does not match" in result.stdout


def test_restore_and_upgrade_take_allow_unsigned(mixed, tmp_path):
    assert cli("restore", mixed / "pipe.vmb", "--key-file", FIXTURE_KEY_FILE, "--allow-unsigned",
               "--run-steps", "5").exit_code == 0
    out = tmp_path / "up.vmb"
    result = cli("upgrade", mixed / "pipe.vmb", "-o", out, "--key-file", FIXTURE_KEY_FILE,
                 "--allow-unsigned")
    assert result.exit_code == 0, result.output
    assert cli("validate", out).exit_code == 0  # it stays unsigned


def test_a_signed_blob_diffs_against_an_unsigned_one(mixed):
    result = cli("diff", mixed / "storage.vmb", mixed / "storage-signed.vmb", "--key-file",
                 FIXTURE_KEY_FILE, "--json")
    assert result.exit_code == 1
    paths = {c["path"] for c in json.loads(result.stdout)["changes"]}
    assert paths == {"header.flags", "header.signed"}


@pytest.mark.parametrize("view", ["inspect", "decode"])
def test_the_views_show_an_unsigned_blob_with_a_key(mixed, view):
    result = cli(view, mixed / "storage.vmb", "--key-file", FIXTURE_KEY_FILE)
    assert result.exit_code == 0, result.output
    assert "unsigned" in result.stdout or '"signed": false' in result.stdout


def test_inspect_shows_a_signed_header_without_the_key_marked_unverified(mixed, monkeypatch):
    from vmbtool import codec

    parsed = []
    real = codec.parse
    monkeypatch.setattr(codec, "parse", lambda grammar, *a, **k: (
        parsed.append(grammar), real(grammar, *a, **k))[1])
    result = cli("inspect", mixed / "storage-signed.vmb")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "format 1.0, written by vmbtool 0.1.0 at 2023-11-14 22:13:20 UTC, zstd level 3, "
        "signed",
        "signature NOT verified (no key given): the body is not read"]
    assert result.stderr.strip() == ("Error: bad blob at signature: blob is signed: give its "
                                     "key (--key-file) to verify and read it")
    from vmbtool.formats.header import FileHeader, HeaderPrefix, HeaderTrailer

    # the header's parts and nothing of the body (as their generated code or themselves)
    assert {codec.compiled(grammar) for grammar in parsed} <= {
        codec.compiled(grammar) for grammar in (FileHeader, HeaderPrefix, HeaderTrailer)}
    doc = json.loads(cli("inspect", mixed / "storage-signed.vmb", "--json").stdout)
    assert doc["decoded"] is False
    assert doc["header"]["signature"] == "unverified" and doc["header"]["signed"] is True
