"""The dialect files beside each adapter (ClickBench style): DDL and queries a reader can open and diff.

A file is a list of named blocks. A block starts at a comment line `name: NAME` (the comment marker
of the file's language: `--` SQL and InfluxQL, `//` Flux, `/` q) and runs to the next one; text
before the first block is the file's header. Whole-line comments inside a block document it and
are not sent to the engine. A block whose first line is the comment `unsupported: REASON` (the
reason may go on over the following comment lines) is a query the dialect cannot express:
an `Unsupported`, never computed client-side in its place.

Placeholders are `{word}` (times, the symbol, a bucket function's name), filled by `fill`; braces
around anything else (Flux records, q lambdas) are the language's own and left alone.
"""

from __future__ import annotations

import re
from importlib.resources import files

from dbbench.engines.base import QUERY_NAMES, Unsupported

COMMENT = {".sql": "--", ".influxql": "--", ".flux": "//", ".q": "/"}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def read_blocks(package: str, filename: str) -> dict[str, str | Unsupported]:
    """The named blocks of `filename` in the package's folder, in file order."""
    text = (files(package) / filename).read_text()
    comment = COMMENT[filename[filename.rindex("."):]]
    marker = re.compile(rf"^{re.escape(comment)}\s*name:\s*(\w+)\s*$")
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if found := marker.match(line):
            if found.group(1) in blocks:
                raise ValueError(f"{package}/{filename}: block {found.group(1)!r} defined twice")
            current = blocks[found.group(1)] = []
        elif current is not None:
            current.append(line)
    return {name: _block(lines, comment) for name, lines in blocks.items()}


def _block(lines: list[str], comment: str) -> str | Unsupported:
    notes = [line.strip()[len(comment):].strip() for line in lines if line.strip().startswith(comment)]
    code = [line for line in lines if not line.strip().startswith(comment)]
    if notes and notes[0].startswith("unsupported:") and not "".join(code).strip():
        return Unsupported(" ".join(notes).removeprefix("unsupported:").strip())
    return "\n".join(code).strip("\n")


def read_queries(package: str, filename: str) -> dict[str, str | Unsupported]:
    """The suite's queries in a dialect file: exactly the names of QUERY_NAMES, in its order."""
    queries = read_blocks(package, filename)
    if tuple(queries) != QUERY_NAMES:
        raise ValueError(f"{package}/{filename}: blocks {list(queries)} are not the suite's {list(QUERY_NAMES)}")
    return queries


def fill(text: str, values: dict[str, object]) -> str:
    """`text` with each `{word}` replaced by str(values[word]); a placeholder without a value is an error."""
    def value(found: re.Match) -> str:
        if found.group(1) not in values:
            raise KeyError(f"no value for the placeholder {found.group(0)} in {text[:60]!r}...")
        return str(values[found.group(1)])

    return _PLACEHOLDER.sub(value, text)
