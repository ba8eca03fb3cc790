"""GPADLs: guest buffers described by page frame numbers (DOMAIN.md §1).

The client creates a GPADL from guest pages; the server maps and unmaps it; the client
deletes it once the server no longer maps it. Handles are unique per channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmbtool.sim.wire import PAGE_SIZE, pfn_count
from vmbtool.status import NtStatus

FIRST_GPADL_HANDLE = 0x100
MAX_GPADL_HANDLE = 0xFFFF  # transfer page set ids are u16: our handles stay below this


@dataclass
class Gpadl:
    """A guest physical address descriptor list: the pages of a buffer both sides map."""

    handle: int
    pfns: tuple[int, ...]
    byte_offset: int
    byte_length: int
    read_only: bool
    mapped: bool = False

    def contains(self, byte_offset: int, byte_count: int) -> bool:
        """Whether [byte_offset, byte_offset + byte_count) lies inside the buffer."""
        return 0 <= byte_offset and byte_offset + byte_count <= self.byte_length


@dataclass
class GpadlTable:
    """A channel's GPADLs by handle, and the handle the next one gets."""

    gpadls: dict[int, Gpadl] = field(default_factory=dict)
    next_handle: int = FIRST_GPADL_HANDLE

    def create(
        self, pfns: tuple[int, ...], byte_offset: int, byte_length: int, read_only: bool
    ) -> tuple[NtStatus, int]:
        if not pfns:
            return NtStatus.INVALID_PARAMETER_1, 0
        if not 0 <= byte_offset < PAGE_SIZE:
            return NtStatus.INVALID_PARAMETER_2, 0
        if byte_length <= 0 or pfn_count(byte_offset, byte_length) != len(pfns):
            return NtStatus.INVALID_PARAMETER_3, 0
        if self.next_handle > MAX_GPADL_HANDLE:
            return NtStatus.INSUFFICIENT_RESOURCES, 0
        handle = self.next_handle
        self.next_handle += 1
        self.gpadls[handle] = Gpadl(handle, tuple(pfns), byte_offset, byte_length, read_only)
        return NtStatus.SUCCESS, handle

    def map(self, handle: int) -> tuple[NtStatus, Gpadl | None]:
        gpadl = self.gpadls.get(handle)
        if gpadl is None:
            return NtStatus.INVALID_PARAMETER_2, None
        if gpadl.mapped:
            return NtStatus.INVALID_DEVICE_STATE, None
        gpadl.mapped = True
        return NtStatus.SUCCESS, gpadl

    def unmap(self, handle: int) -> NtStatus:
        gpadl = self.gpadls.get(handle)
        if gpadl is None:
            return NtStatus.INVALID_PARAMETER_2
        if not gpadl.mapped:
            return NtStatus.INVALID_DEVICE_STATE
        gpadl.mapped = False
        return NtStatus.SUCCESS

    def delete(self, handle: int) -> NtStatus:
        gpadl = self.gpadls.get(handle)
        if gpadl is None:
            return NtStatus.INVALID_PARAMETER_2
        if gpadl.mapped:
            return NtStatus.INVALID_DEVICE_STATE  # the server still maps it
        del self.gpadls[handle]
        return NtStatus.SUCCESS
