"""A strict JSON scanner for Binance websocket recordings, compiled with numba: bytes -> flat arrays.

One pass over a whole decompressed recording splits it into lines and parses each, `<local
receive ts> <JSON>` (a line's end is found by parsing it, not by a pass of its own), and extracts
the few fields the readers use (update ids, prices and sizes, trade fields, the level lists) into
per-line arrays and flat level arrays, so nothing loops over lines in Python. Every line is
validated as JSON; a bad one gets a status (its quarantine kind) instead of values.
Decimal strings with at most 15 significant digits and no exponent (all Binance prices and sizes)
parse to exactly `float(text)`.

The helpers are compiled without numba's reference counting (`_nrt=False`: they allocate
nothing): an atomic refcount per array argument per token cost more than the scanning itself.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

# message kinds
K_NONE, K_DEPTH, K_TRADE, K_TICKER, K_SNAPSHOT, K_OTHER, K_AGGTRADE = 0, 1, 2, 3, 4, 5, 6
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
    8: "zero_size",  # a trade or bookTicker size of 0 (a book level's 0 deletes it: fine there)
    9: "bad_timestamp",  # an exchange time (T, else E) outside 2010..2100 (set by binance_ws)
}
MALFORMED, BAD_JSON, NON_NUMERIC, MISSING, NEGATIVE, BAD_PRICE, UNKNOWN, ZERO, BAD_TIME = range(1, 10)
# integer fields (columns of `ints`) and float fields (columns of `floats`)
I_E, I_T, I_BIGU, I_U, I_PU, I_TID, I_LID = range(7)
F_B, F_BQ, F_A, F_AQ, F_P, F_Q = range(6)
# presence bits
P_E, P_T, P_BIGU, P_U, P_PU, P_TID, P_LID = (1 << i for i in range(7))
P_B, P_BQ, P_A, P_AQ, P_P, P_Q, P_M = (1 << i for i in range(7, 14))
P_BL, P_AL, P_DATA = 1 << 14, 1 << 15, 1 << 16  # b/a (or bids/asks) as level lists; data object


@njit(cache=True, inline="always")
def _at(buf, p):
    """buf[p] for 0 <= p < buf.size. An unsigned index spares numba's wraparound of negative ones
    (three instructions on every byte read: a fifth of the scan's time); the scanner checks bounds."""
    return buf[np.uint64(p)]


@njit(cache=True, inline="always")
def _ws(buf, p, end):
    # one compare for the usual case, a token (every whitespace byte is <= 32); a newline is not
    # whitespace here: it ends the line, and no path of the scanner reads past it
    while p < end and _at(buf, p) <= 32 and (_at(buf, p) == 32 or _at(buf, p) == 9 or _at(buf, p) == 13):
        p += 1
    return p


@njit(cache=True, inline="always")
def _string_end(buf, p, end):
    """p at an opening quote -> index after the closing quote, or -1."""
    p += 1
    while p < end:
        c = _at(buf, p)
        if c == 34:
            return p + 1
        if c == 92:
            p += 2
            continue
        if c < 32:
            return -1
        p += 1
    return -1


@njit(cache=True, inline="always")
def _number_end(buf, p, end):
    """Validate a JSON number starting at p -> index after it, or -1."""
    if p < end and _at(buf, p) == 45:
        p += 1
    start = p
    while p < end and 48 <= _at(buf, p) <= 57:
        p += 1
    if p == start:
        return -1
    if p < end and _at(buf, p) == 46:
        p += 1
        s = p
        while p < end and 48 <= _at(buf, p) <= 57:
            p += 1
        if p == s:
            return -1
    if p < end and (_at(buf, p) == 101 or _at(buf, p) == 69):
        p += 1
        if p < end and (_at(buf, p) == 43 or _at(buf, p) == 45):
            p += 1
        s = p
        while p < end and 48 <= _at(buf, p) <= 57:
            p += 1
        if p == s:
            return -1
    return p


@njit(cache=True, inline="always")
def _literal_end(buf, p, end, word):
    n = len(word)
    if p + n > end:
        return -1
    for i in range(n):
        if _at(buf, p + i) != word[i]:
            return -1
    return p + n


TRUE = np.frombuffer(b"true", np.uint8)
FALSE = np.frombuffer(b"false", np.uint8)
NULL = np.frombuffer(b"null", np.uint8)


@njit(cache=True, inline="always")
def _scalar_end(buf, p, end):
    """Validate a JSON string, number or literal at p -> index after it, or -1."""
    c = _at(buf, p)
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


@njit(cache=True, inline="always")
def _key_colon(buf, p, end):
    """A member name and its colon at p -> index of the value, or -1."""
    if p >= end or _at(buf, p) != 34:
        return -1
    p = _string_end(buf, p, end)
    if p < 0:
        return -1
    p = _ws(buf, p, end)
    if p >= end or _at(buf, p) != 58:
        return -1
    return _ws(buf, p + 1, end)


@njit(cache=True, _nrt=False)
def _skip_value(buf, p, end):
    """Validate one JSON value at p -> index after it, or -1 (iterative: at most 64 deep)."""
    p = _ws(buf, p, end)
    if p >= end:
        return -1
    if _at(buf, p) != 123 and _at(buf, p) != 91:
        return _scalar_end(buf, p, end)
    objects = 0  # one bit per open container, innermost lowest: 1 an object, 0 an array
    depth = 0
    need_value = True
    while True:
        if need_value:
            if p >= end:
                return -1
            c = _at(buf, p)
            if c == 123 or c == 91:
                if depth == 64:
                    return -1
                objects = (objects << 1) | (c == 123)
                depth += 1
                p = _ws(buf, p + 1, end)
                if p < end and _at(buf, p) == c + 2:  # {} or []
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
        if _at(buf, p) == 44:
            p = _ws(buf, p + 1, end)
            if objects & 1:
                p = _key_colon(buf, p, end)
                if p < 0:
                    return -1
            need_value = True
        elif _at(buf, p) == (125 if objects & 1 else 93):
            objects >>= 1
            depth -= 1
            p += 1
        else:
            return -1


POW10 = 10.0 ** np.arange(23)  # exact powers of ten


@njit(cache=True, _nrt=False)
def _decimal(buf, s, e):
    """Decimal text [s, e) -> (ok, value); exact (== float(text)) for <= 15 significant digits; not ok
    for a value beyond float64's range."""
    p = s
    neg = False
    if p < e and _at(buf, p) == 45:
        neg = True
        p += 1
    mant = 0
    digits = 0
    frac = 0
    seen = False
    while p < e and 48 <= _at(buf, p) <= 57:
        if digits < 18:
            mant = mant * 10 + (_at(buf, p) - 48)
            if mant > 0:
                digits += 1
        else:
            frac -= 1
        seen = True
        p += 1
    if p < e and _at(buf, p) == 46:
        p += 1
        while p < e and 48 <= _at(buf, p) <= 57:
            if digits < 18:
                mant = mant * 10 + (_at(buf, p) - 48)
                if mant > 0:
                    digits += 1
                frac += 1
            seen = True
            p += 1
    exp = 0
    if p < e and (_at(buf, p) == 101 or _at(buf, p) == 69):
        p += 1
        eneg = False
        if p < e and (_at(buf, p) == 43 or _at(buf, p) == 45):
            eneg = _at(buf, p) == 45
            p += 1
        if p == e:
            return False, 0.0
        while p < e and 48 <= _at(buf, p) <= 57:
            exp = exp * 10 + (_at(buf, p) - 48)
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
    if not math.isfinite(value):  # e.g. 1e400: not a number a float holds (the CSV readers agree)
        return False, 0.0
    return True, -value if neg else value


@njit(cache=True, inline="always")
def _int(buf, p, end):
    """JSON integer at p -> (status, value, end). status OK, NON_NUMERIC or BAD_JSON."""
    # fast path, one pass: up to 18 digits not followed by a fraction or exponent
    neg = _at(buf, p) == 45
    s = p + 1 if neg else p
    q = s
    v = 0
    while q < end and 48 <= _at(buf, q) <= 57:
        v = v * 10 + (_at(buf, q) - 48)
        q += 1
    if s < q <= s + 18 and (q == end or (_at(buf, q) != 46 and _at(buf, q) != 101 and _at(buf, q) != 69)):
        return OK, -v if neg else v, q
    return _int_slow(buf, p, end)


@njit(cache=True, _nrt=False)
def _int_slow(buf, p, end):
    q = _number_end(buf, p, end)
    if q < 0:
        q = _skip_value(buf, p, end)
        return (NON_NUMERIC if q >= 0 else BAD_JSON), 0, q
    neg = _at(buf, p) == 45
    s = p + 1 if neg else p
    if q - s > 18:
        return NON_NUMERIC, 0, q
    v = 0
    for i in range(s, q):
        c = _at(buf, i)
        if c < 48 or c > 57:
            return NON_NUMERIC, 0, q  # a fraction or exponent where an integer belongs
        v = v * 10 + (c - 48)
    return OK, -v if neg else v, q


@njit(cache=True, inline="always")
def _quoted_decimal(buf, p, end):
    """A JSON string holding a decimal -> (status, value, end)."""
    if _at(buf, p) != 34:
        q = _skip_value(buf, p, end)
        return (NON_NUMERIC if q >= 0 else BAD_JSON), 0.0, q
    # fast path, one pass: 1 to 15 digits with at most one dot, and digits after it (the value is
    # one correctly rounded division of exact numbers); anything else takes the general path
    q = p + 1
    mant = 0
    while q < end and 48 <= _at(buf, q) <= 57:
        mant = mant * 10 + (_at(buf, q) - 48)
        q += 1
    digits = q - p - 1
    frac = 0
    dot = q < end and _at(buf, q) == 46
    if dot:
        q += 1
        while q < end and 48 <= _at(buf, q) <= 57:
            mant = mant * 10 + (_at(buf, q) - 48)
            q += 1
        frac = q - p - 2 - digits
        digits += frac
    if q < end and _at(buf, q) == 34 and 0 < digits <= 15 and (frac > 0 or not dot):
        return OK, mant / POW10[frac], q + 1
    q = _string_end(buf, p, end)
    if q < 0:
        return BAD_JSON, 0.0, q
    ok, v = _decimal(buf, p + 1, q - 1)
    return (OK if ok else NON_NUMERIC), v, q


@njit(cache=True, _nrt=False)
def _levels(buf, p, end, side, lv_side, lv_px, lv_qty, n):
    """A list of ["price", "qty"] pairs at p -> (status, end, new n)."""
    p = _ws(buf, p + 1, end)
    if p < end and _at(buf, p) == 93:
        return OK, p + 1, n
    while True:
        if p >= end or _at(buf, p) != 91:
            q = _skip_value(buf, p, end)
            return (NON_NUMERIC if q >= 0 else BAD_JSON), q, n
        p = _ws(buf, p + 1, end)
        if p >= end:
            return BAD_JSON, -1, n
        st, px, p = _quoted_decimal(buf, p, end)
        if st != OK:
            return st, p, n
        p = _ws(buf, p, end)
        if p >= end or _at(buf, p) != 44:
            return BAD_JSON if p >= end or _at(buf, p) != 93 else MISSING, -1, n
        p = _ws(buf, p + 1, end)
        if p >= end:
            return BAD_JSON, -1, n
        st, qty, p = _quoted_decimal(buf, p, end)
        if st != OK:
            return st, p, n
        p = _ws(buf, p, end)
        if p >= end or _at(buf, p) != 93:
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
        if p < end and _at(buf, p) == 44:
            p = _ws(buf, p + 1, end)
            continue
        if p < end and _at(buf, p) == 93:
            return OK, p + 1, n
        return BAD_JSON, -1, n


@njit(cache=True, inline="always")
def _key_is(buf, s, e, word):
    if e - s != len(word):
        return False
    for i in range(e - s):
        if _at(buf, s + i) != word[i]:
            return False
    return True


STREAM = np.frombuffer(b"stream", np.uint8)
DATA = np.frombuffer(b"data", np.uint8)
LASTUPDATEID = np.frombuffer(b"lastUpdateId", np.uint8)
BIDS = np.frombuffer(b"bids", np.uint8)
ASKS = np.frombuffer(b"asks", np.uint8)
PU = np.frombuffer(b"pu", np.uint8)
TRADE = np.frombuffer(b"trade", np.uint8)
AGGTRADE = np.frombuffer(b"aggTrade", np.uint8)
BOOKTICKER = np.frombuffer(b"bookTicker", np.uint8)
DEPTH = np.frombuffer(b"depth", np.uint8)
INT_KEYS = np.frombuffer(b"ETUut", np.uint8)  # columns I_E, I_T, I_BIGU, I_U, I_TID
FLOAT_KEYS = np.frombuffer(b"bBaApq", np.uint8)  # columns F_B..F_Q


@njit(cache=True, inline="always")  # once per member: a call costs more than it
def _member(buf, ks, ke, p, end, i, k, ints, floats, present, maker, lv_side, lv_px, lv_qty, n):
    """Parse the value of key [ks, ke) at p into line i's slots (a message of kind k) -> (status, end,
    new level count)."""
    klen = ke - ks
    c = _at(buf, ks) if klen > 0 else 0
    if klen == 1 and (k == K_TRADE or k == K_AGGTRADE) and (c == 97 or c == 98):
        if k == K_AGGTRADE and c == 97:  # "a": the aggregate trade id (aggTrade has no "t")
            st, v, q = _int(buf, p, end)
            if st == OK:
                ints[i, I_TID] = v
                present[i] |= P_TID
            return st, q, n
        q = _skip_value(buf, p, end)  # a trade's "b"/"a": buyer and seller order ids, not prices
        return (OK if q >= 0 else BAD_JSON), q, n
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
                if (j == F_B or j == F_A) and _at(buf, p) == 91:
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
        if _at(buf, p) != 91:
            q = _skip_value(buf, p, end)
            return (NON_NUMERIC if q >= 0 else BAD_JSON), q, n
        bid = _at(buf, ks) == 98
        st, q, n = _levels(buf, p, end, 0 if bid else 1, lv_side, lv_px, lv_qty, n)
        if st == OK:
            present[i] |= P_BL if bid else P_AL
        return st, q, n
    if _at(buf, p) == 34:  # a string, the usual other member: no call to the general skip
        q = _string_end(buf, p, end)
    else:
        q = _skip_value(buf, p, end)
    return (OK if q >= 0 else BAD_JSON), q, n


@njit(cache=True, _nrt=False)
def _stream_kind(buf, s, e, sym):
    """Stream name [s, e) -> kind; streams of another symbol count as other streams."""
    at = s
    while at < e and _at(buf, at) != 64:
        at += 1
    if at == e or at - s != sym.size:
        return K_OTHER
    for i in range(sym.size):
        if _at(buf, s + i) != sym[i]:
            return K_OTHER
    t = at + 1
    if _key_is(buf, t, e, TRADE):
        return K_TRADE
    if _key_is(buf, t, e, AGGTRADE):
        return K_AGGTRADE
    if _key_is(buf, t, e, BOOKTICKER):
        return K_TICKER
    if e - t >= 5 and _key_is(buf, t, t + 5, DEPTH):
        if e - t == 5:
            return K_DEPTH
        if _at(buf, t + 5) == 64 and e - t >= 9 and _at(buf, e - 2) == 109 and _at(buf, e - 1) == 115:  # @<n>ms
            for j in range(t + 6, e - 2):
                if _at(buf, j) < 48 or _at(buf, j) > 57:
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
    if p < end and _at(buf, p) == 125:
        return OK, p + 1, n
    while True:
        if p >= end or _at(buf, p) != 34:
            return BAD_JSON, -1, n
        q = _string_end(buf, p, end)
        if q < 0:
            return BAD_JSON, -1, n
        ks, ke = p + 1, q - 1
        p = _ws(buf, q, end)
        if p >= end or _at(buf, p) != 58:
            return BAD_JSON, -1, n
        p = _ws(buf, p + 1, end)
        if p >= end:
            return BAD_JSON, -1, n
        if not inner and _key_is(buf, ks, ke, STREAM):
            if _at(buf, p) != 34:
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
            if _at(buf, p) == 123 and kind[i] != K_OTHER:
                inner = True
                p = _ws(buf, p + 1, end)
                if p < end and _at(buf, p) == 125:
                    inner = False
                    q = p + 1
                    st = OK
                else:
                    continue
            else:
                q = _skip_value(buf, p, end)
                st = OK if q >= 0 else BAD_JSON
                if q >= 0 and _at(buf, p) != 123 and kind[i] != K_OTHER:
                    st = MISSING
        else:
            st, q, n = _member(
                buf, ks, ke, p, end, i, kind[i], ints, floats, present, maker, lv_side, lv_px, lv_qty, n
            )
        if st != OK:
            return st, q, n
        p = _ws(buf, q, end)
        while inner and p < end and _at(buf, p) == 125:  # the "data" object ends
            inner = False
            p = _ws(buf, p + 1, end)
        if p >= end:
            return BAD_JSON, -1, n
        if _at(buf, p) == 44:
            p = _ws(buf, p + 1, end)
            continue
        if _at(buf, p) == 125:
            return OK, p + 1, n
        return BAD_JSON, -1, n


@njit(cache=True)
def _required(kind):
    if kind == K_DEPTH:
        return P_BIGU | P_U | P_E | P_BL | P_AL
    if kind == K_TRADE or kind == K_AGGTRADE:
        return P_TID | P_P | P_Q | P_M | P_T
    if kind == K_TICKER:
        return P_U | P_B | P_BQ | P_A | P_AQ
    if kind == K_SNAPSHOT:
        return P_LID | P_BL | P_AL
    return 0


ONES, HIGH, LOW7 = np.uint64(0x0101010101010101), np.uint64(0x8080808080808080), np.uint64(0x7F7F7F7F7F7F7F7F)
NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)


@njit(cache=True)
def _lines_in(buf, s, e):
    """Lines of [s, e): newlines, plus one for text after the last. Eight bytes at a time, without a
    branch: a newline byte is a zero byte of word ^ NEWLINES, and the exact zero-byte test
    ((y & LOW7) + LOW7) | y leaves its high bit clear (three times faster than numpy's count)."""
    words = (e - s) // 8
    n = 0
    for y in buf[s : s + 8 * words].view(np.uint64):
        y ^= NEWLINES
        n += (((~(((y & LOW7) + LOW7) | y) & HIGH) >> np.uint64(7)) * ONES) >> np.uint64(56)
    for p in range(s + 8 * words, e):
        n += _at(buf, p) == 10
    return n + (1 if e > s and _at(buf, e - 1) != 10 else 0)


@njit(cache=True, _nrt=False)
def _line(buf, s, e, i, sym, local_ts, ints, floats, present, maker, kind, stream_span, lv_side, lv_px, lv_qty, n):
    """Parse the line starting at s into slot i, reading no further than e -> (status, index after
    its JSON value, new level count). No path reads past a newline (none is whitespace here)."""
    p = s
    ts = 0
    while p < e and 48 <= _at(buf, p) <= 57 and p - s < 19:
        ts = ts * 10 + (_at(buf, p) - 48)
        p += 1
    if p == s or p >= e or _at(buf, p) != 32 or ts < 0:  # ts < 0: 19 digits past int64's range
        return MALFORMED, p, n
    local_ts[i] = ts
    p = _ws(buf, p + 1, e)
    if p >= e or _at(buf, p) != 123:
        q = _skip_value(buf, p, e)
        return (UNKNOWN if q >= 0 and _ws(buf, q, e) == e else BAD_JSON), q, n
    return _object(buf, p, e, i, sym, ints, floats, present, maker, kind, stream_span, lv_side, lv_px, lv_qty, n)


@njit(cache=True, _nrt=False)
def _clear_slot(i, local_ts, ints, floats, present, maker, kind, stream_span):
    local_ts[i] = 0
    ints[i, :] = 0
    floats[i, :] = np.nan
    present[i] = 0
    maker[i] = 0
    kind[i] = K_NONE
    stream_span[i, :] = 0


@njit(cache=True, _nrt=False)
def _message_status(i, kind, present, floats):
    """A line whose JSON parsed: its kind (a snapshot is told by its lastUpdateId) and status."""
    if kind[i] == K_NONE:
        if present[i] & P_LID:
            kind[i] = K_SNAPSHOT
        else:
            return UNKNOWN
    if kind[i] == K_OTHER:
        return OK
    need = _required(kind[i])
    if kind[i] != K_SNAPSHOT and not present[i] & P_DATA or present[i] & need != need:
        return MISSING
    if kind[i] == K_TICKER and (floats[i, F_BQ] < 0 or floats[i, F_AQ] < 0):
        return NEGATIVE
    if kind[i] == K_TICKER and (floats[i, F_B] <= 0 or floats[i, F_A] <= 0):
        return BAD_PRICE
    if kind[i] == K_TICKER and (floats[i, F_BQ] == 0 or floats[i, F_AQ] == 0):
        return ZERO
    if (kind[i] == K_TRADE or kind[i] == K_AGGTRADE) and floats[i, F_Q] < 0:
        return NEGATIVE
    if (kind[i] == K_TRADE or kind[i] == K_AGGTRADE) and floats[i, F_P] <= 0:
        return BAD_PRICE
    if (kind[i] == K_TRADE or kind[i] == K_AGGTRADE) and floats[i, F_Q] == 0:
        return ZERO
    return OK


@njit(cache=True, _nrt=False)
def _parse(buf, file_ends, sym, local_ts, status, kind, ints, floats, present, maker, stream_span, lv_start, lv_end,
           lv_side, lv_px, lv_qty, starts, ends, file_index, line_no, f, s, line, i, n):
    """Split the files [file_ends[f-1], file_ends[f]) of buf into lines and parse them into the
    per-line arrays (zeroed; floats NaN) and the flat level arrays, from file f at byte s (after
    `line` lines of it), line slot i and level slot n, until the files end or the per-line arrays
    are full -> (f, s, line, i, n) to go on from (f == file_ends.size: done).

    A line is first parsed up to its file's end, which finds the newline that ends it without a
    pass of its own: a good line's value stops at it. A line that fails so is parsed again within
    its newline-bounded extent (trailing CR and spaces off), as its status must say."""
    while f < file_ends.size:
        fe = file_ends[f]
        while s < fe:
            if i == starts.size:
                return f, s, line, i, n
            line += 1
            st, q, n2 = _line(
                buf, s, fe, i, sym, local_ts, ints, floats, present, maker, kind, stream_span, lv_side, lv_px,
                lv_qty, n,
            )  # fmt: skip
            e = _ws(buf, q, fe) if st == OK else fe  # q is -1 after some errors
            if st != OK or (e < fe and _at(buf, e) != 10):  # not a good line
                e = s
                while e < fe and _at(buf, e) != 10:
                    e += 1
                _clear_slot(i, local_ts, ints, floats, present, maker, kind, stream_span)
                end = e
                while end > s and (_at(buf, end - 1) == 13 or _at(buf, end - 1) == 32):
                    end -= 1
                st, q, n2 = _line(
                    buf, s, end, i, sym, local_ts, ints, floats, present, maker, kind, stream_span, lv_side,
                    lv_px, lv_qty, n,
                )  # fmt: skip
                if st == OK and _ws(buf, q, end) != end:
                    st = BAD_JSON
            if st == OK:
                st = _message_status(i, kind, present, floats)
            starts[i] = s
            ends[i] = e
            file_index[i] = f
            line_no[i] = line
            lv_start[i] = n
            if st == OK:
                n = n2
            else:
                status[i] = st
            lv_end[i] = n
            i += 1
            s = e + 1
        f += 1
        s = fe
        line = 0
    return f, s, line, i, n


class Scanned(NamedTuple):
    """Per-line results of `scan` (n lines) and the flat level updates of the good lines."""

    local_ts: np.ndarray  # (n,) int64 receive time as written (unit not yet known)
    status: np.ndarray  # (n,) int8: OK or a STATUS_NAMES code
    kind: np.ndarray  # (n,) int8: K_*
    ints: np.ndarray  # (n, 7) int64, columns I_*
    floats: np.ndarray  # (n, 6) float64, columns F_* (NaN when absent)
    present: np.ndarray  # (n,) int64 bit set of P_* (which fields were seen)
    maker: np.ndarray  # (n,) int8 trade buyer-is-maker flag
    stream_span: np.ndarray  # (n, 2) byte range of the stream name
    lv_start: np.ndarray  # (n,) first level update of the line
    lv_end: np.ndarray  # (n,) one past its last level update
    lv_side: np.ndarray  # (m,) int8: 0 bid, 1 ask
    lv_px: np.ndarray  # (m,) float64
    lv_qty: np.ndarray  # (m,) float64
    starts: np.ndarray  # (n,) byte offset of the line in buf
    ends: np.ndarray  # (n,) byte offset of its newline (or of its file's end)
    file_index: np.ndarray  # (n,) int32: which file the line is in
    line_no: np.ndarray  # (n,) 1-based line number within its file


def _blank_lines(n: int) -> dict[str, np.ndarray]:
    """Scanned's per-line arrays for n lines, before the scan: zeros (floats NaN)."""
    return {
        "local_ts": np.zeros(n, np.int64), "status": np.zeros(n, np.int8), "kind": np.zeros(n, np.int8),
        "ints": np.zeros((n, 7), np.int64), "floats": np.full((n, 6), np.nan), "present": np.zeros(n, np.int64),
        "maker": np.zeros(n, np.int8), "stream_span": np.zeros((n, 2), np.int64), "lv_start": np.zeros(n, np.int64),
        "lv_end": np.zeros(n, np.int64), "starts": np.zeros(n, np.int64), "ends": np.zeros(n, np.int64),
        "file_index": np.zeros(n, np.int32), "line_no": np.zeros(n, np.int64),
    }  # fmt: skip


def scan(buf: np.ndarray, file_ends: np.ndarray, symbol: np.ndarray) -> Scanned:
    """Split `buf` (uint8: files back to back, file f ending at byte `file_ends[f]`) into lines,
    `\n`-terminated (no line after a final newline), and parse each; streams of another `symbol`
    count as other streams.

    The arrays come from numpy rather than from numba's allocator: numpy has the kernel back large
    arrays with huge pages, which spares the scan a page fault per 4 KiB of its output. They are
    sized for the line length of the first megabyte, and doubled when more lines come."""
    file_ends = file_ends.astype(np.int64, copy=False)
    cap = buf.size // 9 + 1  # a level takes at least 9 bytes: ["1","1"]
    levels = {"lv_side": np.empty(cap, np.int8), "lv_px": np.empty(cap, np.float64), "lv_qty": np.empty(cap)}
    sample = min(buf.size, 1 << 20)
    lines = _blank_lines(int(1.05 * buf.size * _lines_in(buf, 0, sample) / max(sample, 1)) + 64)
    state = (0, 0, 0, 0, 0)  # file, byte, lines of that file, line slots and level slots filled
    while True:
        state = _parse(buf, file_ends, symbol, *Scanned(**lines, **levels), *state)
        if state[0] == file_ends.size:
            break
        more = _blank_lines(lines["status"].size)
        lines = {name: np.concatenate((done, more[name])) for name, done in lines.items()}
    n, m = state[3], state[4]
    return Scanned(**{name: a[:n] for name, a in lines.items()}, **{name: a[:m] for name, a in levels.items()})
