"""Evaluation: metric definitions, same windows for every model, CIs, determinism, forecast frames."""

import json
import shutil

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from data_loaders.synth import generate
from hfformer.cli import app
from hfformer.config import load_config
from hfformer.evaluate import (
    evaluate,
    metrics_from_sums,
    oracle_frac_from_sums,
    oracle_stats,
    sample_stats,
)
from hfformer.predict import forecast_frame, predict
from hfformer.train import train

torch.set_num_threads(1)
TINY = ["data.window=20", "data.horizons=[1,2,5]", "data.gap=25", "model.d_model=12", "model.n_heads=2",
        "model.d_ff=16", "batch_size=32", "max_epochs=1", "max_train_windows=256", "max_val_windows=128",
        "progress=false", "lstm.hidden=8"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = tmp_path_factory.mktemp("synth")
    generate(data, minutes=4, seed=2)
    out = tmp_path_factory.mktemp("run")
    for kind in ("hfformer", "lstm", "naive"):
        train(data, out, kind, load_config(overrides=TINY))
    return out, data


def test_metrics_hand_case():
    y = np.array([[1.0], [-1.0], [2.0], [0.0]])
    fc = np.array([[[0.0, 1.0, 2.0]], [[-2.0, 1.0, 3.0]], [[0.0, 0.0, 1.0]], [[-1.0, 0.0, 1.0]]])
    m = metrics_from_sums(sample_stats(y, fc, [0.1, 0.5, 0.9]).sum(axis=0))
    assert m["sign_acc"][0] == pytest.approx((1 + 0 + 0.5) / 3)  # y == 0 skipped, f == 0 is a half
    assert m["mse"][0] == pytest.approx((0 + 4 + 4 + 0) / 4)
    assert m["r2"][0] == pytest.approx(1 - 8 / np.sum((y - y.mean()) ** 2))
    assert m["coverage80"][0] == pytest.approx(3 / 4)  # y=2 lies above [0, 1]


def test_oracle_frac_hand_case():
    fc = np.array([[[0.0, 1.0, 2.0]], [[-2.0, -1.0, 3.0]], [[0.0, 2.0, 4.0]]])  # medians 1, -1, 2
    o = np.array([[0.0], [-1.0], [4.0]])
    frac = oracle_frac_from_sums(oracle_stats(fc, [0.1, 0.5, 0.9], o).sum(axis=0))
    assert frac[0] == pytest.approx(1 - (1 + 0 + 4) / np.sum((o - o.mean()) ** 2))


def test_both_oracle_fractions_estimate_the_same_thing_and_the_direct_one_is_sharper():
    """f = o + error (variance 0.25), y = o + unpredictable noise (variance 9): the fraction is 0.75."""
    rng = np.random.default_rng(0)
    realised, direct = [], []
    for _ in range(40):
        o = rng.standard_normal((4000, 1))
        y, f = o + 3 * rng.standard_normal(o.shape), o + 0.5 * rng.standard_normal(o.shape)
        fc = f[:, :, None]
        r2 = [metrics_from_sums(sample_stats(y, g, [0.5]).sum(axis=0))["r2"][0] for g in (fc, o[:, :, None])]
        realised.append(r2[0] / r2[1])
        direct.append(oracle_frac_from_sums(oracle_stats(fc, [0.5], o).sum(axis=0))[0])
    assert np.mean(direct) == pytest.approx(0.75, abs=0.01)
    assert np.mean(realised) == pytest.approx(0.75, abs=0.05)
    assert np.std(direct) < np.std(realised) / 3


def test_evaluate_every_model_on_the_same_windows(run):
    out, data = run
    r = evaluate(out, data, n_boot=50)
    assert r["models"] == ["hfformer", "lstm", "naive", "zero", "oracle"]
    table = pl.read_csv(out / "evaluation.csv")
    assert table.height == 5 * 3 and table["windows"].n_unique() == 1
    for m in ("sign_acc", "r2", "mse", "pinball", "r2_oracle_frac", "oracle_frac"):
        ok = table.filter(pl.col(f"{m}_lo").is_not_nan())
        assert ((ok[f"{m}_lo"] <= ok[m] + 1e-9) & (ok[m] <= ok[f"{m}_hi"] + 1e-9)).all(), m
    oracle = table.filter(pl.col("model") == "oracle")
    assert (oracle["r2_oracle_frac"] == 1.0).all() and (oracle["r2"] > 0.02).all()
    assert (oracle["oracle_frac"] == 1.0).all()
    zero = table.filter(pl.col("model") == "zero")
    assert (zero["sign_acc"] == 0.5).all() and zero["coverage80"].is_nan().all()
    stamps = [pl.read_parquet(out / "forecasts" / f"{m}.parquet")["ts"] for m in r["models"]]
    assert all(s.equals(stamps[0]) for s in stamps)
    saved = json.loads((out / "evaluation.json").read_text())
    assert len(saved["metrics"]) == 15 and saved["windows"] == r["windows"]
    again = evaluate(out, data, n_boot=50, write_forecasts=False)["table"]
    assert again.equals(r["table"])  # deterministic: same forecasts, same bootstrap draws


def test_forecast_frame_contract(run):
    out, data = run
    f = forecast_frame(out, "hfformer", data)
    assert f.columns[:6] == ["ts", "price", "bid_px_1", "ask_px_1", "ask_qty_1", "bid_qty_1"]
    assert {"y_h5", "f_h5_q10", "f_h5_q50", "f_h5_q90"} <= set(f.columns)
    assert (f["f_h5_q10"] <= f["f_h5_q50"]).all() and (f["f_h5_q50"] <= f["f_h5_q90"]).all()
    naive = forecast_frame(out, "naive", data)
    assert "f_h5_q50" in naive.columns and "f_h5_q10" not in naive.columns
    assert naive["ts"].equals(f["ts"]) and f["ts"].is_sorted()


def test_predict_streams_every_valid_window(run, tmp_path):
    out, data = run
    fields = predict(out, data, tmp_path / "f.parquet", chunk=500)
    f = pl.read_parquet(tmp_path / "f.parquet")
    assert f.height == fields["forecasts"] == fields["rows"] - 20  # first row has no lagged return
    assert f["ts"].is_sorted() and "y_h1" not in f.columns and f["f_h1_q50"].is_finite().all()
    result = CliRunner().invoke(app, ["predict", str(out), "--data", str(data), "--out",
                                      str(tmp_path / "g.parquet"), "--model", "lstm", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["forecasts"] == f.height


def test_cli_evaluate_prints_the_table(run):
    out, data = run
    result = CliRunner().invoke(app, ["evaluate", str(out), "--data", str(data), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert "oracle" in result.output and "hfformer evaluate:" in result.output
    # 4 minutes of data: the table comes with what the data is and the warning that it is too little
    assert "data: BTCUSDT synthetic" in result.output
    assert "too little data to tell models apart: train:" in result.output
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["market"].startswith("BTCUSDT synthetic") and len(saved["too_little_data"]) == 3


def _corrupt(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif how == "nan_weights":
        ckpt = torch.load(path, weights_only=True)
        state = ckpt["best_state"] if ckpt.get("best_state") is not None else ckpt["model"]
        first = next(k for k, v in state.items() if v.is_floating_point())
        state[first].view(-1)[0] = float("nan")
        torch.save(ckpt, path)


@pytest.mark.parametrize("how", ["truncated", "zeroed", "nan_weights"])
def test_a_corrupted_checkpoint_is_a_clear_error_not_nan_metrics(run, tmp_path, how):
    out, data = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    _corrupt(copy / "lstm" / "checkpoint.pt", how)
    result = CliRunner().invoke(app, ["evaluate", str(copy), "--data", str(data)])
    assert result.exit_code == 3
    assert "lstm/checkpoint.pt: sha256" in result.output and "train the model again" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    (copy / "lstm" / "checkpoint.pt.sha256").unlink()  # a checkpoint from elsewhere: its contents are checked
    result = CliRunner().invoke(app, ["evaluate", str(copy), "--data", str(data)])
    assert result.exit_code == 3
    assert "lstm/checkpoint.pt" in result.output and "sha256" not in result.output
    assert "train the model again" in result.output


def test_the_regime_market_adds_the_ceiling_beside_the_oracle(tmp_path):
    data = tmp_path / "regime"
    generate(data, minutes=6, seed=3, market="regime")
    train(data, tmp_path / "run", "naive", load_config(overrides=TINY))
    r = evaluate(tmp_path / "run", data, n_boot=20)
    assert r["models"] == ["naive", "zero", "oracle", "ceiling"]
    table = r["table"]
    ceiling = table.filter(pl.col("model") == "ceiling")
    assert (ceiling["ceiling_frac"] == 1.0).all()
    # the ceiling sees less than the oracle: it stands below the oracle's bar, and no model above its own
    assert (ceiling["oracle_frac"] < 1.0).all()
    for name in ("naive", "zero"):
        assert (table.filter(pl.col("model") == name)["ceiling_frac"] < 1.0).all()
    forecast = pl.read_parquet(tmp_path / "run" / "forecasts" / "ceiling.parquet")
    assert forecast["f_h5_q50"].is_finite().all()
