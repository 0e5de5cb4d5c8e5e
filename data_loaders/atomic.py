"""Atomic, checksummed outputs: write to a temporary file beside the target, fsync, rename over it.

A reader (or a run killed half-way) then sees the previous complete file or the new one, never a
part; a temporary file left by a killed run is replaced by the next run's. An artefact the suite
reads back later (books, datasets, checkpoints, forecasts, results) also gets a `NAME.sha256`
beside it, in `sha256sum` format, and `verify` checks it on read: a file changed or damaged
after it was written is a clear error, not garbage.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class IntegrityError(ValueError):
    """A file no longer matches the sha256 recorded when the suite wrote it."""


def partial_path(path: Path) -> Path:
    """Where `path` is written before it is published (same folder, so the rename is atomic)."""
    return path.with_name(f".{path.name}.partial")


def checksum_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(partial: Path, path: Path, checksum: bool = False) -> str | None:
    """fsync `partial` and rename it over `path` (its checksum file first, when asked); fsync the
    folder so the renames survive a crash. Returns the sha256 when one was recorded."""
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    digest = None
    if checksum:
        digest = sha256(partial)
        recorded = partial_path(checksum_path(path))
        recorded.write_text(f"{digest}  {path.name}\n")
        os.replace(recorded, checksum_path(path))
    os.replace(partial, path)
    _fsync_folder(path.parent)
    return digest


@contextmanager
def atomic_outputs(paths: Sequence[Path], checksum: bool = False) -> Iterator[list[Path]]:
    """Yield the temporary paths to write, in order; publish them all when the block succeeds,
    remove them when it fails (the previous outputs stay as they were)."""
    paths = [Path(p) for p in paths]
    partials = [partial_path(p) for p in paths]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield partials
        for partial, path in zip(partials, paths):
            publish(partial, path, checksum)
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)


@contextmanager
def atomic_output(path: Path, checksum: bool = False) -> Iterator[Path]:
    """`atomic_outputs` for one file."""
    with atomic_outputs([path], checksum) as (partial,):
        yield partial


def write_bytes(path: Path, data: bytes, checksum: bool = False) -> Path:
    """`path.write_bytes(data)`, atomically."""
    with atomic_output(path, checksum) as partial:
        partial.write_bytes(data)
    return Path(path)


def verify(path: Path, remedy: str = "write it again") -> None:
    """Check `path` against the sha256 the suite recorded beside it (a file with none, e.g. a
    user's own, passes unchecked); `remedy` ends the error message."""
    path = Path(path)
    recorded = checksum_path(path)
    if not recorded.exists():
        return
    expected = recorded.read_text().split(maxsplit=1)[0] if recorded.stat().st_size else ""
    found = sha256(path)
    if found != expected:
        raise IntegrityError(f"{path}: sha256 {found[:12]}... does not match the {expected[:12] or 'empty'}... "
                             f"recorded in {recorded.name} when it was written: the file changed or is damaged; "
                             f"{remedy}")


def checked(path: Path) -> Path:
    """`path` after `verify`, to read an artefact in one expression: `pl.read_parquet(checked(p))`."""
    verify(path)
    return Path(path)


def check_writable(path: Path) -> None:
    """Fail now (OSError), not after the work, when `path` cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = partial_path(path)
    probe.write_bytes(b"")
    probe.unlink()
