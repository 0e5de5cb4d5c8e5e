import os
from pathlib import Path

import pytest

from data_loaders.paths import binance_recordings

os.environ.setdefault("PYKX_UNLICENSED", "true")


@pytest.fixture(scope="session")
def binance() -> dict[str, list[Path]]:
    """Real recordings from ../shared/data/binance: {"spot": [file, file], "usdm": [file]}."""
    groups = binance_recordings()
    if set(groups) != {"spot", "usdm"}:
        pytest.skip("real Binance recordings not found under ../shared/data/binance (set HFT_SHARED_DATA)")
    return groups
