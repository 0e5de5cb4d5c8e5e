"""Synthetic market v2 (`ticks synth --market regime`): regimes, self-exciting flow, queue-dependent impact.

Why: in v1 the best forecast is linear in what the book shows, so any linear filter is as good as a
Transformer. Here the best forecast is a product of things the book and the trades show, and one of
them (the regime) must be inferred from their recent history, so a model is rewarded for memory and
for nonlinearity. Row t is one book snapshot on the 100 ms grid; step t is the time between rows t
and t+1.

    z[t]        hidden regime, Markov chain with transition matrix P (calm, busy, thin)
    E+[t], E-[t] excitation of buyer- and seller-initiated trades (Hawkes with an exponential kernel)
    N+[t], N-[t] trades in step t: Poisson(mu[z] + a[z] * E+[t]), Poisson(mu[z] + a[z] * E-[t])
    E±[t+1] = b * E±[t] + N±[t]                 (E± = 0 at row 0: the market opens quiet)
    l[t+1] = m + rho_q * (l[t] - m) + q_sd * sqrt(1 - rho_q^2) * xi[t]   l = log level-1 depth Q
    g[t] = exp(-alpha * (l[t] - m))             impact grows as the level-1 queue empties
    x[t+1] = x[t] + c[z] * g[t] * (N+[t] - N-[t]) + sigma[z] * eps[t]   eps: unit-variance Student-t

The sides have the same base rate, so the predictable drift comes from the flow imbalance
D = E+ - E-: E_t[N+ - N-] = a[z] * D[t]. The depth l is independent of (z, E), so with
m_j(k) = E_t[D[t+j] 1{z[t+j] = k}] (m_{j+1} = P^T diag(b + a) m_j, m_0 = D[t] e_z[t]) and the
lognormal moment g_j(l) = E_t[g[t+j]] = exp(-alpha rho_q^j (l - m) + alpha^2 q_sd^2 (1 - rho_q^2j) / 2),

    oracle_h  = E[x[t+h] - x[t] | z[t], E±[t], l[t]] = D[t] sum_{j<h} g_j(l[t]) W[j, z[t]],
    W[j, k]   = (c * a)^T (P^T diag(b + a))^j e_k                                     (exact).

Everything but z is shown by the files: E± are sums over past trades (trades file), l is the total
level-1 size, x the weighted mid (exactly, as in v1), and the regime also moves the chance of a
wide spread (`wide_prob`). So the forward filter over z given the files is exact:
alpha_t(k) = P(z[t] = k | files up to row t) ∝ e_t(k) sum_j alpha_{t-1}(j) L_{t-1}(j) P[j, k], with
L the likelihood of step t-1 (trade counts: Poisson; the return given the counts: Student-t) and
e_t the chance of row t's spread, and

    ceiling_h = E[x[t+h] - x[t] | files up to row t] = D[t] sum_{j<h} g_j(l[t]) sum_k alpha_t(k) W[j, k].

The depth of levels 2..N leans to the side of the flow (flow_kappa * tanh(D / flow_scale)) under
persistent noise that is independent of z, so it tells a book-only model about D and nothing the
trades do not. Seeds: the latent path (regime, trades' counts and sides, price, depth l) depends on
`seed` only; the book's shape, sizes, trade sizes and times on (seed, symbol, venue). Every random
stream is drawn once per chunk in row order, so the data do not depend on chunk_rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from data_loaders.synth import HORIZONS, TICKS_PER_USDT, _ar1, _stable_hash, stamp

REGIMES = ("calm", "busy", "thin")


@dataclass(frozen=True)
class RegimeParams:
    """Model constants, one entry per regime where a tuple; written to every file's metadata."""

    price0: float = 60_000.0
    duration: tuple[float, ...] = (300.0, 200.0, 150.0)  # mean steps in each regime
    base_rate: tuple[float, ...] = (0.3, 0.4, 0.15)  # mu: trades per step per side, unexcited
    excite: tuple[float, ...] = (0.2, 0.4, 0.35)  # a: intensity per unit of excitation
    decay: float = 0.5  # b: excitation kept per step
    impact: tuple[float, ...] = (0.4e-4, 0.05e-4, 1.2e-4)  # c: log move per net trade at depth e^m
    noise: tuple[float, ...] = (1e-4, 1e-4, 2e-4)  # sigma: rms of the other moves per step
    wide_prob: tuple[float, ...] = (0.01, 0.01, 0.15)  # chance of a wide spread
    t_dof: float = 5.0
    touch_median: float = 1.5  # e^m: median level-1 total size, BTC
    touch_sigma: float = 0.8  # q_sd: stationary std of l
    touch_rho: float = 0.8  # rho_q per step
    impact_alpha: float = 1.0  # g = (Q / e^m)^-alpha
    flow_kappa: float = 0.45  # log-size lean of levels 2..N at tanh(D / flow_scale) = 1
    flow_scale: float = 3.0
    size_noise: float = 0.5
    size_rho: float = 0.9
    depth_median: float = 0.3
    gap_mean_extra: float = 2.0
    wide_mean_extra: float = 1.5
    edge_fraction: float = 0.01
    trade_median: float = 0.003
    trade_sigma: float = 1.5
    updates_per_step: float = 4.0
    latency_median_ns: float = 2e6
    latency_sigma: float = 0.5
    regimes: tuple[str, ...] = field(default=REGIMES)

    def __post_init__(self) -> None:
        per_regime = (self.duration, self.base_rate, self.excite, self.impact, self.noise, self.wide_prob)
        if any(len(v) != len(self.regimes) for v in per_regime):
            raise ValueError(f"every per-regime tuple needs {len(self.regimes)} entries, one per regime")
        # Stationary Hawkes (branching ratio a / (1 - b) < 1), so intensities stay small enough
        # for the inverse-CDF Poisson draw.
        if max(self.excite) >= 1.0 - self.decay or min(self.duration) <= 1.0:
            raise ValueError(f"need excite < 1 - decay (got {self.excite}, decay {self.decay}) "
                             f"and durations > 1 step (got {self.duration})")


REGIME_PARAMS = RegimeParams()


def oracle_metadata(p: RegimeParams = REGIME_PARAMS) -> dict:
    """What the oracle file's columns are (its `oracle` metadata)."""
    return {
        "price": "wmid_paper",
        "target": "log(wmid[t+h] / wmid[t])",
        "units": "log return",
        "formula": "D[t] * sum_{j<h} g_j(l[t]) W[j, z[t]] (data_loaders/synth_regime.py)",
        "ceiling": "D[t] * sum_{j<h} g_j(l[t]) sum_k P(z[t]=k | files up to t) W[j, k]",
        "horizons": list(HORIZONS),
        "regimes": list(p.regimes),
        "transition": transition_matrix(p).tolist(),
    }


def transition_matrix(p: RegimeParams = REGIME_PARAMS) -> np.ndarray:
    """P[j, k] = P(z[t+1] = k | z[t] = j): leave j with chance 1 / duration[j], to the others evenly."""
    k = len(p.duration)
    leave = 1.0 / np.asarray(p.duration)
    out = np.repeat((leave / (k - 1))[:, None], k, axis=1)
    np.fill_diagonal(out, 1.0 - leave)
    return out


def stationary(p: RegimeParams = REGIME_PARAMS) -> np.ndarray:
    """The regime's stationary distribution (left eigenvector of P for eigenvalue 1)."""
    vals, vecs = np.linalg.eig(transition_matrix(p).T)
    v = np.real(vecs[:, np.argmin(np.abs(vals - 1.0))])
    return v / v.sum()


def regime_weights(p: RegimeParams = REGIME_PARAMS) -> np.ndarray:
    """W (max horizon, K): W[j, k] = E[drift of step t+j] / (D[t] g_j) given z[t] = k."""
    a, c = np.asarray(p.excite), np.asarray(p.impact)
    m = transition_matrix(p).T * (p.decay + a)[None, :]  # P^T diag(b + a)
    v, rows = np.eye(len(a)), []
    for _ in range(max(HORIZONS)):
        rows.append((c * a) @ v)
        v = m @ v
    return np.array(rows)


def queue_factors(log_depth: np.ndarray, p: RegimeParams = REGIME_PARAMS) -> np.ndarray:
    """(n, max horizon): g_j(l) = E[g[t+j] | l[t] = l] for j = 0.. (a lognormal moment)."""
    j = np.arange(max(HORIZONS))
    rho_j, al = p.touch_rho**j, p.impact_alpha
    dev = log_depth - np.log(p.touch_median)
    return np.exp(-al * np.outer(dev, rho_j) + 0.5 * (al * p.touch_sigma) ** 2 * (1.0 - rho_j**2))


def forecasts(flow: np.ndarray, factors: np.ndarray, belief: np.ndarray,
              p: RegimeParams = REGIME_PARAMS) -> np.ndarray:
    """(n, len(HORIZONS)) E[x[t+h] - x[t]] given D[t], the queue factors (n, max horizon) of l[t]
    and a belief (n, K) over z[t]: one-hot for the oracle, the filter's for the ceiling."""
    w = regime_weights(p)
    # A sum over k rather than a matrix product: BLAS rounds by the array's size, and a row's
    # forecast must not depend on how many rows share its chunk.
    steps = factors * sum(belief[:, k, None] * w[None, :, k] for k in range(w.shape[1]))
    return flow[:, None] * np.cumsum(steps, axis=1)[:, np.asarray(HORIZONS) - 1]


@dataclass
class RegimeState:
    """Values of the current row for k independent paths (arrays of shape (k,)): regime z,
    excitations E+ and E-, log price x, log level-1 depth l."""

    z: np.ndarray
    e_buy: np.ndarray
    e_sell: np.ndarray
    x: np.ndarray
    l: np.ndarray


@dataclass
class Latent:
    """Rows of k latent paths, each (n, k): the state of each row and the trades of its step;
    x_end (k,): the log price of row n (the last step's return needs it)."""

    z: np.ndarray
    e_buy: np.ndarray
    e_sell: np.ndarray
    x: np.ndarray
    l: np.ndarray
    buys: np.ndarray
    sells: np.ndarray
    x_end: np.ndarray


def regime_streams(seed_seq: np.random.SeedSequence) -> list[np.random.Generator]:
    """The latent path's random streams: regime moves, buys, sells, price noise, depth noise."""
    return [np.random.default_rng(child) for child in seed_seq.spawn(5)]


def simulate_regime(state: RegimeState, streams: list[np.random.Generator], n: int,
                    p: RegimeParams = REGIME_PARAMS) -> tuple[Latent, RegimeState]:
    """n rows of k paths starting at `state`; returns them and the state of row n."""
    k = state.x.shape[0]
    cum = np.cumsum(transition_matrix(p), axis=1)
    cum[:, -1] = 1.0
    eps = streams[3].standard_t(p.t_dof, (n, k)) * np.sqrt((p.t_dof - 2.0) / p.t_dof)
    out = _simulate(
        state.z.astype(np.int64), state.e_buy.astype(np.float64), state.e_sell.astype(np.float64),
        state.x.astype(np.float64), state.l.astype(np.float64), streams[0].random((n, k)),
        streams[1].random((n, k)), streams[2].random((n, k)), eps, streams[4].standard_normal((n, k)),
        cum, np.asarray(p.base_rate), np.asarray(p.excite), p.decay, np.asarray(p.impact),
        np.asarray(p.noise), np.log(p.touch_median), p.touch_rho,
        p.touch_sigma * np.sqrt(1.0 - p.touch_rho**2), p.impact_alpha)
    return Latent(*out[:7], x_end=out[10].copy()), RegimeState(*out[7:])


@numba.njit(cache=True)
def _poisson(u: float, lam: float) -> int:
    """Inverse-CDF Poisson draw from one uniform (lam stays far below exp underflow at ~700)."""
    k, prob = 0, math.exp(-lam)
    total = prob
    while u > total and prob > 0.0:
        k += 1
        prob *= lam / k
        total += prob
    return k


@numba.njit(cache=True)
def _simulate(z, e_buy, e_sell, x, l, u_regime, u_buy, u_sell, eps, xi, cum_p,
              mu, a, b, c, sigma, m, rho_q, innov_q, alpha):  # fmt: skip
    """The model's recursion for k paths (state arrays (k,), draws (n, k)); the rows and row n."""
    n, k = u_regime.shape
    zs, nb, ns = np.empty((n, k), np.int64), np.empty((n, k), np.int64), np.empty((n, k), np.int64)
    eb, es, xs, ls = np.empty((n, k)), np.empty((n, k)), np.empty((n, k)), np.empty((n, k))
    z, e_buy, e_sell, x, l = z.copy(), e_buy.copy(), e_sell.copy(), x.copy(), l.copy()
    for t in range(n):
        for i in range(k):
            r = z[i]
            zs[t, i], eb[t, i], es[t, i], xs[t, i], ls[t, i] = r, e_buy[i], e_sell[i], x[i], l[i]
            nb[t, i] = _poisson(u_buy[t, i], mu[r] + a[r] * e_buy[i])
            ns[t, i] = _poisson(u_sell[t, i], mu[r] + a[r] * e_sell[i])
            x[i] += c[r] * math.exp(-alpha * (l[i] - m)) * (nb[t, i] - ns[t, i]) + sigma[r] * eps[t, i]
            e_buy[i] = b * e_buy[i] + nb[t, i]
            e_sell[i] = b * e_sell[i] + ns[t, i]
            l[i] = m + rho_q * (l[i] - m) + innov_q * xi[t, i]
            nxt = 0
            while u_regime[t, i] > cum_p[r, nxt]:
                nxt += 1
            z[i] = nxt
    return zs, eb, es, xs, ls, nb, ns, z, e_buy, e_sell, x, l


@numba.njit(cache=True)
def _filter(pred, nb, ns, eb, es, x, x_next, l, spread, edge, trans,
            mu, a, c, sigma, wide, geo0, m, alpha, dof):  # fmt: skip
    """Forward filter: (n, K) P(z[t] | files up to row t) and the prediction for row n."""
    n, k = nb.shape[0], pred.shape[0]
    out = np.empty((n, k))
    loglik = np.empty(k)
    for t in range(n):
        post = pred.copy()
        for j in range(k):  # row t's spread
            if spread[t] == 1:
                post[j] *= 1.0 - wide[j]
            elif spread[t] == 2:
                post[j] *= wide[j] * geo0 + (1.0 - wide[j]) * edge[t]
            else:
                post[j] *= wide[j]
        post /= post.sum()
        out[t] = post
        r = (x[t + 1] if t + 1 < n else x_next) - x[t]
        g = math.exp(-alpha * (l[t] - m))
        for j in range(k):  # step t: the counts, then the return given them
            lb, ls_ = mu[j] + a[j] * eb[t], mu[j] + a[j] * es[t]
            scale = sigma[j] * math.sqrt((dof - 2.0) / dof)
            resid = (r - c[j] * g * (nb[t] - ns[t])) / scale
            loglik[j] = (nb[t] * math.log(lb) - lb + ns[t] * math.log(ls_) - ls_
                         - 0.5 * (dof + 1.0) * math.log1p(resid * resid / dof) - math.log(scale))
        top = loglik.max()
        for j in range(k):
            post[j] *= math.exp(loglik[j] - top)
        post /= post.sum()
        pred = trans.T @ post
    return out, pred


class RegimeMarket:
    """The v2 generator's state across chunks: latent state, filter, book noise, ids, clocks, streams."""

    def __init__(self, seed: int, symbol: str, venue: str, levels: int, step_ns: int,
                 params: RegimeParams = REGIME_PARAMS):
        self.p, self.levels, self.step_ns = params, levels, step_ns
        latent_seq = np.random.SeedSequence(seed)
        micro_seq = np.random.SeedSequence([seed, _stable_hash(symbol), _stable_hash(venue)])
        init_latent, streams_seq = latent_seq.spawn(2)
        self.latent = regime_streams(streams_seq)
        init = np.random.default_rng(init_latent)
        self.trans, self.prior = transition_matrix(params), stationary(params)
        z0 = np.searchsorted(np.cumsum(self.prior), init.random() * self.prior.sum())
        l0 = np.log(params.touch_median) + params.touch_sigma * init.standard_normal()
        zero = np.zeros(1)
        self.state = RegimeState(np.array([z0]), zero, zero, np.array([np.log(params.price0)]),
                                 np.array([l0]))
        self.pred = self.prior.copy()
        names = ("init", "spread", "gaps", "noise", "book_lat", "updates", "trade_u", "trade_n")
        self.rng = dict(zip(names, (np.random.default_rng(c) for c in micro_seq.spawn(len(names)))))
        self.noise = self.rng["init"].standard_normal(2 * (levels - 1))
        self.update_id, self.trade_id = 1, 1
        self.book_clock = self.trade_clock = np.iinfo(np.int64).min

    def chunk(self, ts: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Columns of all four files for the book rows at times `ts` (consecutive grid points)."""
        return self.observe(ts, self.advance(ts.shape[0]))

    def advance(self, n: int) -> Latent:
        """The next n rows of the latent path (arrays of shape (n, 1))."""
        lat, self.state = simulate_regime(self.state, self.latent, n, self.p)
        return lat

    def beliefs(self, lat: Latent, spread: np.ndarray, edge: np.ndarray) -> np.ndarray:
        """(n, K) P(z[t] | files up to row t) for the rows of one path, carrying the filter on."""
        p = self.p
        belief, self.pred = _filter(
            self.pred, lat.buys[:, 0], lat.sells[:, 0], lat.e_buy[:, 0], lat.e_sell[:, 0],
            lat.x[:, 0], lat.x_end[0], lat.l[:, 0], spread, edge.astype(np.float64), self.trans,
            np.asarray(p.base_rate), np.asarray(p.excite), np.asarray(p.impact),
            np.asarray(p.noise), np.asarray(p.wide_prob), 1.0 - np.exp(-1.0 / p.wide_mean_extra),
            np.log(p.touch_median), p.impact_alpha, p.t_dof)
        return belief

    def observe(self, ts: np.ndarray, lat: Latent) -> dict[str, dict[str, np.ndarray]]:
        """What the market shows of one latent path's rows: book, quotes, trades; oracle, ceiling."""
        p, n, depth = self.p, ts.shape[0], self.levels - 1
        z, x, log_depth, buys, sells = (a[:, 0] for a in (lat.z, lat.x, lat.l, lat.buys, lat.sells))
        price = np.exp(x)
        flow = lat.e_buy[:, 0] - lat.e_sell[:, 0]

        # Level 1: as in v1 (weighted mid = exp(x) exactly), wide spreads more likely when thin.
        r = self.rng["spread"].random((n, 2))
        spread = np.where(r[:, 0] < np.asarray(p.wide_prob)[z],
                          2.0 + np.floor(-np.log1p(-r[:, 1]) * p.wide_mean_extra), 1.0)
        ticks = price * TICKS_PER_USDT
        frac = ticks - np.floor(ticks)
        edge = (frac < p.edge_fraction) | (frac > 1.0 - p.edge_fraction)
        spread[(spread == 1.0) & edge] = 2.0
        bid_ticks = np.where(spread == 1.0, np.floor(ticks), np.rint(ticks - spread / 2.0))
        ask_ticks = bid_ticks + spread
        bid1, ask1 = bid_ticks / TICKS_PER_USDT, ask_ticks / TICKS_PER_USDT
        ask_share = (price - bid1) / (ask1 - bid1)
        touch = np.exp(log_depth)

        # Levels 2..N: sizes lean to the side of the flow, under persistent noise.
        gaps = 1.0 + np.floor(
            -np.log1p(-self.rng["gaps"].random((n, 2 * depth))) * p.gap_mean_extra
        )
        innov = self.rng["noise"].standard_normal((n, 2 * depth)) * np.sqrt(1.0 - p.size_rho**2)
        noise, self.noise = _ar1(self.noise, innov, p.size_rho)
        lean = p.flow_kappa * np.tanh(flow / p.flow_scale)
        bid_ticks_at, ask_ticks_at = [bid_ticks], [ask_ticks]
        bid_qty, ask_qty = [(1.0 - ask_share) * touch], [ask_share * touch]
        for i in range(depth):
            size = p.depth_median * np.sqrt((i + 2) / 2.0)
            bid_ticks_at.append(bid_ticks_at[-1] - gaps[:, i])
            ask_ticks_at.append(ask_ticks_at[-1] + gaps[:, depth + i])
            bid_qty.append(size * np.exp(lean + p.size_noise * noise[:, i]))
            ask_qty.append(size * np.exp(-lean + p.size_noise * noise[:, depth + i]))

        # Trades: the latent counts, at the touch of row t, in random order within the step.
        counts = buys + sells
        row = np.repeat(np.arange(n), counts)
        m = row.shape[0]
        first = np.cumsum(counts) - counts
        buy = (np.arange(m) - first[row]) < buys[row]
        tu = self.rng["trade_u"].random(m)
        tn = self.rng["trade_n"].standard_normal((m, 2))
        trade_ts = ts[row] + 1 + (tu * (self.step_ns - 1)).astype(np.int64)
        order = np.argsort(trade_ts, kind="stable")
        trade_ts, buy, row = trade_ts[order], buy[order], row[order]
        qty, trade_local, trade_ids, update_id, book_local = stamp(self, ts, trade_ts, tn, counts, p)
        book = {"ts": ts, "local_ts": book_local, "update_id": update_id,
                "in_sync": np.ones(n, dtype=bool)}
        for name, columns in (("bid_px", [b / TICKS_PER_USDT for b in bid_ticks_at]),
                              ("bid_qty", bid_qty),
                              ("ask_px", [a / TICKS_PER_USDT for a in ask_ticks_at]),
                              ("ask_qty", ask_qty)):
            book.update({f"{name}_{i + 1}": col for i, col in enumerate(columns)})
        quotes = {"ts": ts, "local_ts": book_local, "update_id": update_id,
                  "bid_px": book["bid_px_1"], "bid_qty": book["bid_qty_1"],
                  "ask_px": book["ask_px_1"], "ask_qty": book["ask_qty_1"]}
        trades = {"ts": trade_ts, "local_ts": trade_local, "trade_id": trade_ids,
                  "price": np.where(buy, ask1[row], bid1[row]), "qty": qty,
                  "side": np.where(buy, 1, -1).astype(np.int8)}
        belief = self.beliefs(lat, np.rint(spread).astype(np.int64), edge)
        factors, known = queue_factors(log_depth, p), np.eye(len(p.regimes))[z]
        oracle = {"ts": ts}
        oracle.update(zip((f"oracle_h{h}" for h in HORIZONS), forecasts(flow, factors, known, p).T))
        oracle.update(zip((f"ceiling_h{h}" for h in HORIZONS), forecasts(flow, factors, belief, p).T))
        return {"trades": trades, "quotes": quotes, "book": book, "oracle": oracle}

