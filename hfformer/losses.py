"""Training losses on (B, H, Q) forecasts of (B, H) scaled targets."""

from __future__ import annotations

import torch


def pinball_loss(pred: torch.Tensor, y: torch.Tensor, quantiles: list[float]) -> torch.Tensor:
    """Quantile (pinball) loss averaged over batch, horizons and quantiles.

    For quantile q and error e = y - f: q * e if e >= 0 else (q - 1) * e.
    """
    q = torch.as_tensor(quantiles, dtype=pred.dtype, device=pred.device)  # (Q,)
    err = y.unsqueeze(-1) - pred  # (B, H, Q)
    return torch.maximum(q * err, (q - 1) * err).mean()


def mse_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the median (single) output, for parity with the reference code."""
    return ((pred[..., pred.shape[-1] // 2] - y) ** 2).mean()


def loss_fn(name: str, pred: torch.Tensor, y: torch.Tensor, quantiles: list[float]) -> torch.Tensor:
    if name == "pinball":
        return pinball_loss(pred, y, quantiles)
    if name == "mse":
        return mse_loss(pred, y)
    raise ValueError(f"unknown loss {name!r}: expected 'pinball' or 'mse'")
