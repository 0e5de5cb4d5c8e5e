"""Train one model of a run: `hfformer train --data PATH --out RUN --model hfformer|lstm|linear|lightgbm|naive`.

AdamW with linear warm-up then exponential decay per step, gradient clipping, early stopping on
validation loss (checked once per epoch, or every train.val_every_steps optimiser steps, to keep a
mid-epoch best), an atomic checkpoint at every validation, and --resume, which continues from the
checkpoint's step, mid-epoch if need be. With train.ema_decay, an exponential moving average of
the weights is what gets validated and kept: on targets this noisy it moves less from step to step.
Multi-process data parallel under torchrun (gloo on CPU, NCCL on CUDA): each rank takes every
world-th window of the epoch's order.

RUN layout: RUN/config.toml (resolved config), RUN/<name>/checkpoint.pt, RUN/<name>/metrics.csv.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from hfformer import kernels
from hfformer.baselines import Ridge, ridge_design
from hfformer.checkpoint import TABULAR, build_model, load_checkpoint, ridge_state, save_checkpoint
from hfformer.config import Config, quantiles, read_run_config, save_config
from hfformer.data import Data, Prepared, data_label, prepare
from hfformer.losses import loss_fn
from hfformer.protocol import check_splits

MODELS = ("hfformer", "lstm", "linear", "lightgbm", "naive")
METRICS_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "lr", "windows_per_s"]


def lr_at(step: int, cfg: Config) -> float:
    """Linear warm-up over warmup_steps, then exponential decay by lr_decay per step."""
    t = cfg.train
    warm = min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps > 0 else 1.0
    return t.lr * warm * t.lr_decay ** max(0, step - t.warmup_steps)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but CUDA is not available")
    return torch.device(name)


def subset(ends: np.ndarray, limit: int) -> np.ndarray:
    """An evenly spaced subset of at most `limit` items (all when limit is 0)."""
    if limit <= 0 or ends.size <= limit:
        return ends
    return ends[np.linspace(0, ends.size - 1, limit).round().astype(np.int64)]


def set_seed(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def check_run_config(run: Path, cfg: Config) -> None:
    """All models of a run must share the data config (same windows); write it on first use."""
    path = run / "config.toml"
    if path.exists():
        previous = read_run_config(run)
        if previous.data != cfg.data:
            raise ValueError(f"{path} has a different [data] section; models of one run must share "
                             f"features, horizons and split: use another --out")
    run.mkdir(parents=True, exist_ok=True)
    save_config(cfg, path)


class Distributed:
    """Rank and world size under torchrun (WORLD_SIZE set); a single process otherwise."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


@torch.no_grad()
def validation_loss(model: nn.Module, prep: Prepared, ends: np.ndarray, cfg: Config,
                    device: torch.device, ddp: Distributed) -> float:
    model.eval()
    ds = prep.dataset("val")
    order = np.searchsorted(prep.ends["val"], ends)[ddp.rank :: ddp.world]
    total, count = 0.0, 0
    for i in range(0, order.size, cfg.train.batch_size):
        xb, yb = ds.get_batch(order[i : i + cfg.train.batch_size])
        pred = model(xb.to(device))
        total += loss_fn(cfg.train.loss, pred, yb.to(device), quantiles(cfg)).item() * len(xb)
        count += len(xb)
    total, count = ddp.sum([total, count], device)
    model.train()
    return total / max(count, 1)


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def tensorboard_writer(directory: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(directory))


def train_ridge(prep: Prepared, cfg: Config, out: Path) -> dict[str, Any]:
    """The naive ridge baseline: closed form on the training windows, scored on validation."""
    lags = cfg.ridge.lags
    if cfg.data.window < lags:
        raise ValueError(f"ridge.lags ({lags}) must not exceed data.window ({cfg.data.window})")
    train_ends, val_ends = prep.ends["train"], prep.ends["val"]
    ridge = Ridge.fit(ridge_design(prep.features, train_ends, lags), prep.y[train_ends], cfg.ridge.alpha)
    val = ridge.predict(ridge_design(prep.features, val_ends, lags))
    val_loss = float(np.mean((val - prep.y[val_ends]) ** 2))
    save_checkpoint({"kind": "naive", "config": cfg.to_dict(), "ridge": ridge_state(ridge),
                     "feature_names": prep.features.names, "val_loss": val_loss}, out / "checkpoint.pt")
    append_metrics(out / "metrics.csv", {"epoch": 1, "step": 1, "train_loss": float("nan"),
                                         "val_loss": val_loss, "lr": 0.0, "windows_per_s": float("nan")})
    return {"train_windows": int(train_ends.size), "val_windows": int(val_ends.size), "val_loss": val_loss}


def train_tabular(prep: Prepared, cfg: Config, kind: str, out: Path) -> dict[str, Any]:
    """A linear or LightGBM baseline: fitted on train, its grid chosen on validation, saved with what was chosen."""
    model, report = TABULAR[kind].fit(prep, cfg)
    save_checkpoint({"kind": kind, "config": cfg.to_dict(), "feature_names": prep.features.names,
                     "tabular": model.state(), **report}, out / "checkpoint.pt")
    append_metrics(out / "metrics.csv", {"epoch": 1, "step": 1, "train_loss": float("nan"),
                                         "val_loss": report["val_loss"], "lr": 0.0, "windows_per_s": float("nan")})
    return {k: report[k] for k in ("train_windows", "val_windows", "val_loss", "trade_flow", "chosen")}


def train(data: Data, out: Path, kind: str, cfg: Config, name: str | None = None,
          resume: bool = False) -> dict[str, Any]:
    """Train `kind` on `data` into RUN=out; returns the summary fields."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}: expected one of {MODELS}")
    out, name = Path(out), name or kind
    device = pick_device(cfg.train.device)
    if device.type == "cuda" and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > torch.cuda.device_count():
        raise RuntimeError(f"torchrun started {os.environ['LOCAL_WORLD_SIZE']} processes on this machine "
                           f"but {torch.cuda.device_count()} GPU(s) are visible: one process per GPU "
                           "(--nproc_per_node), or train.device=cpu for gloo on CPU")
    ddp = Distributed(device)
    if ddp.world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    try:
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        set_seed(cfg.train.seed, cfg.train.deterministic)
        started = time.perf_counter()
        prep = prepare(data, cfg.data)
        model_dir = out / name
        if ddp.main:
            check_run_config(out, cfg)
            check_splits(out, prep)
            model_dir.mkdir(parents=True, exist_ok=True)
            if not resume:
                (model_dir / "metrics.csv").unlink(missing_ok=True)
        fields = {"data": data_label(data), "out": str(model_dir), "model": kind, "rows": prep.features.report["rows"],
                  "valid_rows": prep.features.report["valid"]}
        if kind == "naive":
            if ddp.main:
                fields.update(train_ridge(prep, cfg, model_dir))
            return {**fields, "seconds": round(time.perf_counter() - started, 3)}
        if kind in TABULAR:
            if ddp.main:
                fields.update(train_tabular(prep, cfg, kind, model_dir))
            return {**fields, "seconds": round(time.perf_counter() - started, 3)}
        # Under torchrun the CPU kernels stay off: with them, one CI run of the two-process test saw
        # a rank abort (SIGABRT; not reproduced in twenty isolated runs, cause not found).
        with kernels.plain_torch() if ddp.world > 1 else contextlib.nullcontext():
            fields.update(train_torch(prep, cfg, kind, model_dir, device, ddp, resume))
        ddp.barrier()  # no rank tears its connections down while another still writes or reduces
        return {**fields, "device": str(device), "world_size": ddp.world,
                "seconds": round(time.perf_counter() - started, 3)}
    finally:
        ddp.close()


def train_torch(prep: Prepared, cfg: Config, kind: str, model_dir: Path, device: torch.device,
                ddp: Distributed, resume: bool) -> dict[str, Any]:
    t = cfg.train
    model = build_model(kind, cfg, prep.features.x.shape[1]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True)
           if t.ema_decay > 0 else None)
    scored = model if ema is None else ema.module  # the weights validated, kept as best and saved
    ckpt_path = model_dir / "checkpoint.pt"
    # epoch: completed epochs; epoch_step: batches done in the epoch in progress (resume point)
    state = {"epoch": 0, "step": 0, "epoch_step": 0, "best_val": math.inf, "bad_validations": 0,
             "best_state": None}
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        missing = [k for k in (*state, *([] if ema is None else ["ema"])) if k not in ckpt]
        if missing:
            raise ValueError(f"{ckpt_path} has no {missing}: written by an older version (or without "
                             "train.ema_decay), it cannot be resumed (train afresh, or keep it for "
                             "evaluate/predict)")
        state = {k: ckpt[k] for k in state}
        torch.set_rng_state(ckpt["rng"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
    wrapped = nn.parallel.DistributedDataParallel(model) if ddp.world > 1 else model
    if t.compile:
        wrapped = torch.compile(wrapped)
    ds = prep.dataset("train")
    train_idx = np.searchsorted(prep.ends["train"], subset(prep.ends["train"], t.max_train_windows))
    val_ends = subset(prep.ends["val"], t.max_val_windows)
    if train_idx.size < t.batch_size * ddp.world or val_ends.size == 0:
        raise ValueError(f"too few windows: train {train_idx.size} (need >= batch_size x world = "
                         f"{t.batch_size * ddp.world}), validation {val_ends.size}")
    tb = tensorboard_writer(model_dir / "tensorboard") if ddp.main else None
    qs = quantiles(cfg)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[wps]:,.0f} windows/s"),
                        TimeElapsedColumn(), disable=not (t.progress and ddp.main), transient=True)

    def validate(epoch: int, loss_sum: float, seen: int, tic: float) -> dict[str, Any]:
        """Validation loss, best weights, patience count, metrics row and an atomic checkpoint."""
        train_loss, count = ddp.sum([loss_sum, seen], device)
        wps = count / (time.perf_counter() - tic)
        val_loss = validation_loss(wrapped if ema is None else scored, prep, val_ends, cfg, device, ddp)
        if val_loss < state["best_val"]:
            state["best_val"], state["bad_validations"] = val_loss, 0
            state["best_state"] = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
        else:
            state["bad_validations"] += 1
        row = {"epoch": epoch, "step": state["step"], "train_loss": train_loss / max(count, 1),
               "val_loss": val_loss, "lr": lr_at(state["step"], cfg), "windows_per_s": wps}
        if ddp.main:
            append_metrics(model_dir / "metrics.csv", row)
            if tb is not None:
                for key in ("train_loss", "val_loss", "lr", "windows_per_s"):
                    tb.add_scalar(key, row[key], state["step"])
            save_checkpoint({
                "kind": kind, "config": cfg.to_dict(), "feature_names": prep.features.names,
                "scaling": None if prep.scaling is None else prep.scaling.state_dict(),
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), **state,
                **({} if ema is None else {"ema": ema.state_dict()}),
            }, ckpt_path)
        return row

    stopped, row = "max_epochs", None
    loss_sum, seen, tic = 0.0, 0, time.perf_counter()  # training loss and speed since the last validation
    model.train()
    with progress:
        while state["epoch"] < t.max_epochs and stopped == "max_epochs":
            epoch = state["epoch"] + 1
            order = np.random.default_rng([t.seed, epoch]).permutation(train_idx)
            batches = order.size // ddp.world // t.batch_size
            mine = order[ddp.rank :: ddp.world][: batches * t.batch_size]
            task = progress.add_task(f"{model_dir.name} epoch {epoch}", total=batches,
                                     completed=state["epoch_step"], loss=float("nan"), wps=0.0)
            while state["epoch_step"] < batches:
                i = state["epoch_step"] * t.batch_size
                xb, yb = ds.get_batch(mine[i : i + t.batch_size])
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(state["step"], cfg)
                loss = loss_fn(t.loss, wrapped(xb), yb, qs)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if t.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(model)
                state["step"] += 1
                state["epoch_step"] += 1
                loss_sum += loss.item() * len(xb)
                seen += len(xb)
                progress.update(task, advance=1, loss=loss_sum / seen,
                                wps=seen * ddp.world / (time.perf_counter() - tic))
                at_max_steps = bool(t.max_steps) and state["step"] >= t.max_steps
                if state["epoch_step"] == batches:  # epoch complete: a resume starts the next one
                    state["epoch"], state["epoch_step"] = epoch, 0
                end_of_epoch = state["epoch_step"] == 0
                due = (state["step"] % t.val_every_steps == 0 if t.val_every_steps
                       else end_of_epoch)
                last = at_max_steps or (end_of_epoch and state["epoch"] == t.max_epochs)
                if due or last:
                    row = validate(epoch, loss_sum, seen, tic)
                    loss_sum, seen, tic = 0.0, 0, time.perf_counter()
                    if state["bad_validations"] >= t.patience:
                        stopped = "early_stopping"
                        break
                if at_max_steps:
                    stopped = "max_steps"
                    break
                if end_of_epoch:
                    break
    if tb is not None:
        tb.close()
    return {"epochs": state["epoch"] + (state["epoch_step"] > 0), "steps": state["step"],
            "train_windows": int(train_idx.size), "val_windows": int(val_ends.size), "best_val_loss": state["best_val"],
            "last_windows_per_s": round(row["windows_per_s"], 1) if row else 0.0,
            "stopped": stopped}
