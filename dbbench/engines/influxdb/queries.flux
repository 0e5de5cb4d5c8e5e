// The suite's queries in Flux (InfluxDB 2.x), read by adapter.py.
// {bucket} is the bucket prefix (tables in {bucket}_trades and {bucket}_quotes); {start}, {end},
// {scan_start}, {scan_end} are ns integers; {symbol_literal} a Flux string literal.

// name: avg_trade_volume
from(bucket: "{bucket}_trades") |> range(start: time(v: {start}), stop: time(v: {end})) |> filter(fn: (r) => r._measurement == "trades") |> filter(fn: (r) => r._field == "qty") |> group(columns: ["symbol", "venue"])
  |> window(every: 1m) |> reduce(identity: {trades: 0, sum: 0.0}, fn: (r, accumulator) => ({trades: accumulator.trades + 1, sum: accumulator.sum + r._value}))
  |> map(fn: (r) => ({symbol: r.symbol, venue: r.venue, _time: r._start, trades: r.trades, avg_qty: r.sum / float(v: r.trades)}))
  |> group(columns: ["symbol", "venue"])

// name: vwap
from(bucket: "{bucket}_trades") |> range(start: time(v: {start}), stop: time(v: {end})) |> filter(fn: (r) => r._measurement == "trades") |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") |> group(columns: ["symbol", "venue"])
  |> map(fn: (r) => ({r with pq: r.price * r.qty}))
  |> window(every: 1m) |> reduce(identity: {volume: 0.0, pq: 0.0}, fn: (r, accumulator) => ({volume: accumulator.volume + r.qty, pq: accumulator.pq + r.pq}))
  |> map(fn: (r) => ({symbol: r.symbol, venue: r.venue, _time: r._start, volume: r.volume, vwap: r.pq / r.volume, pq: r.pq}))
  |> group(columns: ["symbol", "venue"])

// name: ohlcv_1m
from(bucket: "{bucket}_trades") |> range(start: time(v: {start}), stop: time(v: {end})) |> filter(fn: (r) => r._measurement == "trades") |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") |> group(columns: ["symbol", "venue"])
  |> sort(columns: ["_time", "trade_id"]) |> window(every: 1m)
  |> reduce(identity: {n: 0, open: 0.0, high: -1.0e308, low: 1.0e308, close: 0.0, volume: 0.0},
            fn: (r, accumulator) => ({n: accumulator.n + 1, open: if accumulator.n == 0 then r.price else accumulator.open,
              high: if r.price > accumulator.high then r.price else accumulator.high,
              low: if r.price < accumulator.low then r.price else accumulator.low,
              close: r.price, volume: accumulator.volume + r.qty}))
  |> map(fn: (r) => ({symbol: r.symbol, venue: r.venue, _time: r._start, open: r.open, high: r.high, low: r.low, close: r.close, volume: r.volume, trades: r.n}))
  |> group(columns: ["symbol", "venue"])

// name: spread
from(bucket: "{bucket}_quotes") |> range(start: time(v: {start}), stop: time(v: {end})) |> filter(fn: (r) => r._measurement == "quotes") |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") |> group(columns: ["symbol", "venue"])
  |> map(fn: (r) => ({r with s: r.ask_px - r.bid_px}))
  |> window(every: 1m)
  |> reduce(identity: {quotes: 0, sum: 0.0, max_spread: -1.0e308},
            fn: (r, accumulator) => ({quotes: accumulator.quotes + 1, sum: accumulator.sum + r.s,
              max_spread: if r.s > accumulator.max_spread then r.s else accumulator.max_spread}))
  |> map(fn: (r) => ({symbol: r.symbol, venue: r.venue, _time: r._start, quotes: r.quotes, avg_spread: r.sum / float(v: r.quotes), max_spread: r.max_spread}))
  |> group(columns: ["symbol", "venue"])

// name: nbbo
// unsupported: not written in Flux here: it needs a per-venue pivot with fill(usePrevious) per symbol; use
// InfluxQL servers or another engine

// name: mid_returns
import "math"
from(bucket: "{bucket}_quotes") |> range(start: time(v: {start}), stop: time(v: {end})) |> filter(fn: (r) => r._measurement == "quotes") |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") |> group(columns: ["symbol", "venue"])
  |> map(fn: (r) => ({r with _value: (r.bid_px + r.ask_px) / 2.0}))
  |> aggregateWindow(every: 1s, fn: last, createEmpty: false, timeSrc: "_start")
  |> map(fn: (r) => ({r with mid: r._value, ln_mid: math.log(x: r._value)}))
  |> difference(columns: ["ln_mid"], keepFirst: false)
  |> map(fn: (r) => ({symbol: r.symbol, venue: r.venue, _time: r._time, mid: r.mid, ret: r.ln_mid}))

// name: exec_volatility
import "math"
from(bucket: "{bucket}_quotes") |> range(start: time(v: {start}), stop: time(v: {end})) |> filter(fn: (r) => r._measurement == "quotes") |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") |> group(columns: ["symbol", "venue"])
  |> map(fn: (r) => ({r with _value: (r.bid_px + r.ask_px) / 2.0}))
  |> aggregateWindow(every: 1s, fn: last, createEmpty: false, timeSrc: "_start")
  |> map(fn: (r) => ({r with mid: r._value, ln_mid: math.log(x: r._value)}))
  |> difference(columns: ["ln_mid"], keepFirst: false)
  |> map(fn: (r) => ({symbol: r.symbol, venue: r.venue, _time: r._time, mid: r.mid, ret: r.ln_mid}))
  |> window(every: 1m)
  |> reduce(identity: {returns: 0, ss: 0.0}, fn: (r, accumulator) => ({returns: accumulator.returns + 1, ss: accumulator.ss + r.ret * r.ret}))
  |> map(fn: (r) => ({symbol: r.symbol, venue: r.venue, _time: r._start, returns: r.returns, realized_vol: math.sqrt(x: r.ss)}))
  |> group(columns: ["symbol", "venue"])

// name: asof_trades_quotes
// unsupported: Flux joins match equal keys only; an as-of join is not expressed here

// name: last_quote
from(bucket: "{bucket}_quotes") |> range(start: time(v: {start}), stop: time(v: {end})) |> filter(fn: (r) => r._measurement == "quotes") |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") |> group(columns: ["symbol", "venue"]) |> last(column: "_time")

// name: range_scan
from(bucket: "{bucket}_trades") |> range(start: time(v: {scan_start}), stop: time(v: {scan_end})) |> filter(fn: (r) => r._measurement == "trades" and r.symbol == {symbol_literal}) |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") |> group(columns: ["symbol", "venue"])
