"""Atomic outputs: write to a temporary file beside the target, fsync, rename over the target.

A reader (or a run killed half-way) then sees the previous complete file or the new one, never a
part; a temporary file left by a killed run is replaced by the next run's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def partial_path(path: Path) -> Path:
    """Where `path` is written before it is published (same folder, so the rename is atomic)."""
    return path.with_name(f".{path.name}.partial")


def publish(partial: Path, path: Path) -> None:
    """fsync `partial`, rename it over `path`, fsync the folder so the rename survives a crash."""
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield the temporary path to write; publish it as `path` when the block succeeds, remove it
    when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        yield partial
        publish(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def check_writable(path: Path) -> None:
    """Fail now (OSError), not after the work, when `path` cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = partial_path(path)
    probe.write_bytes(b"")
    probe.unlink()
