"""The KMCL save/restore contract as free functions named after the C API (DOMAIN.md §3).

Each takes the channel first, as the kernel-mode client library's calls do:

    save_begin(channel)                   VmbChannelSaveBegin
    save_continue(channel, size)          VmbChannelSaveContinue
    save_end(channel)                     VmbChannelSaveEnd
    restore_from_buffer(channel, buffer)  VmbChannelRestoreFromBuffer
    packet_restore(packet, lib_buf)       VmbPacketRestore (the packet knows its channel)

The simulated bus (`vmbtool.sim`) knows nothing of saving: these functions read and set
the channel's state from outside, so the layers below never import this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmbtool.kmcl.restore import packet_restore, restore_from_buffer
from vmbtool.lazy import exports

if TYPE_CHECKING:
    from vmbtool.kmcl.save import save_begin, save_channel, save_continue, save_end

# the save: imported when first asked for (a restore or a check never saves)
__getattr__ = exports(__name__, {
    "save": ("save_begin", "save_channel", "save_continue", "save_end")})

__all__ = [
    "packet_restore",
    "restore_from_buffer",
    "save_begin",
    "save_channel",
    "save_continue",
    "save_end",
]
