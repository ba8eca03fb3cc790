"""The project's own errors: every bad input ends in one of these, never a traceback."""

from __future__ import annotations

from vmbtool.status import NtStatus


class VmbtoolError(Exception):
    """A failure the user can act on; the CLI prints it as one `Error:` line."""

    exit_code = 1

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
