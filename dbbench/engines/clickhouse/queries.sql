-- The suite's queries in ClickHouse SQL (chDB and server), read by adapter.py.
-- Placeholders: {start}, {end}, {scan_start}, {scan_end} become fromUnixTimestamp64Nano(ns) literals,
-- {symbol} a quoted string. toStartOfMinute alone gives DateTime (seconds): bars are cast back to
-- DateTime64(9, 'UTC').

-- name: avg_trade_volume
SELECT symbol, venue, toDateTime64(toStartOfMinute(ts), 9, 'UTC') AS minute, count() AS trades, avg(qty) AS avg_qty
FROM trades WHERE ts >= {start} AND ts < {end}
GROUP BY symbol, venue, minute
ORDER BY symbol, venue, minute

-- name: vwap
SELECT symbol, venue, minute, volume, pq / volume AS vwap,
       sum(pq) OVER w / sum(volume) OVER w AS vwap_range
FROM (
    SELECT symbol, venue, toDateTime64(toStartOfMinute(ts), 9, 'UTC') AS minute, sum(qty) AS volume, sum(price * qty) AS pq
    FROM trades WHERE ts >= {start} AND ts < {end}
    GROUP BY symbol, venue, minute
)
WINDOW w AS (PARTITION BY symbol, venue)
ORDER BY symbol, venue, minute

-- name: ohlcv_1m
SELECT symbol, venue, toDateTime64(toStartOfMinute(ts), 9, 'UTC') AS minute,
       argMin(price, (ts, trade_id)) AS open, max(price) AS high, min(price) AS low,
       argMax(price, (ts, trade_id)) AS close, sum(qty) AS volume, count() AS trades
FROM trades WHERE ts >= {start} AND ts < {end}
GROUP BY symbol, venue, minute
ORDER BY symbol, venue, minute

-- name: spread
SELECT symbol, venue, toDateTime64(toStartOfMinute(ts), 9, 'UTC') AS minute, count() AS quotes,
       avg(ask_px - bid_px) AS avg_spread, max(ask_px - bid_px) AS max_spread
FROM quotes WHERE ts >= {start} AND ts < {end}
GROUP BY symbol, venue, minute
ORDER BY symbol, venue, minute

-- name: nbbo
-- Each quote paired with every venue quoting in the range, each pair as-of joined to that venue's last
-- quote at or before the quote's ts (its own venue: itself); a venue with none yet drops out of the best.
WITH q AS (SELECT symbol, venue, ts, bid_px, ask_px FROM quotes WHERE ts >= {start} AND ts < {end})
SELECT u.symbol AS symbol, u.ts AS ts, u.venue AS venue, max(p.bid_px) AS best_bid, min(p.ask_px) AS best_ask
FROM (SELECT q.symbol AS symbol, q.ts AS ts, q.venue AS venue, v.venue AS other
      FROM q CROSS JOIN (SELECT DISTINCT venue FROM q) AS v) AS u
ASOF JOIN q AS p ON u.symbol = p.symbol AND u.other = p.venue AND u.ts >= p.ts
GROUP BY u.symbol, u.ts, u.venue
ORDER BY symbol, ts, venue

-- name: mid_returns
SELECT symbol, venue, second, mid, ret FROM (
    SELECT symbol, venue, second, mid,
           log(mid / lagInFrame(mid) OVER w) AS ret,
           row_number() OVER w AS n
    FROM (
        SELECT symbol, venue, toStartOfSecond(ts) AS second,
               argMax((bid_px + ask_px) / 2, ts) AS mid
        FROM quotes WHERE ts >= {start} AND ts < {end}
        GROUP BY symbol, venue, second
    )
    WINDOW w AS (PARTITION BY symbol, venue ORDER BY second ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE n > 1
ORDER BY symbol, venue, second

-- name: exec_volatility
SELECT symbol, venue, toDateTime64(toStartOfMinute(second), 9, 'UTC') AS minute,
       count() AS returns, sqrt(sum(ret * ret)) AS realized_vol
FROM (
SELECT symbol, venue, second, mid, ret FROM (
    SELECT symbol, venue, second, mid,
           log(mid / lagInFrame(mid) OVER w) AS ret,
           row_number() OVER w AS n
    FROM (
        SELECT symbol, venue, toStartOfSecond(ts) AS second,
               argMax((bid_px + ask_px) / 2, ts) AS mid
        FROM quotes WHERE ts >= {start} AND ts < {end}
        GROUP BY symbol, venue, second
    )
    WINDOW w AS (PARTITION BY symbol, venue ORDER BY second ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE n > 1)
GROUP BY symbol, venue, minute
ORDER BY symbol, venue, minute

-- name: asof_trades_quotes
SELECT t.symbol AS symbol, t.venue AS venue, t.ts AS ts, t.trade_id AS trade_id, t.price AS price,
       t.qty AS qty, t.side AS side, q.bid_px AS bid_px, q.ask_px AS ask_px,
       2e4 * t.side * (t.price - (q.bid_px + q.ask_px) / 2) / ((q.bid_px + q.ask_px) / 2) AS eff_spread_bps
FROM (SELECT * FROM trades WHERE ts >= {start} AND ts < {end}) AS t
ASOF JOIN (SELECT symbol, venue, ts, bid_px, ask_px FROM quotes WHERE ts >= {start} AND ts < {end}) AS q
    ON t.symbol = q.symbol AND t.venue = q.venue AND t.ts >= q.ts
ORDER BY symbol, venue, ts, trade_id

-- name: last_quote
SELECT symbol, venue, max(t) AS ts, argMax(bid_px, t) AS bid_px, argMax(bid_qty, t) AS bid_qty,
       argMax(ask_px, t) AS ask_px, argMax(ask_qty, t) AS ask_qty
FROM (SELECT ts AS t, * EXCEPT ts FROM quotes WHERE ts >= {start} AND ts < {end})
GROUP BY symbol, venue
ORDER BY symbol, venue

-- name: range_scan
SELECT ts, symbol, venue, trade_id, price, qty, side
FROM trades WHERE symbol = {symbol} AND ts >= {scan_start} AND ts < {scan_end}
ORDER BY venue, ts, trade_id
