"""Where the shared real recordings live: ../shared/data next to the checkout, or $HFT_SHARED_DATA."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("HFT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def binance_recordings() -> dict[str, list[Path]]:
    """The real Binance recordings, grouped into continuous recordings (files in order); empty if absent."""
    root = shared_data_dir() / "binance"
    groups = {
        "spot": [root / "spot_btcusdt_20240808.gz", root / "spot_btcusdt_20240809.gz"],
        "usdm": [root / "usdm_btcusdt_20240808.gz"],
    }
    return {name: files for name, files in groups.items() if all(f.exists() for f in files)}


def nexo_recording() -> list[Path]:
    """34 hours of spot NEXOUSDT in three files (a thin, large-tick altcoin: long, but not BTC); empty if absent."""
    files = [shared_data_dir() / "binance" / f"spot_nexousdt_2024072{day}.gz" for day in (3, 4, 5)]
    return files if all(f.exists() for f in files) else []
