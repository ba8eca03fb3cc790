"""A stop asked for by a signal (Ctrl-C's SIGINT, SIGTERM), raised in the main thread
as KeyboardInterrupt or Terminated so that every cleanup on the way out runs.

CPython may raise a signal handler's exception where it is then ignored (a weakref
callback, a `__del__`, the garbage collector: "Exception ignored in …"), and the command
would go on as if nothing had happened. So the stop is also recorded, and the loops
that take long (`check` between steps of work) and the CLI's end raise it again."""

from __future__ import annotations

import signal
from typing import Any

from vmbtool.errors import Terminated

_requested: list[int] = []  # the signal numbers received, in order


def stop_exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def on_signal(signum: int, _frame: Any) -> None:
    """The handler of SIGINT and SIGTERM while a command runs."""
    _requested.append(signum)
    raise stop_exception(signum)


def check() -> None:
    """Raise the stop again if one was asked for (its first raise may have been lost)."""
    if _requested:
        raise stop_exception(_requested[0])


def requested() -> int | None:
    return _requested[0] if _requested else None
