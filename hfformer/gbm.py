"""`hfformer train --model lightgbm`: gradient-boosted trees (LightGBM, L2 loss) on the same tabular
features as the linear model (hfformer/tabular.py), one booster per horizon. Every (num_leaves,
min_data_in_leaf) pair of the grid trains on the training windows with early stopping on the
validation windows; each horizon keeps the booster with the lowest validation loss, cut at its best
round. The test split is never read here."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from hfformer.config import Config
from hfformer.data import Prepared
from hfformer.tabular import TabularInputs


@dataclass
class GBMModel:
    inputs: TabularInputs
    boosters: list[str]  # one LightGBM model text per horizon (Booster.model_to_string)

    def forecast(self, prep: Prepared, ends: np.ndarray) -> np.ndarray:
        """(n, H) float64 forecasts in scaled-target units."""
        import lightgbm as lgb

        X = self.inputs.design(prep, ends, "lightgbm")
        return np.column_stack([lgb.Booster(model_str=text).predict(X) for text in self.boosters])

    def state(self) -> dict[str, Any]:
        return {"boosters": list(self.boosters), "lags": self.inputs.lags, "flow": self.inputs.flow}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GBMModel:
        return cls(TabularInputs(int(state["lags"]), bool(state["flow"])), list(state["boosters"]))

    @classmethod
    def fit(cls, prep: Prepared, cfg: Config) -> tuple[GBMModel, dict[str, Any]]:
        """The model and what was chosen: per horizon and grid point, the validation MSE and best round."""
        import lightgbm as lgb

        g = cfg.lightgbm
        inputs, report = TabularInputs.fit(prep, g.lags, g.trade_flow)
        train_ends, val_ends = prep.ends["train"], prep.ends["val"]
        if train_ends.size == 0 or val_ends.size == 0:
            raise ValueError(f"too few windows: train {train_ends.size}, validation {val_ends.size}")
        X, Xv = inputs.design(prep, train_ends, "lightgbm"), inputs.design(prep, val_ends, "lightgbm")
        grid = list(product(g.num_leaves, g.min_data_in_leaf))
        base = {"objective": "regression", "metric": "l2", "learning_rate": g.learning_rate,
                "feature_fraction": g.feature_fraction, "seed": cfg.train.seed, "deterministic": True,
                "force_col_wise": True, "verbosity": -1, "num_threads": g.num_threads}
        boosters, scores, rounds, chosen = [], [], [], {}
        for j, h in enumerate(prep.cfg.horizons):
            train_set = lgb.Dataset(X, prep.y[train_ends, j], free_raw_data=False)
            val_set = lgb.Dataset(Xv, prep.y[val_ends, j], reference=train_set)
            fitted = []
            for leaves, min_leaf in grid:
                booster = lgb.train({**base, "num_leaves": leaves, "min_data_in_leaf": min_leaf}, train_set,
                                    num_boost_round=g.max_rounds, valid_sets=[val_set], valid_names=["val"],
                                    callbacks=[lgb.early_stopping(g.early_stopping, verbose=False)])
                fitted.append((booster.best_score["val"]["l2"], booster.best_iteration, booster))
            best = min(range(len(grid)), key=lambda k: fitted[k][0])
            boosters.append(fitted[best][2].model_to_string(num_iteration=fitted[best][1]))
            scores.append([f[0] for f in fitted])
            rounds.append([f[1] for f in fitted])
            chosen[str(h)] = {"num_leaves": grid[best][0], "min_data_in_leaf": grid[best][1],
                              "rounds": fitted[best][1]}
        val_mse = np.asarray(scores)  # (H, G)
        report.update({"train_windows": int(train_ends.size), "val_windows": int(val_ends.size),
                       "val_loss": float(val_mse.min(axis=1).mean()),
                       "grid": {"num_leaves, min_data_in_leaf": [list(p) for p in grid], "val_mse": val_mse.tolist(),
                                "best_round": rounds},
                       "chosen": chosen})
        return cls(inputs, boosters), report
