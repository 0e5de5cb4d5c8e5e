/ The suite's queries in q, read by adapter.py: each one a lambda of [S;E;SYM;SS;SE] (range
/ start and end, symbol, range_scan start and end, as timestamps), applied to its parameters as literals.

/ name: avg_trade_volume
{[S;E;SYM;SS;SE]
  0!select trades:count i, avg_qty:avg qty by symbol, venue, minute:0D00:01 xbar ts from trades where ts>=S, ts<E}

/ name: vwap
{[S;E;SYM;SS;SE]
  bars:0!select volume:sum qty, vwap:qty wavg price, pq:sum price*qty by symbol, venue, minute:0D00:01 xbar ts from trades where ts>=S, ts<E;
  delete pq from update vwap_range:(sum pq)%sum volume by symbol, venue from bars}

/ name: ohlcv_1m
{[S;E;SYM;SS;SE]
  0!select open:first price, high:max price, low:min price, close:last price, volume:sum qty, trades:count i
    by symbol, venue, minute:0D00:01 xbar ts from `ts`trade_id xasc select from trades where ts>=S, ts<E}

/ name: spread
{[S;E;SYM;SS;SE]
  0!select quotes:count i, avg_spread:avg ask_px-bid_px, max_spread:max ask_px-bid_px
    by symbol, venue, minute:0D00:01 xbar ts from quotes where ts>=S, ts<E}

/ name: nbbo
/ Each venue's last quote at or before every update, by one aj per venue; max/min ignore nulls.
{[S;E;SYM;SS;SE]
  q:`symbol`ts`venue xasc select symbol, ts, venue from quotes where ts>=S, ts<E;
  prevailing:{[S;E;q;v] aj[`symbol`ts; q; `symbol`ts xasc select symbol, ts, b:bid_px, a:ask_px from quotes where ts>=S, ts<E, venue=v]}[S;E;q];
  per:prevailing each asc exec distinct venue from q;
  select symbol, ts, venue, best_bid:max each flip per@\:`b, best_ask:min each flip per@\:`a from q}

/ name: mid_returns
{[S;E;SYM;SS;SE]
  select symbol, venue, second, mid, ret from
    (update ret:log mid % prev mid by symbol, venue from
      0!select mid:last 0.5*bid_px+ask_px by symbol, venue, second:0D00:00:01 xbar ts from `ts xasc select from quotes where ts>=S, ts<E)
    where not null ret}

/ name: exec_volatility
{[S;E;SYM;SS;SE]
  0!select returns:count i, realized_vol:sqrt sum ret*ret by symbol, venue, minute:0D00:01 xbar second from (
    select symbol, venue, second, mid, ret from
    (update ret:log mid % prev mid by symbol, venue from
      0!select mid:last 0.5*bid_px+ask_px by symbol, venue, second:0D00:00:01 xbar ts from `ts xasc select from quotes where ts>=S, ts<E)
    where not null ret)}

/ name: asof_trades_quotes
{[S;E;SYM;SS;SE]
  t:`symbol`venue`ts`trade_id xasc select symbol, venue, ts, trade_id, price, qty, side from trades where ts>=S, ts<E;
  r:aj[`symbol`venue`ts; t; `symbol`venue`ts xasc select symbol, venue, ts, bid_px, ask_px from quotes where ts>=S, ts<E];
  select symbol, venue, ts, trade_id, price, qty, side, bid_px, ask_px, eff_spread_bps:2e4*side*(price-m)%m
    from (update m:0.5*bid_px+ask_px from r) where not null bid_px}

/ name: last_quote
{[S;E;SYM;SS;SE]
  0!select ts:last ts, bid_px:last bid_px, bid_qty:last bid_qty, ask_px:last ask_px, ask_qty:last ask_qty
    by symbol, venue from `ts xasc select from quotes where ts>=S, ts<E}

/ name: range_scan
{[S;E;SYM;SS;SE]
  `venue`ts`trade_id xasc select ts, symbol, venue, trade_id, price, qty, side from trades
    where symbol=SYM, ts>=SS, ts<SE}
