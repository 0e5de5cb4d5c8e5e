"""HFformer training speed (the synthetic-market quality target is benchmarks/bench_oracle.py).

    python benchmarks/bench_training.py speed [--threads 2] [--steps 20] [--device cuda]
        windows/s of full training steps (z-scored batch gather, forward, pinball loss, backward,
        clipping, AdamW) at the default size and batch 256, HFformer (spiking and ReLU) and LSTM;
        hfformer_spiking_torch is the same step on plain PyTorch ops (SDPA attention, matmul
        LIF) instead of hfformer/kernels.py;
    python -m pytest benchmarks/bench_training.py --benchmark-only     (the speed part)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from data_loaders.synth import generate
from hfformer import kernels
from hfformer.checkpoint import build_model
from hfformer.config import load_config
from hfformer.data import prepare
from hfformer.losses import pinball_loss

QS = [0.1, 0.5, 0.9]


def step_runner(kind: str, spiking: bool, data: Path, batch: int = 256, compiled: bool = False,
                device: str = "cpu"):
    """A closure doing one training step on the next batch of real (synthetic) windows."""
    cfg = load_config(overrides=[f"model.activation={'spiking' if spiking else 'relu'}"])
    prep = prepare(data, cfg.data)
    ds = prep.dataset("train")
    torch.manual_seed(0)
    model = build_model(kind, cfg, prep.features.x.shape[1]).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    forward = torch.compile(model) if compiled else model
    order = np.random.default_rng(0).permutation(len(ds))
    state = {"i": 0}

    def step() -> None:
        i = state["i"] % (len(ds) - batch)
        state["i"] += batch
        xb, yb = ds.get_batch(order[i : i + batch])
        loss = pinball_loss(forward(xb.to(device)), yb.to(device), QS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(out, minutes=30, seed=0)
    return out


@pytest.mark.parametrize("kind,spiking", [("hfformer", True), ("hfformer", False), ("lstm", True)])
def test_training_step(benchmark, synth, kind, spiking):
    torch.set_num_threads(2)
    step = step_runner(kind, spiking, synth)
    step()
    benchmark.extra_info["windows"] = 256
    benchmark.pedantic(step, rounds=5, iterations=1)


def speed(threads: int, steps: int, compiled: bool = False, device: str = "cpu") -> dict:
    torch.set_num_threads(threads)
    result = {"threads": threads, "batch": 256, "device": device, "windows_per_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), minutes=30, seed=0)
        variants = [("hfformer", True, False, False), ("hfformer", True, False, True),
                    ("hfformer", False, False, False), ("lstm", True, False, False)]
        for kind, spiking, comp, plain in variants + [("hfformer", True, True, False)] * compiled:
            step = step_runner(kind, spiking, Path(tmp), compiled=comp, device=device)
            with kernels.plain_torch() if plain else contextlib.nullcontext():
                for _ in range(2):
                    step()
                if device == "cuda":
                    torch.cuda.synchronize()
                tic = time.perf_counter()
                for _ in range(steps):
                    step()
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - tic
            name = (kind + ("" if kind == "lstm" else ("_spiking" if spiking else "_relu"))
                    + "_compiled" * comp + "_torch" * plain)
            result["windows_per_s"][name] = round(steps * 256 / seconds)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["speed"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compiled", action="store_true", help="also time torch.compile (speed)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    print(json.dumps(speed(args.threads, args.steps, args.compiled, args.device), indent=1))
