"""Baselines HFformer must beat: the published LSTM, a zero-return forecast, and a ridge
regression on the last returns and the order-book imbalance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from data_loaders.features import Features
from hfformer.config import LSTMConfig
from hfformer.model import QuantileHead


@dataclass(kw_only=True)
class LSTMForecasterConfig(LSTMConfig):
    """The [lstm] settings (declared with their defaults in hfformer/default.toml) and the shapes
    the data and run fix."""

    n_features: int
    horizons: list[int]
    quantiles: list[float]


class LSTMForecaster(nn.Module):
    """As published: Linear(F->64), PReLU, 2-layer LSTM(64), the final hidden states of both
    layers concatenated (128), dropout 0.2, Linear(128 -> H*Q) with non-crossing quantiles."""

    def __init__(self, config: LSTMForecasterConfig):
        super().__init__()
        self.config = config
        self.H, self.Q = len(config.horizons), len(config.quantiles)
        self.embed = nn.Linear(config.n_features, config.hidden)
        self.act = nn.PReLU()
        self.lstm = nn.LSTM(config.hidden, config.hidden, config.layers, batch_first=True)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden * config.layers, self.H * self.Q)
        self.head = QuantileHead(config.quantiles)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, F) -> (B, H, Q)
        B = x.shape[0]
        _, (h_n, _) = self.lstm(self.act(self.embed(x)))  # h_n: (layers, B, hidden)
        h = self.drop(h_n.transpose(0, 1).reshape(B, -1))  # (B, layers*hidden)
        return self.head(self.out(h).view(B, self.H, self.Q))


def ridge_design(features: Features, ends: np.ndarray, lags: int) -> np.ndarray:
    """(n, lags + 2) float64: log returns (in the features' unit; the fit standardises them) at rows
    end, end-1, ..., end-lags+1, then the level-1 and whole-book size imbalances
    (bid - ask) / (bid + ask) at the end row."""
    names = features.names
    x = features.x
    ret = x[ends[:, None] - np.arange(lags)[None, :], names.index("log_return")].astype(np.float64)
    bid = [i for i, n in enumerate(names) if n.startswith("bid_qty_")]
    ask = [i for i, n in enumerate(names) if n.startswith("ask_qty_")]
    b1, a1 = x[ends, names.index("bid_qty_1")], x[ends, names.index("ask_qty_1")]
    bs, as_ = x[ends][:, bid].sum(axis=1), x[ends][:, ask].sum(axis=1)
    imb1 = (b1 - a1) / (b1 + a1)
    imb = (bs - as_) / (bs + as_)
    return np.column_stack([ret, imb1, imb]).astype(np.float64)


@dataclass
class Ridge:
    """Ridge regression of every horizon's target on standardised inputs (closed form)."""

    mean: np.ndarray  # (P,)
    std: np.ndarray  # (P,)
    coef: np.ndarray  # (P, H)
    intercept: np.ndarray  # (H,)

    @classmethod
    def fit(cls, X: np.ndarray, Y: np.ndarray, alpha: float) -> Ridge:
        mean, std = X.mean(axis=0), X.std(axis=0) + 1e-12
        Z = (X - mean) / std
        y_mean = Y.mean(axis=0)
        coef = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ (Y - y_mean))
        return cls(mean, std, coef, y_mean)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.std) @ self.coef + self.intercept  # (n, H)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "std": self.std, "coef": self.coef, "intercept": self.intercept}
