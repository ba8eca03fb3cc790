"""decode and diff in one pass, a channel at a time (issue 15).

Neither holds a whole blob: each channel is parsed, turned into its JSON and written
(decode) or compared with the other blob's channel of the same index (diff), then
dropped, so what is held grows with the largest channel, which the format's caps bound.
A channel's statistics come after its end chunk: they are added once the next channel
(or the end) shows that no more can come.

decode's text is byte-identical to `json.dumps(jsonview.decode(blob), indent=1) + "\\n"`;
it is spooled to a temporary file and handed out only once the whole blob is read and
its END digest (and seal) checked. diff's changes are diff.diff's, in its order.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from vmbtool.blob import BlobReader
from vmbtool.blob.consumers import Whole
from vmbtool.diff import MISSING, Change, ignored, read_side, walk
from vmbtool.errors import InputError, OutputError
from vmbtool.formats.kinds import ChunkType
from vmbtool.jsonview import channel_json, header_json, plain, scenario_json
from vmbtool.output import WHAT, why_not

CHANNEL, STATS = "channel", "stats"
SPOOL_IN_MEMORY = 16 << 20  # decode's text past this goes to a temporary file
ENCODER = json.JSONEncoder(indent=1)  # as json.dumps(value, indent=1)


def stats_json(stats: Any) -> dict | None:
    return None if stats is None else \
        {k: v for k, v in plain(stats).items() if k != "channel"}


def channel_events(reader: BlobReader, with_data: bool = True) -> Iterator[
        tuple[str, int, Any]]:
    """(CHANNEL, i, channel i's JSON without its statistics) as each channel is read, then
    (STATS, i, its statistics' JSON or None) once they can no longer come. Nothing of a
    channel is kept once its event is handed out."""
    index = -1
    for saved, chunks in reader.channels():
        if index >= 0:
            yield STATS, index, stats_json(reader.stats.get(index))
        index += 1
        chunks.clear()  # the reader keeps no chunks: nothing else holds them
        ch = channel_json(saved, None, with_data)
        for parts in (saved.rings, saved.gpadls, saved.packets, saved.incoming):
            parts.clear()  # the channel is ours, and is now its JSON
        del saved, chunks
        yield CHANNEL, index, ch
        del ch
    if index >= 0:
        yield STATS, index, stats_json(reader.stats.get(index))


def head_doc(reader: BlobReader) -> dict:
    """The document's keys before "channels" (known once the blob is read: the note may
    come anywhere between channels)."""
    return header_json(reader.header, reader.signed, reader.note)


def tail_doc(reader: BlobReader) -> dict:
    """The document's keys after "channels", as jsonview.decode makes them."""
    return {
        "scenario": scenario_json(reader.scenario),
        "extra_chunks": [{"after_chunk": index, "type": raw.type, "flags": raw.flags,
                          "data": raw.data.hex()}
                         for index, raw in reader.extra if raw.type not in set(ChunkType)],
        "end": {k: v for k, v in plain(reader.end).items() if k != "digest"},
    }


def write_indented(out: IO[str], value: Any, indent: str, hold: int = 0) -> list[str]:
    """`value` as json.dumps(value, indent=1) writes it, each line after the first
    indented by `indent` more, piece by piece; the last `hold` pieces are returned, not
    written."""
    held: list[str] = []
    newline = "\n" + indent
    for piece in ENCODER.iterencode(value):
        held.append(piece)
        if len(held) > hold:
            out.write(held.pop(0).replace("\n", newline))
    return held


def write_channels(reader: BlobReader, out: IO[str]) -> None:
    """The "channels" array's text, from its `[` to its `]`."""
    first = True
    for kind, _index, value in channel_events(reader):
        if kind == CHANNEL:
            out.write("[\n  " if first else ",\n  ")
            first = False
            # a dict's text ends with its "\n" and "}": held until the statistics come
            closing = write_indented(out, value, "  ", hold=2)
            assert closing == ["\n", "}"], closing
            del value
        else:
            if value is not None:
                out.write(',\n   "stats": ')
                write_indented(out, value, "   ")
            out.write("\n  }")
    out.write("[]" if first else "\n ]")


class Spool(io.TextIOWrapper):
    """decode's text on its way out: in memory up to SPOOL_IN_MEMORY, then in a temporary
    file; a write that fails there (a full disk) is an error of the output."""

    def __init__(self, where: str) -> None:
        self.spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        super().__init__(self.spooled, encoding="utf-8", newline="\n")  # type: ignore[arg-type]
        self.where, self.is_done = where, False

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError as exc:
            raise OutputError(WHAT, self.where, f"{why_not(exc)} (while spooling it in "
                              f"{tempfile.gettempdir()})") from None

    def done(self) -> IO[bytes]:
        try:
            self.flush()
        except OSError as exc:
            raise OutputError(WHAT, self.where, f"{why_not(exc)} (while spooling it in "
                              f"{tempfile.gettempdir()})") from None
        self.detach()
        self.is_done = True
        return self.spooled  # type: ignore[return-value]


@contextlib.contextmanager
def decode_spooled(source: str, key: bytes | None, where: str = "-") -> Iterator[list[Any]]:
    """decode's JSON text for the blob `source`, as pieces for `Output.write`: its
    channels are spooled as they are read, and nothing is handed out unless the whole
    blob read well. `where`: the output, named by a failing spool."""
    text = Spool(where)
    try:
        with BlobReader(source, key, Whole(keeps_skipped=True)) as reader:
            write_channels(reader, text)
            head = json.dumps(head_doc(reader), indent=1)[:-2] + ',\n "channels": '
            tail = ",\n" + json.dumps(tail_doc(reader), indent=1)[2:] + "\n"
        yield [head.encode(), text.done(), tail.encode()]
    finally:
        if not text.is_done:  # the wrapper goes first, its buffer lost with the spool
            with contextlib.suppress(OSError, ValueError):
                text.close()
        text.spooled.close()


class Side:
    """One of diff's two blobs, read a channel event at a time; its errors name it."""

    def __init__(self, name: str, source: str, key: bytes | None,
                 stack: contextlib.ExitStack) -> None:
        self.name, self.source, self.key, self.stack = name, source, key, stack
        self.reader: BlobReader | None = None
        self.events: Iterator[tuple[str, int, Any]] | None = None
        self.done = False

    def named(self, step: Any) -> Any:
        return read_side(self.name, self.source, lambda _source: step())

    def open(self) -> None:
        def start() -> None:
            self.reader = self.stack.enter_context(
                BlobReader(self.source, self.key, Whole(keeps_skipped=True)))
            self.events = channel_events(self.reader)
        self.named(start)

    def next(self) -> tuple[str, int, Any] | None:
        """The next event, or None once the blob is read (and its END checked)."""
        if self.done:
            return None
        assert self.events is not None
        event = self.named(lambda: next(self.events, None))  # type: ignore[arg-type]
        self.done = event is None
        return event

    def drain(self) -> None:
        while self.next() is not None:
            pass


def lockstep(a: Side, b: Side) -> Iterator[tuple[Any, Any]]:
    """Both sides' events in step. An error of B waits until A is read to its end: A's
    own error, if it has one, comes first, as when A was read whole before B."""
    a.open()
    failed: InputError | None = None
    try:
        b.open()
    except InputError as exc:
        failed = exc
    while failed is None:
        ea = a.next()
        try:
            eb = b.next()
        except InputError as exc:
            failed = exc
            break
        if ea is None and eb is None:
            return
        yield ea, eb
        ea = eb = None  # not held while the next channels are read
    a.drain()
    raise failed


def channel_changes(a: Side, b: Side, ignore: tuple[str, ...]) -> list[Change]:
    """The changes under "channels", channel i of A against channel i of B."""
    out: list[Change] = []
    alone: list[Any] = [None]  # a channel on one side only, waiting for its statistics
    for ea, eb in lockstep(a, b):
        found = compare(ea, eb, alone)
        del ea, eb  # not held while the next channels are read
        out.extend(c for c in found if not ignored(c.path, ignore))
    return out


def compare(ea: tuple[str, int, Any] | None, eb: tuple[str, int, Any] | None,
            alone: list[Any]) -> list[Change]:
    """The changes one pair of events shows (a channel, or its statistics)."""
    found: list[Change] = []
    if ea is not None and eb is not None:
        kind, index, va = ea
        vb = eb[2]
        path = f"channels[{index}]"
        if kind == CHANNEL:
            walk(va, vb, path, "", found)
        else:
            walk(MISSING if va is None else va, MISSING if vb is None else vb,
                 f"{path}.stats", "stats", found)
        return found
    event = ea if ea is not None else eb
    assert event is not None
    kind, index, value = event
    if kind == CHANNEL:
        alone[0] = value
        return found
    channel, alone[0] = alone[0], None
    if value is not None:
        channel["stats"] = value
    found.append(Change(f"channels[{index}]", channel, MISSING) if ea is not None
                 else Change(f"channels[{index}]", MISSING, channel))
    return found


def diff_blobs(source_a: str, source_b: str, key: bytes | None,
               ignore: tuple[str, ...]) -> list[Change]:
    """diff.diff(decode(A), decode(B), ignore), with neither blob held whole."""
    with contextlib.ExitStack() as stack:
        a, b = (Side(name, source, key, stack)
                for name, source in (("A", source_a), ("B", source_b)))
        channels = channel_changes(a, b, ignore)
        assert a.reader is not None and b.reader is not None
        doc_a = {**head_doc(a.reader), "channels": None, **tail_doc(a.reader)}
        doc_b = {**head_doc(b.reader), "channels": None, **tail_doc(b.reader)}
    changes: list[Change] = []
    for k in list(doc_a) + [k for k in doc_b if k not in doc_a]:
        if k == "channels":
            changes.extend(channels)
            continue
        found: list[Change] = []
        walk(doc_a.get(k, MISSING), doc_b.get(k, MISSING), k, k, found)
        changes.extend(c for c in found if not ignored(c.path, ignore))
    return changes


def read_doc(source: str, key: bytes | None, with_data: bool = True) -> dict:
    """decode's document as a dict (what `inspect --json` prints), read once, channel by
    channel: what a channel holds while it is read is dropped once it is JSON."""
    with BlobReader(source, key, Whole(keeps_skipped=True)) as reader:
        channels: list[dict] = []
        for kind, index, value in channel_events(reader, with_data):
            if kind == CHANNEL:
                channels.append(value)
            elif value is not None:
                channels[index]["stats"] = value
        return {**head_doc(reader), "channels": channels, **tail_doc(reader)}
