"""Binance websocket recordings -> trades, bookTicker quotes and the rebuilt order book.

Format (../shared/data/binance/README.md): one line per message, `<local receive ts> <JSON>`,
gzip or plain; JSON is the combined-stream wrapper {"stream", "data"} (`@depth`, `@depth@100ms`,
`@depth@0ms` diffs, `@trade` (or `@aggTrade`), `@bookTicker`; other streams are skipped and
counted) or a bare REST depth snapshot {"lastUpdateId", "bids", "asks"}. Files given together are
one recording. COIN-M sizes (contracts) are turned into base units (data_loaders.coinm).

Speed: the files are decompressed into one numpy buffer and parsed by one numba pass over its
bytes (data_loaders.json_scan), so nothing loops over lines in Python.

Book sync follows Binance's "How to manage a local order book correctly" (spot and USD-M):
diffs received before a snapshot are buffered; diffs with `u` below the snapshot's
`lastUpdateId` (spot: `u <= lastUpdateId`, USD-M: `u < lastUpdateId`) are dropped; the first
applied diff must straddle it (spot `U <= lastUpdateId+1 <= u`, USD-M `U <= lastUpdateId <= u`);
afterwards each diff must chain (spot `U == previous u + 1`, USD-M `pu == previous u`). A break is
a gap: rows are `in_sync=false` (the book keeps being updated, best effort) until a later snapshot
re-syncs it. A diff whose `u` is not above the last applied one is a duplicate or out of order:
quarantined and not applied. The snapshot and the buffered diffs replayed onto it give one row
(received at the snapshot's receive time); every other applied diff gives one row.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from data_loaders import coinm
from data_loaders.csv_lines import MAX_NS, MIN_NS, agreed
from data_loaders.json_scan import (
    BAD_TIME,
    F_A,
    F_AQ,
    F_B,
    F_BQ,
    F_P,
    F_Q,
    I_BIGU,
    I_E,
    I_LID,
    I_PU,
    I_T,
    I_TID,
    I_U,
    K_AGGTRADE,
    K_DEPTH,
    K_OTHER,
    K_SNAPSHOT,
    K_TICKER,
    K_TRADE,
    MALFORMED,
    OK,
    P_E,
    P_PU,
    P_T,
    STATUS_NAMES,
    scan,
)
from data_loaders.order_book import book_frame, rebuild_book, resample_book
from data_loaders.quarantine import Quarantine
from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA

try:  # ISA-L inflates about twice as fast as zlib; the zlib path gives the same bytes
    from isal.igzip_lib import DECOMP_GZIP, IgzipDecompressor
    from isal.igzip_lib import IsalError as GunzipError

    def _inflated(data: np.ndarray) -> Iterator[bytes]:
        """Every gzip member of `data`, inflated a megabyte at a time (each piece is copied out while
        it is in cache); a stream that stops before its end is an error."""
        while data.size:
            member = IgzipDecompressor(flag=DECOMP_GZIP)
            piece = member.decompress(data, INFLATE_PIECE)
            yield piece
            while not member.eof:
                if member.needs_input:
                    raise GunzipError("incomplete or truncated stream")
                yield member.decompress(b"", INFLATE_PIECE)
            data = np.frombuffer(member.unused_data.lstrip(b"\0"), np.uint8)  # zero padding may follow

except ImportError:
    GunzipError = zlib.error

    def _inflated(data: np.ndarray) -> Iterator[bytes]:
        yield gzip.decompress(data)

INFLATE_PIECE = 1 << 20

# --- sequencing: Binance's procedure for keeping a local book in sync --------------------------
# event states (forward pass)
S_APPLIED, S_STALE, S_DUPLICATE, S_BUFFERED, S_GAP, S_UNSYNCED, S_SNAPSHOT, S_SNAPSHOT_UNUSED, S_FOREIGN = (
    range(9)
)
A_SYNCED, A_UNSYNCED, A_GAP, A_STALE, A_DUPLICATE = range(5)
# A REST snapshot runs ahead of the diffs received with it by seconds of updates (thousands of ids
# on BTC-USDT); one a million ids past every diff of the recording belongs to another book.
FOREIGN_MARGIN = 1_000_000


@njit(cache=True)
def sync_step(first, last, prev, futures, synced, awaiting, cur):
    """One diff against the book state -> (action, synced, awaiting, cur). The reader and the live
    recorder (data_loaders.record.Chain) both keep Binance's rules through this one function."""
    d = 0 if futures else 1
    if awaiting:  # first diff after a snapshot with lastUpdateId == cur
        if last < cur + d:
            return A_STALE, synced, awaiting, cur
        if first <= cur + d:
            return A_SYNCED, True, False, last
        return A_GAP, False, False, last
    if last <= cur:
        return A_DUPLICATE, synced, awaiting, cur
    chained = prev == cur if futures else first == cur + 1
    if not synced:
        return A_UNSYNCED, False, False, last
    if not chained:
        return A_GAP, False, False, last
    return A_SYNCED, True, False, last


@njit(cache=True)
def _fits_stream(i, is_snap, first, last, target):
    """1 when the first later diff that reaches update id `target` starts at or before it (a
    snapshot of this book is met by the stream that way), 0 when the stream jumps over it (not
    ours), -1 when no later diff reaches it."""
    for j in range(i + 1, is_snap.size):
        if not is_snap[j] and last[j] >= target:
            return 1 if first[j] <= target else 0
    return -1


@njit(cache=True)
def _sequence(is_snap, first, last, prev, futures):
    """Decide, in receive order, which events are applied in which order.

    Returns order (event indices, replays included), reset, emit, in_sync, update_id, local_event
    (the event whose receive time a row carries) per applied step, and each event's state."""
    n = is_snap.size
    cap = 2 * n + 1
    order = np.empty(cap, np.int64)
    reset = np.zeros(cap, np.bool_)
    emit = np.zeros(cap, np.bool_)
    in_sync = np.zeros(cap, np.bool_)
    update_id = np.zeros(cap, np.int64)
    local_event = np.zeros(cap, np.int64)
    state = np.full(n, S_BUFFERED, np.int8)
    k = 0
    have_book = False
    synced = False
    awaiting = False
    cur = 0
    pending = 0  # receive index from which diffs were not applied in sync
    top_id = 0
    for j in range(n):
        if not is_snap[j]:
            top_id = max(top_id, last[j])
    for i in range(n):
        if is_snap[i]:
            if synced and last[i] <= cur:
                state[i] = S_SNAPSHOT_UNUSED  # already in sync and ahead of it
                continue
            fits = _fits_stream(i, is_snap, first, last, last[i] + (0 if futures else 1)) if synced else 1
            if fits == 0 and not awaiting:
                state[i] = S_FOREIGN  # the live diffs skip its id: another book's (e.g. another symbol's)
                continue
            if fits == -1:  # no later diff reaches it: far beyond every id of the stream, it is not ours
                state[i] = S_FOREIGN if last[i] > top_id + FOREIGN_MARGIN else S_SNAPSHOT_UNUSED
                continue
            state[i] = S_SNAPSHOT
            have_book, synced, awaiting, cur = True, True, True, last[i]
            order[k], reset[k], in_sync[k], update_id[k], local_event[k] = i, True, True, cur, i
            k += 1
            for j in range(pending, i):  # replay the buffered diffs onto the snapshot
                if is_snap[j]:
                    continue
                action, synced, awaiting, cur = sync_step(
                    first[j], last[j], prev[j], futures, synced, awaiting, cur
                )
                if state[j] == S_BUFFERED:
                    state[j] = S_STALE if action == A_STALE else S_APPLIED
                if action == A_STALE or action == A_DUPLICATE:
                    continue
                order[k], in_sync[k], update_id[k], local_event[k] = j, synced, cur, i
                k += 1
            emit[k - 1] = True
            pending = i + 1 if synced else pending
            continue
        if not have_book:
            continue
        action, synced, awaiting, cur = sync_step(
            first[i], last[i], prev[i], futures, synced, awaiting, cur
        )
        if action == A_STALE:
            state[i] = S_STALE
            continue
        if action == A_DUPLICATE:
            state[i] = S_DUPLICATE
            continue
        if action == A_GAP:
            state[i] = S_GAP
            pending = i
        else:
            state[i] = S_APPLIED if action == A_SYNCED else S_UNSYNCED
        order[k], emit[k], in_sync[k], update_id[k], local_event[k] = i, True, synced, cur, i
        k += 1
    return order[:k], reset[:k], emit[:k], in_sync[:k], update_id[:k], local_event[:k], state


# --- reading files ----------------------------------------------------------------------------
@dataclass
class Parsed:
    """All lines of a recording (files concatenated), parsed into flat arrays."""

    file_index: np.ndarray  # which file each line came from
    line_no: np.ndarray  # 1-based line number within its file
    local_ts: np.ndarray  # ns
    ts: pl.Series  # exchange time (T, else E) in ns; null when the message has none
    status: np.ndarray
    kind: np.ndarray
    ints: np.ndarray
    floats: np.ndarray
    present: np.ndarray
    maker: np.ndarray
    lv_start: np.ndarray
    lv_end: np.ndarray
    lv_side: np.ndarray
    lv_px: np.ndarray
    lv_qty: np.ndarray
    files: list[Path]
    buf: np.ndarray  # the files' decompressed bytes back to back, to quote bad lines
    starts: np.ndarray
    ends: np.ndarray
    symbol: str
    futures: bool
    ts_units: dict[str, str] = field(default_factory=dict)
    skipped_streams: dict[str, int] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return int(self.status.size)

    @property
    def market(self) -> str:
        """spot, usdm or coinm: COIN-M symbols name a USD pair and a delivery, futures diffs carry `pu`."""
        return "coinm" if coinm.is_coinm(self.symbol) else "usdm" if self.futures else "spot"

    def quarantine_lines(self, quarantine: Quarantine, kind: str, rows: np.ndarray) -> None:
        """Quarantine lines by index, quoting each with its file and line number."""
        if quarantine.path is None:  # counting only: no need to cut out each line
            if rows.size:
                quarantine.counts[kind] += int(rows.size)
            return
        for i in rows.tolist():
            text = self.buf[self.starts[i] : self.ends[i]].tobytes()
            quarantine.add(kind, str(self.files[self.file_index[i]]), int(self.line_no[i]), text)


def _read_files(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The files' bytes back to back, gunzipped (every member) where gzip, and where each file ends.

    They go into one numpy buffer because numpy has the kernel back large arrays with huge pages:
    a bytes object of the decompressed text costs a page fault per 4 KiB, a tenth of a rebuild's
    CPU. Corrupt or truncated gzip is an error naming the file."""
    raw = [np.fromfile(f, np.uint8) for f in files]
    buf = np.empty(sum(_size_hint(data) for data in raw), np.uint8)
    at, ends = 0, []
    for f, data in zip(files, raw):
        try:
            for piece in _inflated(data) if data[:2].tobytes() == GZIP_MAGIC else [data]:
                if at + len(piece) > buf.size:  # a gzip trailer's size holds only the last member's
                    buf = np.concatenate((buf[:at], np.empty(max(at + len(piece), 2 * buf.size) - at, np.uint8)))
                buf[at : at + len(piece)] = np.frombuffer(piece, np.uint8)
                at += len(piece)
        except (EOFError, zlib.error, GunzipError) as exc:
            raise ValueError(f"{f}: corrupt or truncated gzip data ({exc})") from None
        ends.append(at)
    return buf[:at], np.array(ends, np.int64)


GZIP_MAGIC = b"\x1f\x8b"


def _size_hint(data: np.ndarray) -> int:
    """Bytes a file will take decompressed: a gzip file's trailer gives its (last member's) size
    modulo 4 GiB, which deflate's largest ratio (1032:1) bounds."""
    if data[:2].tobytes() != GZIP_MAGIC or data.size < 18:
        return int(data.size)
    return min(int(data[-4:].view("<u4")[0]), 1032 * int(data.size))


_STREAM_NAME = re.compile(rb'"stream"\s*:\s*"([^"]*)"')


def _detect_symbol(buf: np.ndarray) -> bytes | None:
    """The recording's symbol: the prefix of the first stream name (None when there is none)."""
    found = _STREAM_NAME.search(buf)
    return found.group(1).split(b"@")[0] if found else None


def _one_instrument(files: list[Path], buf: np.ndarray, file_ends: np.ndarray) -> bytes:
    """The symbol the files record; files of different symbols are not one recording (their lines
    would be skipped as another instrument's), and a stream name with no symbol names none."""
    starts = [0, *file_ends[:-1].tolist()]
    found = {str(f): _detect_symbol(buf[a:b]) for f, a, b in zip(files, starts, file_ends.tolist())}
    symbols = {name: s for name, s in found.items() if s is not None}
    if any(not s for s in symbols.values()):
        empty = [name for name, s in symbols.items() if not s]
        raise ValueError(f"{', '.join(empty)}: stream names without a symbol (e.g. \"@trade\"): "
                         "not a Binance recording")
    if len(set(symbols.values())) > 1:
        raise ValueError("files of different symbols given as one recording: "
                         + ", ".join(f"{name} ({s.decode(errors='replace')})" for name, s in symbols.items())
                         + "; read each symbol's files in a command of its own")
    return next(iter(symbols.values()), b"")


def _one_market(files: list[Path], file_index: np.ndarray, kind: np.ndarray, status: np.ndarray,
                present: np.ndarray) -> None:
    """Spot and futures files are not one recording: their update ids do not chain, and one
    market's label would be put on the other's rows. Depth diffs tell them apart (futures carry pu)."""
    depth = (kind == K_DEPTH) & (status == OK)
    markets = {}
    for fi, f in enumerate(files):
        rows = depth & (file_index == fi)
        if rows.any():
            markets[str(f)] = "usdm" if bool((present[rows] & P_PU != 0).any()) else "spot"
    if len(set(markets.values())) > 1:
        raise ValueError("files of different markets given as one recording: "
                         + ", ".join(f"{name} ({m})" for name, m in markets.items())
                         + "; read each market's files in a command of its own")


UNIT_FACTORS = {"ns": 1, "us": 1_000, "ms": 1_000_000}


def _ts_unit(median: float, path: Path) -> str:
    """Receive-timestamp unit from the magnitude of the median (1.7e18 ns, 1.7e15 us, 1.7e12 ms)."""
    if median >= 1e17:
        return "ns"
    if median >= 1e14:
        return "us"
    if median >= 1e11:
        return "ms"
    raise ValueError(f"{path}: cannot tell the receive-timestamp unit (median {median:.3g}); "
                     "expected epoch ns, us or ms")


def _in_range(values: np.ndarray, factor: int) -> np.ndarray:
    """Epoch times in units of `factor` ns that fall in 2010..2100 (checked without scaling: no overflow)."""
    return (values >= MIN_NS // factor) & (values <= MAX_NS // factor)


def parse_recording(files: list[Path], quarantine: Quarantine) -> Parsed:
    """Decompress and parse every line of `files` (one recording); bad lines are quarantined."""
    buf, file_ends = _read_files(files)
    symbol = _one_instrument(files, buf, file_ends)
    scanned = scan(buf, file_ends, np.frombuffer(symbol, np.uint8))
    starts, ends, file_index, line_no = scanned.starts, scanned.ends, scanned.file_index, scanned.line_no
    local_ts, status, kind, ints, present = (
        scanned.local_ts, scanned.status, scanned.kind, scanned.ints, scanned.present
    )  # fmt: skip
    ts_units = {}
    for fi, f in enumerate(files):  # per-file unit; an implausible timestamp is a malformed line
        rows = (file_index == fi) & (status != MALFORMED)
        if not rows.any():
            continue  # an empty file (or one of malformed lines only) has no unit to tell
        median = np.median(local_ts[rows])
        unit = _ts_unit(float(median), Path(f))
        ts_units[Path(f).name] = unit
        factor = UNIT_FACTORS[unit]
        # checked in the file's unit, before scaling to ns, which would overflow an implausible stamp
        implausible = (np.abs(local_ts - median) > 3e17 / factor) | ~_in_range(local_ts, factor)
        status[rows & implausible] = MALFORMED
        local_ts[(file_index == fi) & (status != MALFORMED)] *= factor
    has_time = (present & (P_T | P_E) != 0) & (status == OK)
    exch_ms = np.where(present & P_T, ints[:, I_T], ints[:, I_E])
    status[has_time & ~_in_range(exch_ms, 1_000_000)] = BAD_TIME
    has_time &= status == OK
    exch = np.where(has_time, exch_ms, 0) * 1_000_000
    ts = pl.Series("ts", exch).set(pl.Series(~has_time), None)  # type: ignore[arg-type]
    parsed = Parsed(
        file_index, line_no, local_ts, ts, status, kind, ints, scanned.floats, present,
        scanned.maker, scanned.lv_start, scanned.lv_end, scanned.lv_side, scanned.lv_px,
        scanned.lv_qty, [Path(f) for f in files], buf, starts, ends,
        symbol.decode(errors="replace"), bool(((kind == K_DEPTH) & (present & P_PU != 0)).any()), ts_units,
    )  # fmt: skip
    _one_market(files, file_index, kind, status, present)
    for code, name in STATUS_NAMES.items():
        rows = np.flatnonzero(status == code)
        if rows.size:
            parsed.quarantine_lines(quarantine, name, rows)
    other = np.flatnonzero((kind == K_OTHER) & (status == OK))
    if other.size:
        names = [
            buf[s:e].tobytes().decode(errors="replace") for s, e in scanned.stream_span[other].tolist()
        ]
        parsed.skipped_streams = dict(pl.Series(names).value_counts(sort=True).iter_rows())
    return parsed


def _good(parsed: Parsed, kind: int) -> np.ndarray:
    return np.flatnonzero((parsed.kind == kind) & (parsed.status == OK))


def _out_of_order(ids: np.ndarray) -> np.ndarray:
    """Positions whose id is not above every earlier id (duplicates and out-of-order ids)."""
    if ids.size < 2:
        return np.zeros(ids.size, np.bool_)
    running = np.maximum.accumulate(ids)
    return np.concatenate(([False], ids[1:] <= running[:-1]))


KIND_NAMES = {K_DEPTH: "depth", K_SNAPSHOT: "snapshot", K_TRADE: "trade", K_AGGTRADE: "aggTrade",
              K_TICKER: "bookTicker"}


def _stats(parsed: Parsed, quarantine: Quarantine) -> dict:
    """Counts every line falls in: messages = sum(messages_by_kind) + skipped streams + the parser's bad lines."""
    good = parsed.status == OK
    return {
        "messages": parsed.messages,
        "messages_by_kind": {name: int((good & (parsed.kind == k)).sum()) for k, name in KIND_NAMES.items()},
        "symbol": parsed.symbol,
        "market": parsed.market,
        "ts_unit": ",".join(sorted(set(parsed.ts_units.values()))),
        "skipped_streams": parsed.skipped_streams,
        "bad_lines": dict(quarantine.counts),
    }


def trades_frame(parsed: Parsed, quarantine: Quarantine) -> tuple[pl.DataFrame, dict]:
    """Trades to the TRADES_SCHEMA contract; repeated or backwards trade ids are quarantined.

    The `@trade` stream gives the trades; a recording of `@aggTrade` alone gives aggregate trades
    (`trade_id` is the aggregate id). COIN-M quantities are turned from contracts into base units."""
    rows = _good(parsed, K_TRADE)
    source = "trade"
    if not rows.size:
        rows, source = _good(parsed, K_AGGTRADE), "aggTrade"
    bad = _out_of_order(parsed.ints[rows, I_TID])
    parsed.quarantine_lines(quarantine, "duplicate_or_out_of_order_id", rows[bad])
    rows = rows[~bad]
    frame = pl.DataFrame(
        {
            "ts": parsed.ts.gather(rows),
            "local_ts": parsed.local_ts[rows],
            "trade_id": parsed.ints[rows, I_TID],
            "price": parsed.floats[rows, F_P],
            "qty": parsed.floats[rows, F_Q],
            "side": np.where(parsed.maker[rows] == 1, -1, 1).astype(
                np.int8
            ),  # buyer is maker: a sell
        }
    ).cast(TRADES_SCHEMA)  # type: ignore[arg-type]
    if parsed.market == "coinm":
        frame = coinm.to_base(frame, parsed.symbol, [("qty", "price")])
    return frame, {**_stats(parsed, quarantine), "trades_from": source, "rows": frame.height}


def _quote_lines(parsed: Parsed, quarantine: Quarantine) -> np.ndarray:
    """The bookTicker lines that are quotes (their `u` increasing); crossed quotes and non-increasing
    `u` are quarantined."""
    rows = _good(parsed, K_TICKER)
    crossed = parsed.floats[rows, F_B] >= parsed.floats[rows, F_A]
    parsed.quarantine_lines(quarantine, "crossed_book", rows[crossed])
    rows = rows[~crossed]
    bad = _out_of_order(parsed.ints[rows, I_U])
    parsed.quarantine_lines(quarantine, "duplicate_or_out_of_order_id", rows[bad])
    return rows[~bad]


def quotes_frame(parsed: Parsed, quarantine: Quarantine) -> tuple[pl.DataFrame, dict]:
    """bookTicker to the QUOTES_SCHEMA contract; crossed quotes and non-increasing `u` are quarantined."""
    rows = _quote_lines(parsed, quarantine)
    f = parsed.floats[rows]
    frame = pl.DataFrame(
        {
            "ts": parsed.ts.gather(rows),
            "local_ts": parsed.local_ts[rows],
            "update_id": parsed.ints[rows, I_U],
            "bid_px": f[:, F_B],
            "bid_qty": f[:, F_BQ],
            "ask_px": f[:, F_A],
            "ask_qty": f[:, F_AQ],
        }
    ).cast(QUOTES_SCHEMA)  # type: ignore[arg-type]
    if parsed.market == "coinm":
        frame = coinm.to_base(frame, parsed.symbol, [("bid_qty", "bid_px"), ("ask_qty", "ask_px")])
    return frame, {**_stats(parsed, quarantine), "rows": frame.height}


class GapError(RuntimeError):
    """A gap in the update ids with --on-gap error."""


def book_frame_from(
    parsed: Parsed,
    quarantine: Quarantine,
    levels: int = 10,
    every: str | None = None,
    on_gap: str = "flag",
) -> tuple[pl.DataFrame, dict]:
    """The rebuilt book (BOOK contract, `levels` levels): one row per applied diff, or on a grid.

    on_gap: "flag" keeps out-of-sync rows with in_sync=false, "drop" removes them, "error" raises
    GapError at the first gap. Crossed books (best bid >= best ask) are counted and their rows
    marked in_sync=false; the diff that crossed an in-sync book is quarantined. The stats'
    `ticker_agreement` is the share of in-sync rows whose top of book equals the bookTicker
    stream (bookticker_agreement): a self-check of the rebuild."""
    if on_gap not in ("flag", "drop", "error"):
        raise ValueError(f"on_gap must be flag, drop or error, not {on_gap!r}")
    events = np.flatnonzero(
        ((parsed.kind == K_DEPTH) | (parsed.kind == K_SNAPSHOT)) & (parsed.status == OK)
    )
    is_snap = parsed.kind[events] == K_SNAPSHOT
    ints = parsed.ints[events]
    first = np.where(is_snap, ints[:, I_LID], ints[:, I_BIGU])
    last = np.where(is_snap, ints[:, I_LID], ints[:, I_U])
    order, reset, emit, in_sync, update_id, local_event, state = _sequence(
        is_snap, first, last, ints[:, I_PU], parsed.futures
    )
    gap_lines = events[state == S_GAP]
    if on_gap == "error" and gap_lines.size:
        i = gap_lines[0]
        raise GapError(
            f"gap in the update ids at {parsed.files[parsed.file_index[i]]}:{parsed.line_no[i]} "
            f"(U={parsed.ints[i, I_BIGU]}, u={parsed.ints[i, I_U]})"
        )
    parsed.quarantine_lines(
        quarantine, "duplicate_or_out_of_order_id", events[state == S_DUPLICATE]
    )
    parsed.quarantine_lines(quarantine, "foreign_snapshot", events[state == S_FOREIGN])
    lines = events[order]
    arrays = rebuild_book(
        parsed.lv_start,
        parsed.lv_end,
        parsed.lv_side,
        parsed.lv_px,
        parsed.lv_qty,
        levels,
        lines,
        reset,
        emit,
    )
    rows = arrays.position
    crossed = arrays.crossed
    # a diff that crosses an in-sync book is bad input; a book that drifted after a gap may cross too
    entering = crossed & ~np.concatenate(([False], crossed[:-1])) & in_sync[rows]
    parsed.quarantine_lines(quarantine, "crossed_book", lines[rows[entering]])
    sync = in_sync[rows] & ~crossed
    book = book_frame(
        arrays,
        parsed.ts.gather(lines[rows]),
        parsed.local_ts[events[local_event[rows]]],
        update_id[rows],
        sync,
    )
    stats = {
        **_stats(parsed, quarantine),
        "diffs": int((~is_snap).sum()),
        "snapshots": int(is_snap.sum()),
        "applied": int(np.isin(state, (S_APPLIED, S_GAP, S_UNSYNCED)).sum()),
        "stale_dropped": int((state == S_STALE).sum()),
        "never_synced": int((state == S_BUFFERED).sum()),
        "gaps": int(gap_lines.size),
        "out_of_sync_rows": int((~sync).sum()),
        "crossed_rows": int(crossed.sum()),
    }
    quotes = _quote_lines(parsed, Quarantine(None))  # their bad lines are the quotes command's to report
    agree, compared = _agreement(
        update_id[rows][sync], arrays.bid_px[sync, 0], arrays.ask_px[sync, 0],
        parsed.ints[quotes, I_U], parsed.floats[quotes, F_B], parsed.floats[quotes, F_A],
    )  # fmt: skip
    stats["ticker_agreement"] = round(agree / compared, 6) if compared else None  # self-check
    if parsed.market == "coinm":
        book = coinm.to_base(book, parsed.symbol, [(f"{side}_qty_{i}", f"{side}_px_{i}")
                                                   for side in ("bid", "ask") for i in range(1, levels + 1)])
    if on_gap == "drop":
        book = book.filter(pl.col("in_sync"))
    if every is not None:
        book, stats["ts_backwards"] = resample_book(book, every)
    stats["rows"] = book.height
    return book, stats


def read(kind: str, files: list[Path], *, quarantine: Quarantine, symbol: str | None = None,
         market: str | None = None, levels: int | None = None, every: str | None = None,
         on_gap: str = "flag") -> tuple[pl.DataFrame, dict]:
    """The reader protocol (data_loaders.formats): one recording -> trades, quotes or the book. A
    recording names its own symbol and market; a `symbol` / `market` given must match them."""
    parsed = parse_recording(files, quarantine)
    if kind == "book":
        frame, stats = book_frame_from(parsed, quarantine, levels or 10, every, on_gap)
    else:
        frame, stats = (trades_frame if kind == "trades" else quotes_frame)(parsed, quarantine)
    for key, option, value in (("symbol", "--symbol", symbol), ("market", "--venue", market)):
        if value:
            stats[key] = agreed(key, option, {"the recording": stats[key], option: value})
    return frame, stats


def bookticker_agreement(book: pl.DataFrame, quotes: pl.DataFrame) -> tuple[int, int]:
    """(agreeing, compared) in-sync book rows whose best bid and ask equal the latest bookTicker
    with update id <= the row's update id (Binance's check of a correct local book)."""
    rows = book.filter(pl.col("in_sync"))
    return _agreement(*(rows[c].to_numpy() for c in ("update_id", "bid_px_1", "ask_px_1")),
                      *(quotes[c].to_numpy() for c in ("update_id", "bid_px", "ask_px")))


def _agreement(book_id: np.ndarray, book_bid: np.ndarray, book_ask: np.ndarray, quote_id: np.ndarray,
               quote_bid: np.ndarray, quote_ask: np.ndarray) -> tuple[int, int]:
    """bookticker_agreement on arrays (a book's missing best level is NaN): each book row meets the
    last quote by update id at or before its own, as an as-of join would, by binary search."""
    order = np.argsort(quote_id, kind="stable")
    at = np.searchsorted(quote_id[order], book_id, side="right") - 1
    met = order[at[at >= 0]]
    bid, ask = book_bid[at >= 0], book_ask[at >= 0]
    compared = ~np.isnan(quote_bid[met])
    agree = compared & (bid == quote_bid[met]) & (ask == quote_ask[met])
    return int(agree.sum()), int(compared.sum())


def sniff(path: Path) -> bool:
    """True when the file looks like a Binance websocket recording (`<integer ts> {json}` lines)."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as fh:
        try:
            head = fh.readline(1 << 20)
        except OSError:  # a corrupt gzip stream
            return False
    ts, _, body = head.partition(b" ")
    return ts.isdigit() and body.lstrip().startswith(b"{")
