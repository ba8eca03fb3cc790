"""Where a command's result goes: checked before the work, written after it, never
destroying what it should not.

    -                      stdout, one stream: the command sends its reports to stderr
    regular file / absent  replaced atomically: a temporary `.<name>.<random>.vmbtool-tmp`
                           in the target's directory, fsync, rename; the replaced file's
                           mode and owner carry over
    symlink                followed: its final target is replaced, the link stays
    /dev/fd/N, character   written straight through, never replaced (opening a FIFO
    device, FIFO, socket   waits for its reader, as `cat > fifo` does)
    anything else          refused, before any work: a directory (or a name ending in
                           `/`), an empty name, a block device, a missing or unwritable
                           directory, a file the user could not have written, and a
                           terminal when the output is a binary blob

A target is judged writable by its permission bits as the kernel judges a user who is not
root, and root as the file's owner: a 0444 blob is refused even to root, who could
otherwise overwrite it without a word.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import signal
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from vmbtool import stop
from vmbtool.errors import OutputError, UsageError

SUFFIX = b".vmbtool-tmp"
TOKEN_BYTES = 4  # 8 hex digits: `.<name>.<token>.vmbtool-tmp`
MAX_LINKS = 40  # as the kernel's own limit on symbolic links in one lookup
# the directory of the links that stand for open descriptors (/dev/fd -> /proc/self/fd)
DESCRIPTOR_DIRECTORY = re.compile(r"/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/fd")
WHAT = "cannot write output"
# Linux's terminals (Documentation/admin-guide/devices.txt): virtual consoles and serial
# ports (4), /dev/tty and /dev/console (5), pseudo-terminals (136-143)
TERMINAL_MAJORS = frozenset({4, 5, *range(136, 144)})
# what an output is written from: bytes, or pieces of bytes and spooled files (each read
# from its start in blocks: a large output need not be held whole)
Data = bytes | Sequence[bytes | IO[bytes]]
BLOCK = 1 << 20


@dataclass(frozen=True)
class Output:
    """A checked output: `kind` is "stdout", "stream" (written through) or "file"
    (replaced atomically); `target` is the path finally written."""

    path: str
    kind: str
    target: str
    binary: bool = False  # a blob: never to a terminal

    @property
    def where(self) -> str:
        return "stdout" if self.kind == "stdout" else self.path

    @property
    def shares_stdout(self) -> bool:
        """`-`, or a pipe or device that stdout is also open on (`/dev/fd/1`): a report
        printed to stdout would land inside the output."""
        if self.kind == "stdout":
            return True
        if self.kind == "file":  # replaced by a new file: what stdout holds is the old one
            return False
        try:
            return os.path.samestat(os.stat(self.target), os.fstat(sys.stdout.fileno()))
        except (AttributeError, OSError, ValueError):  # no stdout, or not a real descriptor
            return False

    def write(self, data: Data) -> None:
        """Write `data` whole, or raise OutputError with the old target intact."""
        current = check_output(self.path, binary=self.binary)  # what is there now
        try:
            if current.kind == "stdout":
                write_stdout(data)
            elif current.kind == "stream":
                write_through(current, data)
            else:
                replace_file(current.target, data)
        except OSError as exc:
            unchanged = "; the old file is unchanged" if (
                current.kind == "file" and os.path.lexists(current.target)) else ""
            raise OutputError(WHAT, self.where, why_not(exc) + unchanged) from None


def check_output(path: str, *, binary: bool = False) -> Output:
    """What writing `path` would do, or OutputError (exit 2) if it must not be done.
    `binary`: a blob, refused (UsageError) by a terminal behind a path; stdout's own
    terminal is the caller's to refuse, before it asks."""
    if path == "-":
        if sys.stdout is None or isinstance(sys.stdout, ClosedStdout):
            raise OutputError(WHAT, "stdout", "stdout is closed")
        return Output(path, "stdout", "-", binary)
    if not path:
        raise OutputError(WHAT, "''", "the file name is empty")
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise OutputError(WHAT, path, "a name ending in / is a directory, not a file")
    try:
        target, descriptor = resolve(path)
    except OSError as exc:  # a relative name, and the current directory was removed
        why = ("the current directory no longer exists" if exc.errno == errno.ENOENT
               else why_not(exc))
        raise OutputError(WHAT, path, why) from None
    directory = os.path.dirname(target)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        if descriptor:
            raise OutputError(WHAT, path, "no such open file descriptor") from None
        check_directory(path, directory)
        return Output(path, "file", target, binary)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ENOENT):
            check_directory(path, directory)
        raise OutputError(WHAT, path, why_not(exc)) from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(WHAT, path, "it is a directory")
    if stat.S_ISBLK(st.st_mode):
        raise OutputError(WHAT, path, "it is a block device (a disk); vmbtool writes "
                                      "files, pipes, sockets and character devices")
    if not descriptor and (why := why_unwritable(target, st, stat.S_IWUSR)):
        raise OutputError(WHAT, path, why)
    if binary and stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in TERMINAL_MAJORS:
        raise refuse_terminal(path)
    if descriptor or not stat.S_ISREG(st.st_mode):
        return Output(path, "stream", target, binary)
    check_directory(path, directory)
    return Output(path, "file", target, binary)


class ClosedStdout(io.TextIOBase):
    """Stands in for the stdout a process was started without (`vmbtool ... >&-`), so
    that what is written there is one `Error:` line, neither a traceback nor lost."""

    def writable(self) -> bool:
        return True

    def write(self, text: object) -> int:
        raise OutputError(WHAT, "stdout", "stdout is closed")

    @property
    def buffer(self) -> ClosedStdout:  # bytes written to sys.stdout.buffer fail the same
        return self


def refuse_terminal(path: str) -> UsageError:
    return UsageError("refusing to write a binary blob", path, "it is a terminal")


def resolve(path: str) -> tuple[str, bool]:
    """The path with every symbolic link followed, and whether it names an open
    descriptor (/dev/fd/N, /proc/self/fd/N), whose link must not be followed."""
    current = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    for _ in range(MAX_LINKS):
        directory = os.path.realpath(os.path.dirname(current))
        current = os.path.join(directory, os.path.basename(current))
        if DESCRIPTOR_DIRECTORY.fullmatch(directory):
            return current, True
        try:
            link = os.readlink(current)
        except OSError:  # not a link, absent, or unreachable: stat() tells which
            return current, False
        current = os.path.join(directory, link)  # an absolute link replaces the directory
    raise OutputError(WHAT, path, "too many levels of symbolic links")


def check_directory(path: str, directory: str) -> None:
    """The directory must exist and take a new file (the temporary, then the rename)."""
    try:
        st = os.stat(directory)
    except OSError as exc:
        reason = "does not exist" if exc.errno == errno.ENOENT else why_not(exc)
        raise OutputError(WHAT, path, f"directory {directory} {reason}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(WHAT, path, f"{directory} is not a directory")
    if why := why_unwritable(directory, st, stat.S_IWUSR | stat.S_IXUSR):
        raise OutputError(WHAT, path, f"directory {directory}: {why}")


def why_unwritable(path: str, st: os.stat_result, owner_bits: int) -> str | None:
    """Why the user may not write `path`, or None. The permission bits are read as the
    kernel reads them for a user who is not root, and root as the file's owner (root
    could write anything); then the kernel's own verdict (read-only mounts, ACLs)."""
    uid = os.geteuid()
    if uid in (0, st.st_uid):
        shift = 0
    elif st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        shift = 3
    else:
        shift = 6
    mode = stat.S_IMODE(st.st_mode)
    if mode & (owner_bits >> shift) != owner_bits >> shift:
        return f"no write permission (mode {mode:04o}, owner uid {st.st_uid})"
    if os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        return None
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "read-only file system" if read_only else "no write permission"


def blocks(data: Data) -> Iterator[bytes]:
    """The bytes of `data`, a piece or a block at a time."""
    if not isinstance(data, (list, tuple)):
        yield data  # type: ignore[misc]
        return
    for part in data:
        if isinstance(part, (bytes, bytearray)):
            yield part
            continue
        part.seek(0)
        while block := part.read(BLOCK):
            yield block


def write_stdout(data: Data) -> None:
    stream = sys.stdout.buffer
    try:
        for block in blocks(data):
            stream.write(block)
        stream.flush()
    except OSError:
        silence_stdout()
        raise


def silence_stdout() -> None:
    """After a failed write, point the descriptor at the null device so the
    interpreter's last flush of the same bytes cannot fail again with a traceback."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real descriptor (a test's captured stream)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def write_through(out: Output, data: Data) -> None:
    """A device, FIFO, socket or descriptor: written in place, never replaced."""
    if stat.S_ISSOCK(os.stat(out.target).st_mode):
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(out.target)
            for block in blocks(data):
                sock.sendall(block)
        return
    # O_TRUNC matters only for a regular file behind /dev/fd/N; devices ignore it
    fd = os.open(out.target, os.O_WRONLY | os.O_TRUNC | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if out.binary and os.isatty(fd):  # a terminal the device numbers did not show
            raise refuse_terminal(out.path)
        for block in blocks(data):
            write_all(fd, block)
    finally:
        os.close(fd)


def replace_file(target: str, data: Data) -> None:
    """Temporary beside the target, fsync, rename: the target is the old file or the
    whole new one, and no temporary stays whatever interrupts the write."""
    directory = os.path.dirname(target)
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    temporary, fd, renamed = None, -1, False
    try:
        with signals_held():  # an interrupt here must not lose the temporary's name
            temporary, fd = create_temporary(directory, os.path.basename(target))
        if old is not None:
            try:  # root keeps the owner; anyone else keeps their own group if they can
                os.fchown(fd, old.st_uid, old.st_gid)
            except PermissionError:
                pass
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
        else:
            os.fchmod(fd, 0o666 & ~current_umask())
        for block in blocks(data):
            write_all(fd, block)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        stop.check()  # a stop CPython swallowed on the way: the old file stays
        with signals_held():  # nor between the rename and noting it
            os.replace(temporary, os.fsencode(target))
            renamed = True
    finally:
        if fd >= 0:
            os.close(fd)
        if temporary is not None and not renamed:
            discard(temporary)
    sync_directory(directory)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM (which the CLI raises as exceptions) wait, pending in the
    kernel, until the block is done; they are then raised as usual."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def create_temporary(directory: str, name: str) -> tuple[bytes, int]:
    """`.<name>.<token>.vmbtool-tmp`, its name part cut so the whole fits NAME_MAX;
    created 0600 so nobody can open it before its mode is set."""
    try:
        name_max = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    room = name_max - len(b"..") - 2 * TOKEN_BYTES - len(SUFFIX)
    stem = os.fsencode(name)[:room]
    while True:
        temporary = os.path.join(os.fsencode(directory), b".%s.%s%s" % (
            stem, os.urandom(TOKEN_BYTES).hex().encode(), SUFFIX))
        try:
            return temporary, os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                                      os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def discard(temporary: bytes) -> None:
    try:
        os.unlink(temporary)
    except OSError:
        pass


def sync_directory(directory: str) -> None:
    """Best effort: the rename is done and the new file whole; a directory that cannot
    be opened or synced (write-only, some network filesystems) must not undo a save."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def why_not(exc: OSError) -> str:
    """The reason in plain words (the C library's own text, as `cp` prints it)."""
    if exc.errno == errno.EPIPE:
        return "the reader closed the pipe"
    if exc.errno == errno.ENXIO:
        return "nothing has it open for reading"
    if exc.errno == errno.ECONNREFUSED:
        return "nothing is listening on the socket"
    return exc.strerror or os.strerror(exc.errno or 0) or "write failed"


def write_output(path: str, data: bytes) -> None:
    """Check `path`, then write `data` to it (for callers with no work in between)."""
    check_output(path).write(data)
