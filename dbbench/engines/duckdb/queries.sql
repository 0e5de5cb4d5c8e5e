-- The suite's queries in DuckDB SQL, read by adapter.py.
-- Parameters are bound ($start, $end, $symbol, $scan_start, $scan_end; times as ns integers through
-- make_timestamp_ns). Bars floor epoch_ns(ts) to a multiple of the width, not date_trunc or time_bucket:
-- those round TIMESTAMP_NS to microseconds first, which put a trade at 00:00:59.999999999 in minute
-- 00:01 (and the floor holds before 1970 too).

-- name: avg_trade_volume
SELECT symbol, venue, make_timestamp_ns(epoch_ns(ts) - (epoch_ns(ts) % 60000000000 + 60000000000) % 60000000000) AS minute, count(*) AS trades, avg(qty) AS avg_qty
FROM trades WHERE ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end)
GROUP BY ALL
ORDER BY ALL

-- name: vwap
SELECT symbol, venue, minute, volume, pq / volume AS vwap,
       sum(pq) OVER w / sum(volume) OVER w AS vwap_range
FROM (
    SELECT symbol, venue, make_timestamp_ns(epoch_ns(ts) - (epoch_ns(ts) % 60000000000 + 60000000000) % 60000000000) AS minute, sum(qty) AS volume, sum(price * qty) AS pq
    FROM trades WHERE ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end)
    GROUP BY ALL
)
WINDOW w AS (PARTITION BY symbol, venue)
ORDER BY symbol, venue, minute

-- name: ohlcv_1m
SELECT symbol, venue, make_timestamp_ns(epoch_ns(ts) - (epoch_ns(ts) % 60000000000 + 60000000000) % 60000000000) AS minute,
       arg_min(price, (ts, trade_id)) AS open, max(price) AS high, min(price) AS low,
       arg_max(price, (ts, trade_id)) AS close, sum(qty) AS volume, count(*) AS trades
FROM trades WHERE ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end)
GROUP BY ALL
ORDER BY symbol, venue, minute

-- name: spread
SELECT symbol, venue, make_timestamp_ns(epoch_ns(ts) - (epoch_ns(ts) % 60000000000 + 60000000000) % 60000000000) AS minute, count(*) AS quotes,
       avg(ask_px - bid_px) AS avg_spread, max(ask_px - bid_px) AS max_spread
FROM quotes WHERE ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end)
GROUP BY ALL
ORDER BY symbol, venue, minute

-- name: nbbo
-- Each quote paired with every venue quoting in the range, each pair as-of joined to that venue's last
-- quote at or before the quote's ts (its own venue: itself); a venue with none yet drops out of the best.
WITH q AS (SELECT symbol, venue, ts, bid_px, ask_px FROM quotes WHERE ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end))
SELECT u.symbol AS symbol, u.ts AS ts, u.venue AS venue, max(p.bid_px) AS best_bid, min(p.ask_px) AS best_ask
FROM (SELECT q.symbol, q.ts, q.venue, v.venue AS other FROM q CROSS JOIN (SELECT DISTINCT venue FROM q) v) u
ASOF JOIN q p ON u.symbol = p.symbol AND u.other = p.venue AND u.ts >= p.ts
GROUP BY ALL
ORDER BY symbol, ts, venue

-- name: mid_returns
SELECT symbol, venue, second, mid, ln(mid / lag(mid) OVER w) AS ret
FROM (
    SELECT symbol, venue, make_timestamp_ns(epoch_ns(ts) - (epoch_ns(ts) % 1000000000 + 1000000000) % 1000000000) AS second, arg_max((bid_px + ask_px) / 2, ts) AS mid
    FROM quotes WHERE ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end)
    GROUP BY ALL
)
WINDOW w AS (PARTITION BY symbol, venue ORDER BY second)
QUALIFY row_number() OVER w > 1
ORDER BY symbol, venue, second

-- name: exec_volatility
SELECT symbol, venue, make_timestamp_ns(epoch_ns(second) - (epoch_ns(second) % 60000000000 + 60000000000) % 60000000000) AS minute, count(*) AS returns,
       sqrt(sum(ret * ret)) AS realized_vol
FROM (
SELECT symbol, venue, second, mid, ln(mid / lag(mid) OVER w) AS ret
FROM (
    SELECT symbol, venue, make_timestamp_ns(epoch_ns(ts) - (epoch_ns(ts) % 1000000000 + 1000000000) % 1000000000) AS second, arg_max((bid_px + ask_px) / 2, ts) AS mid
    FROM quotes WHERE ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end)
    GROUP BY ALL
)
WINDOW w AS (PARTITION BY symbol, venue ORDER BY second)
QUALIFY row_number() OVER w > 1)
GROUP BY ALL
ORDER BY symbol, venue, minute

-- name: asof_trades_quotes
-- DuckDB's native ASOF JOIN: each trade with the last quote of its (symbol, venue) at or before it.
SELECT t.symbol, t.venue, t.ts, t.trade_id, t.price, t.qty, t.side, q.bid_px, q.ask_px,
       2e4 * t.side * (t.price - (q.bid_px + q.ask_px) / 2) / ((q.bid_px + q.ask_px) / 2) AS eff_spread_bps
FROM (SELECT * FROM trades WHERE ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end)) t
ASOF JOIN (SELECT symbol, venue, ts, bid_px, ask_px FROM quotes WHERE ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end)) q
    ON t.symbol = q.symbol AND t.venue = q.venue AND t.ts >= q.ts
ORDER BY t.symbol, t.venue, t.ts, t.trade_id

-- name: last_quote
SELECT symbol, venue, ts, bid_px, bid_qty, ask_px, ask_qty
FROM quotes WHERE ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end)
QUALIFY row_number() OVER (PARTITION BY symbol, venue ORDER BY ts DESC) = 1
ORDER BY symbol, venue

-- name: range_scan
SELECT ts, symbol, venue, trade_id, price, qty, side
FROM trades WHERE symbol = $symbol AND ts >= make_timestamp_ns($scan_start) AND ts < make_timestamp_ns($scan_end)
ORDER BY venue, ts, trade_id
