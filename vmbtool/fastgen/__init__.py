"""The generator of the fast path: a development tool, never imported at run time.

It walks each construct grammar of `vmbtool.formats` once and writes Python source that
parses and builds what the grammar does, with precompiled `struct.Struct`s (adjacent
fixed-width fields fused into one), the grammar staying the one definition of the
layout. `python3 -m vmbtool.fastgen` writes vmbtool/generated/ (checked in; the codec
runs it, see `vmbtool.fastpath`); `--check` only says whether it is up to date.

    tree    what a node of a grammar is, for the writers
    names   the module-level names generated code uses (structs, literal tables),
            and what the two writers share
    parse   the body of a parse
    build   the body of a build
    module  whole modules, the package, and `compile_grammar` for tests
"""

from vmbtool.fastgen.module import COMMAND, compile_grammar, generate
from vmbtool.fastgen.tree import Unsupported, record_struct

__all__ = ["COMMAND", "Unsupported", "compile_grammar", "generate", "record_struct"]
