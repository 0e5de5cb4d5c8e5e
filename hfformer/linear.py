"""`hfformer train --model linear`: ridge regression of every horizon's target on the tabular
features (per-level imbalances, spread, recent returns, trade flow: hfformer/tabular.py), fitted on
the training windows; each horizon keeps the penalty of the grid (linear.alphas) whose fit scores
best on the validation windows. The test split is never read here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hfformer.baselines import Ridge
from hfformer.config import Config
from hfformer.data import Prepared
from hfformer.tabular import TabularInputs


@dataclass
class LinearModel:
    inputs: TabularInputs
    ridge: Ridge
    alphas: np.ndarray  # (H,) the penalty each horizon kept

    def forecast(self, prep: Prepared, ends: np.ndarray) -> np.ndarray:
        """(n, H) float64 forecasts in scaled-target units."""
        return self.ridge.predict(self.inputs.design(prep, ends, "linear"))

    def state(self) -> dict[str, Any]:
        tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in self.ridge.state_dict().items()}
        return {**tensors, "alphas": torch.from_numpy(self.alphas), "lags": self.inputs.lags,
                "flow": self.inputs.flow}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LinearModel:
        ridge = Ridge(*(state[k].numpy() for k in ("mean", "std", "coef", "intercept")))
        return cls(TabularInputs(int(state["lags"]), bool(state["flow"])), ridge, state["alphas"].numpy())

    @classmethod
    def fit(cls, prep: Prepared, cfg: Config) -> tuple[LinearModel, dict[str, Any]]:
        """The model and what was chosen: per horizon, the grid's validation MSE and the penalty kept."""
        inputs, report = TabularInputs.fit(prep, cfg.linear.lags, cfg.linear.trade_flow)
        train_ends, val_ends = prep.ends["train"], prep.ends["val"]
        if train_ends.size == 0 or val_ends.size == 0:
            raise ValueError(f"too few windows: train {train_ends.size}, validation {val_ends.size}")
        X, Y = inputs.design(prep, train_ends, "linear"), prep.y[train_ends].astype(np.float64)
        Xv, Yv = inputs.design(prep, val_ends, "linear"), prep.y[val_ends].astype(np.float64)
        alphas = np.asarray(cfg.linear.alphas, dtype=np.float64)
        fits = [Ridge.fit(X, Y, a) for a in alphas]
        val_mse = np.stack([np.mean((r.predict(Xv) - Yv) ** 2, axis=0) for r in fits])  # (A, H)
        best = val_mse.argmin(axis=0)  # (H,)
        coef = np.stack([fits[a].coef[:, j] for j, a in enumerate(best)], axis=1)
        ridge = Ridge(fits[0].mean, fits[0].std, coef, fits[0].intercept)  # same standardisation for every alpha
        chosen = val_mse[best, np.arange(best.size)]
        model = cls(inputs, ridge, alphas[best])
        report.update({"train_windows": int(train_ends.size), "val_windows": int(val_ends.size),
                       "val_loss": float(chosen.mean()),
                       "grid": {"alpha": alphas.tolist(), "val_mse": val_mse.tolist()},
                       "chosen": {str(h): float(a) for h, a in zip(prep.cfg.horizons, alphas[best])}})
        return model, report
