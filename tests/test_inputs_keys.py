"""Key files: at most 64 KiB (a zero device is refused, not read until memory runs out);
a key file that is missing, a folder, empty or too large is a usage mistake (exit 2);
`--key-file -` reads the key from stdin, which then cannot also be a blob (exit 2)."""

from __future__ import annotations

import os

import pytest
from inputs_support import KEY_FILE, SIGNED, STORAGE, cli, mknod, no_crash, one_error, run

from vmbtool.inputs import MAX_KEY_SIZE

# every command that takes a key, as it names its one input {}; save takes none
KEYED = {"inspect": ["inspect", "{}"], "decode": ["decode", "{}"],
         "validate": ["validate", "{}"], "restore": ["restore", "--run-steps", "2", "{}"],
         "diff": ["diff", "{}", str(SIGNED)], "upgrade": ["upgrade", "{}", "-o", "{out}"]}


def args_for(command: str, source: object, out) -> list[str]:
    return [a.format(source, out=out) for a in KEYED[command]]


@pytest.mark.parametrize("command", [*KEYED, "save"])
def test_a_bad_key_file_is_a_usage_mistake(command, tmp_path):
    empty, huge = tmp_path / "empty.key", tmp_path / "huge.key"
    empty.write_bytes(b"")
    huge.write_bytes(b"k" * (MAX_KEY_SIZE + 1))
    missing = tmp_path / "missing.key"
    expected = {missing: f"Error: cannot read key file at {missing}: No such file or directory",
                empty: f"Error: bad key file at {empty}: the key file is empty",
                huge: f"Error: bad key file at {huge}: larger than 64 KiB: a key file holds "
                      "the key alone"}
    out = tmp_path / "out.vmb"
    base = ["save", "-o", out] if command == "save" else args_for(command, SIGNED, out)
    for key_file, line in expected.items():
        result = cli(*base, "--key-file", key_file)
        no_crash(result)
        assert one_error(result.exit_code, 2, result.stderr) == line
        assert not out.exists()
    result = cli(*base, "--key-file", tmp_path)  # a folder: click's own check
    assert result.exit_code == 2 and "--key-file" in result.stderr


def test_a_key_of_64_kib_is_a_key(tmp_path):
    key = tmp_path / "big.key"
    key.write_bytes(os.urandom(MAX_KEY_SIZE))
    signed = tmp_path / "signed.vmb"
    result = cli("save", "--steps", 5, "-o", signed, "--key-file", key)
    assert result.exit_code == 0, result.stderr
    assert cli("validate", signed, "--key-file", key).exit_code == 0


def test_a_zero_device_as_key_file_is_refused(tmp_path):
    zero = mknod(tmp_path / "zero.key", 5)
    for args in (["inspect", SIGNED], ["save", "-o", tmp_path / "out.vmb"]):
        p = run(*args, "--key-file", zero)
        assert one_error(p.returncode, 2, p.stderr) == \
            f"Error: bad key file at {zero}: larger than 64 KiB: a key file holds the key alone"
    assert not (tmp_path / "out.vmb").exists()


@pytest.mark.parametrize("command", list(KEYED))
def test_the_key_from_stdin(command, tmp_path):
    out = tmp_path / "out.vmb"
    from_file = cli(*args_for(command, SIGNED, out), "--key-file", KEY_FILE)
    out.unlink(missing_ok=True)
    from_stdin = cli(*args_for(command, SIGNED, out), "--key-file", "-",
                     input=KEY_FILE.read_bytes())
    no_crash(from_stdin)
    assert from_stdin.exit_code == from_file.exit_code == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout
    result = cli(*args_for(command, SIGNED, out), "--key-file", "-", input=b"not the key")
    assert result.exit_code == (2 if command == "diff" else 1)  # the key is used (diff
    # cannot answer for a blob it cannot read: trouble)
    assert "HMAC does not match" in result.stdout + result.stderr


@pytest.mark.parametrize("command", list(KEYED))
def test_stdin_cannot_be_both_the_key_and_a_blob(command, tmp_path):
    out = tmp_path / "out.vmb"
    result = cli(*args_for(command, "-", out), "--key-file", "-",
                 input=SIGNED.read_bytes())
    no_crash(result)
    assert one_error(result.exit_code, 2, result.stderr) == (
        "Error: bad key file at --key-file -: stdin cannot hold both the key and the "
        "input; give the key as a file")
    assert result.stdout == "" and not out.exists()
    if command == "validate":  # one of several blobs is enough
        result = cli("validate", STORAGE, "-", "--key-file", "-", input=b"k")
        assert result.exit_code == 2 and "stdin cannot hold both" in result.stderr


def test_encode_from_stdin_with_the_key_from_stdin(tmp_path):
    result = cli("encode", "-", "-o", tmp_path / "x.vmb", "--key-file", "-", input=b"{}")
    assert one_error(result.exit_code, 2, result.stderr).startswith(
        "Error: bad key file at --key-file -: stdin cannot hold both")
    assert not (tmp_path / "x.vmb").exists()
