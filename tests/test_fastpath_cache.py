"""The on-disk cache of the fast path's compiled code (vmbtool/fastpath.py,
`compiled_code`): a hit gives the same parses and builds as a fresh compile, a damaged
or foreign entry is ignored (and written anew), an unusable cache directory only costs
the compile, and a changed source text never meets an old entry.

Every test points VMBTOOL_CACHE_DIR at its own temporary directory (conftest.py points
the whole run at one, never the user's ~/.cache/vmbtool)."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from construct import Int8ul, Int16ul, Struct

from vmbtool import fastpath
from vmbtool.blob import load_blob
from vmbtool.formats.chunk import CHUNK_TYPES

BLOB = ROOT / "fixtures" / "v1.1"
SAMPLE = sorted(p for p in BLOB.glob("*.vmb") if not p.stem.endswith("-signed"))[0]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache directory that does not exist yet (as on a fresh machine)."""
    directory = tmp_path / "not" / "yet" / "there"
    monkeypatch.setenv(fastpath.CACHE_ENV, str(directory))
    return directory


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.fpc"))


def chunks() -> list[tuple[object, bytes]]:
    blob = load_blob(str(SAMPLE))
    return [(CHUNK_TYPES[chunk.type].grammar, chunk.data) for chunk in blob.chunks]


def answers(pairs) -> list[tuple[object, bytes]]:
    """Each chunk parsed and built again by a freshly compiled fast path."""
    out = []
    for grammar, data in pairs:
        fast = fastpath.compile_grammar(grammar)
        obj, used = fast.parse_from(data)
        assert used == len(data)
        out.append((obj, fast.build(obj)))
    return out


def test_the_cache_is_created_and_a_hit_gives_the_same_answers(cache, monkeypatch):
    pairs = chunks()
    first = answers(pairs)
    assert cache.is_dir()
    written = entries(cache)
    for grammar, _data in pairs:  # one entry for each grammar's source
        source = fastpath.compile_grammar(grammar).source
        assert cache / (fastpath.cache_key(source, "<fastpath Struct>") + ".fpc") in written
    assert not [p for p in cache.iterdir() if p.suffix != ".fpc"]  # no temporary left

    def refuse(*args, **kwargs):
        raise AssertionError("compiled although the cache holds it")

    monkeypatch.setattr(fastpath, "compile", refuse, raising=False)
    again = answers(pairs)
    assert again == first
    for (grammar, data), (obj, built) in zip(pairs, again, strict=True):
        assert obj == grammar.parse(data)
        assert built == grammar.build(obj) == data
    assert entries(cache) == written


def test_a_damaged_entry_is_ignored_and_written_anew(cache):
    grammar = Struct("a" / Int8ul, "b" / Int16ul)
    good = fastpath.compile_grammar(grammar)
    (entry,) = entries(cache)
    intact = entry.read_bytes()
    head = len(fastpath._CACHE_MAGIC)
    other = fastpath.compiled_code("def parse_from(data):\n    return 'evil', 0\n",
                                   "<fastpath Struct>")
    evil = marshal.dumps(other)
    damaged = [
        b"",  # empty
        intact[:len(intact) // 2],  # truncated
        intact[:-1] + bytes([intact[-1] ^ 1]),  # a flipped bit in the code
        intact[:head + 40] + bytes([intact[head + 40] ^ 1]) + intact[head + 41:],  # digest
        b"junk" + intact[4:],  # not our magic
        intact[:head + 64] + evil,  # another code object under the old digest
        b"\x00" * len(intact),
    ]
    for bad in damaged:
        entry.write_bytes(bad)
        fast = fastpath.compile_grammar(grammar)
        assert fast.source == good.source
        assert fast.parse(b"\x01\x02\x03") == {"a": 1, "b": 0x0302}
        assert fast.build({"a": 1, "b": 0x0302}) == b"\x01\x02\x03"
        assert entry.read_bytes() == intact  # rewritten whole


def test_an_entry_under_another_key_is_not_used(cache):
    """Two sources, the second's file replaced by the first's entry: refused."""
    for n in (1, 2):
        fastpath.compiled_code(f"def f():\n    return {n}\n", "<t>")
    first, second = (cache / (fastpath.cache_key(f"def f():\n    return {n}\n", "<t>")
                              + ".fpc") for n in (1, 2))
    second.write_bytes(first.read_bytes())
    namespace: dict = {}
    exec(fastpath.compiled_code("def f():\n    return 2\n", "<t>"), namespace)
    assert namespace["f"]() == 2
    assert second.read_bytes() != first.read_bytes()  # written anew


def test_a_changed_text_is_compiled_not_taken_from_the_cache(cache):
    narrow = fastpath.compile_grammar(Struct("a" / Int8ul))
    wide = fastpath.compile_grammar(Struct("a" / Int16ul))
    assert narrow.source != wide.source
    assert len(entries(cache)) == 2
    assert narrow.parse(b"\x01\x02") == {"a": 1}
    assert wide.parse(b"\x01\x02") == {"a": 0x0201}
    # the key follows the text, the name and the interpreter's bytecode version
    key = fastpath.cache_key("x = 1\n", "<t>")
    assert key != fastpath.cache_key("x = 2\n", "<t>")
    assert key != fastpath.cache_key("x = 1\n", "<u>")
    assert key == fastpath.cache_key("x = 1\n", "<t>")


def test_a_cache_that_cannot_be_made_only_costs_the_compile(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for where in (blocker / "cache", blocker, "/dev/null/vmbtool"):
        monkeypatch.setenv(fastpath.CACHE_ENV, str(where))
        fast = fastpath.compile_grammar(Struct("a" / Int8ul, "b" / Int16ul))
        assert fast.parse(b"\x01\x02\x03") == {"a": 1, "b": 0x0302}
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only directories")
def test_a_read_only_cache_only_costs_the_compile(cache):
    cache.mkdir(parents=True)
    cache.chmod(0o500)
    try:
        fast = fastpath.compile_grammar(Struct("a" / Int8ul))
        assert fast.parse(b"\x07") == {"a": 7}
        assert entries(cache) == []
    finally:
        cache.chmod(0o700)


def test_the_cache_keeps_a_bounded_number_of_files(cache, monkeypatch):
    monkeypatch.setattr(fastpath, "CACHE_FILES", 3)
    stale = cache / ".0123456789abcdef.1.00000000.tmp"
    cache.mkdir(parents=True)
    stale.write_bytes(b"left by a killed run")
    os.utime(stale, (0, 0))
    for n in range(6):
        fastpath.compiled_code(f"x = {n}\n", "<t>")
        assert len(entries(cache)) == min(n + 1, 3)
    assert not stale.exists()
    newest = cache / (fastpath.cache_key("x = 5\n", "<t>") + ".fpc")
    assert newest.exists()


def test_the_default_location_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(fastpath.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fastpath.cache_dir() == str(tmp_path / "xdg" / "vmbtool")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fastpath.cache_dir() == str(tmp_path / "home" / ".cache" / "vmbtool")
    monkeypatch.setenv(fastpath.CACHE_ENV, str(tmp_path / "mine"))
    assert fastpath.cache_dir() == str(tmp_path / "mine")


def test_the_command_writes_the_cache_and_reads_it_back(tmp_path):
    """Two real runs of `vmbtool validate`: the first fills a fresh cache, the second
    takes every fast path from it and says the same."""
    directory = tmp_path / "fresh"
    env = {**os.environ, fastpath.CACHE_ENV: str(directory)}
    argv = [sys.executable, "-m", "vmbtool", "validate", str(SAMPLE)]
    first = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert first.returncode == 0, first.stderr
    written = {p.name: p.stat().st_mtime_ns for p in entries(directory)}
    assert written
    second = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert (second.returncode, second.stdout, second.stderr) == \
        (first.returncode, first.stdout, first.stderr)
    assert {p.name: p.stat().st_mtime_ns for p in entries(directory)} == written


# -- a shared or hostile cache directory: nothing the cache did not write is read or removed


def one_entry(cache: Path) -> Path:
    fastpath.compiled_code("x = 1\n", "<hostile-test>")
    (entry,) = entries(cache)
    return entry


def test_a_fifo_under_an_entrys_name_is_not_waited_on(cache):
    entry = one_entry(cache)
    entry.unlink()
    os.mkfifo(entry)
    code = fastpath.compiled_code("x = 1\n", "<hostile-test>")  # would block on open()
    assert code.co_filename == "<hostile-test>"
    assert entry.is_fifo()  # neither read nor replaced: not the cache's to touch


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_symlink_to_an_endless_device_is_not_read(cache, tmp_path):
    import stat

    entry = one_entry(cache)
    zero = tmp_path / "zero"  # a zero device of the test's own, never the machine's
    os.mknod(zero, stat.S_IFCHR | 0o666, os.makedev(1, 5))
    entry.unlink()
    entry.symlink_to(zero)
    code = fastpath.compiled_code("x = 1\n", "<hostile-test>")
    assert code.co_filename == "<hostile-test>"


def test_an_oversized_entry_is_not_read(cache, monkeypatch):
    entry = one_entry(cache)
    entry.write_bytes(fastpath._CACHE_MAGIC + b"\0" * (fastpath.MAX_ENTRY + 1))
    read = []
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: (read.append(n), real(fd, n))[1])
    assert fastpath._load(str(entry), b"\0" * 32, "<hostile-test>") is None
    assert sum(read) == 0


def test_pruning_removes_only_what_the_cache_wrote(cache, monkeypatch):
    """A shared folder: old temporaries and surplus entries of its own go; look-alike
    names, other programs' files, symlinks and folders stay."""
    monkeypatch.setattr(fastpath, "CACHE_FILES", 2)
    cache.mkdir(parents=True)
    foreign = {
        ".someone.else.tmp": b"a",  # .*.tmp, but not the cache's temporary name
        f"{'0' * 64}.fpc": b"not an entry of ours",  # the entry name, not the content
        "notes.fpc": fastpath._CACHE_MAGIC,  # the content, not the name
        "keep.txt": b"b",
    }
    for name, data in foreign.items():
        (cache / name).write_bytes(data)
    (cache / f"{'1' * 64}.fpc").symlink_to(cache / "keep.txt")
    (cache / f"{'2' * 64}.fpc").mkdir()
    stale = cache / f".{'a' * 16}.123.{'b' * 8}.tmp"  # a killed run's temporary
    stale.write_bytes(b"partial")
    old = 1_000_000_000
    for path in [cache / name for name in foreign] + [stale]:
        os.utime(path, (old, old))
    for i in range(4):
        fastpath.compiled_code(f"x = {i}\n", "<prune-test>")
    left = {p.name for p in cache.iterdir()}
    assert set(foreign) | {f"{'1' * 64}.fpc", f"{'2' * 64}.fpc"} <= left
    assert stale.name not in left
    assert len([n for n in left if fastpath._ENTRY_NAME.fullmatch(n)
                and (cache / n).is_file() and not (cache / n).is_symlink()
                and (cache / n).read_bytes().startswith(fastpath._CACHE_MAGIC)]) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_another_users_entries_are_neither_read_nor_removed(cache, monkeypatch):
    monkeypatch.setattr(fastpath, "CACHE_FILES", 1)
    entry = one_entry(cache)
    os.chown(entry, 4321, 4321)
    assert fastpath._load(str(entry), bytes.fromhex(entry.stem), "<hostile-test>") is None
    for i in range(3):
        fastpath.compiled_code(f"y = {i}\n", "<prune-test>")
    assert entry.exists()


def test_the_cache_is_bounded_in_bytes_too(cache, monkeypatch):
    """Past `CACHE_BYTES` the oldest entries go, whatever their count."""
    for i in range(3):
        fastpath.compiled_code(f"z = {i}\n", "<bytes-test>")
    sizes = [p.stat().st_size for p in entries(cache)]
    monkeypatch.setattr(fastpath, "CACHE_BYTES", sum(sizes) + max(sizes))  # room for 4
    for i in range(3, 8):
        fastpath.compiled_code(f"z = {i}\n", "<bytes-test>")
    kept = entries(cache)
    assert len(kept) < 8 and sum(p.stat().st_size for p in kept) <= fastpath.CACHE_BYTES
