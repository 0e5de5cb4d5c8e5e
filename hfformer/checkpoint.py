"""A run's trained models on disk: RUN/<name>/checkpoint.pt written atomically, read back with its
checks, and the model it holds rebuilt. train, predict, export, evaluate and the CLI all go
through here, so a checkpoint has one reader and one writer.

A checkpoint is a dict. Every model: kind (hfformer, lstm, linear, lightgbm or naive), config (the run's resolved
settings, {section: {key: value}}), feature_names. Torch models (hfformer, lstm): model (the
latest weights), best_state (the weights that validated best, or None), scaling (the training
statistics of data.size_norm or return_norm = "train", or None) and the resume state (optimizer, rng, epoch,
step, epoch_step, best_val, bad_validations, and ema with train.ema_decay). The ridge (naive):
ridge (its arrays, as tensors) and val_loss. The linear and LightGBM baselines: tabular (their
fitted state and the validation grid they chose from).
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from data_loaders.atomic import atomic_output, verify
from data_loaders.features import TrainScaling
from hfformer.baselines import LSTMForecaster, LSTMForecasterConfig, Ridge
from hfformer.config import Config, merge, quantiles, read_run_config
from hfformer.gbm import GBMModel
from hfformer.linear import LinearModel
from hfformer.model import HFformer, HFformerConfig

TORCH_MODELS = ("hfformer", "lstm")
TABULAR = {"linear": LinearModel, "lightgbm": GBMModel}  # the quant's baselines, on hfformer/tabular.py's features


class PerHorizon(nn.Module):
    """One independent model per horizon (as the paper trained them), outputs concatenated."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.models], dim=1)  # (B, H, Q)


def build_model(kind: str, cfg: Config, n_features: int) -> nn.Module:
    """A fresh torch model of `kind` for `n_features` inputs, all horizons and quantiles of cfg."""
    qs, horizons = quantiles(cfg), list(cfg.data.horizons)

    def one(hs: list[int]) -> nn.Module:
        if kind == "hfformer":
            m = {k: v for k, v in asdict(cfg.model).items() if k != "quantiles"}
            return HFformer(HFformerConfig(n_features=n_features, window=cfg.data.window,
                                           horizons=hs, quantiles=qs, **m))
        if kind == "lstm":
            return LSTMForecaster(LSTMForecasterConfig(n_features=n_features, horizons=hs, quantiles=qs,
                                                       **asdict(cfg.lstm)))
        raise ValueError(f"unknown torch model {kind!r}: expected one of {TORCH_MODELS}")

    if cfg.train.per_horizon:
        return PerHorizon([one([h]) for h in horizons])
    return one(horizons)


def checkpoint_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / name / "checkpoint.pt"


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Atomic and checksummed: a killed run leaves the previous checkpoint, a damaged one is refused."""
    with atomic_output(path, checksum=True) as partial:
        torch.save(payload, partial)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`; a truncated, corrupted or non-finite one is a clear ValueError."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train the model first (hfformer train)")
    verify(path, remedy="train the model again")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError) as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc}); "
                         "train the model again") from exc
    if not isinstance(ckpt, dict) or "kind" not in ckpt:
        raise ValueError(f"{path}: not an hfformer checkpoint (no model kind); train the model again")
    for part in ("model", "best_state", "ridge", "tabular"):
        for name, tensor in (ckpt.get(part) or {}).items():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(f"{path}: {part}.{name} holds NaN or infinite weights; train the model again")
    return ckpt


def ridge_state(ridge: Ridge) -> dict[str, torch.Tensor]:
    """The ridge's arrays as tensors, which a weights-only checkpoint can hold."""
    return {k: torch.from_numpy(np.asarray(v)) for k, v in ridge.state_dict().items()}


@dataclass
class Trained:
    """A trained model of a run, ready to forecast: zero and oracle (no checkpoint) hold only a name,
    kind and config."""

    name: str
    kind: str
    cfg: Config  # the run's config with the checkpoint's own on top
    feature_names: list[str] | None = None  # what the model was trained on
    quantiles: list[float] = field(default_factory=lambda: [0.5])
    model: nn.Module | None = None  # torch models: eval mode, the best validated weights
    ridge: Ridge | None = None  # the naive baseline
    tabular: LinearModel | GBMModel | None = None  # the linear and LightGBM baselines
    scaling: TrainScaling | None = None  # data.size_norm or return_norm = "train": the training statistics


def load_trained(run_dir: Path, name: str) -> Trained:
    """Model `name` of RUN rebuilt from RUN/<name>/checkpoint.pt."""
    path = checkpoint_path(run_dir, name)
    ckpt = load_checkpoint(path)
    cfg = merge(read_run_config(run_dir), ckpt["config"], str(path))
    trained = Trained(name, ckpt["kind"], cfg, ckpt["feature_names"])
    if trained.kind == "naive":
        trained.ridge = Ridge(**{k: v.numpy() for k, v in ckpt["ridge"].items()})
        return trained
    if trained.kind in TABULAR:
        trained.tabular = TABULAR[trained.kind].from_state(ckpt["tabular"])
        return trained
    trained.quantiles = quantiles(cfg)
    if ckpt.get("scaling") is not None:
        trained.scaling = TrainScaling.from_state_dict(ckpt["scaling"])
    trained.model = build_model(trained.kind, cfg, len(trained.feature_names))
    trained.model.load_state_dict(ckpt["best_state"] if ckpt["best_state"] is not None else ckpt["model"])
    trained.model.eval()
    return trained
