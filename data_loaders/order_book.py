"""Generic L2 order-book kernel and fixed-grid resampler, shared by every book reader.

A reader (Binance recordings, Tardis incremental_book_L2) flattens its feed into *events*, each
a run of level updates `(side, price, qty)` stored contiguously in flat arrays; qty 0 deletes a
level. `rebuild_book` applies the events in a given order (optionally clearing the book first:
a snapshot) and returns the top N levels after every emitted event. The per-venue sequencing
rules (update ids, gaps, buffering) stay in the reader; this module only keeps the book.

The per-update helpers are compiled without numba's reference counting (`_nrt=False`), which
would otherwise take an atomic increment and decrement per array argument per update.

Each side is a hash table of all its levels plus a short sorted array of its best levels (the
top): Binance diffs touch levels at every depth (half land beyond the 100th level), so an update
costs one hash probe, and only updates at the top move levels in a sorted array. A top that has
shrunk below the levels asked for is refilled from the table, which is rare.
"""

from __future__ import annotations

import math
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


TOP_MAX = 64  # levels a side keeps sorted at its top
TOP_FILL = 32  # levels a refill of the top takes from the whole side
MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing of a price's bits


@njit(cache=True)
def _new_side(log2_slots):
    """An empty side: (price, qty, meta, top_key, top_qty, threshold).

    price/qty are an open-addressing hash table (linear probing, NaN = free slot) of every level;
    top_key/top_qty hold the best levels sorted ascending by key (price for bids, -price for asks:
    the best level last), and every level whose key >= threshold[0] is among them (-inf: the top
    holds the whole side). meta = [levels held, log2 of the slots, levels in the top]."""
    price = np.full(1 << log2_slots, np.nan)
    qty = np.empty(1 << log2_slots, np.float64)
    meta = np.array([0, log2_slots, 0])
    return price, qty, meta, np.empty(TOP_MAX), np.empty(TOP_MAX), np.full(1, -np.inf)


@njit(cache=True, inline="always")
def _home(price, shift):
    return np.int64((np.float64(price).view(np.uint64) * MULT) >> shift)


@njit(cache=True)
def _grow_side(side):
    """The side with twice the slots (the top is kept as it is)."""
    price, qty, meta, top_key, top_qty, threshold = side
    bigger = _new_side(meta[1] + 1)
    new_price, new_qty, new_meta = bigger[0], bigger[1], bigger[2]
    mask = new_price.size - 1
    shift = np.uint64(64 - new_meta[1])
    for s in range(price.size):
        p = price[s]
        if not math.isnan(p):
            h = _home(p, shift)
            while not math.isnan(new_price[h]):
                h = (h + 1) & mask
            new_price[h] = p
            new_qty[h] = qty[s]
    new_meta[0] = meta[0]
    new_meta[2] = meta[2]
    return new_price, new_qty, new_meta, top_key, top_qty, threshold


@njit(cache=True, _nrt=False)
def _clear_side(price, meta, threshold):
    price[:] = np.nan
    meta[0] = 0
    meta[2] = 0
    threshold[0] = -np.inf


@njit(cache=True, inline="always")
def _lower_bound(values, n, key):
    """How many of values[:n] (sorted ascending) are below key: where key is or goes. A count,
    not a binary search: no branch to mispredict over the top's few dozen levels."""
    below = 0
    for j in range(n):
        below += values[j] < key
    return below


@njit(cache=True, _nrt=False)
def _remove_slot(price, qty, i, shift):
    """Free slot i, moving later entries of its probe run back (no tombstones)."""
    mask = price.size - 1
    j = i
    while True:
        j = (j + 1) & mask
        p = price[j]
        if math.isnan(p):
            break
        k = _home(p, shift)
        if (k <= i or k > j) if i < j else (k <= i and k > j):  # home not in (i, j]: may move to i
            price[i] = p
            qty[i] = qty[j]
            i = j
    price[i] = np.nan


@njit(cache=True, _nrt=False)
def _top_insert(top_key, top_qty, meta, threshold, key, q, cap):
    """Put a new level with key >= threshold into the top; a top of `cap` levels drops its lowest."""
    n = meta[2]
    i = _lower_bound(top_key, n, key)
    if n == cap:
        if i == 0:  # below every level of a full top: it stays out, above the others' threshold
            threshold[0] = top_key[0]
            return
        for j in range(i - 1):
            top_key[j] = top_key[j + 1]
            top_qty[j] = top_qty[j + 1]
        top_key[i - 1] = key
        top_qty[i - 1] = q
        threshold[0] = top_key[0]
        return
    for j in range(n, i, -1):
        top_key[j] = top_key[j - 1]
        top_qty[j] = top_qty[j - 1]
    top_key[i] = key
    top_qty[i] = q
    meta[2] = n + 1


@njit(cache=True, _nrt=False)
def _set_level(price, qty, meta, top_key, top_qty, threshold, px, sign, q):
    """Set (q > 0) or delete (q == 0) the level at price px of a side whose keys are px * sign.

    The caller guarantees a free slot (the table stays under half full)."""
    px = px + 0.0  # -0.0 and 0.0 are one level
    mask = price.size - 1
    shift = np.uint64(64 - meta[1])
    h = _home(px, shift)
    while True:
        p = price[h]
        if p == px or math.isnan(p):
            break
        h = (h + 1) & mask
    key = px * sign
    in_top = key >= threshold[0]
    if price[h] == px:
        if q != 0.0:
            qty[h] = q
            if in_top:
                top_qty[_lower_bound(top_key, meta[2], key)] = q
            return
        _remove_slot(price, qty, h, shift)
        meta[0] -= 1
        if in_top:
            n = meta[2]
            for j in range(_lower_bound(top_key, n, key), n - 1):
                top_key[j] = top_key[j + 1]
                top_qty[j] = top_qty[j + 1]
            meta[2] = n - 1
        return
    if q == 0.0:
        return  # deleting a level we do not hold is normal (it was outside our book)
    price[h] = px
    qty[h] = q
    meta[0] += 1
    if in_top:
        _top_insert(top_key, top_qty, meta, threshold, key, q, TOP_MAX)


@njit(cache=True, _nrt=False)
def _refill_top(price, qty, meta, top_key, top_qty, threshold, sign):
    """Rebuild the top from the whole side: its best TOP_FILL levels."""
    meta[2] = 0
    threshold[0] = -np.inf
    for s in range(price.size):
        p = price[s]
        if not math.isnan(p):
            if meta[2] == TOP_FILL and p * sign < top_key[0]:
                continue
            _top_insert(top_key, top_qty, meta, threshold, p * sign, qty[s], TOP_FILL)
    if meta[0] > meta[2]:
        threshold[0] = top_key[0]
    else:
        threshold[0] = -np.inf


@njit(cache=True, _nrt=False)
def _top(top_key, top_qty, meta, levels, sign, px_out, qty_out):
    """Write the best `levels` of a side (largest keys first) as prices key*sign."""
    n = meta[2]
    for r in range(min(levels, n)):
        px_out[r] = top_key[n - 1 - r] * sign
        qty_out[r] = top_qty[n - 1 - r]


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
    bids = _new_side(10)
    asks = _new_side(10)
    # the sides' arrays as locals: taking them out of the tuples per update costs reference counting
    bp, bq, bm, bk, bt, bth = bids
    ap, aq, am, ak, at, ath = asks
    r = 0
    for k in range(order.size):
        e = order[k]
        if reset[k]:
            _clear_side(bp, bm, bth)
            _clear_side(ap, am, ath)
        updates = ev_end[e] - ev_start[e]
        while 2 * (bm[0] + updates) > bp.size:  # room for the event's new levels, kept under half full
            bp, bq, bm, bk, bt, bth = _grow_side((bp, bq, bm, bk, bt, bth))
        while 2 * (am[0] + updates) > ap.size:
            ap, aq, am, ak, at, ath = _grow_side((ap, aq, am, ak, at, ath))
        for j in range(ev_start[e], ev_end[e]):
            if side[j] == 0:
                _set_level(bp, bq, bm, bk, bt, bth, price[j], 1.0, qty[j])
            else:
                _set_level(ap, aq, am, ak, at, ath, price[j], -1.0, qty[j])
        if emit[k]:
            if bm[2] < max(levels, 1) and bth[0] > -np.inf:
                _refill_top(bp, bq, bm, bk, bt, bth, 1.0)
            if am[2] < max(levels, 1) and ath[0] > -np.inf:
                _refill_top(ap, aq, am, ak, at, ath, -1.0)
            _top(bk, bt, bm, levels, 1.0, bid_px[r], bid_qty[r])
            _top(ak, at, am, levels, -1.0, ask_px[r], ask_qty[r])
            best_bid = bk[bm[2] - 1] if bm[2] > 0 else np.nan
            best_ask = -ak[am[2] - 1] if am[2] > 0 else np.nan
            crossed[r] = best_bid >= best_ask  # False when a side is empty (NaN)
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
