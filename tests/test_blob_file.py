"""Blob files: the body against the reference `zstd` CLI and an independent CRC32C and
SHA-256 check, HMAC signatures, atomic writes, and damaged or foreign files."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import struct
import subprocess

import pytest

from vmbtool.blob import load_blob, write_atomic
from vmbtool.errors import BlobError, OutputError
from vmbtool.formats import FORMAT_MINOR
from vmbtool.scenarios import NetworkScenario, StorageScenario
from vmbtool.snapshot import restore_file, save_blob
from vmbtool.status import NtStatus

KEY = b"k" * 32
HEADER_SIZE = 56  # FILE_HEADER (52) + header_crc32c
END_CHUNK_SIZE = 12 + 44
CHUNK_END = 0x00FF


@pytest.fixture(scope="module")
def scenario():
    s = NetworkScenario.create(3)  # three channels, the largest blobs
    s.run(60)
    s.pause()
    return s


@pytest.fixture(scope="module")
def blobs(scenario):
    return {
        "zstd": save_blob(scenario, created_ns=0),
        "plain": save_blob(scenario, created_ns=0, level=None),
        "signed": save_blob(scenario, created_ns=0, key=KEY),
        "signed plain": save_blob(scenario, created_ns=0, level=None, key=KEY),
    }


# -- against things nobody here wrote ------------------------------------------------
def crc32c_reference(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit from the
    definition, with no table and no library."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_reference_crc32c_check_value():
    assert crc32c_reference(b"123456789") == 0xE3069283  # the published check value


def zstd_cli(data: bytes) -> bytes:
    zstd = shutil.which("zstd")
    if zstd is None:
        pytest.skip("the zstd command-line tool is not on PATH")
    result = subprocess.run([zstd, "-d", "-c", "-q"], input=data, capture_output=True,
                            check=False, timeout=30)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def same_chunks(body: bytes, plain: bytes) -> bool:
    """The same chunks: the END chunk's digest covers the header, which records the
    compression, so only that digest (and the END chunk's CRC) may differ."""
    end = len(body) - END_CHUNK_SIZE
    return (len(body) == len(plain) and body[:end] == plain[:end]
            and body[end:end + 8] == plain[end:end + 8]  # type, flags, length
            and body[end + 12:-32] == plain[end + 12:-32])  # the three counts


def walk_chunks(body: bytes) -> list[tuple[int, int, bytes]]:
    """(type, flags, data) of each framed chunk, CRC checked with the reference CRC."""
    out, pos = [], 0
    while pos < len(body):
        ctype, flags, reserved, length, crc = struct.unpack_from("<HBBII", body, pos)
        data = body[pos + 12:pos + 12 + length]
        assert reserved == 0 and len(data) == length
        assert crc32c_reference(data) == crc, f"chunk {ctype:#x} at {pos}"
        out.append((ctype, flags, data))
        pos += 12 + length
    return out


@pytest.mark.parametrize("kind", ["zstd", "signed"])
def test_body_decompresses_with_the_zstd_cli(blobs, kind):
    blob = blobs[kind]
    (header_size,) = struct.unpack_from("<I", blob, 12)
    assert header_size == HEADER_SIZE
    body = zstd_cli(blob[header_size:])  # the signature is a skippable frame
    plain = blobs["plain"][HEADER_SIZE:]
    assert same_chunks(body, plain)

    chunks = walk_chunks(body)
    assert chunks[-1][0] == CHUNK_END
    channel_count, chunk_count, packet_count, digest = struct.unpack("<III32s",
                                                                     chunks[-1][2])
    assert chunk_count == len(chunks) - 1
    assert channel_count == 3 == sum(c[0] == 0x0001 for c in chunks)
    assert packet_count == sum(c[0] == 0x0004 for c in chunks)
    header_bytes = blob[:HEADER_SIZE]
    assert digest == hashlib.sha256(header_bytes + body[:-END_CHUNK_SIZE]).digest()
    assert struct.unpack_from("<I", header_bytes, 52)[0] == crc32c_reference(header_bytes[:52])


def test_plain_body_chunks_check_with_the_reference_crc(blobs):
    chunks = walk_chunks(blobs["plain"][HEADER_SIZE:])
    assert chunks[-1][0] == CHUNK_END
    optional = {0x0007, 0x0011}  # 1.1 statistics and note: a 1.0 reader skips them
    assert all(flags == (t not in optional) for t, flags, _ in chunks)
    assert sum(t == 0x0007 for t, _, _ in chunks) == 3  # one per channel


def test_zstd_header_fields(blobs):
    magic, major, minor, size, flags, compression, level = struct.unpack_from(
        "<8sHHIIBb", blobs["signed"])
    assert (magic, major, minor, size, flags, compression, level) == (
        b"VMBSAVE\x00", 1, FORMAT_MINOR, HEADER_SIZE, 1, 1, 3)
    assert struct.unpack_from("<IB", blobs["plain"], 16) == (0, 0)


def test_every_variant_loads_to_the_same_state(blobs, scenario):
    """Each variant loads (signed as it says) and `vmbtool restore`'s path (`restore_file`)
    restores what re-saves to the default (zstd, unsigned) blob."""
    for kind, blob in blobs.items():
        key = KEY if "signed" in kind else None
        loaded = load_blob(blob, key)
        assert loaded.signed == (key is not None)
        again = save_blob(restore_file(blob, key), created_ns=0)
        assert again == blobs["zstd"]


# -- signatures -----------------------------------------------------------------------
def test_signed_blob_needs_its_key(blobs):
    blob = blobs["signed"]
    assert load_blob(blob, KEY).signed
    with pytest.raises(BlobError) as info:
        load_blob(blob)
    assert info.value.status == NtStatus.UNSUCCESSFUL and info.value.where == "signature"
    with pytest.raises(BlobError) as info:
        load_blob(blob, b"K" * 32)
    assert info.value.status == NtStatus.UNSUCCESSFUL
    assert info.value.where.startswith("signature")
    assert "HMAC" in info.value.why


def test_signature_frame_layout(blobs):
    blob = blobs["signed"]
    magic, size, tag = struct.unpack_from("<II4s", blob, len(blob) - 44)
    assert (magic, size, tag) == (0x184D2A5A, 36, b"HMS1")
    import hmac

    assert blob[-32:] == hmac.new(KEY, blob[:-44], hashlib.sha256).digest()


@pytest.mark.parametrize("kind", ["signed", "signed plain"])
def test_any_single_byte_change_is_caught(blobs, kind):
    blob = blobs[kind]
    rng = random.Random(1234)
    positions = sorted({0, 8, 16, 20, HEADER_SIZE - 1, HEADER_SIZE, len(blob) - 45,
                        len(blob) - 44, len(blob) - 40, len(blob) - 33, len(blob) - 1}
                       | {rng.randrange(len(blob)) for _ in range(40)})
    assert len(positions) >= 45
    for pos in positions:
        for flip in (0x01, 0x80):
            changed = bytearray(blob)
            changed[pos] ^= flip
            with pytest.raises(BlobError) as info:
                load_blob(bytes(changed), KEY)
            assert info.value.where, pos


def test_unsigned_blob_with_a_key(blobs):
    for kind in ("zstd", "plain"):
        with pytest.raises(BlobError) as info:
            load_blob(blobs[kind], KEY)
        assert info.value.status == NtStatus.UNSUCCESSFUL
        assert info.value.where.startswith("header.flags")


def test_stripped_signature_is_caught(blobs):
    """Dropping the signature frame from a signed blob does not make it unsigned."""
    with pytest.raises(BlobError):
        load_blob(blobs["signed"][:-44], KEY)
    with pytest.raises(BlobError):
        load_blob(blobs["signed"][:-44])


# -- atomic writes --------------------------------------------------------------------
def test_write_atomic_replaces_and_leaves_no_temp_files(tmp_path, blobs):
    target = tmp_path / "state.vmbsave"
    write_atomic(str(target), blobs["zstd"])
    assert target.read_bytes() == blobs["zstd"]
    write_atomic(str(target), blobs["signed"])
    assert target.read_bytes() == blobs["signed"]
    assert os.listdir(tmp_path) == ["state.vmbsave"]
    assert load_blob(str(target), KEY).signed


def test_write_atomic_failure_keeps_the_old_content(tmp_path):
    target = tmp_path / "state.vmbsave"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(str(target), "not bytes")  # fails while writing the temp file
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.vmbsave"]


def test_write_atomic_into_a_missing_directory(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_atomic(str(tmp_path / "nowhere" / "state.vmbsave"), b"x")
    assert os.listdir(tmp_path) == []


# -- damaged and foreign files -------------------------------------------------------
def expect_blob_error(data: bytes, key: bytes | None = None) -> BlobError:
    with pytest.raises(BlobError) as info:
        load_blob(data, key)
    error = info.value
    assert error.where  # every refusal says where
    assert str(error).startswith(f"bad blob at {error.where}: ")
    return error


def test_empty_file(tmp_path):
    error = expect_blob_error(b"")
    assert error.where.startswith("header")
    path = tmp_path / "empty.vmbsave"
    path.write_bytes(b"")
    assert expect_blob_error(str(path)).why == "empty file"


@pytest.mark.parametrize("kind", ["zstd", "plain", "signed"])
def test_truncated(blobs, kind):
    blob = blobs[kind]
    key = KEY if kind == "signed" else None
    cuts = {1, 8, 15, 16, 30, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 1,
            HEADER_SIZE + 12, len(blob) // 2, len(blob) - END_CHUNK_SIZE, len(blob) - 45,
            len(blob) - 44, len(blob) - 1}
    cuts |= set(range(HEADER_SIZE, len(blob), max(1, len(blob) // 60)))
    for cut in sorted(cuts):
        error = expect_blob_error(blob[:cut], key)
        if cut < HEADER_SIZE:
            assert error.where.startswith("header"), (cut, error.where)


def test_truncated_plain_body_names_the_chunk(blobs):
    blob = blobs["plain"]
    error = expect_blob_error(blob[:HEADER_SIZE + 20])
    assert error.where.startswith("chunk@0")
    assert "truncated" in error.why


def test_wrong_magic(blobs):
    error = expect_blob_error(b"VMBSAVF\x00" + blobs["zstd"][8:])
    assert error.where.startswith("header.magic")
    error = expect_blob_error(b"\x28\xb5\x2f\xfd" + bytes(60))  # a bare zstd frame
    assert error.where.startswith("header")


@pytest.mark.parametrize("major", [2, 0xFFFF])
def test_newer_major(blobs, major):
    blob = blobs["zstd"]
    newer = blob[:8] + struct.pack("<HH", major, 0) + blob[12:]
    error = expect_blob_error(newer)
    assert error.status == NtStatus.REVISION_MISMATCH
    assert error.where.startswith("header.format_major")
    assert f"{major}.0" in error.why


def test_older_major(blobs):
    blob = blobs["zstd"]
    error = expect_blob_error(blob[:8] + struct.pack("<H", 0) + blob[10:])
    assert error.status == NtStatus.REVISION_MISMATCH


def test_header_crc(blobs):
    blob = bytearray(blobs["zstd"])
    blob[44] ^= 1  # created_ns
    error = expect_blob_error(bytes(blob))
    assert error.status == NtStatus.CRC_ERROR
    assert error.where.startswith("header.header_crc32c")


def test_missing_file(tmp_path):
    from vmbtool.errors import VmbtoolError

    with pytest.raises(VmbtoolError) as info:
        load_blob(str(tmp_path / "absent.vmbsave"))
    assert info.value.where.endswith("absent.vmbsave")


def test_body_corruption_in_plain_blob_names_the_chunk(blobs):
    blob = bytearray(blobs["plain"])
    blob[HEADER_SIZE + 12 + 3] ^= 0xFF  # inside the first chunk's data
    error = expect_blob_error(bytes(blob))
    assert error.status == NtStatus.CRC_ERROR
    assert error.where == "chunk@0.crc32c"


def test_storage_blob_also_round_trips_through_zstd_cli():
    s = StorageScenario.create(3)
    s.run(100)
    blob = save_blob(s, created_ns=0, level=19)
    plain = save_blob(s, created_ns=0, level=None)
    body = zstd_cli(blob[HEADER_SIZE:])
    assert same_chunks(body, plain[HEADER_SIZE:])
    walk_chunks(body)
