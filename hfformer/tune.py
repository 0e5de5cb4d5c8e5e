"""`hfformer tune`: the same search budget for every neural model, judged on validation only.

A seeded random search: each trial draws a learning rate, a width and a dropout from the model's
grid (SPACES), trains into OUT/trial<k> with early stopping on validation, and is scored by its
best validation loss. The test split is never read here; the best trial's settings are written to
OUT/best.toml for `hfformer train --config` and the trials to OUT/tune.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from data_loaders.atomic import write_bytes
from hfformer.config import load_config, save_config
from hfformer.data import Data, data_label
from hfformer.train import train

# The grid each model's trials draw from: "section.key" -> values. Widths keep d_model a multiple of
# the 6 heads; the rest is shared so both models get the same kind of search.
SPACES: dict[str, dict[str, list[Any]]] = {
    "hfformer": {"train.lr": [3e-4, 1e-3, 2e-3, 5e-3], "model.d_model": [24, 36, 48],
                 "model.dropout": [0.0, 0.1, 0.2, 0.3]},
    "lstm": {"train.lr": [3e-4, 1e-3, 2e-3, 5e-3], "lstm.hidden": [32, 64, 128],
             "lstm.dropout": [0.0, 0.1, 0.2, 0.3]},
}


def draw_trials(model: str, budget: int, seed: int) -> list[dict[str, Any]]:
    """`budget` distinct settings drawn from the model's grid (all of it when the grid is smaller)."""
    if model not in SPACES:
        raise ValueError(f"tune searches {sorted(SPACES)}, not {model!r}")
    if budget < 1:
        raise ValueError(f"--budget must be >= 1, got {budget}")
    space = SPACES[model]
    grid = np.array(np.meshgrid(*(range(len(v)) for v in space.values()), indexing="ij")).reshape(len(space), -1).T
    order = np.random.default_rng(seed).permutation(len(grid))[:budget]
    return [{key: space[key][i] for key, i in zip(space, grid[k])} for k in order]


def tune(data: Data, out: Path, model: str, budget: int, config: Path | None = None,
         overrides: list[str] = (), seed: int = 0, progress=None) -> dict[str, Any]:
    """Train `budget` trials of `model` (each: the config file and overrides, then the trial's
    draw) and keep the one with the lowest validation loss."""
    started = time.perf_counter()
    out = Path(out)
    trials = []
    for k, settings in enumerate(draw_trials(model, budget, seed)):
        drawn = [f"{key}={value!r}" for key, value in settings.items()]
        if progress:
            progress(f"trial {k + 1}/{budget}: {' '.join(drawn)}")
        fields = train(data, out / f"trial{k}", model, load_config(config, [*overrides, *drawn]))
        trials.append({"trial": k, "settings": settings, "val_loss": float(fields["best_val_loss"]),
                       "run": str(out / f"trial{k}")})
    best = min(trials, key=lambda t: t["val_loss"])
    save_config(load_config(config, [*overrides, *(f"{k}={v!r}" for k, v in best["settings"].items())]),
                out / "best.toml")
    summary = {"data": data_label(data), "out": str(out), "model": model, "budget": budget, "seed": seed,
               "chosen_on": "validation loss", "best": best}
    write_bytes(out / "tune.json", orjson.dumps({**summary, "trials": trials}, option=orjson.OPT_INDENT_2))
    return {**summary, "seconds": round(time.perf_counter() - started, 1)}
