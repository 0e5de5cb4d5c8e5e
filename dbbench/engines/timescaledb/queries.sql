-- The suite's queries in PostgreSQL SQL (TimescaleDB and plain PostgreSQL), read by adapter.py.
-- Times are bigint UTC ns. Parameters are psycopg's %(start)s, %(end)s, %(symbol)s, %(scan_start)s,
-- %(scan_end)s; {bucket} is time_bucket on TimescaleDB, dbbench_bucket (create.sql) on plain PostgreSQL.

-- name: avg_trade_volume
SELECT symbol, venue, {bucket}(60000000000, ts) AS minute, count(*) AS trades, avg(qty) AS avg_qty
FROM trades WHERE ts >= %(start)s AND ts < %(end)s
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3

-- name: vwap
SELECT symbol, venue, minute, volume, pq / volume AS vwap,
       sum(pq) OVER w / sum(volume) OVER w AS vwap_range
FROM (
    SELECT symbol, venue, {bucket}(60000000000, ts) AS minute, sum(qty) AS volume, sum(price * qty) AS pq
    FROM trades WHERE ts >= %(start)s AND ts < %(end)s
    GROUP BY 1, 2, 3
) m
WINDOW w AS (PARTITION BY symbol, venue)
ORDER BY 1, 2, 3

-- name: ohlcv_1m
SELECT symbol, venue, {bucket}(60000000000, ts) AS minute,
       (array_agg(price ORDER BY ts, trade_id))[1] AS open, max(price) AS high, min(price) AS low,
       (array_agg(price ORDER BY ts DESC, trade_id DESC))[1] AS close, sum(qty) AS volume, count(*) AS trades
FROM trades WHERE ts >= %(start)s AND ts < %(end)s
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3

-- name: spread
SELECT symbol, venue, {bucket}(60000000000, ts) AS minute, count(*) AS quotes,
       avg(ask_px - bid_px) AS avg_spread, max(ask_px - bid_px) AS max_spread
FROM quotes WHERE ts >= %(start)s AND ts < %(end)s
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3

-- name: nbbo
-- One pass of window functions, not a per-row LATERAL lookup (which, on compressed chunks,
-- decompresses for every row): each venue's last quote is carried forward along the symbol's
-- time line (a group starts at each of its quotes), and every quote at a ts shows the state
-- after the last of them, as the Polars reference does.
WITH q AS (
    SELECT symbol, venue, ts, bid_px, ask_px, row_number() OVER (ORDER BY symbol, ts, venue) AS rn
    FROM quotes WHERE ts >= %(start)s AND ts < %(end)s),
x AS (
    SELECT q.rn, q.symbol, q.ts, q.venue, v.src,
           CASE WHEN q.venue = v.src THEN q.bid_px END AS bid,
           CASE WHEN q.venue = v.src THEN q.ask_px END AS ask,
           count(*) FILTER (WHERE q.venue = v.src) OVER (PARTITION BY q.symbol, v.src ORDER BY q.rn) AS grp
    FROM q CROSS JOIN (SELECT DISTINCT venue AS src FROM q) v),
carried AS (
    SELECT rn, symbol, ts, venue, max(bid) OVER g AS bid, max(ask) OVER g AS ask
    FROM x WINDOW g AS (PARTITION BY symbol, src, grp)),
best AS (
    SELECT rn, symbol, ts, venue, max(bid) AS best_bid, min(ask) AS best_ask
    FROM carried GROUP BY rn, symbol, ts, venue)
SELECT symbol, ts, venue, last_value(best_bid) OVER t AS best_bid, last_value(best_ask) OVER t AS best_ask
FROM best
WINDOW t AS (PARTITION BY symbol, ts ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
ORDER BY 1, 2, 3

-- name: mid_returns
SELECT symbol, venue, second, mid, ret FROM (
    SELECT symbol, venue, second, mid, ln(mid / lag(mid) OVER w) AS ret
    FROM (
        SELECT DISTINCT ON (symbol, venue, {bucket}(1000000000, ts))
               symbol, venue, {bucket}(1000000000, ts) AS second, (bid_px + ask_px) / 2 AS mid
        FROM quotes WHERE ts >= %(start)s AND ts < %(end)s
        ORDER BY symbol, venue, {bucket}(1000000000, ts), ts DESC
    ) s
    WINDOW w AS (PARTITION BY symbol, venue ORDER BY second)
) r
WHERE ret IS NOT NULL
ORDER BY 1, 2, 3

-- name: exec_volatility
SELECT symbol, venue, {bucket}(60000000000, second) AS minute, count(*) AS returns,
       sqrt(sum(ret * ret)) AS realized_vol
FROM (
SELECT symbol, venue, second, mid, ret FROM (
    SELECT symbol, venue, second, mid, ln(mid / lag(mid) OVER w) AS ret
    FROM (
        SELECT DISTINCT ON (symbol, venue, {bucket}(1000000000, ts))
               symbol, venue, {bucket}(1000000000, ts) AS second, (bid_px + ask_px) / 2 AS mid
        FROM quotes WHERE ts >= %(start)s AND ts < %(end)s
        ORDER BY symbol, venue, {bucket}(1000000000, ts), ts DESC
    ) s
    WINDOW w AS (PARTITION BY symbol, venue ORDER BY second)
) r
WHERE ret IS NOT NULL) x
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3

-- name: asof_trades_quotes
-- Trades and quotes in one time line per (symbol, venue), quotes first at equal ts (a quote at
-- the trade's ts prevails); each trade takes the last quote before it by window functions, not
-- a per-row LATERAL lookup (see nbbo). Trades with no quote yet in the range have no answer row.
WITH e AS (
    SELECT symbol, venue, ts, 1 AS kind, trade_id, price, qty, side, NULL::float8 AS bid_px, NULL::float8 AS ask_px
    FROM trades WHERE ts >= %(start)s AND ts < %(end)s
    UNION ALL
    SELECT symbol, venue, ts, 0, NULL, NULL, NULL, NULL, bid_px, ask_px FROM quotes WHERE ts >= %(start)s AND ts < %(end)s),
g AS (
    SELECT *, count(bid_px) OVER (PARTITION BY symbol, venue ORDER BY ts, kind ROWS UNBOUNDED PRECEDING) AS grp
    FROM e),
c AS (
    SELECT symbol, venue, ts, kind, grp, trade_id, price, qty, side,
           max(bid_px) OVER q AS bid_px, max(ask_px) OVER q AS ask_px
    FROM g WINDOW q AS (PARTITION BY symbol, venue, grp))
SELECT symbol, venue, ts, trade_id, price, qty, side, bid_px, ask_px,
       2e4::float8 * side * (price - (bid_px + ask_px) / 2) / ((bid_px + ask_px) / 2) AS eff_spread_bps
FROM c
WHERE kind = 1 AND grp > 0
ORDER BY 1, 2, 3, 4

-- name: last_quote
SELECT DISTINCT ON (symbol, venue) symbol, venue, ts, bid_px, bid_qty, ask_px, ask_qty
FROM quotes WHERE ts >= %(start)s AND ts < %(end)s
ORDER BY symbol, venue, ts DESC

-- name: range_scan
SELECT ts, symbol, venue, trade_id, price, qty, side
FROM trades WHERE symbol = %(symbol)s AND ts >= %(scan_start)s AND ts < %(scan_end)s
ORDER BY venue, ts, trade_id
