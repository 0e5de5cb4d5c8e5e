"""Generic L2 order-book kernel and fixed-grid resampler, shared by every book reader.

A reader (Binance recordings, Tardis incremental_book_L2) flattens its feed into *events*, each
a run of level updates `(side, price, qty)` stored contiguously in flat arrays; qty 0 deletes a
level. `rebuild_book` applies the events in a given order (optionally clearing the book first:
a snapshot) and returns the top N levels after every emitted event. The per-venue sequencing
rules (update ids, gaps, buffering) stay in the reader; this module only keeps the book.

Each side is kept as a sorted array (bids by price, asks by negated price, best level last)
with free room at both ends, so an insert or delete moves the shorter part: changes near the top
of the book and to far-away levels are both cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numba import njit

from data_loaders.schema import book_schema, level_columns

BID, ASK = 0, 1


@dataclass
class BookArrays:
    """Top-N levels after each emitted event; missing levels are NaN. Shapes (R, N) and (R,)."""

    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray
    crossed: np.ndarray  # best bid >= best ask after the event
    position: np.ndarray  # index into `order` of the event that produced each row


@njit(cache=True)
def _recentre(keys, qtys, lo, hi):
    """Move the live range [lo, hi) to the middle of a buffer with room on both sides."""
    n = hi - lo
    cap = max(4 * n, 1024)
    new_keys = np.empty(cap, np.float64)
    new_qtys = np.empty(cap, np.float64)
    new_lo = (cap - n) // 2
    new_keys[new_lo : new_lo + n] = keys[lo:hi]
    new_qtys[new_lo : new_lo + n] = qtys[lo:hi]
    return new_keys, new_qtys, new_lo, new_lo + n


@njit(cache=True)
def _set_level(keys, qtys, lo, hi, key, qty):
    """Set (qty > 0) or delete (qty == 0) one level of a side held sorted in keys[lo:hi].

    Inserts and deletes move whichever part of the range is shorter, so changes near either
    end (the top of the book, or far-away levels) are cheap. Returns (keys, qtys, lo, hi)."""
    a = lo + np.searchsorted(keys[lo:hi], key)
    if a < hi and keys[a] == key:
        if qty != 0.0:
            qtys[a] = qty
        elif a - lo < hi - a:
            for j in range(a, lo, -1):
                keys[j] = keys[j - 1]
                qtys[j] = qtys[j - 1]
            lo += 1
        else:
            for j in range(a, hi - 1):
                keys[j] = keys[j + 1]
                qtys[j] = qtys[j + 1]
            hi -= 1
        return keys, qtys, lo, hi
    if qty == 0.0:
        return keys, qtys, lo, hi  # deleting a level we do not hold is normal (it was outside our book)
    if (a - lo < hi - a and lo > 0) or hi == keys.size:
        if lo == 0:
            keys, qtys, new_lo, hi = _recentre(keys, qtys, lo, hi)
            a += new_lo - lo
            lo = new_lo
        for j in range(lo - 1, a - 1):
            keys[j] = keys[j + 1]
            qtys[j] = qtys[j + 1]
        lo -= 1
        keys[a - 1] = key
        qtys[a - 1] = qty
    else:
        for j in range(hi, a, -1):
            keys[j] = keys[j - 1]
            qtys[j] = qtys[j - 1]
        hi += 1
        keys[a] = key
        qtys[a] = qty
    return keys, qtys, lo, hi


@njit(cache=True)
def _rebuild(ev_start, ev_end, side, price, qty, order, reset, emit, levels):
    rows = 0
    for k in range(order.size):
        if emit[k]:
            rows += 1
    bid_px = np.full((rows, levels), np.nan)
    bid_qty = np.full((rows, levels), np.nan)
    ask_px = np.full((rows, levels), np.nan)
    ask_qty = np.full((rows, levels), np.nan)
    crossed = np.zeros(rows, np.bool_)
    position = np.empty(rows, np.int64)
    # each side sorted ascending with the best level last: bids by price, asks by -price
    bk, bq, blo, bhi = _recentre(np.empty(0), np.empty(0), 0, 0)
    ak, aq, alo, ahi = _recentre(np.empty(0), np.empty(0), 0, 0)
    r = 0
    for k in range(order.size):
        e = order[k]
        if reset[k]:
            blo = bhi = bk.size // 2
            alo = ahi = ak.size // 2
        for j in range(ev_start[e], ev_end[e]):
            if side[j] == 0:
                bk, bq, blo, bhi = _set_level(bk, bq, blo, bhi, price[j], qty[j])
            else:
                ak, aq, alo, ahi = _set_level(ak, aq, alo, ahi, -price[j], qty[j])
        if emit[k]:
            for i in range(min(levels, bhi - blo)):
                bid_px[r, i] = bk[bhi - 1 - i]
                bid_qty[r, i] = bq[bhi - 1 - i]
            for i in range(min(levels, ahi - alo)):
                ask_px[r, i] = -ak[ahi - 1 - i]
                ask_qty[r, i] = aq[ahi - 1 - i]
            crossed[r] = bhi > blo and ahi > alo and bk[bhi - 1] >= -ak[ahi - 1]
            position[r] = k
            r += 1
    return bid_px, bid_qty, ask_px, ask_qty, crossed, position


def rebuild_book(
    ev_start: np.ndarray,
    ev_end: np.ndarray,
    side: np.ndarray,
    price: np.ndarray,
    qty: np.ndarray,
    levels: int,
    order: np.ndarray | None = None,
    reset: np.ndarray | None = None,
    emit: np.ndarray | None = None,
) -> BookArrays:
    """Apply level updates event by event and return the top `levels` after each emitted event.

    Event e owns the level updates `[ev_start[e], ev_end[e])` of the flat arrays `side` (int8,
    0 bid / 1 ask), `price` (float64), `qty` (float64; 0 deletes the level). `order` (int64)
    lists the events to apply, in application order (an event may appear twice, e.g. replayed
    after a snapshot); default all events in turn. `reset[k]` (bool) clears the book before
    applying `order[k]` (a snapshot); default never. `emit[k]` (bool) outputs a row after
    `order[k]`; default every event. Row r came from `order[position[r]]`.
    """
    n_events = ev_start.size
    order = np.arange(n_events, dtype=np.int64) if order is None else order.astype(np.int64, copy=False)
    reset = np.zeros(order.size, np.bool_) if reset is None else reset.astype(np.bool_, copy=False)
    emit = np.ones(order.size, np.bool_) if emit is None else emit.astype(np.bool_, copy=False)
    out = _rebuild(
        ev_start.astype(np.int64, copy=False),
        ev_end.astype(np.int64, copy=False),
        side.astype(np.int8, copy=False),
        price.astype(np.float64, copy=False),
        qty.astype(np.float64, copy=False),
        order,
        reset,
        emit,
        int(levels),
    )
    return BookArrays(*out)


def book_frame(
    arrays: BookArrays,
    ts: pl.Series | np.ndarray,
    local_ts: pl.Series | np.ndarray,
    update_id: pl.Series | np.ndarray,
    in_sync: pl.Series | np.ndarray,
) -> pl.DataFrame:
    """The book contract frame from kernel output plus per-row times, ids and sync flags
    (pass a Series with nulls where a time or id is unknown)."""
    levels = arrays.bid_px.shape[1]
    columns: dict[str, pl.Series] = {
        name: pl.Series(name, values) if isinstance(values, np.ndarray) else values.alias(name)
        for name, values in (("ts", ts), ("local_ts", local_ts), ("update_id", update_id), ("in_sync", in_sync))
    }
    names = iter(level_columns(levels))
    for block in (arrays.bid_px, arrays.bid_qty, arrays.ask_px, arrays.ask_qty):
        for i in range(levels):
            name = next(names)
            columns[name] = pl.Series(name, block[:, i], nan_to_null=True)
    return pl.DataFrame(columns).cast(book_schema(levels))  # type: ignore[arg-type]


def parse_every(every: str | int) -> int:
    """A grid step like '100ms', '1s', '500us', '250000ns' (or an int of ns) -> nanoseconds."""
    if isinstance(every, int):
        step = every
    else:
        units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}
        text = every.strip()
        number = text.rstrip("nums")
        unit = text[len(number) :]
        if unit not in units or not number.replace(".", "", 1).isdigit():
            raise ValueError(f"cannot read the grid step {every!r}: use e.g. 100ms, 1s, 500us")
        step = round(float(number) * units[unit])
    if step <= 0:
        raise ValueError(f"grid step must be positive, got {every!r}")
    return step


def resample_book(book: pl.DataFrame, every: str | int, on: str = "local_ts") -> pl.DataFrame:
    """The last book state at or before each point of a fixed grid (multiples of `every`).

    The grid runs from the first row's `on` time (rounded up) to the last row's. Each grid row
    takes the state of the last row with `on` <= the grid point; its `on` column becomes the
    grid time, the other columns (including the other time column) are the state's. The input
    must be sorted by `on` (readers emit rows in receive order, which is sorted by local_ts).
    """
    step = parse_every(every)
    times = book.get_column(on).drop_nulls()
    if times.is_empty():
        return book.clear()
    first = -(-int(times.min()) // step) * step  # type: ignore[arg-type]
    last = int(times.max())  # type: ignore[arg-type]
    grid = pl.DataFrame({on: np.arange(first, last + 1, step, dtype=np.int64)})
    state = book.filter(pl.col(on).is_not_null()).rename({on: "_state_time"})
    joined = grid.join_asof(state, left_on=on, right_on="_state_time", strategy="backward")
    return joined.drop("_state_time").select(book.columns).cast(book.schema)  # type: ignore[arg-type]
