"""Semantic checks on a saved channel: what parses and checksums but cannot be true.

Restore refuses a channel with any problem before it changes anything; validate
reports every problem with its field path.

The checks, by what they read: a ring's control fields and packets (`rings`), a packet's
external data (`external`), a server channel's parts in blob order (`channel`), a
simulated guest's channel (`guest`); each problem a (field path, why) pair, a channel's
first MAX_PROBLEMS kept (`problems`; read there, so a test that lowers it patches
`vmbtool.invariants.problems`).
"""

from vmbtool.invariants.channel import OPENED_STATES, ChannelCheck
from vmbtool.invariants.external import EXTERNAL_TYPES, check_external, check_external_shape
from vmbtool.invariants.guest import check_guest
from vmbtool.invariants.problems import MAX_PROBLEMS, Problem, Problems
from vmbtool.invariants.rings import (
    WALK_BLOCK,
    RingIndex,
    check_ring,
    check_ring_control,
    used_bytes,
    walk_ring,
)

__all__ = [
    "EXTERNAL_TYPES", "MAX_PROBLEMS", "OPENED_STATES", "WALK_BLOCK", "ChannelCheck", "Problem",
    "Problems", "RingIndex", "check_external", "check_external_shape",
    "check_guest", "check_ring", "check_ring_control", "used_bytes", "walk_ring",
]
