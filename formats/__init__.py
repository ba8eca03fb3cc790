"""construct grammars for vmbtool's on-disk blob format (see FORMAT.md).

The format's version lives here, with the one parser of a "<major>.<minor>" text."""

import re

FORMAT_MAJOR = 1
FORMAT_MINOR = 1
READS = (FORMAT_MAJOR, FORMAT_MINOR)  # the newest format this vmbtool reads and writes

_VERSION = re.compile(r"^(\d+)\.(\d+)$")


def version_tuple(version: str) -> tuple[int, int]:
    """`"1.1"` -> `(1, 1)`; ValueError for anything that is not <major>.<minor>."""
    match = _VERSION.match(str(version))
    if not match:
        raise ValueError(f"{version!r} is not a <major>.<minor> version")
    return int(match.group(1)), int(match.group(2))
