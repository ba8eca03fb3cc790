"""`python3 -m vmbtool.fastgen [--check]`: write vmbtool/generated/ from the grammars
(or, with --check, only say whether it is what the grammars give)."""

from __future__ import annotations

import sys
from pathlib import Path

from vmbtool.fastgen.module import COMMAND, generate

TARGET = Path(__file__).resolve().parent.parent / "generated"


def stale(files: dict[str, str]) -> list[str]:
    """The files of TARGET that differ from `files` or should not be there."""
    there = {p.name for p in TARGET.glob("*.py")}
    wrong = [name for name, text in files.items()
             if not (TARGET / name).is_file() or (TARGET / name).read_text() != text]
    return sorted(set(wrong) | (there - set(files)))


def main(argv: list[str]) -> int:
    files = generate()
    if argv == ["--check"]:
        wrong = stale(files)
        for name in wrong:
            print(f"vmbtool/generated/{name} is not what the grammars give: run {COMMAND}")
        return 1 if wrong else 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    TARGET.mkdir(exist_ok=True)
    for name in sorted({p.name for p in TARGET.glob("*.py")} - set(files)):
        (TARGET / name).unlink()
    for name, text in files.items():
        path = TARGET / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote vmbtool/generated/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
