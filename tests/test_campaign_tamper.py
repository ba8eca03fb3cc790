"""Tamper campaign on signed blobs (README "Keys", FORMAT.md "The signature frame").

With the key, every single-byte change anywhere in a signed golden blob is refused by the
validate and restore paths; a signed blob is refused without the key, an unsigned blob
with one, and a wrong key always; the MAC comparison is `hmac.compare_digest`; and the
key never appears in anything the executable prints, errors included.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import random
import re
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import EXE, FIXTURE_KEY, FIXTURE_KEY_FILE, ROOT

from vmbtool import blob as blob_module
from vmbtool.blob import load_blob
from vmbtool.chunks import crc32c
from vmbtool.errors import BlobError, VmbtoolError
from vmbtool.scenarios.base import Scenario
from vmbtool.status import NtStatus
from vmbtool.tools import read_key, restore_and_run, validate_file

SIGNED = {"v1": ROOT / "fixtures" / "v1" / "storage-signed.vmb",
          "v1.1": ROOT / "fixtures" / "v1.1" / "storage-signed.vmb"}
UNSIGNED = ROOT / "fixtures" / "v1" / "storage.vmb"
HEADER_SIZE = 56
SIGNATURE_SIZE = 44
WHERE = re.compile(r"offset \d+|chunk@\d+|^header\.|^channels\[\d+\]|^scenario\b|^end\.|"
                   r"^signature\b|^body\b")


def wrong_keys() -> dict[str, bytes]:
    flipped = bytearray(FIXTURE_KEY)
    flipped[0] ^= 1
    return {"one bit off": bytes(flipped), "one byte short": FIXTURE_KEY[:-1],
            "one byte more": FIXTURE_KEY + b"\x01", "a newline more": FIXTURE_KEY + b"\n",
            "another random key": random.Random(7).randbytes(32),
            "the key twice": FIXTURE_KEY * 2, "a text key": b"not-the-key"}


@functools.cache
def key_forms(key: bytes) -> dict[str, bytes]:
    """The forms a key could take in output: raw, hex (either case), base64, bytes repr."""
    forms = {"raw": key, "hex": key.hex().encode(), "HEX": key.hex().upper().encode(),
             "base64": base64.b64encode(key), "repr": repr(key)[2:-1].encode()}
    if len(key) >= 8:  # a fragment of the hex form, as a truncated dump would show it
        forms["hex prefix"] = key[:8].hex().encode()
    return {name: form for name, form in forms.items() if form}


def leaks(text: bytes | str, key: bytes = FIXTURE_KEY) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [name for name, form in key_forms(key).items() if form in data]


def refusal(data: bytes, key: bytes | None) -> VmbtoolError:
    """load_blob, validate_file and the restore path all refuse; no channel is allocated;
    the error names where and never shows the key."""
    allocated = []
    original = Scenario.allocate_server

    def allocate_server(self, index):
        allocated.append(index)
        return original(self, index)

    with pytest.raises(VmbtoolError) as loaded:
        load_blob(data, key)
    error = loaded.value
    assert WHERE.search(error.where), error
    verdict = validate_file(data, key)
    assert not verdict.valid and verdict.problems[0][0] == error.where
    Scenario.allocate_server = allocate_server
    try:
        with pytest.raises(VmbtoolError) as restored:
            restore_and_run(data, 0, key)
    finally:
        Scenario.allocate_server = original
    assert restored.value.where == error.where
    if error.where.startswith(("header", "signature")):
        assert allocated == []  # refused before any channel exists
    # else: restore reads once, restoring channels as it checks; the digest or seal at
    # the end refuses them all, and no scenario is handed out (restore_and_run raised)
    if key is not None:
        assert not leaks(str(error), key) and not leaks(verdict.line(), key)
    return error


# -- every byte ----------------------------------------------------------------------------
@pytest.mark.parametrize("version", sorted(SIGNED))
def test_every_single_byte_change_is_refused(version):
    """Every offset changed (xor 0xFF, and for v1 also xor a random non-zero value)."""
    data = SIGNED[version].read_bytes()
    assert load_blob(data, FIXTURE_KEY).signed
    rng = random.Random(f"tamper/{version}")
    mac_at = len(data) - 32
    frame_at = len(data) - SIGNATURE_SIZE
    statuses: dict[str, set] = {"header": set(), "body": set(), "frame": set(), "mac": set()}
    tried = 0
    # v1 (the brief's fixture): two changes per offset; v1.1: one
    for offset in range(len(data)):
        for mask in (0xFF, rng.randrange(1, 255))[:2 if version == "v1" else 1]:
            changed = bytearray(data)
            changed[offset] ^= mask
            error = refusal(bytes(changed), FIXTURE_KEY)
            region = ("header" if offset < HEADER_SIZE else "body" if offset < frame_at
                      else "frame" if offset < mac_at else "mac")
            statuses[region].add(error.status)
            if region in ("body", "mac"):
                assert error.where == f"signature (offset {frame_at})", error
            tried += 1
    assert tried == (2 if version == "v1" else 1) * len(data)
    # FORMAT.md: a MAC that does not match is UNSUCCESSFUL, a malformed frame DATA_ERROR
    assert statuses["body"] == statuses["mac"] == {NtStatus.UNSUCCESSFUL}
    assert statuses["frame"] == {NtStatus.DATA_ERROR}
    assert statuses["header"] <= {NtStatus.CRC_ERROR, NtStatus.DATA_ERROR,
                                  NtStatus.REVISION_MISMATCH}
    print(f"\n{version}: {tried} single-byte changes, {tried} refused")


@pytest.mark.parametrize("version", sorted(SIGNED))
def test_bytes_added_or_removed_are_refused(version):
    data = SIGNED[version].read_bytes()
    frame_at = len(data) - SIGNATURE_SIZE
    for changed in (data + b"\0", b"\0" + data, data[:-1], data[1:],
                    data[:frame_at] + data[frame_at + 1:],
                    data[:HEADER_SIZE] + data[HEADER_SIZE + 1:],
                    data[:frame_at] + b"\0" + data[frame_at:],
                    data[:frame_at],  # the signature frame cut off
                    data[:frame_at] + data[frame_at:] * 2):  # two signature frames
        refusal(changed, FIXTURE_KEY)


# -- who has which key --------------------------------------------------------------------
@pytest.mark.parametrize("version", sorted(SIGNED))
def test_a_signed_blob_without_the_key(version):
    error = refusal(SIGNED[version].read_bytes(), None)
    assert error.where == "signature" and error.status == NtStatus.UNSUCCESSFUL
    assert "give its key" in error.why


def test_an_unsigned_blob_given_a_key():
    error = refusal(UNSIGNED.read_bytes(), FIXTURE_KEY)
    assert error.where == "header.flags (offset 16)"
    assert error.status == NtStatus.UNSUCCESSFUL
    assert "not signed" in error.why


@pytest.mark.parametrize("which", sorted(wrong_keys()))
@pytest.mark.parametrize("version", sorted(SIGNED))
def test_a_wrong_key(version, which):
    data = SIGNED[version].read_bytes()
    key = wrong_keys()[which]
    error = refusal(data, key)
    assert error.where == f"signature (offset {len(data) - SIGNATURE_SIZE})"
    assert error.status == NtStatus.UNSUCCESSFUL
    assert not leaks(str(error), FIXTURE_KEY)


def test_keys_equal_up_to_trailing_zero_bytes_sign_alike():
    """A property of HMAC itself (RFC 2104 pads a key shorter than the 64-byte block with
    zeros): a key file with NUL bytes appended, up to 64 bytes, is the same key.  Recorded
    here as a known limit of the 1.x signature; binding the key's length (e.g. keying the
    HMAC with SHA-256 of the key file) would need a new format version."""
    data = SIGNED["v1"].read_bytes()
    for padded in (FIXTURE_KEY + b"\0", FIXTURE_KEY + b"\0" * (64 - len(FIXTURE_KEY))):
        assert load_blob(data, padded).signed
    # longer than a block: hashed, different
    refusal(data, FIXTURE_KEY + b"\0" * (65 - len(FIXTURE_KEY)))


def test_a_signed_blob_whose_flag_was_cleared_and_frame_dropped():
    """Stripping the signature (flag cleared, header CRC fixed, frame cut) leaves a blob
    whose END digest no longer matches its header: refused with or without the key."""
    data = SIGNED["v1"].read_bytes()
    header = bytearray(data[:HEADER_SIZE])
    header[16] &= ~1
    header[52:56] = struct.pack("<I", crc32c(bytes(header[:52])))
    stripped = bytes(header) + data[HEADER_SIZE:-SIGNATURE_SIZE]
    assert refusal(stripped, None).where.startswith("end.digest")
    assert refusal(stripped, FIXTURE_KEY).where == "header.flags (offset 16)"


# -- the comparison -------------------------------------------------------------------------
def test_the_mac_is_compared_with_compare_digest(monkeypatch):
    data = SIGNED["v1"].read_bytes()
    stored = data[-32:]
    expected = hmac.new(FIXTURE_KEY, data[:-SIGNATURE_SIZE], hashlib.sha256).digest()
    real = hmac.compare_digest
    calls = []

    def recording(a, b):
        calls.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    load_blob(data, FIXTURE_KEY)
    assert (expected, stored) in calls or (stored, expected) in calls
    calls.clear()
    with pytest.raises(BlobError):
        load_blob(data, wrong_keys()["one bit off"])
    assert any(stored in call for call in calls)

    # the decision is compare_digest's alone: told "equal", a wrong key gets through
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: True)
    assert load_blob(data, wrong_keys()["another random key"]).signed


def test_no_plain_comparison_of_the_mac_in_the_source():
    """The blob package compares MACs and digests only through hmac.compare_digest."""
    source = "".join(p.read_text() for p in Path(blob_module.__file__).parent.glob("*.py"))
    assert "compare_digest(" in source
    assert not re.search(r"\bmac\s*[!=]=|[!=]=\s*mac\b|digest\(\)\s*[!=]=|[!=]=\s*digest\b",
                         source)


# -- the key never shows ------------------------------------------------------------------
TEXT_KEY = b"campaign-secret-key: kestrel lantern 7731"


@pytest.mark.skipif(EXE is None, reason="the vmbtool console script is not on PATH")
def test_the_key_never_appears_in_cli_output(tmp_path):
    """Every command that takes a key, with the right key, a wrong key, a damaged blob and
    an unsigned blob, through the executable (with and without --debug): the key's bytes,
    hex, base64 and repr never appear on stdout or stderr."""
    text_key = tmp_path / "text.key"
    text_key.write_bytes(TEXT_KEY)
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"wrong-key-" + TEXT_KEY)
    env = {k: v for k, v in os.environ.items() if k not in ("VMBTOOL_KEY_FILE", "NO_COLOR")}
    signed = tmp_path / "signed.vmb"
    subprocess.run([EXE, "save", "--steps", "30", "--key-file", str(text_key), "-o",
                    str(signed)], env=env, check=True, capture_output=True, timeout=60)
    fixture_signed = SIGNED["v1"]
    damaged = tmp_path / "damaged.vmb"
    data = bytearray(fixture_signed.read_bytes())
    data[len(data) // 2] ^= 0x20
    damaged.write_bytes(bytes(data))
    decoded = tmp_path / "signed.json"
    k_text, k_fix, k_wrong = (["--key-file", str(p)] for p in (text_key, FIXTURE_KEY_FILE, wrong))
    runs = [
        # right key: success, the key is used and not shown
        ([EXE, "validate", str(signed), *k_text], 0),
        ([EXE, "inspect", str(signed), "--packets", "--ring", "--gpadls", *k_text], 0),
        ([EXE, "inspect", str(signed), "--json", "--hexdump", *k_text], 0),
        ([EXE, "decode", str(signed), *k_text], 0),
        ([EXE, "decode", str(signed), "-o", str(decoded), *k_text], 0),
        ([EXE, "restore", str(signed), "--run-steps", "5", "--json", *k_text], 0),
        ([EXE, "diff", str(signed), str(signed), *k_text], 0),
        ([EXE, "validate", str(fixture_signed), *k_fix], 0),
        ([EXE, "--debug", "restore", str(fixture_signed), "--run-steps", "3", *k_fix], 0),
        # wrong key, damaged blob, unsigned blob given a key: refused
        ([EXE, "validate", str(signed), *k_wrong], 1),
        ([EXE, "inspect", str(signed), *k_wrong], 1),
        ([EXE, "--debug", "decode", str(signed), *k_wrong], 1),
        ([EXE, "restore", str(signed), *k_wrong], 1),
        ([EXE, "validate", str(fixture_signed), *k_text], 1),
        ([EXE, "--debug", "inspect", str(damaged), *k_fix], 1),
        ([EXE, "restore", str(damaged), *k_fix], 1),
        ([EXE, "validate", str(UNSIGNED), *k_text], 1),  # a key refuses unsigned blobs
        ([EXE, "decode", str(UNSIGNED), *k_text], 0),  # a view shows it as unsigned
        # (a blob diff cannot read leaves it without an answer: trouble, exit 2)
        ([EXE, "diff", str(signed), str(fixture_signed), *k_text], 2),
    ]
    processes = []
    for args, code in runs:
        if len(processes) >= 3:
            processes[-3][2].wait(60)
        processes.append((args, code, subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)))
    # the key named by the environment variable too
    processes.append(([EXE, "validate", str(signed), "(VMBTOOL_KEY_FILE)"], 0, subprocess.Popen(
        [EXE, "validate", str(signed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**env, "VMBTOOL_KEY_FILE": str(text_key)})))
    for args, code, process in processes:
        stdout, stderr = process.communicate(timeout=60)
        label = " ".join(Path(a).name if "/" in a else a for a in args[1:])
        assert process.returncode == code, (label, process.returncode, stderr.decode())
        for key in (TEXT_KEY, FIXTURE_KEY, b"wrong-key-" + TEXT_KEY):
            assert not leaks(stdout, key) and not leaks(stderr, key), (label, key)
        if code == 1 and "--debug" not in args:
            lines = stderr.decode().splitlines()
            if args[1] == "diff":
                continue
            if args[1] == "validate":
                assert "INVALID at" in stdout.decode(), label
            else:
                assert len(lines) == 1 and lines[0].startswith("Error: "), (label, lines)
    written = decoded.read_bytes()
    assert not leaks(written, TEXT_KEY)


def test_the_key_file_is_read_as_bytes_and_never_echoed(tmp_path):
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    with pytest.raises(VmbtoolError) as caught:
        read_key(str(empty))
    assert caught.value.where == str(empty)
    missing = tmp_path / "missing.key"
    with pytest.raises(VmbtoolError) as caught:
        read_key(str(missing))
    assert str(missing) in str(caught.value)
    key_file = tmp_path / "k.key"
    key_file.write_bytes(TEXT_KEY + b"\n")
    assert read_key(str(key_file)) == TEXT_KEY + b"\n"  # every byte is the key
