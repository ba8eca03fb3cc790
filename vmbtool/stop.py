"""A stop asked for by a signal (Ctrl-C's SIGINT, SIGTERM), raised in the main thread
as KeyboardInterrupt or Terminated so that every cleanup on the way out runs.

CPython may raise a signal handler's exception where it is then ignored (a weakref
callback, a `__del__`, the garbage collector: "Exception ignored in …"), and the command
would go on as if nothing had happened. So the stop is also recorded, and the loops
that take long (`check` between steps of work) and the CLI's end raise it again."""

from __future__ import annotations

import signal
import sys
from typing import Any

from vmbtool.errors import Terminated

_requested: list[int] = []  # the signal numbers received, in order


def stop_exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def on_signal(signum: int, _frame: Any) -> None:
    """The handler of SIGINT and SIGTERM while a command runs. The first stop is raised;
    a later one, while the first is being handled (cleanups running), only ends the
    process at once, by the signal itself: never a second exception in a cleanup."""
    _requested.append(signum)
    if len(_requested) == 1:
        raise stop_exception(signum)
    import os

    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install() -> None:
    """SIGINT and SIGTERM raise here, in the main thread, from now on; and a stop that
    CPython swallows is not reported as "Exception ignored … Traceback" (it was noted,
    and is raised again at the next `check`)."""
    global _report_unraisable
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if sys.unraisablehook is not _quiet_about_stops:
        _report_unraisable = sys.unraisablehook
        sys.unraisablehook = _quiet_about_stops


def _quiet_about_stops(unraisable: Any) -> None:
    if _requested and isinstance(unraisable.exc_value, KeyboardInterrupt):
        return  # our stop, noted: raised again at the next check
    _report_unraisable(unraisable)


_report_unraisable = sys.__unraisablehook__


def check() -> None:
    """Raise the stop again if one was asked for (its first raise may have been lost)."""
    if _requested:
        raise stop_exception(_requested[0])


def requested() -> int | None:
    return _requested[0] if _requested else None
