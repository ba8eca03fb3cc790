"""Whole scenarios to blobs and back: every server channel through the KMCL contract,
the simulated guest through the scenario chunk (`save`), checked as validate checks
(`check`), restored in one read (`restore`)."""

from typing import TYPE_CHECKING

from vmbtool.lazy import exports
from vmbtool.snapshot.check import (
    FileCheck,
    check_file,
    check_reader,
    check_scenario,
    client_state,
)
from vmbtool.snapshot.restore import (
    ONE_PASS_MAX,
    ONE_PASS_RATIO,
    ChannelFeed,
    RestoreFailed,
    check_config,
    restore_failure,
    restore_file,
    restore_guest,
    restore_once,
    restore_reader,
    restore_scenario,
)

if TYPE_CHECKING:
    from vmbtool.snapshot.save import (
        DEFAULT_CHUNK_SIZE,
        SAVE_BUFFER_SIZE,
        save_blob,
        save_chunks,
        scenario_state,
        split_buffers,
    )

# the save: imported when first asked for (a validate or a restore never saves)
__getattr__ = exports(__name__, {"save": (
    "DEFAULT_CHUNK_SIZE", "SAVE_BUFFER_SIZE", "save_blob", "save_chunks", "scenario_state",
    "split_buffers")})

__all__ = [
    "DEFAULT_CHUNK_SIZE", "ONE_PASS_MAX", "ONE_PASS_RATIO", "SAVE_BUFFER_SIZE", "ChannelFeed",
    "FileCheck", "RestoreFailed", "check_config", "check_file", "check_reader", "check_scenario",
    "client_state", "restore_failure", "restore_file", "restore_guest", "restore_once",
    "restore_reader", "restore_scenario", "save_blob", "save_chunks", "scenario_state",
    "split_buffers",
]
