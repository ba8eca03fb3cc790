"""How much one channel (and one scenario chunk) may hold: the reader caps of FORMAT.md
"Limits" that save and restore share.

Save refuses a channel past a cap (no reader would take the blob), restore refuses a
chunk past one as it comes. Both read the caps from this module at call time.
"""

from __future__ import annotations

MAX_PACKETS_PER_CHANNEL = 1 << 18  # packet objects in use one channel may hold (FORMAT.md)
MAX_GPADLS_PER_CHANNEL = 1 << 16  # and GPADLs (a lean read's caps: FORMAT.md "Limits")
MAX_GUESTS = 1 << 12  # guest channels of a scenario chunk
