"""Config, schedule, training runs (tiny, synthetic and real Binance), resume, DDP, CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from data_loaders import formats
from data_loaders.synth import generate
from hfformer.checkpoint import build_model, load_checkpoint, save_checkpoint
from hfformer.cli import app
from hfformer.config import Config, load_config, parse_override
from hfformer.data import prepare, training_rows
from hfformer.loader import WindowDataset
from hfformer.predict import Forecaster
from hfformer.train import Distributed, lr_at, subset, train, validation_loss

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = ["data.window=20", "data.horizons=[1,2,5]", "data.gap=25", "model.d_model=12", "model.n_heads=2",
        "model.d_ff=16", "batch_size=32", "max_epochs=2", "max_train_windows=256", "max_val_windows=128",
        "progress=false", "warmup_steps=4", "deterministic=true", "lstm.hidden=8", "device=cpu"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, minutes=4, seed=1)
    return out


def test_overrides_and_errors():
    cfg = load_config(overrides=["lr=3e-4", "data.horizons=[1, 5]", "device=cpu", "model.activation=gelu"])
    assert (cfg.train.lr, cfg.data.horizons, cfg.train.device, cfg.model.activation) == (3e-4, [1, 5], "cpu", "gelu")
    assert parse_override("train.max_epochs=3") == {"train": {"max_epochs": 3}}
    with pytest.raises(ValueError, match="unknown key"):
        load_config(overrides=["model.depth=3"])
    with pytest.raises(ValueError, match="section.key"):
        load_config(overrides=["dropout=0.1"])  # model.dropout and lstm.dropout
    with pytest.raises(ValueError, match="must be int"):
        load_config(overrides=["model.d_model=1.5"])
    with pytest.raises(ValueError, match="ema_decay must be in"):
        load_config(overrides=["ema_decay=1.0"])


def test_lr_warmup_then_exponential_decay():
    cfg = load_config(overrides=["warmup_steps=10", "lr=1e-3", "lr_decay=0.5"])
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(12, cfg) == pytest.approx(1e-3 * 0.25)


def test_train_writes_checkpoint_metrics_and_round_trips(synth, tmp_path):
    cfg = load_config(overrides=TINY)
    fields = train(synth, tmp_path, "hfformer", cfg)
    assert fields["epochs"] == 2 and fields["steps"] == 16
    metrics = pl.read_csv(tmp_path / "hfformer" / "metrics.csv")
    assert metrics.columns == ["epoch", "step", "train_loss", "val_loss", "lr", "windows_per_s"]
    assert metrics["epoch"].to_list() == [1, 2] and (metrics["windows_per_s"] > 0).all()
    assert not list((tmp_path / "hfformer").glob("*.tmp*"))  # atomic writes leave no temporary file
    assert (tmp_path / "config.toml").exists()
    # save/load round trip: the loaded best weights forecast exactly like the saved ones
    ckpt = load_checkpoint(tmp_path / "hfformer" / "checkpoint.pt")
    model = build_model("hfformer", cfg, len(ckpt["feature_names"]))
    model.load_state_dict(ckpt["best_state"])
    model.eval()
    prep = prepare(synth, cfg.data)
    ends = prep.ends["test"][:50]
    xb, _ = prep.dataset("test").get_batch(np.arange(50))
    with torch.no_grad():
        expected = model(xb).numpy()
    np.testing.assert_array_equal(Forecaster(tmp_path, "hfformer").forecast(prep, ends), expected)
    assert ckpt["best_val"] == pytest.approx(metrics["val_loss"].min())


def test_resume_equals_uninterrupted_training(synth, tmp_path):
    straight = train(synth, tmp_path / "a", "hfformer", load_config(overrides=TINY))
    train(synth, tmp_path / "b", "hfformer", load_config(overrides=[*TINY, "max_epochs=1"]))
    resumed = train(synth, tmp_path / "b", "hfformer", load_config(overrides=TINY), resume=True)
    assert resumed["steps"] == straight["steps"]
    a = load_checkpoint(tmp_path / "a" / "hfformer" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "hfformer" / "checkpoint.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert pl.read_csv(tmp_path / "b" / "hfformer" / "metrics.csv")["epoch"].to_list() == [1, 2]


def test_resume_of_a_checkpoint_without_the_resume_point_is_a_clear_error(synth, tmp_path):
    train(synth, tmp_path, "hfformer", load_config(overrides=[*TINY, "max_epochs=1"]))
    path = tmp_path / "hfformer" / "checkpoint.pt"
    old = load_checkpoint(path)
    del old["epoch_step"]  # as checkpoints written before val_every_steps
    save_checkpoint(old, path)
    with pytest.raises(ValueError, match="epoch_step.*cannot be resumed"):
        train(synth, tmp_path, "hfformer", load_config(overrides=TINY), resume=True)
    with pytest.raises(ValueError, match="'ema'.*without train.ema_decay"):  # EMA asked, none saved
        train(synth, tmp_path, "hfformer", load_config(overrides=[*TINY, "ema_decay=0.9"]), resume=True)


def assert_best_state_scores_best_val(data: Path, cfg: Config, ckpt: dict) -> None:
    """The kept weights, reloaded, give the validation loss recorded as the best."""
    prep = prepare(data, cfg.data)
    model = build_model("hfformer", cfg, len(ckpt["feature_names"]))
    model.load_state_dict(ckpt["best_state"])
    val = validation_loss(model, prep, subset(prep.ends["val"], cfg.train.max_val_windows), cfg,
                          torch.device("cpu"), Distributed(torch.device("cpu")))
    assert val == pytest.approx(ckpt["best_val"], rel=1e-6)


def test_val_every_steps_validates_on_schedule_and_keeps_the_best(synth, tmp_path):
    """2 epochs of 8 steps, validated every 3 steps and at the end; best_state is the best validation's."""
    cfg = load_config(overrides=[*TINY, "val_every_steps=3", "patience=100"])
    fields = train(synth, tmp_path, "hfformer", cfg)
    metrics = pl.read_csv(tmp_path / "hfformer" / "metrics.csv")
    assert metrics["step"].to_list() == [3, 6, 9, 12, 15, 16]
    assert metrics["epoch"].to_list() == [1, 1, 2, 2, 2, 2] and fields["epochs"] == 2
    ckpt = load_checkpoint(tmp_path / "hfformer" / "checkpoint.pt")
    assert ckpt["best_val"] == pytest.approx(metrics["val_loss"].min())
    assert_best_state_scores_best_val(synth, cfg, ckpt)


def test_val_every_steps_stops_early_in_validations(synth, tmp_path):
    cfg = load_config(overrides=[*TINY, "val_every_steps=1", "patience=1", "lr=0.5", "grad_clip=0"])
    fields = train(synth, tmp_path, "hfformer", cfg)
    metrics = pl.read_csv(tmp_path / "hfformer" / "metrics.csv")
    assert fields["stopped"] == "early_stopping" and fields["steps"] == metrics["step"].max() < 16
    assert metrics["step"].to_list() == list(range(1, fields["steps"] + 1))
    assert metrics["val_loss"][-1] >= metrics["val_loss"][:-1].min()  # the last one did not improve


@pytest.mark.parametrize("ema", [[], ["ema_decay=0.9"]], ids=["weights", "ema"])
def test_resume_mid_epoch_equals_uninterrupted_training(synth, tmp_path, ema):
    every = [*TINY, "val_every_steps=3", "patience=100", *ema]
    straight = train(synth, tmp_path / "a", "hfformer", load_config(overrides=every))
    train(synth, tmp_path / "b", "hfformer", load_config(overrides=[*every, "max_steps=6"]))
    assert load_checkpoint(tmp_path / "b" / "hfformer" / "checkpoint.pt")["epoch_step"] == 6
    resumed = train(synth, tmp_path / "b", "hfformer", load_config(overrides=every), resume=True)
    assert resumed["steps"] == straight["steps"] == 16
    a = load_checkpoint(tmp_path / "a" / "hfformer" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "hfformer" / "checkpoint.pt")
    for part in ("model", "best_state", *(["ema"] if ema else [])):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)
    assert a["best_val"] == b["best_val"]
    a_metrics = pl.read_csv(tmp_path / "a" / "hfformer" / "metrics.csv")
    b_metrics = pl.read_csv(tmp_path / "b" / "hfformer" / "metrics.csv")
    assert a_metrics.select("step", "val_loss").equals(b_metrics.select("step", "val_loss"))


def test_ema_averages_the_weights_and_is_what_gets_validated_and_kept(synth, tmp_path):
    """EMA after two steps is decay * w1 + (1 - decay) * w2 (the first update copies w1); the best
    validation is scored, kept and saved as the averaged weights, not the raw ones."""
    one = [*TINY, "val_every_steps=1", "patience=100", "ema_decay=0.7"]
    train(synth, tmp_path / "a", "hfformer", load_config(overrides=[*one, "max_steps=1"]))
    train(synth, tmp_path / "b", "hfformer", load_config(overrides=[*one, "max_steps=2"]))
    w1 = load_checkpoint(tmp_path / "a" / "hfformer" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "hfformer" / "checkpoint.pt")
    for key, w2 in b["model"].items():
        if w2.is_floating_point():
            torch.testing.assert_close(b["ema"][f"module.{key}"], 0.7 * w1[key] + 0.3 * w2)
    assert not torch.equal(b["ema"]["module.embed.weight"], b["model"]["embed.weight"])
    assert_best_state_scores_best_val(synth, load_config(overrides=[*one, "max_steps=2"]), b)
    best_step = pl.read_csv(tmp_path / "b" / "hfformer" / "metrics.csv").sort("val_loss")["step"][0]
    kept = w1 if best_step == 1 else {k[len("module."):]: v for k, v in b["ema"].items() if k != "n_averaged"}
    for key, value in b["best_state"].items():
        torch.testing.assert_close(value, kept[key])


def test_size_norm_train_statistics_come_from_the_training_split_only(synth, tmp_path):
    cfg = load_config(overrides=[*TINY, "data.size_norm=train"])
    prep = prepare(synth, cfg.data)
    book = pl.read_parquet(synth / "book.parquet")
    first = int(prep.ends["val"].min()) - cfg.data.window + 1  # first row any later window reads
    qty = [c for c in book.columns if "_qty_" in c]
    later = book.with_row_index().with_columns(
        [pl.when(pl.col("index") >= first).then(pl.col(c) * 9).otherwise(pl.col(c)).alias(c) for c in qty])
    later.drop("index").write_parquet(tmp_path / "book.parquet")
    changed = prepare(tmp_path / "book.parquet", cfg.data)
    assert changed.scaling.state_dict() == prep.scaling.state_dict()
    x, x_changed = prep.scaling.inputs(prep.features.x), changed.scaling.inputs(changed.features.x)
    assert not np.array_equal(x_changed[first:], x[first:])
    # the sizes in a window are the standardised logs, not z-scored again per window
    xb, _ = prep.dataset("test").get_batch(np.arange(2))
    col = prep.features.names.index("bid_qty_3")
    end = prep.ends["test"][1]
    np.testing.assert_array_equal(xb[1, :, col].numpy(), x[end - cfg.data.window + 1 : end + 1, col])
    assert abs(float(xb[:, :, col].mean())) > 1e-3  # its level survives
    with pytest.raises(ValueError, match="size_norm"):
        load_config(overrides=["data.size_norm=run"])


def test_return_norm_train_keeps_the_returns_level_and_only_them(synth):
    cfg = load_config(overrides=[*TINY, "data.return_norm=train"])
    prep = prepare(synth, cfg.data)
    names = prep.features.names
    assert [names[c] for c in prep.scaling.columns] == ["log_return"]  # sizes stay window z-scored
    rows = training_rows(prep.features.valid, prep.ends["train"])
    ret = prep.features.x[rows, names.index("log_return")].astype(np.float64)
    assert prep.scaling.mean[0] == pytest.approx(ret.mean()) and prep.scaling.std[0] == pytest.approx(ret.std())
    xb, _ = prep.dataset("test").get_batch(np.arange(2))
    col, end = names.index("log_return"), prep.ends["test"][1]
    x = prep.scaling.inputs(prep.features.x)
    np.testing.assert_array_equal(xb[1, :, col].numpy(), x[end - cfg.data.window + 1 : end + 1, col])
    both = prepare(synth, load_config(overrides=[*TINY, "data.return_norm=train", "data.size_norm=train"]).data)
    assert {names[c] for c in both.scaling.columns} == {"log_return"} | {n for n in names if "_qty_" in n}
    with pytest.raises(ValueError, match="return_norm"):
        load_config(overrides=["data.return_norm=run"])


def test_size_norm_train_forecasts_agree_on_every_path(synth, tmp_path):
    """PyTorch and the numba kernel see the same inputs; other data is scaled with the run's statistics."""
    cfg = load_config(overrides=[*TINY, "data.size_norm=train", "max_epochs=1"])
    train(synth, tmp_path, "hfformer", cfg)
    prep = prepare(synth, cfg.data)
    ckpt = load_checkpoint(tmp_path / "hfformer" / "checkpoint.pt")
    assert ckpt["scaling"] == prep.scaling.state_dict()
    ends = prep.ends["test"][:64]
    torch_fc = Forecaster(tmp_path, "hfformer").forecast(prep, ends)
    np.testing.assert_allclose(Forecaster(tmp_path, "hfformer", lean=True).forecast(prep, ends), torch_fc,
                               atol=1e-4, rtol=0)
    other_dir = tmp_path / "other"
    generate(other_dir, minutes=2, seed=5)
    other = prepare(other_dir, cfg.data)
    assert other.scaling.state_dict() != prep.scaling.state_dict()
    model = build_model("hfformer", cfg, len(ckpt["feature_names"]))
    model.load_state_dict(ckpt["best_state"])
    model.eval()
    scaling = prep.scaling
    ds = WindowDataset(scaling.inputs(other.features.x), other.y, other.ends["all"][:32], cfg.data.window,
                       scaling.zscore_mask())
    with torch.no_grad():
        expected = model(ds.get_batch(np.arange(32))[0]).numpy()
    for lean in (False, True):
        got = Forecaster(tmp_path, "hfformer", lean=lean).forecast(other, other.ends["all"][:32])
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_baselines_and_per_horizon_train(synth, tmp_path):
    assert train(synth, tmp_path, "naive", load_config(overrides=TINY))["val_loss"] > 0
    lstm = train(synth, tmp_path, "lstm", load_config(overrides=[*TINY, "max_epochs=1"]))
    assert lstm["epochs"] == 1
    per = train(synth, tmp_path, "hfformer", load_config(overrides=[*TINY, "max_epochs=1", "per_horizon=true",
                                                                    "loss=\"mse\""]), name="per_h")
    ckpt = load_checkpoint(tmp_path / "per_h" / "checkpoint.pt")
    assert sum(k.startswith("models.") for k in ckpt["model"]) > 0 and per["epochs"] == 1


def test_a_run_refuses_models_on_other_windows(synth, tmp_path):
    train(synth, tmp_path, "naive", load_config(overrides=TINY))
    with pytest.raises(ValueError, match="different \\[data\\]"):
        train(synth, tmp_path, "naive", load_config(overrides=[*TINY, "data.window=30"]))


def test_cli_train_json_and_bad_input(synth, tmp_path):
    runner = CliRunner()
    args = ["train", "--data", str(synth), "--out", str(tmp_path), "--model", "naive", "--json"]
    result = runner.invoke(app, args + [a for s in TINY for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["command"] == "hfformer train" and summary["model"] == "naive"
    bad = runner.invoke(app, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert bad.exit_code == 3 and "no such book" in bad.output


@pytest.mark.slow
def test_short_real_training_lowers_validation_loss(binance, tmp_path):
    book, _ = formats.read("book", binance["spot"], levels=10, every="100ms")
    path = tmp_path / "spot_book.parquet"
    book.write_parquet(path)
    cfg = load_config(overrides=["progress=false", "max_epochs=3", "max_train_windows=1024", "batch_size=64",
                                 "warmup_steps=10", "max_val_windows=512", "lr=3e-3", "threads=2"])
    prep = prepare(path, cfg.data)
    torch.manual_seed(cfg.train.seed)
    fresh = build_model("hfformer", cfg, prep.features.x.shape[1])
    before = validation_loss(fresh, prep, subset(prep.ends["val"], 512), cfg, torch.device("cpu"),
                             Distributed(torch.device("cpu")))
    fields = train(path, tmp_path / "run", "hfformer", cfg)
    assert fields["best_val_loss"] < 0.9 * before, (fields, before)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_train_and_resume_on_cuda(synth, tmp_path):
    cuda = [*TINY, "device=cuda", "deterministic=false"]  # later settings win
    fields = train(synth, tmp_path, "hfformer", load_config(overrides=[*cuda, "max_epochs=1"]))
    assert fields["device"].startswith("cuda")
    resumed = train(synth, tmp_path, "hfformer", load_config(overrides=cuda), resume=True)
    assert resumed["steps"] == 16 and resumed["device"].startswith("cuda")
    ckpt = load_checkpoint(tmp_path / "hfformer" / "checkpoint.pt")
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())  # loadable without a GPU
    assert pl.read_csv(tmp_path / "hfformer" / "metrics.csv")["val_loss"].is_finite().all()


def test_ddp_two_processes(synth, tmp_path):
    args = ["train", "--data", str(synth), "--out", str(tmp_path / "run"), "--json"]
    args += [a for s in [*TINY, "max_epochs=1", "threads=1"] for a in ("--set", s)]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)  # keeps the caller's
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", "-m", "hfformer.cli", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-8000:]  # the ranks' own errors come before torchrun's
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert summary["world_size"] == 2
    assert summary["steps"] == 256 // 32 // 2  # each rank takes half of every epoch's windows
