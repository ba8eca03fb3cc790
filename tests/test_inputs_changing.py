"""A file that changes while it is read (here: shrinks, between the size taken when it was
opened and a later read) is one blob error, "the file changed while it was read", naming
the file: never a short read meeting a struct unpack, a slice or a checksum.

In-process, a file object that truncates itself once its size was taken reaches every
read of the reader (header, signature, seal, frame walk, body); through the CLI, the
file on disk is truncated at the k-th read the command makes (`inputs.BlobFile`)."""

from __future__ import annotations

import io
import os
import random
import shutil

import pytest
from inputs_support import FIXTURES, PLAIN, SIGNED, STORAGE, cli, no_crash, one_error

from vmbtool import inputs
from vmbtool.blob import encode_blob, load_blob
from vmbtool.chunks import frame_bytes
from vmbtool.errors import VmbtoolError
from vmbtool.snapshot import check_file, restore_file

ALL_FIXTURES = sorted([*FIXTURES.glob("*.vmb"), *(FIXTURES.parent / "v1").glob("*.vmb")])


class ShrinkingFile(io.BytesIO):
    """A blob that is `cut` bytes long from the moment its size was taken (the reader
    seeks to its end once, when it opens it)."""

    def __init__(self, data: bytes, cut: int) -> None:
        super().__init__(data)
        self.cut, self.armed = cut, True

    def seek(self, pos: int, whence: int = 0) -> int:
        at = super().seek(pos, whence)
        if whence == os.SEEK_END and self.armed:
            self.armed = False
            self.truncate(self.cut)
        return at


def cuts(size: int) -> list[int]:
    """Into the header, its prefix, the first chunks, the middle, the seal and the
    signature frame, and one byte short."""
    return sorted({*range(0, 80, 3), size // 3, size // 2, *range(size - 70, size, 3),
                   size - 1})


def key_for(path) -> bytes | None:
    return (path.parent / "test-key").read_bytes() if "signed" in path.name else None


READS = {"load_blob": load_blob, "check_file": check_file, "restore_file": restore_file}


@pytest.mark.parametrize("read", list(READS))
def test_every_read_of_a_shrinking_file_is_the_changed_error(read):
    tried = 0
    for path in ALL_FIXTURES:
        data, key = path.read_bytes(), key_for(path)
        for cut in cuts(len(data)):
            with pytest.raises(VmbtoolError) as caught:
                READS[read](ShrinkingFile(data, cut), key)
            assert caught.value.why.startswith(inputs.CHANGED), (path.name, cut, caught.value)
            assert caught.value.exit_code == 1
            tried += 1
    assert tried > 300


def big_blob() -> bytes:
    """A valid blob whose body passes blob.PIPE_MIN: it is read on the body's threads."""
    blob = load_blob(str(FIXTURES / "network.vmb"))
    chunks = [raw.framed for raw in blob.chunks if raw.type != 0xFF]
    rng = random.Random(14)
    fillers = [frame_bytes(0x0100, rng.randbytes(64 << 10), 0) for _ in range(20)]
    return encode_blob([*fillers, *chunks], blob.header.channel_count, level=3, created_ns=0)


@pytest.fixture()
def truncate_at_read(monkeypatch):
    """Truncates `path` to `cut` bytes just before the `k`-th read of a blob file."""
    real = inputs.BlobFile.readinto

    def arm(path, k: int, cut: int) -> None:
        count = 0

        def readinto(self, buffer):
            nonlocal count
            count += 1
            if count == k:
                os.truncate(path, cut)
            return real(self, buffer)

        monkeypatch.setattr(inputs.BlobFile, "readinto", readinto)

    return arm


COMMANDS = {"validate": ["validate", "{}"], "inspect": ["inspect", "{}"],
            "inspect --json": ["inspect", "--json", "{}"], "decode": ["decode", "{}"],
            "diff": ["diff", "{}", "{}"], "restore": ["restore", "--run-steps", "2", "{}"],
            "upgrade": ["upgrade", "{}", "-o", "{out}", "--allow-loss"]}
# inspect looks at the version first; diff opens A and B (here the same file)
OPENS_TWICE = ("inspect", "inspect --json", "diff")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_file_that_shrinks_under_the_cli(command, tmp_path, truncate_at_read):
    """The read was over before the cut (the command's ordinary answer), or it is the
    one changed-file error naming the file, or, where the command opened the file twice
    and the cut fell between, the plain error of a blob that is short; never anything
    else. A cut before the first read of a file opened once is the changed-file error."""
    big = tmp_path / "big.vmb"
    big.write_bytes(big_blob())
    outcomes = {"changed": 0, "unaffected": 0, "short when opened": 0}
    for source in (STORAGE, PLAIN, SIGNED, big):
        size = source.stat().st_size
        for k, cut in ((1, size // 2), (1, 0), (2, 40), (3, size - 1), (4, size // 3),
                       (6, size - 20), (9, size // 2), (20, size // 4)):
            path, out = tmp_path / "shrinking.vmb", tmp_path / "out.vmb"
            shutil.copyfile(source, path)
            out.unlink(missing_ok=True)
            truncate_at_read(path, k, cut)
            args = [a.format(path, out=out) for a in COMMANDS[command]]
            if source == SIGNED:
                args += ["--key-file", FIXTURES / "test-key"]
            result = cli(*args)
            no_crash(result)
            changed = f"{inputs.CHANGED}: it was {size} bytes when opened"
            said = result.stdout if command == "validate" else result.stderr
            if changed in said:
                outcomes["changed"] += 1
                if command == "validate":
                    assert result.exit_code == 1
                    assert result.stdout.startswith(f"{path}: INVALID at {path} (offset ")
                else:
                    # diff cannot answer (exit 2) and names the side
                    sides = (" A", " B") if command == "diff" else ("",)  # one path twice
                    line = one_error(result.exit_code, 2 if sides[0] else 1, result.stderr)
                    assert any(line.startswith(f"Error: bad blob{side} at {path} (offset ")
                               for side in sides), line
                    assert not out.exists()
                continue
            assert k > 1 or command in OPENS_TWICE, (source.name, k, cut, said)
            if result.exit_code == 0 or (command == "diff" and result.exit_code == 1
                                         and not result.stderr.startswith("Error")):
                outcomes["unaffected"] += 1
            else:
                assert command in OPENS_TWICE, (source.name, k, cut, said)
                one_error(result.exit_code, 2 if command == "diff" else 1, result.stderr)
                outcomes["short when opened"] += 1
    # a command that reads a blob once (validate, restore) is done with the small ones
    # by the 9th or 20th read: those cuts come after, and change nothing
    assert outcomes["changed"] >= 12, outcomes
