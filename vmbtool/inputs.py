"""What a command reads, opened so that it can neither hang nor flood: blob files,
stdin, pipes, key files and folders of blobs.

A blob reader needs a seekable file whose size holds still while it is read. A regular
file (or a block device) is read in place, through a `BlobFile` that notices a file
shrinking under the reader and turns an I/O error into an `InputError`. Anything else is
a stream: stdin (`-`), a pipe or process substitution (`/dev/fd/N`), a FIFO, a `/proc`
file, a character device. A stream's header is read and checked first, so one that is
no blob (endless zeros, say) is refused before anything of it is kept; the rest is then
spooled, up to `MAX_SPOOLED_BLOB`: the format caps each chunk, channel and frame window
but not a blob's length, so that cap is this tool's own (README, "Inputs")."""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from typing import IO

from vmbtool.errors import BlobError, InputError, UsageError
from vmbtool.text import escape

STDIN = "-"
MAX_SPOOLED_BLOB = 4 << 30  # bytes of a blob read from a stream that are kept to read it
SPOOL_IN_MEMORY = 32 << 20  # the first bytes of a spooled blob stay in memory
SPOOL_BLOCK = 1 << 20
MAX_KEY_SIZE = 64 << 10  # an HMAC-SHA256 key of more than this is no key (--key-file)
CHANGED = "the file changed while it was read"

# reads a blob's header from a stream and raises BlobError when it is none (blob.py)
HeadCheck = Callable[[IO[bytes]], bytes]


def describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def in_units(size: int) -> str:
    """4 GiB, 64 KiB: a power-of-two size as a person writes it."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and not size % (1 << shift):
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


class BlobFile(io.FileIO):
    """A blob file read in place. A read that ends before the size the file had when it
    was opened means the file shrank: the blob error CHANGED, naming the file, instead of
    a short read meeting a checksum or a struct unpack deep in the reader."""

    size = -1  # set once the file is known to be seekable; -1: no size to hold it to

    def readinto(self, buffer) -> int | None:
        pos = self.tell()
        try:
            n = super().readinto(buffer)
        except OSError as exc:
            raise InputError("cannot read blob", f"{self.name} (offset {pos})",
                             describe(exc)) from None
        if n is not None and n < memoryview(buffer).nbytes and pos + n < self.size:
            raise BlobError(f"{self.name} (offset {pos + n})",
                            f"{CHANGED}: it was {self.size} bytes when opened, now it "
                            f"ends at {pos + n}")
        return n


def is_stream(st: os.stat_result) -> bool:
    """Whether a file must be read as a stream: not a regular file (nor a block device),
    or a regular file that claims no size (`/proc`, `/sys`: their size is not what they
    hold, and many cannot seek)."""
    if stat.S_ISBLK(st.st_mode):
        return False
    return not stat.S_ISREG(st.st_mode) or st.st_size == 0


def names_a_stream(source: str) -> bool:
    """Whether the blob `source` (a path or `-`) will be read as a stream; looked at
    without opening it (opening a FIFO could wait for a writer, or take its data)."""
    if source == STDIN:
        return True
    try:
        return is_stream(os.stat(source))
    except OSError:
        return False  # opening it says why


def open_blob(source: str, check_head: HeadCheck) -> tuple[IO[bytes], int]:
    """A seekable stream of the blob `source` (a path or `-`) and its size."""
    if source == STDIN:
        return spool(stdin(), "stdin", check_head)
    try:
        raw = BlobFile(source)
    except OSError as exc:
        raise InputError("cannot read blob", source, describe(exc)) from None
    try:
        if is_stream(os.fstat(raw.fileno())):
            with raw:
                return spool(raw, source, check_head)
        raw.size = raw.seek(0, os.SEEK_END)
        raw.seek(0)
        return io.BufferedReader(raw), raw.size
    except BaseException:
        raw.close()
        raise


def stdin() -> IO[bytes]:
    """Stdin, to read a blob from: not when closed, nor a terminal (where a forgotten
    `< file` would only wait: nobody types a blob)."""
    if sys.stdin is None:  # the process was started with fd 0 closed
        raise InputError("cannot read blob", "stdin", "stdin is closed")
    if sys.stdin.isatty():
        raise InputError("cannot read blob", "stdin", "stdin is a terminal: give the "
                         "blob as a file, or pipe it in")
    return sys.stdin.buffer


def spool(stream: IO[bytes], where: str, check_head: HeadCheck) -> tuple[IO[bytes], int]:
    """A stream's blob in a temporary file (in memory up to SPOOL_IN_MEMORY), once its
    header has been checked; at most MAX_SPOOLED_BLOB bytes are kept."""
    try:
        head = check_head(stream)
        kept = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    except (OSError, ValueError) as exc:  # ValueError: a closed stdin object
        raise InputError("cannot read blob", where, stream_problem(exc)) from None
    try:
        kept.write(head)
        size = len(head)
        while True:
            try:
                block = stream.read(SPOOL_BLOCK)
            except (OSError, ValueError) as exc:
                raise InputError("cannot read blob", f"{where} (offset {size})",
                                 stream_problem(exc)) from None
            if not block:
                break
            size += len(block)
            if size > MAX_SPOOLED_BLOB:
                raise InputError("cannot read blob", where,
                                 f"longer than {in_units(MAX_SPOOLED_BLOB)}, the most "
                                 "vmbtool keeps of a blob read from a pipe or stdin "
                                 "(give it as a file)")
            try:
                kept.write(block)
            except OSError as exc:
                raise InputError("cannot keep blob", f"{where} (offset {size})",
                                 f"its temporary copy: {describe(exc)}") from None
        kept.seek(0)
        return kept, size
    except BaseException:
        kept.close()
        raise


MAX_SCHEMA_SIZE = 16 << 20  # a format description is about 100 KB
MAX_JSON_DOCUMENT = MAX_SPOOLED_BLOB * 3  # decode's JSON of the largest blob read from a
# stream: hex doubles the bytes, and the keys and layout add about half again


def read_document(source: str, what: str, limit: int) -> tuple[bytes, str]:
    """The bytes of a JSON document in file `source` or on stdin (`-`), and where it
    came from. Read in blocks: a document larger than `limit` is refused, and so is
    one whose first bytes cannot open a JSON object (a device of endless zeros, a
    binary), as soon as they are seen; the caller's parser says what is wrong."""
    where = "stdin" if source == "-" else source
    try:
        if source == "-":
            if sys.stdin is None:
                raise InputError(f"cannot read {what}", where, "stdin is closed")
            if sys.stdin.isatty():
                raise InputError(f"cannot read {what}", where, "stdin is a terminal: give "
                                 "the document as a file, or pipe it in")
            return read_bounded(sys.stdin.buffer, what, where, limit), where
        with open(source, "rb") as f:
            return read_bounded(f, what, where, limit), where
    except (OSError, ValueError) as exc:  # ValueError: a closed stdin object
        why = stream_problem(exc) if isinstance(exc, ValueError) else describe(exc)
        raise InputError(f"cannot read {what}", where, why) from None


def read_bounded(stream: IO[bytes], what: str, where: str, limit: int) -> bytes:
    parts, size = [], 0
    while block := stream.read(SPOOL_BLOCK):
        if not parts and not block.lstrip(b" \t\r\n\xef\xbb\xbf").startswith(b"{"):
            return block  # not a JSON object: the parser's error names what it is
        parts.append(block)
        size += len(block)
        if size > limit:
            raise InputError(f"cannot read {what}", where, f"longer than {in_units(limit)}, "
                             f"more than any {what} document vmbtool reads")
    return b"".join(parts)


def stream_problem(exc: OSError | ValueError) -> str:
    return describe(exc) if isinstance(exc, OSError) else "the stream is closed"


def stdin_once(sources: Iterable[str]) -> None:
    """Stdin can be read once: `-` for two inputs of one command is a usage mistake
    (the second would read nothing)."""
    if list(sources).count(STDIN) > 1:
        raise UsageError("bad arguments", "-", "stdin can be read once: give - for one "
                         "input only")


# -- keys ----------------------------------------------------------------------------


def read_key_file(path: str, blob_sources: Iterable[str] = ()) -> bytes:
    """The bytes of a key file (`-`: stdin), at most MAX_KEY_SIZE of them; every
    problem is a usage mistake. `blob_sources` are the command's inputs: stdin cannot be
    both the key and a blob."""
    where = "stdin" if path == STDIN else path
    if path == STDIN and STDIN in blob_sources:
        raise UsageError("bad key file", "--key-file -",
                         "stdin cannot hold both the key and the input; give the key as a "
                         "file")
    try:
        if path == STDIN:
            if sys.stdin is None:
                raise UsageError("cannot read key file", where, "stdin is closed")
            key = sys.stdin.buffer.read(MAX_KEY_SIZE + 1)
        else:
            with open(path, "rb") as f:
                key = f.read(MAX_KEY_SIZE + 1)
    except (OSError, ValueError) as exc:
        raise UsageError("cannot read key file", where, stream_problem(exc)) from None
    if len(key) > MAX_KEY_SIZE:
        raise UsageError("bad key file", where, f"larger than {in_units(MAX_KEY_SIZE)}: "
                         "a key file holds the key alone")
    if not key:
        raise UsageError("bad key file", where, "the key file is empty")
    return key


# -- folders of blobs ------------------------------------------------------------------


def blobs_in(folder: str, notice: Callable[[str], None] | None = None) -> list[str]:
    """The blobs (regular `*.vmb` files, links to one followed) of a folder, sorted.

    Other `*.vmb` entries (FIFOs, sockets, device nodes, folders) are skipped, and said
    so through `notice`: opening a FIFO would wait for a writer forever. A folder with
    no blob is a usage mistake, which says where its subfolders hold some."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".vmb"))
    except OSError as exc:
        raise InputError("cannot read folder", escape(folder), describe(exc)) from None
    found, skipped = [], []
    for name in names:
        path = os.path.join(folder, name)
        try:
            st = os.stat(path)
        except OSError:
            found.append(path)  # a dangling link: its verdict says it cannot be read
            continue
        if stat.S_ISREG(st.st_mode):
            found.append(path)
        else:
            skipped.append(name)
    if skipped and notice is not None:
        shown = ", ".join(escape(n) for n in skipped[:5])
        more = f", … ({len(skipped) - 5} more)" if len(skipped) > 5 else ""
        what = ("entry that is not a regular file" if len(skipped) == 1 else
                "entries that are not regular files")
        notice(f"{escape(folder)}: skipped {len(skipped)} {what}: {shown}{more}")
    if not found:
        deeper = blobs_below(folder)
        hint = (f" ({deeper} in its subdirectories: give them, or "
                f"{os.path.join(folder, '*', '')})") if deeper else ""
        raise UsageError("no blobs to validate", escape(folder),
                         f"no *.vmb file in it{hint}")
    return found


def blobs_below(folder: str) -> int:
    """The regular `*.vmb` files one level down (what `folder/*/` would give)."""
    count = 0
    for entry in os.scandir(folder):
        if not entry.is_dir():
            continue
        try:
            count += sum(n.endswith(".vmb") and os.path.isfile(os.path.join(entry.path, n))
                         for n in os.listdir(entry.path))
        except OSError:
            continue
    return count
