"""InfluxDB over the v1 HTTP API (InfluxQL), which 1.x, 2.x (v1 compatibility) and 3.x serve; Flux for 2.x.

Writes are line protocol built vectorised (Polars string expressions, tags sorted by key as the
server wants them), one text per body of `batch_rows` points, gzip-compressed (ISA-L) and posted
with bounded retries on 5xx and connection errors (a retried write is idempotent: the same points
overwrite themselves). Posts go one at a time, in order, from one thread, while the next bodies are
built: the server never waits for the client. The stored point count is verified after each load.

Schema: measurements `trades` and `quotes`, tags `symbol` and `venue`, the other columns as fields,
time in ns. Each measurement lives in its own retention policy of the same name (v2: its own
bucket), so that the storage of each table can be measured alone (a shard holds one policy).
InfluxDB keeps one point per (series, time): trades sharing (symbol, venue, ts) would overwrite
each other, so trades carry a third tag `seq`, the rank of the trade among those at the same
(symbol, venue, ts) by trade_id ("0" almost always). Quotes are unique per (symbol, venue, ts).

DSNs: `influxdb://[user:password@]host:port/db` (`influxdbs://` for https; `http(s)://host:port/db`
also; user and password also from INFLUXDB_USERNAME / INFLUXDB_PASSWORD),
`influxdb2://host:port/bucket?org=ORG` (token from INFLUX_TOKEN or the DSN password, org also from
INFLUX_ORG). Options as query parameters: `batch` (points per write, default 50000), `retries`
(default 4), `gzip` (ISA-L level 1-3, 0 = plain text; default 1), `compact_wait` (seconds `compact`
waits for the server's own compaction, default 600).

Storage is the TSM files of the table's shards, measured after the compaction: InfluxDB first keeps
written points in its cache and WAL, snapshots them to TSM files when the shard goes cold, and
compacts those files fully later. The WAL holds the same points uncompressed: on the real recordings
it took 1.5-1.7x the bytes of the compacted TSM files, so it is never counted.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import requests
from isal import igzip

from dbbench.engines.base import (
    TABLES,
    Engine,
    EngineError,
    LoadResult,
    Storage,
    Unsupported,
    identifier,
)
from dbbench.engines.dialect import fill, read_blocks, read_queries
from dbbench.queries import SORT_KEYS, check_params, exact_cast

# Sorted by key: the server sorts otherwise.
TAGS = {"trades": ("seq", "symbol", "venue"), "quotes": ("symbol", "venue")}
FIELDS = {  # field -> line-protocol suffix ("i": integer, "": float)
    "trades": {"trade_id": "i", "price": "", "qty": "", "side": "i"},
    "quotes": {"bid_px": "", "bid_qty": "", "ask_px": "", "ask_qty": ""},
}
# The field a point count reads (every point has every field): trades' small integers count ~10% faster.
COUNTED = {"trades": "side", "quotes": "bid_px"}
POSTS_AHEAD = 3  # bodies built and waiting for the posting thread
LOADED = "dbbench_loaded"  # one point per table whose load was verified (in the default policy)
_BAD_TAG = r"[\\\n\r]"  # line protocol cannot carry these in a tag value
_ESCAPED_IN_TAG = "[,= ]"  # these it carries backslash-escaped

DDL = read_blocks(__package__, "create.influxql")  # database, drop_policy, policy
QUERIES = read_queries(__package__, "queries.influxql")
FLUX = read_queries(__package__, "queries.flux")  # 2.x
# Queries of several statements: the later ones' columns join the first's rows on these keys.
JOINED = {"vwap": ["symbol", "venue"], "ohlcv_1m": ["symbol", "venue", "minute"]}
# Answers whose rows the adapter puts in the query's order (SORT_KEYS) where InfluxQL cannot: rows of equal
# time from several series. Series themselves are ordered by their tags (`_frame`).
ORDERED = ("range_scan",)


# Output columns of each query, in order (the time column is named by TIME_COLUMN).
COLUMNS = {
    "avg_trade_volume": ["symbol", "venue", "minute", "trades", "avg_qty"],
    "vwap": ["symbol", "venue", "minute", "volume", "vwap", "vwap_range"],
    "ohlcv_1m": ["symbol", "venue", "minute", "open", "high", "low", "close", "volume", "trades"],
    "spread": ["symbol", "venue", "minute", "quotes", "avg_spread", "max_spread"],
    "nbbo": ["symbol", "ts", "venue", "best_bid", "best_ask"],
    "mid_returns": ["symbol", "venue", "second", "mid", "ret"],
    "exec_volatility": ["symbol", "venue", "minute", "returns", "realized_vol"],
    "asof_trades_quotes": ["symbol", "venue", "ts", "trade_id", "price", "qty", "side", "bid_px", "ask_px",
                           "eff_spread_bps"],
    "last_quote": ["symbol", "venue", "ts", "bid_px", "bid_qty", "ask_px", "ask_qty"],
    "range_scan": ["ts", "symbol", "venue", "trade_id", "price", "qty", "side"],
}
TIME_COLUMN = {name: next(c for c in cols if c in ("ts", "minute", "second")) for name, cols in COLUMNS.items()}
_TYPES = {"symbol": pl.String, "venue": pl.String, "trades": pl.Int64, "quotes": pl.Int64, "returns": pl.Int64,
          "trade_id": pl.Int64, "side": pl.Int8}


def render(name: str, params: dict[str, Any], dialect: str = "influxql", bucket: str = "") -> str:
    """The query text with its time bounds as ns integers (InfluxQL binds $symbol separately)."""
    text = (QUERIES if dialect == "influxql" else FLUX)[name]
    if isinstance(text, Unsupported):
        raise NotImplementedError(f"influxdb ({dialect}): {name} unsupported: {text.reason}")
    p = check_params(params)
    times = {k: p[k] for k in ("start", "end", "scan_start", "scan_end")}
    if dialect == "flux":
        return fill(text, {**times, "bucket": bucket, "symbol_literal": orjson.dumps(p["symbol"]).decode()})
    return fill(text, times)


# --- line protocol -----------------------------------------------------------------------------


def line_protocol(table: str, frame: pl.DataFrame) -> pl.Series:
    """One line-protocol line per row (frame has the table's columns, ts as Int64 ns, seq for trades)."""
    return frame.select(_line(table, frame).alias("line")).to_series()


def bodies(table: str, frame: pl.DataFrame, rows: int) -> Iterator[tuple[int, memoryview]]:
    """The frame's line protocol as (points, body) of `rows` lines each, each body one text built in
    turn (so that the first can be posted while the others are built) and handed over without a copy."""
    line = _line(table, frame, end="\n")
    for start in range(0, frame.height, rows):
        text = frame.slice(start, rows).select(line).to_series().rechunk()
        lines = text.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string: one buffer, int64 offsets
        _, offsets, data = lines.buffers()
        ends = np.frombuffer(offsets, np.int64)[lines.offset:lines.offset + len(lines) + 1]
        yield len(lines), memoryview(data)[ends[0]:ends[-1]]


def _line(table: str, frame: pl.DataFrame, end: str = "") -> pl.Expr:
    """One line per row, as one `pl.format` (its literal pieces cost nothing per row: `concat_str` made
    a column of each, twice the time). Tags with a comma, equals sign or space are escaped (rare:
    searching the distinct values is far cheaper than rewriting every value)."""
    template, values = table, []
    for name in TAGS[table]:
        value = pl.col(name).cast(pl.String)
        if _distinct(frame[name]).str.contains(_ESCAPED_IN_TAG).any():
            value = value.str.replace_all(f"({_ESCAPED_IN_TAG})", r"\$1")
        template += f",{name}={{}}"
        values.append(value)
    for i, (field, suffix) in enumerate(FIELDS[table].items()):
        template += f"{' ' if i == 0 else ','}{field}={{}}{suffix}"
        values.append(pl.col(field))
    return pl.format(f"{template} {{}}{end}", *values, pl.col("ts"))


def _distinct(column: pl.Series) -> pl.Series:
    """A tag column's distinct values as strings (a categorical's few codes: no pass over the rows' text)."""
    return column.unique().cast(pl.String)


class _Sequencer:
    """Keeps, per (symbol, venue), how many trades sat at the last ts of the previous batch."""

    def __init__(self) -> None:
        self.carry: pl.DataFrame | None = None

    def __call__(self, frame: pl.DataFrame) -> pl.DataFrame:
        keys = ["symbol", "venue", "ts"]
        carried = self.carry is not None and frame.select(pl.col("ts").is_in(self.carry["ts"].implode()).any()).item()
        # Shared times are rare: ruled out at once when ts only rises (the usual batch: one market in time
        # order), else looked for on ts alone (integers hash cheaply), then on the whole key.
        shared = (frame.height > 1 and not frame["ts"].diff().min() > 0
                  and frame.select(pl.col("ts").is_duplicated().any()).item()
                  and frame.select(pl.struct(keys).is_duplicated().any()).item())
        last = frame.group_by("symbol", "venue").agg(pl.col("ts").max())
        if not (carried or shared):  # the common case, cheaply: no two trades share a time
            self.carry = last.with_columns(pl.lit(1, pl.Int64).alias("seq_offset"))
            return frame.with_columns(pl.lit("0").alias("seq"))
        if carried:
            frame = frame.join(self.carry, on=keys, how="left", maintain_order="left")
        else:
            frame = frame.with_columns(pl.lit(None, pl.Int64).alias("seq_offset"))
        rank = (pl.int_range(pl.len(), dtype=pl.Int64).over(keys, order_by="trade_id")
                + pl.col("seq_offset").fill_null(0))
        frame = frame.with_columns(rank.cast(pl.String).alias("seq")).drop("seq_offset")
        self.carry = frame.join(last, on=keys).group_by(keys).agg(
            pl.col("seq").cast(pl.Int64).max().add(1).alias("seq_offset"))
        return frame


# --- the engine --------------------------------------------------------------------------------


class InfluxDB(Engine):
    name = "influxdb"
    compaction = ("waits until every shard of the table has its cache written to TSM files (WAL empty) and its TSM "
                  "files fully compacted, no compaction running (InfluxDB compacts on its own: `dbbench servers up` "
                  "sets [data] cache-snapshot-write-cold-duration and compact-full-write-cold-duration to seconds)")

    def __init__(self, dsn: str, *, batch_rows: int | None = None, retries: int | None = None, backoff_s: float = 0.25,
                 timeout_s: float = 300.0) -> None:
        url = urlsplit(dsn)
        options = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.scheme not in ("influxdb", "influxdbs", "influxdb2", "influxdb2s", "http", "https"):
            raise ValueError("influxdb DSN must be influxdb://[user:password@]host:port/db (or http(s)://...) or influxdb2://host:port/bucket?org=ORG")
        self.dialect = "flux" if url.scheme.startswith("influxdb2") else "influxql"
        scheme = "https" if url.scheme in ("influxdbs", "influxdb2s", "https") else "http"
        self.base = f"{scheme}://{url.hostname or '127.0.0.1'}:{url.port or 8086}"
        self.db = identifier(url.path.strip("/") or "dbbench")
        self.batch_rows = int(batch_rows or options.get("batch", 50_000))
        self.retries = int(retries if retries is not None else options.get("retries", 4))
        self.gzip_level = int(options.get("gzip", 1))
        if not 0 <= self.gzip_level <= 3:
            raise ValueError(f"influxdb: gzip must be an ISA-L level 1-3, or 0 for plain text, got {self.gzip_level}")
        self.backoff_s, self.timeout_s = backoff_s, timeout_s
        self.compact_wait_s = float(options.get("compact_wait", 600))
        self._http = requests.Session()
        user = unquote(url.username) if url.username else os.environ.get("INFLUXDB_USERNAME")
        password = unquote(url.password) if url.password else os.environ.get("INFLUXDB_PASSWORD")
        self._flux: Any = None
        if self.dialect == "flux":
            from influxdb_client import InfluxDBClient

            token = os.environ.get("INFLUX_TOKEN") or password
            self.org = options.get("org") or os.environ.get("INFLUX_ORG")
            if not token or not self.org:
                raise ValueError("influxdb2 DSN needs a token (INFLUX_TOKEN or the DSN password) "
                                 "and an org (?org= or INFLUX_ORG)")
            self._http.headers["Authorization"] = f"Token {token}"
            self._flux = InfluxDBClient(url=self.base, token=token, org=self.org, timeout=int(timeout_s * 1000))
        elif user:
            self._http.auth = (user, password or "")

    def __repr__(self) -> str:  # never the credentials
        return f"InfluxDB({self.base}, db={self.db}, dialect={self.dialect})"

    # -- HTTP --

    def _influxql(self, q: str, step: str, params: dict[str, Any] | None = None, db: bool = True) -> list[dict]:
        """POST /query (epoch=ns, not chunked); the results of each statement, errors raised."""
        data = {"q": q, "epoch": "ns"}
        if db:
            data["db"] = self.db
        if params:
            data["params"] = orjson.dumps(params).decode()
        try:
            resp = self._http.post(f"{self.base}/query", data=data, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise EngineError(self.name, step, f"{type(exc).__name__}: {exc}") from exc
        try:
            body = orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise EngineError(self.name, step, f"HTTP {resp.status_code}: {resp.text[:300]}") from exc
        if "error" in body:
            raise EngineError(self.name, step, body["error"])
        for result in body["results"]:
            if "error" in result:
                raise EngineError(self.name, step, result["error"])
            if result.get("partial"):
                raise EngineError(self.name, step,
                                  "the server truncated the result (max-row-limit): set [http] max-row-limit = 0")
        return body["results"]

    def _write(self, table: str, body: bytes, rows_done: int) -> None:
        """POST one batch of line protocol; retry 5xx and connection errors with exponential backoff."""
        if self.dialect == "flux":
            url, params = (f"{self.base}/api/v2/write",
                           {"org": self.org, "bucket": f"{self.db}_{table}", "precision": "ns"})
        else:
            url, params = f"{self.base}/write", {"db": self.db, "rp": table, "precision": "ns"}
        headers = {"Content-Encoding": "gzip"} if self.gzip_level else {}
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = self._http.post(url, params=params, data=body, headers=headers, timeout=self.timeout_s)
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status_code == 204:
                return
            error = f"HTTP {resp.status_code}: {resp.text[:300]}"
            if resp.status_code < 500:  # the batch itself is wrong: retrying cannot help
                break
        raise EngineError(
            self.name, f"load {table}",
            f"{rows_done:,} rows loaded before the error; write failed after {attempt + 1} attempt(s): {error}",
        )

    # -- Engine interface --

    @classmethod
    def ready(cls, dsn: str) -> None:
        """A query answered (`SHOW DATABASES`; 2.x: the buckets listed), not just /ping."""
        engine = cls(dsn, timeout_s=5)
        try:
            if engine.dialect == "flux":
                engine._flux.buckets_api().find_buckets(limit=1)
            else:
                engine._influxql("SHOW DATABASES", "ready", db=False)
        finally:
            engine.close()

    def version(self) -> str:
        try:
            resp = self._http.get(f"{self.base}/ping", timeout=10)
        except requests.RequestException as exc:
            raise EngineError(self.name, "version", f"{type(exc).__name__}: {exc}") from exc
        return f"InfluxDB {resp.headers.get('X-Influxdb-Version', 'unknown')} ({self.dialect})"

    def settings(self) -> dict[str, Any]:
        return {"api": "v2 + Flux" if self.dialect == "flux" else "v1 + InfluxQL", "batch_rows": self.batch_rows,
                "gzip_level": self.gzip_level, "retries": self.retries, "precision": "ns",
                "layout": "measurement per table in its own retention policy/bucket; "
                          "tags symbol, venue (+ seq for trades)", "server": self._server_settings()}

    def _server_settings(self) -> dict[str, Any]:
        """The server's storage settings (cache, compaction) as it reports them (v1: SHOW DIAGNOSTICS's
        config-data); a v2 server does not report its configuration over the API, and an unreachable
        one says why."""
        if self.dialect == "flux":
            return {}
        try:
            series = self._influxql("SHOW DIAGNOSTICS", "settings", db=False)[0].get("series", [])
        except EngineError as exc:  # settings describe the run; an unreachable server is reported elsewhere
            return {"unreported": str(exc)}
        data = next((dict(zip(s["columns"], s["values"][0])) for s in series if s["name"] == "config-data"), {})
        return {k: v for k, v in data.items() if k.startswith(("cache-", "compact-", "max-concurrent"))}

    def create_schema(self) -> None:
        """Recreate, empty, the per-table retention policies (v2: buckets) and forget verified loads."""
        if self.dialect == "flux":
            buckets = self._flux.buckets_api()
            for table in TABLES:
                existing = buckets.find_bucket_by_name(f"{self.db}_{table}")
                if existing:
                    buckets.delete_bucket(existing)
                buckets.create_bucket(bucket_name=f"{self.db}_{table}", org=self.org)
        else:
            self._influxql(fill(DDL["database"], {"db": self.db}), "create schema", db=False)
            for table in TABLES:  # forgotten before dropped: a run killed in between never counts as loaded
                self._forget(table)
                for block in ("drop_policy", "policy"):
                    self._influxql(fill(DDL[block], {"db": self.db, "table": table}), "create schema")
        self._ready = False

    def _forget(self, table: str) -> None:
        if self.dialect == "influxql":
            self._influxql(f"DROP SERIES FROM {LOADED} WHERE tbl = '{identifier(table)}'", f"load {table}")

    def load(self, table: str, batches: Iterable[pa.RecordBatch]) -> LoadResult:
        """Write batches as line protocol; the table counts as loaded once its point count is verified."""
        schema = TABLES[identifier(table)]
        rows = sent = bytes_in = 0  # rows: points the server took; sent: points handed to the posting thread
        sequencer = _Sequencer() if table == "trades" else None
        t0 = time.perf_counter()
        self._forget(table)
        before = self._count(table)
        # One thread posts the bodies in order, one at a time; up to POSTS_AHEAD wait for it, built and
        # compressed meanwhile (Polars and ISA-L release the GIL). After a failed post none is sent.
        pool = ThreadPoolExecutor(max_workers=1)
        pending: deque[tuple[Future, int]] = deque()
        failed = threading.Event()

        def post(body: bytes, rows_done: int) -> None:
            if failed.is_set():
                return
            try:
                self._write(table, body, rows_done)
            except BaseException:
                failed.set()
                raise

        try:
            for batch in batches:
                # Tags as categoricals (Arrow dictionaries convert as they are): checked and escaped on their
                # few values.
                frame = pl.from_arrow(pa.Table.from_batches([batch]).select(schema.names)).with_columns(
                    pl.col("ts").dt.epoch("ns"), pl.col("symbol", "venue").cast(pl.Categorical))
                if problem := self._invalid(table, frame):  # refused, never dropped; the posts before it finish
                    while pending:
                        rows += _posted(pending.popleft())
                    raise EngineError(self.name, f"load {table}", f"{rows:,} rows loaded; the next batch has {problem}")
                if sequencer is not None:
                    frame = sequencer(frame)
                for points, text in bodies(table, frame, self.batch_rows):
                    body = igzip.compress(text, self.gzip_level) if self.gzip_level else bytes(text)
                    if len(pending) == POSTS_AHEAD:
                        rows += _posted(pending.popleft())
                    pending.append((pool.submit(post, body, sent), points))
                    sent += points
                bytes_in += batch.nbytes
            while pending:
                rows += _posted(pending.popleft())
        finally:
            pool.shutdown(cancel_futures=True)
        stored = self._count(table) - before
        if stored != rows:
            raise EngineError(self.name, f"load {table}", f"sent {rows:,} points but {stored:,} more are stored "
                              "(points with the same series and time overwrite each other)")
        if self.dialect == "influxql":
            self._influxql_write_marker(table, before + rows)
        return LoadResult(table, rows, bytes_in, time.perf_counter() - t0)

    @staticmethod
    def _invalid(table: str, frame: pl.DataFrame) -> str:
        """What line protocol cannot hold in the batch (nulls, NaN/inf, backslashes/newlines in tags), or ""."""
        nulls = {c: n for c, n in zip(frame.columns, frame.null_count().row(0)) if n}
        floats = [c for c, s in FIELDS[table].items() if not s]
        bad_floats = frame.select(pl.sum_horizontal(~pl.col(floats).is_finite()).sum()).item()
        bad_tags = 0
        for tag in ("symbol", "venue"):  # searched among the distinct values; rows counted only when one is bad
            values = _distinct(frame[tag])
            if (bad := values.filter(values.str.contains(_BAD_TAG))).len():
                bad_tags += frame[tag].cast(pl.String).is_in(bad.implode()).sum()
        if nulls or bad_floats or bad_tags:
            return (f"nulls {nulls}, {bad_floats} non-finite floats and {bad_tags} symbol/venue values "
                    "with backslash or newline")
        return ""

    def _influxql_write_marker(self, table: str, rows: int) -> None:
        resp = self._http.post(f"{self.base}/write", params={"db": self.db, "precision": "ns"},
                               data=f"{LOADED},tbl={table} rows={rows}i 0".encode(), timeout=self.timeout_s)
        if resp.status_code != 204:
            raise EngineError(self.name, f"load {table}",
                              f"rows verified but the load marker was refused: HTTP {resp.status_code} "
                              f"{resp.text[:200]}")

    def _count(self, table: str) -> int:
        field = COUNTED[table]
        if self.dialect == "flux":
            flux = (f'from(bucket: "{self.db}_{table}") |> range(start: 0) |> filter(fn: (r) => r._field == "{field}")'
                    ' |> group() |> count()')
            frame = self._run_flux(flux, f"count {table}")
            return int(frame["_value"].sum()) if frame.height else 0
        results = self._influxql(f'SELECT COUNT("{field}") FROM "{table}"."{table}"', f"count {table}")
        series = results[0].get("series")
        return int(series[0]["values"][0][1]) if series else 0

    def loaded_rows(self) -> dict[str, int]:
        """Tables whose last load was verified, with their row counts (InfluxQL servers keep a marker)."""
        if self.dialect == "flux":
            return {t: n for t in TABLES if (n := self._count(t))}
        series = self._influxql(f"SELECT LAST(rows) AS rows FROM {LOADED} GROUP BY tbl",
                                "loaded tables")[0].get("series", [])
        return {s["tags"]["tbl"]: int(s["values"][0][1]) for s in series}

    def query(self, name: str, params: dict[str, Any]) -> pl.DataFrame:
        self.require_loaded(name)
        if self.dialect == "flux":
            frame = self._run_flux(render(name, params, "flux", self.db), f"query {name}").rename(
                {"_time": TIME_COLUMN[name]}, strict=False)
            return _typed(name, frame)
        results = self._influxql(render(name, params), f"query {name}", params={"symbol": params["symbol"]})
        first, *others = [_frame(name, r) for r in results]
        for other in others if first.height else ():  # an empty range has no rows to join to, and answers empty
            keys = JOINED[name]
            added = [c for c in COLUMNS[name] if c in other.columns and c not in first.columns]
            first = first.join(other.select(*keys, *added), on=keys, how="left", maintain_order="left")
        answer = _typed(name, first)
        return answer.sort(SORT_KEYS[name]) if name in ORDERED else answer

    def _run_flux(self, flux: str, step: str) -> pl.DataFrame:
        """Flux through influxdb-client, its annotated-CSV answer parsed by Polars (one block per table schema)."""
        try:
            raw = self._flux.query_api().query_raw(flux, org=self.org, dialect=_flux_dialect()).data
        except Exception as exc:
            raise EngineError(self.name, step, f"{type(exc).__name__}: {exc}") from exc
        blocks = [b for b in raw.replace(b"\r\n", b"\n").split(b"\n\n") if b.strip()]
        frames = [pl.read_csv(b, infer_schema_length=None).drop(["", "result", "table"], strict=False) for b in blocks]
        if not frames:
            return pl.DataFrame()
        frame = pl.concat(frames, how="diagonal_relaxed")
        if "_time" in frame.columns:
            frame = frame.with_columns(pl.col("_time").str.to_datetime(time_zone="UTC", time_unit="ns").dt.epoch("ns"))
        return frame

    def _shards(self, table: str, step: str) -> dict[str, dict[str, dict[str, Any]]]:
        """The table's shards (its retention policy's): shard id -> statistic (tsm1_cache, tsm1_engine,
        tsm1_filestore, tsm1_wal) -> its values, with the shard's directories under "tags"."""
        if self.dialect == "flux":
            raise EngineError(self.name, step, "not measured for 2.x servers (no per-bucket shard statistics)")
        shards: dict[str, dict[str, dict[str, Any]]] = {}
        for s in self._influxql("SHOW STATS", step, db=False)[0].get("series", []):
            tags = s.get("tags") or {}
            if tags.get("database") == self.db and tags.get("retentionPolicy") == identifier(table):
                shard = shards.setdefault(tags["id"], {"tags": tags})
                shard[s["name"]] = dict(zip(s["columns"], s["values"][0]))
        return shards

    def compact(self, table: str) -> None:
        """Wait for the server's own compaction of the table's shards (see `compaction`); an error after
        `compact_wait` seconds says what is left and which settings make the server do it sooner."""
        deadline = time.monotonic() + self.compact_wait_s
        last: dict[str, str] = {}
        settled = 0
        while time.monotonic() < deadline:
            shards = self._shards(table, f"compact {table}")
            last = {shard_id: left for shard_id, shard in shards.items() if (left := _uncompacted(shard))}
            settled = settled + 1 if shards and not last else 0
            if settled == 2:  # twice in a row: no compaction was about to start between two looks
                return
            time.sleep(0.5)
        raise EngineError(self.name, f"compact {table}", f"not compacted after {self.compact_wait_s:.0f} s: "
                          f"{'; '.join(f'shard {k}: {v}' for k, v in last.items()) or 'no shard'}; set [data] "
                          "cache-snapshot-write-cold-duration and compact-full-write-cold-duration to a few seconds "
                          "(dbbench servers up does), or a longer ?compact_wait=")

    def storage(self, table: str) -> Storage:
        """The TSM files of the table's shards (after `compact`: the WAL is empty), summed from the shard
        directories when the server is local, else the server's own file-store statistic."""
        shards = self._shards(table, f"bytes on disk {table}").values()
        dirs = [Path(s["tags"]["path"]) for s in shards if s["tags"].get("path")]
        wal = sum(s.get("tsm1_wal", {}).get(k, 0) for s in shards for k in ("currentSegmentDiskBytes",
                                                                            "oldSegmentsDiskBytes"))
        if dirs and all(d.is_dir() for d in dirs):
            return Storage(sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file()),
                           "the files in the table's shard directories: TSM files (and the series index, where it "
                           "is on disk); not the WAL", {"wal_bytes": wal})
        return Storage(sum(int(s.get("tsm1_filestore", {}).get("diskBytes", 0)) for s in shards),
                       "SHOW STATS tsm1_filestore diskBytes of the table's shards: TSM files; not the WAL",
                       {"wal_bytes": wal})

    def drop(self) -> None:
        if self.dialect == "flux":
            buckets = self._flux.buckets_api()
            for table in TABLES:
                if existing := buckets.find_bucket_by_name(f"{self.db}_{table}"):
                    buckets.delete_bucket(existing)
        else:
            self._influxql(f'DROP DATABASE "{self.db}"', "drop", db=False)
        self._ready = False

    def close(self) -> None:
        self._http.close()
        if self._flux is not None:
            self._flux.close()


def _uncompacted(shard: dict[str, dict[str, Any]]) -> str:
    """What is left to compact in one shard's statistics, or "" (cache written to TSM files, WAL empty, no
    compaction running or queued, and the files fully compacted: one file, or at least one full compaction)."""
    cache, engine = shard.get("tsm1_cache", {}), shard.get("tsm1_engine", {})
    wal, files = shard.get("tsm1_wal", {}), shard.get("tsm1_filestore", {})
    left = []
    if cache.get("memBytes", 0):
        left.append(f"{cache['memBytes']:,} bytes in the cache")
    if wal.get("currentSegmentDiskBytes", 0) + wal.get("oldSegmentsDiskBytes", 0):
        left.append("WAL not empty")
    running = sum(v for k, v in engine.items() if k.endswith(("CompactionsActive", "CompactionQueue")))
    if running:
        left.append(f"{running} compaction(s) running or queued")
    if files.get("numFiles", 0) > 1 and not engine.get("tsmFullCompactions", 0):
        left.append(f"{files['numFiles']} TSM files, no full compaction yet")
    return ", ".join(left)


def _posted(write: tuple[Future, int]) -> int:
    """Wait for a post; its points (its error, if it failed)."""
    future, points = write
    future.result()
    return points


def _flux_dialect() -> Any:
    from influxdb_client import Dialect

    return Dialect(header=True, delimiter=",", annotations=[], comment_prefix="#", date_time_format="RFC3339Nano")


def _frame(name: str, result: dict) -> pl.DataFrame:
    """One InfluxQL statement's series -> one frame, the GROUP BY tags as columns (a loop per series, not per row)."""
    frames = []
    ordered = sorted(result.get("series", []), key=lambda s: [s.get("tags", {}).get(k, "") for k in TAGS["quotes"]])
    for series in ordered:  # by (symbol, venue): the server orders series by their keys' text
        frame = pl.DataFrame(series["values"], schema=series["columns"], orient="row", strict=False,
                             infer_schema_length=None)
        tags = series.get("tags", {})
        frames.append(frame.with_columns(pl.lit(v, pl.String).alias(k) for k, v in tags.items()))
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed").rename({"time": TIME_COLUMN[name]})


def _typed(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The query's columns in order: times (ns integers) as UTC ns datetimes, counts and ids Int64, side
    Int8, the rest Float64. JSON carries no number type (a float of 100.0 comes as 100), so each column
    is converted by `exact_cast`: 100 becomes 100.0, but a count of 4.9 is an error, never 4."""
    def dtype(col: str) -> pl.DataType:
        return pl.Datetime("ns", "UTC") if col in ("ts", "minute", "second") else _TYPES.get(col, pl.Float64)

    if frame.is_empty():
        return pl.DataFrame(schema={c: dtype(c) for c in COLUMNS[name]})
    columns = []
    for col in COLUMNS[name]:
        if col in ("ts", "minute", "second"):
            columns.append(pl.from_epoch(exact_cast(frame[col], pl.Int64), time_unit="ns")
                           .dt.replace_time_zone("UTC"))
        else:
            columns.append(exact_cast(frame[col], dtype(col)))
    return pl.DataFrame(columns)
