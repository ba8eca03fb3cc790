"""The pieces the click commands share (vmbtool/cli.py): the group that turns errors and
stops into exit codes, the signal handlers, the options every command takes, keys,
outputs, JSON and colour on stdout, progress bars. Nothing here imports a heavy module
at start-up: `--help` stays quick."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

SCENARIO_NAMES = ("storage", "network", "pipe")
KEY_ENV = "VMBTOOL_KEY_FILE"


class VmbtoolGroup(click.Group):
    """Turns the project's errors into one `Error:` line and their exit code (1 no, 2
    trouble), and a stop (Ctrl-C, SIGTERM) into exit 130 or 143 once every cleanup on
    the way out has run."""

    as_program = False  # run as the console script: the signal handlers are ours

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        if args is None:  # the console script (not a caller passing arguments)
            import atexit
            import gc

            # the interpreter's last garbage collection at exit walks every object
            # the command made (about 15 ms after validate); the process ends anyway
            atexit.register(gc.freeze)
            self.as_program = True
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return self.invoke_command(ctx)
        except KeyboardInterrupt as exc:  # a stop that came while the command's own
            # cleanup ran (its exit, a finally): still 130 or 143, never click's "Aborted!"
            exit_stopped(ctx, exc)

    def invoke_command(self, ctx: click.Context) -> Any:
        from vmbtool import stop
        from vmbtool.errors import VmbtoolError

        if sys.stdout is None:  # started with stdout closed (`>&-`)
            from vmbtool.output import ClosedStdout

            sys.stdout = ClosedStdout()
        try:
            if self.as_program:
                stop_by_exception()
            result = super().invoke(ctx)
            stop.check()  # a stop whose first raise was lost must not end as success
            return result
        except VmbtoolError as exc:
            if stop.requested() is not None:  # the stop's doing (a read cut short)
                exit_stopped(ctx, stop.stop_exception(stop.requested()))
            if ctx.obj and ctx.obj.get("debug"):
                import traceback

                traceback.print_exc()
            from vmbtool.text import escape

            click.echo(f"Error: {escape(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:  # the reader of stdout went away (`| head`): an I/O error
            from vmbtool.errors import EXIT_TROUBLE
            from vmbtool.output import silence_stdout

            silence_stdout()  # the exit's last flush must not fail again
            click.echo("Error: cannot write output at stdout: the reader closed the pipe",
                       err=True)
            ctx.exit(EXIT_TROUBLE)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM: every cleanup has run
            exit_stopped(ctx, exc)
        except Exception:
            # CPython wraps an exception raised where it creates a class (a dataclass
            # field's __set_name__ during an import) in a RuntimeError: after a stop,
            # whatever broke is the stop's doing, and ends as the stop does
            if stop.requested() is None:
                raise
            exit_stopped(ctx, stop.stop_exception(stop.requested()))
        finally:
            if self.as_program:  # from here on a stop ends the process by the signal
                stop_by_signal()


def exit_stopped(ctx: click.Context, stopped: KeyboardInterrupt) -> None:
    """Exit 130 after Ctrl-C, 143 after SIGTERM (`--debug`: with the traceback)."""
    from vmbtool.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated

    if ctx.obj and ctx.obj.get("debug"):
        import traceback

        traceback.print_exception(stopped)
    ctx.exit(EXIT_TERMINATED if isinstance(stopped, Terminated) else EXIT_INTERRUPTED)


def stop_by_exception() -> None:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt and SIGTERM raises Terminated in the
    main thread, so that a temporary file is removed and worker processes are killed on
    the way out; the command then exits 130 or 143, with no traceback. Outside the
    command (click parsing its options, the exit) the signals keep their default
    action: the process ends quietly, with the same status to the shell."""

    from vmbtool import stop

    stop.install()


def stop_by_signal() -> None:
    """The signals' default action again (a stop already noted but not yet raised is
    dropped: CPython runs no handler that is no longer set)."""
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_DFL)


MAX_NOTE = 65536
# one instance for every command: a faster start
KEY_FILE_TYPE = click.Path(dir_okay=False, allow_dash=True)


def key_option(f):
    return click.option("--key-file", type=KEY_FILE_TYPE, envvar=KEY_ENV,
                        help=f"HMAC-SHA256 key file (or ${KEY_ENV}; - reads it from stdin); "
                             "the key is never printed.")(f)


def allow_unsigned_option(f):
    return click.option("--allow-unsigned", is_flag=True,
                        help="With --key-file: accept unsigned blobs too (signed ones "
                             "are still verified). Without it, a key refuses every "
                             "unsigned blob, so a stripped signature never passes.")(f)


def view_key(key_file: str | None, blob_sources: tuple[str, ...] = ()) -> bytes | None:
    """The key of a view (inspect, diff, decode): it verifies signed blobs; an unsigned
    one is shown as unsigned. `blob_sources`: stdin cannot be the key and a blob."""
    from vmbtool.keys import accepting_unsigned
    from vmbtool.tools import read_key

    return accepting_unsigned(read_key(key_file, blob_sources))


def checking_key(key_file: str | None, allow_unsigned: bool,
                 blob_sources: tuple[str, ...] = ()) -> bytes | None:
    """The key of validate, restore and upgrade: unsigned blobs only when allowed."""
    from vmbtool.keys import accepting_unsigned
    from vmbtool.tools import read_key

    key = read_key(key_file, blob_sources)
    return accepting_unsigned(key) if allow_unsigned else key


def emit_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=False))


def output_to(path: str, *, blob: bool = True) -> Any:
    """The output checked before any work starts (vmbtool.output): a bad path is one
    `Error:` line now, not after the work; a binary blob never goes to a terminal."""
    from vmbtool.output import check_output

    if blob and path == "-" and sys.stdout is not None and sys.stdout.isatty():
        raise click.UsageError("refusing to write a binary blob to a terminal")
    return check_output(path, binary=blob)


def colour(text: str, **style: Any) -> str:
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    return click.style(text, **style)


def scenario_options(f):
    f = click.option("--pause-at", type=click.IntRange(0), default=None,
                     help="Pause and start the channels at this step (a save point "
                          "minus the save).")(f)
    f = click.option("--steps", type=click.IntRange(0, 10_000_000), default=100,
                     show_default=True, help="How many steps to run the scenario.")(f)
    f = click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=1,
                     show_default=True,
                     help="The scenario's seed: the same seed and steps, the same run.")(f)
    return click.option("--scenario", type=click.Choice(SCENARIO_NAMES), default="storage",
                        show_default=True, help="Which simulated VSP/VSC pair to run.")(f)


PROGRESS_MIN_STEPS = 2000  # about a second or more of simulation; fewer end before a bar helps


@contextlib.contextmanager
def step_progress(steps: int, label: str) -> Iterator[Callable[[], None] | None]:
    """A progress bar over `steps` scenario steps when stderr is a terminal and the run
    is long; None (no bar, no output at all) on a pipe or a file."""
    if steps < PROGRESS_MIN_STEPS or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=steps, label=label, file=sys.stderr) as bar:
        yield lambda: bar.update(1)


def check_pause_at(steps: int, pause_at: int | None) -> None:
    if pause_at is not None and pause_at > steps:
        raise click.BadParameter(f"{pause_at} is past --steps {steps}",
                                 param_hint="'--pause-at'")


def cap_jobs(jobs: int | None) -> int | None:
    """More workers than cores only slow validate down (and a pool past the open-file
    limit cannot start): capped, and said."""
    from vmbtool.workers import usable_cores

    cores = usable_cores()
    if jobs is not None and jobs > cores:
        click.echo(f"note: --jobs {jobs} capped to {cores}, the cores this process may use",
                   err=True)
        return cores
    return jobs
