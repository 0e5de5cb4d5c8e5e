"""Bad input is counted by kind and written, with file and line number, next to the output.

Every reader shares this so that nothing is dropped silently: a line that cannot be used is
either quarantined (and counted in the summary) or the run fails with a clear error.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import IO, Self

import orjson

from data_loaders.atomic import partial_path, publish


class Quarantine:
    """Collects offending lines as JSON Lines: {"kind", "file", "line", "text"}.

    The lines go to a temporary file beside `path`, which `close` publishes atomically; a run that
    quarantines nothing removes an earlier run's file, so what sits beside an output always belongs
    to it. Leaving the `with` block on an exception discards this run's lines and keeps the earlier
    file, which still matches the earlier output."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self._out: IO[bytes] | None = None

    def add(self, kind: str, file: str, line: int, text: str | bytes) -> None:
        self.counts[kind] += 1
        if self.path is None:
            return
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = partial_path(self.path).open("wb")
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self._out.write(orjson.dumps({"kind": kind, "file": file, "line": line, "text": text}) + b"\n")

    def close(self) -> None:
        """Publish this run's lines at `path` (or remove a stale file there when there are none)."""
        if self.path is None:
            return
        if self._out is not None:
            self._out.close()
            self._out = None
            publish(partial_path(self.path), self.path)
        elif not self.total:
            self.path.unlink(missing_ok=True)

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        if self.path is not None:
            partial_path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def quarantine_path(out: Path) -> Path:
    """The quarantine file that sits next to an output file: book.parquet -> book.quarantine.jsonl."""
    return out.with_name(out.stem + ".quarantine.jsonl")
