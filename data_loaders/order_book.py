"""Generic L2 order-book kernel and fixed-grid resampler, shared by every book reader.

A reader (Binance recordings, Tardis incremental_book_L2) flattens its feed into *events*, each
a run of level updates `(side, price, qty)` stored contiguously in flat arrays; qty 0 deletes a
level. `rebuild_book` applies the events in a given order (optionally clearing the book first:
a snapshot) and returns the top N levels after every emitted event. The per-venue sequencing
rules (update ids, gaps, buffering) stay in the reader; this module only keeps the book.

The per-update helpers are compiled without numba's reference counting (`_nrt=False`), which
would otherwise take an atomic increment and decrement per array argument per update.

Each side is a sorted sequence of small sorted blocks (bids keyed by price, asks by negated
price, best level last), so an insert or delete moves at most one block's worth of levels
wherever in the book it lands; Binance diffs touch levels at every depth.
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


BLOCK = 64  # levels per block: an insert or delete moves at most this many
RESERVE = 1024  # level updates applied per reservation of free blocks


@njit(cache=True)
def _new_side(blocks):
    """An empty side: (keys, qtys, count, order, top, free, meta) for up to `blocks` blocks.

    keys/qtys (blocks, BLOCK) hold each block's levels sorted ascending; `order` lists the used
    blocks in key order and `top` their largest keys (to find a key's block by binary search);
    `free` is a stack of unused block ids; meta = [used blocks, free ids]."""
    keys = np.empty((blocks, BLOCK), np.float64)
    qtys = np.empty((blocks, BLOCK), np.float64)
    count = np.zeros(blocks, np.int64)
    order = np.empty(blocks, np.int64)
    top = np.empty(blocks, np.float64)
    free = np.arange(blocks - 1, -1, -1)
    meta = np.array([0, blocks])
    return keys, qtys, count, order, top, free, meta


@njit(cache=True)
def _grow_side(side):
    keys, qtys, count, order, top, _, meta = side
    old = count.size
    bigger = _new_side(2 * old)
    bigger[0][:old] = keys
    bigger[1][:old] = qtys
    bigger[2][:old] = count
    bigger[3][: meta[0]] = order[: meta[0]]
    bigger[4][: meta[0]] = top[: meta[0]]
    bigger[5][:old] = np.arange(2 * old - 1, old - 1, -1)  # the new ids are free
    bigger[6][0] = meta[0]
    bigger[6][1] = old
    return bigger


@njit(cache=True)
def _clear_side(side):
    free, meta = side[5], side[6]
    blocks = free.size
    free[:] = np.arange(blocks - 1, -1, -1)
    meta[0] = 0
    meta[1] = blocks


@njit(cache=True, inline="always")
def _lower_bound(values, lo, hi, key):
    """First index in [lo, hi) whose value >= key (hi when none); values sorted ascending."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, _nrt=False)  # no reference counting: it allocates nothing
def _set_level(keys, qtys, count, order, top, free, meta, key, qty):
    """Set (qty > 0) or delete (qty == 0) the level `key` of a side.

    The caller guarantees a free block (meta[1] > 0) for a possible split."""
    used = meta[0]
    if used == 0:
        if qty != 0.0:
            meta[1] -= 1
            b = free[meta[1]]
            keys[b, 0] = key
            qtys[b, 0] = qty
            count[b] = 1
            order[0] = b
            top[0] = key
            meta[0] = 1
        return
    s = min(_lower_bound(top, 0, used, key), used - 1)  # first block whose largest key >= key
    b = order[s]
    n = count[b]
    row = keys[b]
    i = _lower_bound(row, 0, n, key)
    if i < n and keys[b, i] == key:
        if qty != 0.0:
            qtys[b, i] = qty
            return
        for j in range(i, n - 1):
            keys[b, j] = keys[b, j + 1]
            qtys[b, j] = qtys[b, j + 1]
        count[b] = n - 1
        if n > 1:
            top[s] = keys[b, n - 2]
            return
        for t in range(s, used - 1):  # the block is empty: unlink it
            order[t] = order[t + 1]
            top[t] = top[t + 1]
        meta[0] = used - 1
        free[meta[1]] = b
        meta[1] += 1
        return
    if qty == 0.0:
        return  # deleting a level we do not hold is normal (it was outside our book)
    if n == BLOCK:  # split the full block, the upper half into a new block right after it
        meta[1] -= 1
        nb = free[meta[1]]
        half = BLOCK // 2
        for j in range(BLOCK - half):  # a loop, not a slice copy: no temporary array
            keys[nb, j] = keys[b, half + j]
            qtys[nb, j] = qtys[b, half + j]
        count[nb] = BLOCK - half
        count[b] = half
        for t in range(used, s + 1, -1):
            order[t] = order[t - 1]
            top[t] = top[t - 1]
        order[s + 1] = nb
        top[s + 1] = keys[nb, BLOCK - half - 1]
        top[s] = keys[b, half - 1]
        meta[0] = used + 1
        if i > half:
            b, s, i = nb, s + 1, i - half
        n = count[b]
    for j in range(n, i, -1):
        keys[b, j] = keys[b, j - 1]
        qtys[b, j] = qtys[b, j - 1]
    keys[b, i] = key
    qtys[b, i] = qty
    count[b] = n + 1
    top[s] = keys[b, n]


@njit(cache=True, _nrt=False)
def _top(side, levels, sign, px_out, qty_out):
    """Write the best `levels` of a side (largest keys first) as prices key*sign."""
    keys, qtys, count, order, _, _, meta = side
    r = 0
    for s in range(meta[0] - 1, -1, -1):
        b = order[s]
        for j in range(count[b] - 1, -1, -1):
            if r == levels:
                return
            px_out[r] = keys[b, j] * sign
            qty_out[r] = qtys[b, j]
            r += 1


@njit(cache=True, _nrt=False)
def _best(side):
    top, meta = side[4], side[6]
    return top[meta[0] - 1] if meta[0] > 0 else np.nan


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
    bids = _new_side(64)  # keyed by price: best bid = largest key
    asks = _new_side(64)  # keyed by -price: best ask = largest key
    r = 0
    for k in range(order.size):
        e = order[k]
        if reset[k]:
            _clear_side(bids)
            _clear_side(asks)
        start = ev_start[e]
        while start < ev_end[e]:  # slices of the event, so a snapshot of 100k levels reserves no 100k blocks
            stop = min(start + RESERVE, ev_end[e])
            while bids[6][1] < stop - start:  # each update needs at most one new block
                bids = _grow_side(bids)
            while asks[6][1] < stop - start:
                asks = _grow_side(asks)
            bk, bq, bc, bo, bt, bf, bm = bids
            ak, aq, ac, ao, at, af, am = asks
            for j in range(start, stop):
                if side[j] == 0:
                    _set_level(bk, bq, bc, bo, bt, bf, bm, price[j], qty[j])
                else:
                    _set_level(ak, aq, ac, ao, at, af, am, -price[j], qty[j])
            start = stop
        if emit[k]:
            _top(bids, levels, 1.0, bid_px[r], bid_qty[r])
            _top(asks, levels, -1.0, ask_px[r], ask_qty[r])
            crossed[r] = _best(bids) >= -_best(asks)  # False when a side is empty (NaN)
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
    order = (
        np.arange(n_events, dtype=np.int64) if order is None else order.astype(np.int64, copy=False)
    )
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
        for name, values in (
            ("ts", ts),
            ("local_ts", local_ts),
            ("update_id", update_id),
            ("in_sync", in_sync),
        )
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


MAX_GRID_ROWS = 50_000_000  # about 4 GB of a 10-level book: beyond it a grid is a clock jump, not data


def resample_book(book: pl.DataFrame, every: str | int, on: str = "local_ts") -> tuple[pl.DataFrame, int]:
    """The last book state at or before each point of a fixed grid (multiples of `every`), and how
    many rows' `on` time went backwards.

    The grid runs from the first row's `on` time (rounded up) to the last row's. Each grid row
    takes the state of the last row with `on` <= the grid point; its `on` column becomes the
    grid time, the other columns (including the other time column) are the state's. Rows are in
    receive order, so a row whose time went backwards (a clock step) counts as received when its
    predecessor was: the state time is the running maximum. A span too long for a grid (a clock
    jump of months) is a clear error naming where it happens.
    """
    step = parse_every(every)
    state = book.filter(pl.col(on).is_not_null())
    if state.is_empty():
        return book.clear(), 0
    times = state.get_column(on)
    monotone = times.cum_max()
    backwards = int((times < monotone).sum())
    first = -(-int(monotone[0]) // step) * step
    last = int(monotone[-1])
    if (last - first) // step + 1 > MAX_GRID_ROWS:
        jumps = monotone.diff().fill_null(0)
        at = int(jumps.arg_max())  # type: ignore[arg-type]
        raise ValueError(
            f"{on} spans {(last - first) / 3.6e12:,.1f} h, so a {every} grid would have "
            f"{(last - first) // step + 1:,} rows; the largest step is {int(jumps[at]) / 3.6e12:,.1f} h, "
            f"at book row {at} ({int(monotone[at - 1])} -> {int(monotone[at])} ns): a clock jump in the "
            "recording? Split the files there, or omit --every"
        )
    grid = pl.DataFrame({on: np.arange(first, last + 1, step, dtype=np.int64)})
    state = state.with_columns(monotone.alias("_state_time")).drop(on)
    joined = grid.join_asof(state, left_on=on, right_on="_state_time", strategy="backward")
    return joined.drop("_state_time").select(book.columns).cast(book.schema), backwards  # type: ignore[arg-type]
