"""The project's own errors: every bad input ends in one of these, never a traceback.

Exit codes follow GNU `diff` and `cmp`: 0 yes (valid, equal, compatible), 1 no (invalid,
different, incompatible, or the operation failed on what it was given), 2 trouble (a
usage mistake, an input that cannot be read, an output that cannot be written)."""

from __future__ import annotations

from vmbtool.status import NtStatus

EXIT_YES, EXIT_NO, EXIT_TROUBLE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class VmbtoolError(Exception):
    """A failure the user can act on; the CLI prints it as one `Error:` line."""

    exit_code = EXIT_NO

    def __init__(self, what: str, where: str, why: str,
                 status: NtStatus = NtStatus.UNSUCCESSFUL) -> None:
        super().__init__(f"{what} at {where}: {why}")
        self.what = what
        self.where = where
        self.why = why
        self.status = status


class BlobError(VmbtoolError):
    """A blob is truncated, corrupt, hostile, of an unsupported version or a lie."""

    def __init__(self, where: str, why: str, status: NtStatus = NtStatus.DATA_ERROR) -> None:
        super().__init__("bad blob", where, why, status)


class UsageError(VmbtoolError):
    """A bad option or argument found past click's own checks (exit 2)."""

    exit_code = EXIT_TROUBLE

    def __init__(self, what: str, where: str, why: str) -> None:
        super().__init__(what, where, why, NtStatus.INVALID_PARAMETER)


class InputError(VmbtoolError):
    """An input that cannot be read at all: missing, unreadable, an I/O error (exit 2)."""

    exit_code = EXIT_TROUBLE


class OutputError(VmbtoolError):
    """An output that cannot be written (exit 2); what was there before is intact."""

    exit_code = EXIT_TROUBLE


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C's KeyboardInterrupt is, so that
    every cleanup on the way runs (the CLI exits 143)."""


class JsonError(VmbtoolError):
    """A JSON document that does not describe a blob (`encode`): the path of the first
    value that is wrong, what it should be and what it is (exit 1, as a bad blob)."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__("bad JSON", where, why, NtStatus.INVALID_PARAMETER)
