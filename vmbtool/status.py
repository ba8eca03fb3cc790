"""NTSTATUS values used by the kernel-mode client library (DOMAIN.md §4)."""

from __future__ import annotations

from enum import IntEnum


class NtStatus(IntEnum):
    SUCCESS = 0x00000000
    PENDING = 0x00000103
    BUFFER_OVERFLOW = 0x80000005
    UNSUCCESSFUL = 0xC0000001
    INVALID_PARAMETER = 0xC000000D
    MORE_PROCESSING_REQUIRED = 0xC0000016
    BUFFER_TOO_SMALL = 0xC0000023
    DATA_ERROR = 0xC000003E
    CRC_ERROR = 0xC000003F
    REVISION_MISMATCH = 0xC0000059
    INSUFFICIENT_RESOURCES = 0xC000009A
    INVALID_PARAMETER_1 = 0xC00000EF
    INVALID_PARAMETER_2 = 0xC00000F0
    INVALID_PARAMETER_3 = 0xC00000F1
    CANCELLED = 0xC0000120
    INVALID_DEVICE_STATE = 0xC0000184
    INVALID_BUFFER_SIZE = 0xC0000206
    DEVICE_REMOVED = 0xC00002B6

    @property
    def severity(self) -> int:
        """The two top bits: 0 success, 1 informational, 2 warning, 3 error."""
        return self.value >> 30

    def __str__(self) -> str:
        return f"STATUS_{self.name} (0x{self.value:08X})"


def nt_success(status: int) -> bool:
    """NT_SUCCESS(): true for success and informational severities.

    KMCL: STATUS_MORE_PROCESSING_REQUIRED (0xC0000016) fails NT_SUCCESS yet means
    "continue" for VmbChannelRestoreFromBuffer; callers test for it explicitly.
    """
    return (status >> 30) in (0, 1)


class NtStatusError(Exception):
    """A library call failed with an NTSTATUS; `where` names the field or argument."""

    def __init__(self, status: NtStatus, message: str, where: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.where = where

    def __str__(self) -> str:
        at = f" at {self.where}" if self.where else ""
        return f"{self.status.name}{at}: {self.args[0]}"
