"""Binance websocket recordings -> trades, bookTicker quotes and the rebuilt order book.

Format (../shared/data/binance/README.md): one line per message, `<local receive ts> <JSON>`,
gzip or plain; JSON is the combined-stream wrapper {"stream", "data"} (`@depth`, `@depth@100ms`,
`@depth@0ms` diffs, `@trade`, `@bookTicker`; other streams are skipped and counted) or a bare REST
depth snapshot {"lastUpdateId", "bids", "asks"}. Files given together are one recording.

Speed: each file is decompressed whole and parsed by one numba pass over its bytes (a strict
JSON scanner that extracts the few fields we use), so nothing loops over lines in Python. The
scanner's helpers are compiled without numba's reference counting (`_nrt=False`: they allocate
nothing): an atomic refcount per array argument per token cost more than the scanning itself.
Decimal strings with at most 15 significant digits and no exponent (all Binance prices and sizes)
parse to exactly `float(text)`.

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
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from data_loaders.order_book import book_frame, rebuild_book, resample_book
from data_loaders.quarantine import Quarantine
from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA

try:  # ISA-L inflates about twice as fast as zlib; the zlib path gives the same bytes
    from isal.igzip_lib import DECOMP_GZIP, IgzipDecompressor
    from isal.igzip_lib import IsalError as GunzipError

    def gunzip(data: bytes) -> bytes:
        """Every gzip member of `data`, inflated one-shot (faster than isal.igzip's streaming reader)."""
        parts = []
        while data:
            member = IgzipDecompressor(flag=DECOMP_GZIP)
            parts.append(member.decompress(data))
            if not member.eof:
                raise GunzipError("incomplete or truncated stream")
            data = member.unused_data.lstrip(b"\0")  # zero padding may follow a member
        return b"".join(parts)

except ImportError:
    from gzip import decompress as gunzip

    GunzipError = zlib.error

# message kinds
K_NONE, K_DEPTH, K_TRADE, K_TICKER, K_SNAPSHOT, K_OTHER = 0, 1, 2, 3, 4, 5
# line status (0 = good); names are the quarantine kinds
OK = 0
STATUS_NAMES = {
    1: "malformed_line",  # no `<integer timestamp> <JSON>` shape, or an implausible timestamp
    2: "invalid_json",
    3: "non_numeric_field",
    4: "missing_field",
    5: "negative_size",
    6: "non_positive_price",
    7: "unknown_message",  # valid JSON that is neither a stream message nor a snapshot
}
MALFORMED, BAD_JSON, NON_NUMERIC, MISSING, NEGATIVE, BAD_PRICE, UNKNOWN = range(1, 8)
# integer fields (columns of `ints`) and float fields (columns of `floats`)
I_E, I_T, I_BIGU, I_U, I_PU, I_TID, I_LID = range(7)
F_B, F_BQ, F_A, F_AQ, F_P, F_Q = range(6)
# presence bits
P_E, P_T, P_BIGU, P_U, P_PU, P_TID, P_LID = (1 << i for i in range(7))
P_B, P_BQ, P_A, P_AQ, P_P, P_Q, P_M = (1 << i for i in range(7, 14))
P_BL, P_AL, P_DATA = 1 << 14, 1 << 15, 1 << 16  # b/a (or bids/asks) as level lists; data object


@njit(cache=True, inline="always")
def _ws(buf, p, end):
    while p < end and (buf[p] == 32 or buf[p] == 9 or buf[p] == 13 or buf[p] == 10):
        p += 1
    return p


@njit(cache=True, inline="always")
def _string_end(buf, p, end):
    """p at an opening quote -> index after the closing quote, or -1."""
    p += 1
    while p < end:
        c = buf[p]
        if c == 34:
            return p + 1
        if c == 92:
            p += 2
            continue
        if c < 32:
            return -1
        p += 1
    return -1


@njit(cache=True, _nrt=False)
def _number_end(buf, p, end):
    """Validate a JSON number starting at p -> index after it, or -1."""
    if p < end and buf[p] == 45:
        p += 1
    start = p
    while p < end and 48 <= buf[p] <= 57:
        p += 1
    if p == start:
        return -1
    if p < end and buf[p] == 46:
        p += 1
        s = p
        while p < end and 48 <= buf[p] <= 57:
            p += 1
        if p == s:
            return -1
    if p < end and (buf[p] == 101 or buf[p] == 69):
        p += 1
        if p < end and (buf[p] == 43 or buf[p] == 45):
            p += 1
        s = p
        while p < end and 48 <= buf[p] <= 57:
            p += 1
        if p == s:
            return -1
    return p


@njit(cache=True, _nrt=False)
def _literal_end(buf, p, end, word):
    n = len(word)
    if p + n > end:
        return -1
    for i in range(n):
        if buf[p + i] != word[i]:
            return -1
    return p + n


TRUE = np.frombuffer(b"true", np.uint8)
FALSE = np.frombuffer(b"false", np.uint8)
NULL = np.frombuffer(b"null", np.uint8)


@njit(cache=True, _nrt=False)
def _scalar_end(buf, p, end):
    """Validate a JSON string, number or literal at p -> index after it, or -1."""
    c = buf[p]
    if c == 34:
        return _string_end(buf, p, end)
    if c == 45 or 48 <= c <= 57:
        return _number_end(buf, p, end)
    if c == 116:
        return _literal_end(buf, p, end, TRUE)
    if c == 102:
        return _literal_end(buf, p, end, FALSE)
    if c == 110:
        return _literal_end(buf, p, end, NULL)
    return -1


@njit(cache=True, _nrt=False)
def _key_colon(buf, p, end):
    """A member name and its colon at p -> index of the value, or -1."""
    if p >= end or buf[p] != 34:
        return -1
    p = _string_end(buf, p, end)
    if p < 0:
        return -1
    p = _ws(buf, p, end)
    if p >= end or buf[p] != 58:
        return -1
    return _ws(buf, p + 1, end)


@njit(cache=True, _nrt=False)
def _skip_value(buf, p, end):
    """Validate one JSON value at p -> index after it, or -1 (iterative: at most 64 deep)."""
    p = _ws(buf, p, end)
    if p >= end:
        return -1
    if buf[p] != 123 and buf[p] != 91:
        return _scalar_end(buf, p, end)
    objects = 0  # one bit per open container, innermost lowest: 1 an object, 0 an array
    depth = 0
    need_value = True
    while True:
        if need_value:
            if p >= end:
                return -1
            c = buf[p]
            if c == 123 or c == 91:
                if depth == 64:
                    return -1
                objects = (objects << 1) | (c == 123)
                depth += 1
                p = _ws(buf, p + 1, end)
                if p < end and buf[p] == c + 2:  # {} or []
                    objects >>= 1
                    depth -= 1
                    p += 1
                    need_value = False
                elif c == 123:
                    p = _key_colon(buf, p, end)
                    if p < 0:
                        return -1
                continue
            p = _scalar_end(buf, p, end)
            if p < 0:
                return -1
            need_value = False
        if depth == 0:
            return p
        p = _ws(buf, p, end)
        if p >= end:
            return -1
        if buf[p] == 44:
            p = _ws(buf, p + 1, end)
            if objects & 1:
                p = _key_colon(buf, p, end)
                if p < 0:
                    return -1
            need_value = True
        elif buf[p] == (125 if objects & 1 else 93):
            objects >>= 1
            depth -= 1
            p += 1
        else:
            return -1


POW10 = 10.0 ** np.arange(23)  # exact powers of ten


@njit(cache=True, _nrt=False)
def _decimal(buf, s, e):
    """Decimal text [s, e) -> (ok, value); exact (== float(text)) for <= 15 significant digits."""
    p = s
    neg = False
    if p < e and buf[p] == 45:
        neg = True
        p += 1
    mant = 0
    digits = 0
    frac = 0
    seen = False
    while p < e and 48 <= buf[p] <= 57:
        if digits < 18:
            mant = mant * 10 + (buf[p] - 48)
            if mant > 0:
                digits += 1
        else:
            frac -= 1
        seen = True
        p += 1
    if p < e and buf[p] == 46:
        p += 1
        while p < e and 48 <= buf[p] <= 57:
            if digits < 18:
                mant = mant * 10 + (buf[p] - 48)
                if mant > 0:
                    digits += 1
                frac += 1
            seen = True
            p += 1
    exp = 0
    if p < e and (buf[p] == 101 or buf[p] == 69):
        p += 1
        eneg = False
        if p < e and (buf[p] == 43 or buf[p] == 45):
            eneg = buf[p] == 45
            p += 1
        if p == e:
            return False, 0.0
        while p < e and 48 <= buf[p] <= 57:
            exp = exp * 10 + (buf[p] - 48)
            p += 1
        if eneg:
            exp = -exp
    if not seen or p != e:
        return False, 0.0
    power = frac - exp
    if 0 <= power <= 22 and mant < 9007199254740992:
        value = mant / POW10[power]  # one correctly rounded division: exact parse
    elif -22 <= power < 0 and mant < 9007199254740992:
        value = mant * POW10[-power]
    else:
        value = mant * 10.0 ** (-power)  # beyond Binance's formats: within an ulp or so
    return True, -value if neg else value


@njit(cache=True, inline="always")
def _int(buf, p, end):
    """JSON integer at p -> (status, value, end). status OK, NON_NUMERIC or BAD_JSON."""
    # fast path, one pass: up to 18 digits not followed by a fraction or exponent
    neg = buf[p] == 45
    s = p + 1 if neg else p
    q = s
    v = 0
    while q < end and 48 <= buf[q] <= 57:
        v = v * 10 + (buf[q] - 48)
        q += 1
    if s < q <= s + 18 and (q == end or (buf[q] != 46 and buf[q] != 101 and buf[q] != 69)):
        return OK, -v if neg else v, q
    return _int_slow(buf, p, end)


@njit(cache=True, _nrt=False)
def _int_slow(buf, p, end):
    q = _number_end(buf, p, end)
    if q < 0:
        q = _skip_value(buf, p, end)
        return (NON_NUMERIC if q >= 0 else BAD_JSON), 0, q
    neg = buf[p] == 45
    s = p + 1 if neg else p
    if q - s > 18:
        return NON_NUMERIC, 0, q
    v = 0
    for i in range(s, q):
        c = buf[i]
        if c < 48 or c > 57:
            return NON_NUMERIC, 0, q  # a fraction or exponent where an integer belongs
        v = v * 10 + (c - 48)
    return OK, -v if neg else v, q


@njit(cache=True, inline="always")
def _quoted_decimal(buf, p, end):
    """A JSON string holding a decimal -> (status, value, end)."""
    if buf[p] != 34:
        q = _skip_value(buf, p, end)
        return (NON_NUMERIC if q >= 0 else BAD_JSON), 0.0, q
    # fast path, one pass: plain digits with at most one dot and 15 significant digits
    q = p + 1
    mant = 0
    digits = 0
    frac = -1
    while q < end:
        c = buf[q]
        if 48 <= c <= 57:
            mant = mant * 10 + (c - 48)
            digits += mant > 0
            frac += frac >= 0
        elif c == 46 and frac < 0:
            frac = 0
        else:
            break
        q += 1
    if q < end and buf[q] == 34 and digits <= 15 and q > p + 1 + (frac >= 0) and frac != 0:
        return OK, mant / POW10[max(frac, 0)], q + 1
    q = _string_end(buf, p, end)
    if q < 0:
        return BAD_JSON, 0.0, q
    ok, v = _decimal(buf, p + 1, q - 1)
    return (OK if ok else NON_NUMERIC), v, q


@njit(cache=True, _nrt=False)
def _levels(buf, p, end, side, lv_side, lv_px, lv_qty, n):
    """A list of ["price", "qty"] pairs at p -> (status, end, new n)."""
    p = _ws(buf, p + 1, end)
    if p < end and buf[p] == 93:
        return OK, p + 1, n
    while True:
        if p >= end or buf[p] != 91:
            q = _skip_value(buf, p, end)
            return (NON_NUMERIC if q >= 0 else BAD_JSON), q, n
        p = _ws(buf, p + 1, end)
        if p >= end:
            return BAD_JSON, -1, n
        st, px, p = _quoted_decimal(buf, p, end)
        if st != OK:
            return st, p, n
        p = _ws(buf, p, end)
        if p >= end or buf[p] != 44:
            return BAD_JSON if p >= end or buf[p] != 93 else MISSING, -1, n
        p = _ws(buf, p + 1, end)
        if p >= end:
            return BAD_JSON, -1, n
        st, qty, p = _quoted_decimal(buf, p, end)
        if st != OK:
            return st, p, n
        p = _ws(buf, p, end)
        if p >= end or buf[p] != 93:
            return BAD_JSON, -1, n
        if qty < 0.0:
            return NEGATIVE, p, n
        if px <= 0.0:
            return BAD_PRICE, p, n
        lv_side[n] = side
        lv_px[n] = px
        lv_qty[n] = qty
        n += 1
        p = _ws(buf, p + 1, end)
        if p < end and buf[p] == 44:
            p = _ws(buf, p + 1, end)
            continue
        if p < end and buf[p] == 93:
            return OK, p + 1, n
        return BAD_JSON, -1, n


@njit(cache=True, inline="always")
def _key_is(buf, s, e, word):
    if e - s != len(word):
        return False
    for i in range(e - s):
        if buf[s + i] != word[i]:
            return False
    return True


STREAM = np.frombuffer(b"stream", np.uint8)
DATA = np.frombuffer(b"data", np.uint8)
LASTUPDATEID = np.frombuffer(b"lastUpdateId", np.uint8)
BIDS = np.frombuffer(b"bids", np.uint8)
ASKS = np.frombuffer(b"asks", np.uint8)
PU = np.frombuffer(b"pu", np.uint8)
TRADE = np.frombuffer(b"trade", np.uint8)
BOOKTICKER = np.frombuffer(b"bookTicker", np.uint8)
DEPTH = np.frombuffer(b"depth", np.uint8)
INT_KEYS = np.frombuffer(b"ETUut", np.uint8)  # columns I_E, I_T, I_BIGU, I_U, I_TID
FLOAT_KEYS = np.frombuffer(b"bBaApq", np.uint8)  # columns F_B..F_Q


@njit(cache=True, inline="always")  # once per member: a call costs more than it
def _member(buf, ks, ke, p, end, i, ints, floats, present, maker, lv_side, lv_px, lv_qty, n):
    """Parse the value of key [ks, ke) at p into line i's slots -> (status, end, new level count)."""
    klen = ke - ks
    c = buf[ks] if klen > 0 else 0
    if klen == 1:
        for j in range(5):
            if c == INT_KEYS[j]:
                col = j if j < 4 else I_TID
                st, v, q = _int(buf, p, end)
                if st == OK:
                    ints[i, col] = v
                    present[i] |= 1 << col
                return st, q, n
        if c == 109:  # "m": trade buyer-is-maker flag
            q = _literal_end(buf, p, end, TRUE)
            if q >= 0:
                maker[i] = 1
            else:
                q = _literal_end(buf, p, end, FALSE)
                if q < 0:
                    q = _skip_value(buf, p, end)
                    return (NON_NUMERIC if q >= 0 else BAD_JSON), q, n
                maker[i] = 0
            present[i] |= P_M
            return OK, q, n
        for j in range(6):
            if c == FLOAT_KEYS[j]:
                if (j == F_B or j == F_A) and buf[p] == 91:
                    st, q, n = _levels(buf, p, end, 0 if j == F_B else 1, lv_side, lv_px, lv_qty, n)
                    if st == OK:
                        present[i] |= P_BL if j == F_B else P_AL
                    return st, q, n
                st, v, q = _quoted_decimal(buf, p, end)
                if st == OK:
                    floats[i, j] = v
                    present[i] |= 1 << (7 + j)
                return st, q, n
    elif _key_is(buf, ks, ke, PU):
        st, v, q = _int(buf, p, end)
        if st == OK:
            ints[i, I_PU] = v
            present[i] |= P_PU
        return st, q, n
    elif _key_is(buf, ks, ke, LASTUPDATEID):
        st, v, q = _int(buf, p, end)
        if st == OK:
            ints[i, I_LID] = v
            present[i] |= P_LID
        return st, q, n
    elif _key_is(buf, ks, ke, BIDS) or _key_is(buf, ks, ke, ASKS):
        if buf[p] != 91:
            q = _skip_value(buf, p, end)
            return (NON_NUMERIC if q >= 0 else BAD_JSON), q, n
        bid = buf[ks] == 98
        st, q, n = _levels(buf, p, end, 0 if bid else 1, lv_side, lv_px, lv_qty, n)
        if st == OK:
            present[i] |= P_BL if bid else P_AL
        return st, q, n
    q = _skip_value(buf, p, end)
    return (OK if q >= 0 else BAD_JSON), q, n


@njit(cache=True, _nrt=False)
def _stream_kind(buf, s, e, sym):
    """Stream name [s, e) -> kind; streams of another symbol count as other streams."""
    at = s
    while at < e and buf[at] != 64:
        at += 1
    if at == e or at - s != sym.size:
        return K_OTHER
    for i in range(sym.size):
        if buf[s + i] != sym[i]:
            return K_OTHER
    t = at + 1
    if _key_is(buf, t, e, TRADE):
        return K_TRADE
    if _key_is(buf, t, e, BOOKTICKER):
        return K_TICKER
    if e - t >= 5 and _key_is(buf, t, t + 5, DEPTH):
        if e - t == 5:
            return K_DEPTH
        if buf[t + 5] == 64 and e - t >= 9 and buf[e - 2] == 109 and buf[e - 1] == 115:  # @<n>ms
            for j in range(t + 6, e - 2):
                if buf[j] < 48 or buf[j] > 57:
                    return K_OTHER
            return K_DEPTH
    return K_OTHER


@njit(cache=True, _nrt=False)
def _object(
    buf, p, end, i, sym, ints, floats, present, maker, kind, stream_span, lv_side, lv_px, lv_qty, n
):
    """Parse the line's top-level object at p, descending once into "data" -> (status, end, new n)."""
    inner = False  # inside the "data" object
    p = _ws(buf, p + 1, end)
    if p < end and buf[p] == 125:
        return OK, p + 1, n
    while True:
        if p >= end or buf[p] != 34:
            return BAD_JSON, -1, n
        q = _string_end(buf, p, end)
        if q < 0:
            return BAD_JSON, -1, n
        ks, ke = p + 1, q - 1
        p = _ws(buf, q, end)
        if p >= end or buf[p] != 58:
            return BAD_JSON, -1, n
        p = _ws(buf, p + 1, end)
        if p >= end:
            return BAD_JSON, -1, n
        if not inner and _key_is(buf, ks, ke, STREAM):
            if buf[p] != 34:
                q = _skip_value(buf, p, end)
                st = MISSING if q >= 0 else BAD_JSON
            else:
                q = _string_end(buf, p, end)
                st = OK if q >= 0 else BAD_JSON
                if q >= 0:
                    kind[i] = _stream_kind(buf, p + 1, q - 1, sym)
                    stream_span[i, 0] = p + 1
                    stream_span[i, 1] = q - 1
        elif not inner and _key_is(buf, ks, ke, DATA):
            present[i] |= P_DATA
            if buf[p] == 123 and kind[i] != K_OTHER:
                inner = True
                p = _ws(buf, p + 1, end)
                if p < end and buf[p] == 125:
                    inner = False
                    q = p + 1
                    st = OK
                else:
                    continue
            else:
                q = _skip_value(buf, p, end)
                st = OK if q >= 0 else BAD_JSON
                if q >= 0 and buf[p] != 123 and kind[i] != K_OTHER:
                    st = MISSING
        else:
            st, q, n = _member(
                buf, ks, ke, p, end, i, ints, floats, present, maker, lv_side, lv_px, lv_qty, n
            )
        if st != OK:
            return st, q, n
        p = _ws(buf, q, end)
        while inner and p < end and buf[p] == 125:  # the "data" object ends
            inner = False
            p = _ws(buf, p + 1, end)
        if p >= end:
            return BAD_JSON, -1, n
        if buf[p] == 44:
            p = _ws(buf, p + 1, end)
            continue
        if buf[p] == 125:
            return OK, p + 1, n
        return BAD_JSON, -1, n


@njit(cache=True)
def _required(kind):
    if kind == K_DEPTH:
        return P_BIGU | P_U | P_E | P_BL | P_AL
    if kind == K_TRADE:
        return P_TID | P_P | P_Q | P_M | P_T
    if kind == K_TICKER:
        return P_U | P_B | P_BQ | P_A | P_AQ
    if kind == K_SNAPSHOT:
        return P_LID | P_BL | P_AL
    return 0


@njit(cache=True)
def _parse(buf, starts, ends, sym):
    """Parse every line [starts[i], ends[i]) of buf; returns per-line arrays and flat levels."""
    n_lines = starts.size
    local_ts = np.zeros(n_lines, np.int64)
    status = np.zeros(n_lines, np.int8)
    kind = np.zeros(n_lines, np.int8)
    ints = np.zeros((n_lines, 7), np.int64)
    floats = np.full((n_lines, 6), np.nan)
    present = np.zeros(n_lines, np.int64)
    maker = np.zeros(n_lines, np.int8)
    stream_span = np.zeros((n_lines, 2), np.int64)
    lv_start = np.zeros(n_lines, np.int64)
    lv_end = np.zeros(n_lines, np.int64)
    cap = buf.size // 9 + 1  # a level takes at least 9 bytes: ["1","1"]
    lv_side = np.empty(cap, np.int8)
    lv_px = np.empty(cap, np.float64)
    lv_qty = np.empty(cap, np.float64)
    n = 0
    for i in range(n_lines):
        s, e = starts[i], ends[i]
        while e > s and (buf[e - 1] == 13 or buf[e - 1] == 32):
            e -= 1
        lv_start[i] = n
        lv_end[i] = n
        p = s
        ts = 0
        while p < e and 48 <= buf[p] <= 57 and p - s < 19:
            ts = ts * 10 + (buf[p] - 48)
            p += 1
        if p == s or p >= e or buf[p] != 32:
            status[i] = MALFORMED
            continue
        local_ts[i] = ts
        p = _ws(buf, p + 1, e)
        if p >= e or buf[p] != 123:
            q = _skip_value(buf, p, e)
            status[i] = UNKNOWN if q >= 0 and _ws(buf, q, e) == e else BAD_JSON
            continue
        st, q, n2 = _object(
            buf,
            p,
            e,
            i,
            sym,
            ints,
            floats,
            present,
            maker,
            kind,
            stream_span,
            lv_side,
            lv_px,
            lv_qty,
            n,
        )
        if st == OK and _ws(buf, q, e) != e:
            st = BAD_JSON
        if st == OK and kind[i] == K_NONE:
            if present[i] & P_LID:
                kind[i] = K_SNAPSHOT
            else:
                st = UNKNOWN
        if st == OK and kind[i] != K_OTHER:
            need = _required(kind[i])
            if kind[i] != K_SNAPSHOT and not present[i] & P_DATA or present[i] & need != need:
                st = MISSING
            elif kind[i] == K_TICKER and (floats[i, F_BQ] < 0 or floats[i, F_AQ] < 0):
                st = NEGATIVE
            elif kind[i] == K_TICKER and (floats[i, F_B] <= 0 or floats[i, F_A] <= 0):
                st = BAD_PRICE
            elif kind[i] == K_TRADE and floats[i, F_Q] < 0:
                st = NEGATIVE
            elif kind[i] == K_TRADE and floats[i, F_P] <= 0:
                st = BAD_PRICE
        if st != OK:
            status[i] = st
            continue
        n = n2
        lv_end[i] = n
    return (
        local_ts,
        status,
        kind,
        ints,
        floats,
        present,
        maker,
        stream_span,
        lv_start,
        lv_end,
        lv_side[:n],
        lv_px[:n],
        lv_qty[:n],
    )


# --- sequencing: Binance's procedure for keeping a local book in sync --------------------------
# event states (forward pass)
S_APPLIED, S_STALE, S_DUPLICATE, S_BUFFERED, S_GAP, S_UNSYNCED, S_SNAPSHOT, S_SNAPSHOT_UNUSED = (
    range(8)
)
A_SYNCED, A_UNSYNCED, A_GAP, A_STALE, A_DUPLICATE = range(5)


@njit(cache=True)
def _step(first, last, prev, futures, synced, awaiting, cur):
    """One diff against the book state -> (action, synced, awaiting, cur)."""
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
    for i in range(n):
        if is_snap[i]:
            if synced and last[i] <= cur:
                state[i] = S_SNAPSHOT_UNUSED  # already in sync and ahead of it
                continue
            state[i] = S_SNAPSHOT
            have_book, synced, awaiting, cur = True, True, True, last[i]
            order[k], reset[k], in_sync[k], update_id[k], local_event[k] = i, True, True, cur, i
            k += 1
            for j in range(pending, i):  # replay the buffered diffs onto the snapshot
                if is_snap[j]:
                    continue
                action, synced, awaiting, cur = _step(
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
        action, synced, awaiting, cur = _step(
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
    texts: list[bytes]  # decompressed file contents, to quote bad lines
    starts: np.ndarray
    ends: np.ndarray
    symbol: str
    futures: bool
    ts_units: dict[str, str] = field(default_factory=dict)
    skipped_streams: dict[str, int] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return int(self.status.size)

    def quarantine_lines(self, quarantine: Quarantine, kind: str, rows: np.ndarray) -> None:
        """Quarantine lines by index, quoting each with its file and line number."""
        if quarantine.path is None:  # counting only: no need to cut out each line
            if rows.size:
                quarantine.counts[kind] += int(rows.size)
            return
        offsets = np.cumsum([0] + [len(t) for t in self.texts])
        for i in rows.tolist():
            f = self.file_index[i]
            text = self.texts[f][self.starts[i] - offsets[f] : self.ends[i] - offsets[f]]
            quarantine.add(kind, str(self.files[f]), int(self.line_no[i]), text)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped (all members) when it is gzip; corrupt or truncated gzip is an error."""
    data = Path(path).read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gunzip(data)
    except (EOFError, zlib.error, GunzipError) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def _detect_symbol(buf: bytes) -> bytes:
    """The recording's symbol: the prefix of the first stream name (b"" when there is none)."""
    at = buf.find(b'"stream":"')
    if at < 0:
        return b""
    name = buf[at + 10 : buf.find(b'"', at + 10)]
    return name.split(b"@")[0]


UNIT_FACTORS = {"ns": 1, "us": 1_000, "ms": 1_000_000}


def _ts_unit(values: np.ndarray) -> str:
    """Receive-timestamp unit from the magnitude of the median (1.7e18 ns, 1.7e15 us, 1.7e12 ms)."""
    median = float(np.median(values)) if values.size else 0.0
    if median >= 1e17:
        return "ns"
    if median >= 1e14:
        return "us"
    if median >= 1e11:
        return "ms"
    raise ValueError(f"cannot tell the receive-timestamp unit (median {median:.3g})")


def parse_recording(files: list[Path], quarantine: Quarantine) -> Parsed:
    """Decompress and parse every line of `files` (one recording); bad lines are quarantined."""
    texts = [_read_bytes(Path(f)) for f in files]
    buf_bytes = b"".join(texts)
    symbol = _detect_symbol(buf_bytes)
    buf = np.frombuffer(buf_bytes, np.uint8)
    starts_l, ends_l, file_l, line_l = [], [], [], []
    offset = 0
    for fi, text in enumerate(texts):
        nl = np.flatnonzero(np.frombuffer(text, np.uint8) == 10) + offset
        starts = np.concatenate(([offset], nl + 1))
        ends = np.concatenate((nl, [offset + len(text)]))
        if starts[-1] == ends[-1]:  # nothing after the final newline
            starts, ends = starts[:-1], ends[:-1]
        starts_l.append(starts)
        ends_l.append(ends)
        file_l.append(np.full(starts.size, fi, np.int32))
        line_l.append(np.arange(1, starts.size + 1, dtype=np.int64))
        offset += len(text)
    starts, ends = np.concatenate(starts_l), np.concatenate(ends_l)
    file_index, line_no = np.concatenate(file_l), np.concatenate(line_l)
    sym = np.frombuffer(symbol, np.uint8)
    (
        local_ts,
        status,
        kind,
        ints,
        floats,
        present,
        maker,
        stream_span,
        lv_start,
        lv_end,
        lv_side,
        lv_px,
        lv_qty,
    ) = _parse(buf, starts, ends, sym)
    ts_units = {}
    for fi, f in enumerate(files):  # per-file unit; an implausible timestamp is a malformed line
        rows = (file_index == fi) & (status != MALFORMED)
        if not rows.any():
            continue  # an empty file (or one of malformed lines only) has no unit to tell
        unit = _ts_unit(local_ts[rows])
        ts_units[Path(f).name] = unit
        local_ts[file_index == fi] *= UNIT_FACTORS[unit]
        median = np.median(local_ts[rows])
        status[rows & (np.abs(local_ts - median) > 3e17)] = MALFORMED
    exch = np.where(present & P_T, ints[:, I_T], ints[:, I_E]) * 1_000_000
    ts = pl.Series("ts", exch).set(pl.Series(present & (P_T | P_E) == 0), None)  # type: ignore[arg-type]
    parsed = Parsed(
        file_index, line_no, local_ts, ts, status, kind, ints, floats, present, maker,
        lv_start, lv_end, lv_side, lv_px, lv_qty, [Path(f) for f in files], texts, starts, ends,
        symbol.decode(errors="replace"), bool(((kind == K_DEPTH) & (present & P_PU != 0)).any()), ts_units,
    )  # fmt: skip
    for code, name in STATUS_NAMES.items():
        rows = np.flatnonzero(status == code)
        if rows.size:
            parsed.quarantine_lines(quarantine, name, rows)
    other = np.flatnonzero((kind == K_OTHER) & (status == OK))
    if other.size:
        names = [buf_bytes[s:e].decode(errors="replace") for s, e in stream_span[other].tolist()]
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


def _stats(parsed: Parsed, quarantine: Quarantine) -> dict:
    return {
        "messages": parsed.messages,
        "symbol": parsed.symbol,
        "market": "usdm" if parsed.futures else "spot",
        "ts_unit": ",".join(sorted(set(parsed.ts_units.values()))),
        "skipped_streams": parsed.skipped_streams,
        "bad_lines": dict(quarantine.counts),
    }


def trades_frame(parsed: Parsed, quarantine: Quarantine) -> tuple[pl.DataFrame, dict]:
    """Trades to the TRADES_SCHEMA contract; repeated or backwards trade ids are quarantined."""
    rows = _good(parsed, K_TRADE)
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
    return frame, {**_stats(parsed, quarantine), "rows": frame.height}


def quotes_frame(parsed: Parsed, quarantine: Quarantine) -> tuple[pl.DataFrame, dict]:
    """bookTicker to the QUOTES_SCHEMA contract; crossed quotes and non-increasing `u` are quarantined."""
    rows = _good(parsed, K_TICKER)
    f = parsed.floats[rows]
    crossed = f[:, F_B] >= f[:, F_A]
    parsed.quarantine_lines(quarantine, "crossed_book", rows[crossed])
    rows = rows[~crossed]
    bad = _out_of_order(parsed.ints[rows, I_U])
    parsed.quarantine_lines(quarantine, "duplicate_or_out_of_order_id", rows[bad])
    rows = rows[~bad]
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
    quotes = quotes_frame(parsed, Quarantine(None))[
        0
    ]  # its bad lines are the quotes command's to report
    agree, compared = bookticker_agreement(book, quotes)
    stats["ticker_agreement"] = round(agree / compared, 6) if compared else None  # self-check
    if on_gap == "drop":
        book = book.filter(pl.col("in_sync"))
    if every is not None:
        book = resample_book(book, every)
    stats["rows"] = book.height
    return book, stats


def read_book(
    files: list[Path],
    quarantine: Quarantine,
    levels: int = 10,
    every: str | None = None,
    on_gap: str = "flag",
) -> tuple[pl.DataFrame, dict]:
    return book_frame_from(parse_recording(files, quarantine), quarantine, levels, every, on_gap)


def read_trades(files: list[Path], quarantine: Quarantine) -> tuple[pl.DataFrame, dict]:
    return trades_frame(parse_recording(files, quarantine), quarantine)


def read_quotes(files: list[Path], quarantine: Quarantine) -> tuple[pl.DataFrame, dict]:
    return quotes_frame(parse_recording(files, quarantine), quarantine)


def bookticker_agreement(book: pl.DataFrame, quotes: pl.DataFrame) -> tuple[int, int]:
    """(agreeing, compared) in-sync book rows whose best bid and ask equal the latest bookTicker
    with update id <= the row's update id (Binance's check of a correct local book)."""
    rows = (
        book.filter(pl.col("in_sync")).select("update_id", "bid_px_1", "ask_px_1").sort("update_id")
    )
    ticker = quotes.select("update_id", "bid_px", "ask_px").sort("update_id")
    joined = rows.join_asof(ticker, on="update_id", strategy="backward").drop_nulls("bid_px")
    agree = joined.filter(
        (pl.col("bid_px_1") == pl.col("bid_px")) & (pl.col("ask_px_1") == pl.col("ask_px"))
    )
    return agree.height, joined.height


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
