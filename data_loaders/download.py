"""`ticks download`: Binance's public daily archives (data.binance.vision) -> checked zips -> ticks Parquet.

Why this shape: each day's zip is fetched into the archive's own layout under DIR
(`data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.zip`, so data_loaders.binance_csv
names the symbol and market from the path), resumed with an HTTP Range request from a partial
file, and checked against the published `<zip>.CHECKSUM` (sha256) before it is used; a checksum
that does not match removes the download. The zip is then converted with the public-data CSV
reader and written atomically with its sha256 beside it; a day whose Parquet verifies is skipped,
so a rerun resumes where the last one stopped. Nothing half-written is ever left under its name.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from data_loaders import formats
from data_loaders.atomic import IntegrityError, atomic_output, partial_path, publish, sha256, verify
from data_loaders.quarantine import Quarantine, quarantine_path

BASE_URL = "https://data.binance.vision"
MARKET_DIRS = {"spot": "spot", "usdm": "futures/um", "coinm": "futures/cm"}
KINDS = ("trades", "aggTrades", "bookTicker")
PUBLISHED = {"spot": ("trades", "aggTrades")}  # Binance publishes no spot bookTicker archives


class ServerError(RuntimeError):
    """The archive server failed or sent data that does not match its checksum."""


@dataclass
class DownloadStats:
    downloaded: int = 0
    resumed: int = 0
    skipped_done: int = 0  # a verified Parquet was already there
    not_published: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    bad_lines: int = 0
    files: list[str] = field(default_factory=list)


def archive_path(market: str, kind: str, symbol: str, day: date) -> str:
    symbol = symbol.upper()
    return f"data/{MARKET_DIRS[market]}/daily/{kind}/{symbol}/{symbol}-{kind}-{day.isoformat()}.zip"


def days(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return [first + timedelta(n) for n in range((last - first).days + 1)]


def _get(url: str, headers: dict[str, str] | None = None, timeout: float = 60.0):
    """urlopen; None for a 404 (not published), ServerError for any other failure."""
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        if exc.code == 416:  # the partial file already holds every byte
            return exc
        raise ServerError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise ServerError(f"{url}: {getattr(exc, 'reason', exc)}; check --base-url and the network") from None


def _published_sha256(url: str) -> str | None:
    """The sha256 in `<zip>.CHECKSUM` (`<hex>  <name>`); None when the archive has none."""
    response = _get(url + ".CHECKSUM")
    if response is None:
        return None
    with response:
        text = response.read().decode(errors="replace").split()
    if not text or len(text[0]) != 64:
        raise ServerError(f"{url}.CHECKSUM: not a sha256 checksum line ({' '.join(text)[:80]!r})")
    return text[0].lower()


def fetch(url: str, target: Path, stats: DownloadStats) -> bool:
    """Download `url` to `target` through a resumable partial file, checked against the published
    sha256; False when the archive is not published."""
    expected = _published_sha256(url)
    partial = partial_path(target)
    have = partial.stat().st_size if partial.exists() else 0
    response = _get(url, {"Range": f"bytes={have}-"} if have else None)
    if response is None:
        if expected is not None:
            raise ServerError(f"{url}: a checksum is published but the archive is missing (HTTP 404)")
        return False
    if expected is None:
        raise ServerError(f"{url}.CHECKSUM: not published, so the archive cannot be checked")
    target.parent.mkdir(parents=True, exist_ok=True)
    with response:
        resumed = have > 0 and response.status in (206, 416)  # a 200 means the server ignored the range
        stats.resumed += resumed
        if response.status != 416:
            length, got, broke = int(response.headers.get("Content-Length", -1)), 0, False
            try:
                with open(partial, "ab" if resumed else "wb") as out:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        got += len(chunk)
            except (http.client.HTTPException, OSError):
                broke = True
            stats.bytes += got
            if broke or got < length:  # http.client may also return a short body without complaint
                raise ServerError(f"{url}: the transfer broke off after {got} of {length} bytes; "
                                  "run the same command again to resume it")
    found = sha256(partial)
    if found != expected:
        partial.unlink()
        raise ServerError(f"{url}: sha256 {found[:12]}... does not match the published {expected[:12]}...; "
                          "the download was removed: run again, and if it persists the archive is damaged")
    publish(partial, target)
    stats.downloaded += 1
    return True


def convert(archive: Path, market: str, symbol: str, kind: str) -> tuple[Path, int, int]:
    """One checked zip -> `<name>.parquet` (+ .sha256) beside it; bad rows to its quarantine file.
    Returns (path, rows, bad lines)."""
    out = archive.with_suffix(".parquet")
    try:
        with zipfile.ZipFile(archive) as z:
            damaged = z.testzip()
    except (zipfile.BadZipFile, EOFError) as exc:
        damaged = f"({exc})"
    if damaged is not None:
        archive.unlink()
        raise ValueError(f"{archive}: not a readable zip, though it matches its published checksum: the archive "
                         f"is damaged at the source ({damaged}); it was removed, nothing was converted")
    table = "quotes" if kind == "bookTicker" else "trades"
    with Quarantine(quarantine_path(out)) as quarantine:
        frame, found = formats.read(table, [archive], quarantine=quarantine, fmt="binance-csv", symbol=symbol,
                                    market=market)
        metadata = {"kind": table, "format": "binance-csv",
                    "symbol": found["symbol"], "market": found["market"], "source": kind}  # fmt: skip
        with atomic_output(out, checksum=True) as partial:
            frame.write_parquet(partial, metadata=metadata)
    return out, frame.height, quarantine.total


def download(market: str, symbol: str, first: date, last: date, out: Path, kinds: tuple[str, ...] = KINDS,
             base_url: str = BASE_URL, on_file: Callable[[str], None] | None = None) -> DownloadStats:
    """Every (kind, day) archive in the range: fetched, checked, converted; verified ones skipped."""
    if market not in MARKET_DIRS:
        raise ValueError(f"unknown market {market!r}; use one of {', '.join(MARKET_DIRS)}")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(sorted(unknown))}; use {', '.join(KINDS)}")
    stats = DownloadStats()
    for kind in kinds:
        if kind not in PUBLISHED.get(market, KINDS):
            stats.not_published.append(f"{kind} (none for {market})")
            continue
        for day in days(first, last):
            relative = archive_path(market, kind, symbol, day)
            archive = out / relative
            parquet = archive.with_suffix(".parquet")
            if on_file:
                on_file(relative)
            if parquet.exists():
                try:
                    verify(parquet)
                    stats.skipped_done += 1
                    stats.files.append(str(parquet))
                    continue
                except IntegrityError:
                    pass  # changed since: convert again
            if not archive.exists() and not fetch(f"{base_url.rstrip('/')}/{relative}", archive, stats):
                stats.not_published.append(f"{kind} {day}")
                continue
            path, rows, bad = convert(archive, market, symbol, kind)
            stats.rows += rows
            stats.bad_lines += bad
            stats.files.append(str(path))
    return stats
