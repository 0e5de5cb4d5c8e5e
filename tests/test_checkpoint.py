"""A run's checkpoints (hfformer/checkpoint.py): what is saved is what is loaded, for every model kind,
and a trained run forecasts the same through every reader (predict, evaluate, export)."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from data_loaders.synth import generate
from hfformer.baselines import Ridge, ridge_design
from hfformer.checkpoint import build_model, checkpoint_path, load_trained, ridge_state, save_checkpoint
from hfformer.config import dumps, load_config, save_config
from hfformer.data import prepare
from hfformer.evaluate import evaluate
from hfformer.predict import Forecaster
from hfformer.train import train

torch.set_num_threads(1)
TINY = ["data.window=20", "data.horizons=[1,2,5]", "data.gap=25", "model.d_model=12", "model.n_heads=2",
        "model.d_ff=16", "batch_size=32", "max_epochs=1", "max_train_windows=128", "max_val_windows=64",
        "progress=false", "lstm.hidden=8", "device=cpu"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, minutes=3, seed=4)
    return out


@pytest.mark.parametrize("kind,extra", [("hfformer", []), ("lstm", []), ("naive", []),
                                        ("hfformer", ["data.size_norm=train", "model.norm_first=true"])])
def test_saved_and_loaded_models_forecast_exactly_alike(synth, tmp_path, kind, extra):
    """A model in memory, written with save_checkpoint and read back with load_trained: the same
    weights and bit-identical forecasts on the test windows."""
    cfg = load_config(overrides=TINY + extra)
    prep = prepare(synth, cfg.data)
    save_config(cfg, tmp_path / "config.toml")
    ends = prep.ends["test"]
    payload = {"kind": kind, "config": cfg.to_dict(), "feature_names": prep.features.names}
    if kind == "naive":
        train_ends = prep.ends["train"]
        ridge = Ridge.fit(ridge_design(prep.features, train_ends, cfg.ridge.lags), prep.y[train_ends], 1.0)
        expected = ridge.predict(ridge_design(prep.features, ends, cfg.ridge.lags)).astype(np.float32)[:, :, None]
        payload["ridge"] = ridge_state(ridge)
    else:
        torch.manual_seed(0)
        model = build_model(kind, cfg, prep.features.x.shape[1]).eval()
        with torch.inference_mode():
            expected = model(prep.dataset("test").get_batch(np.arange(ends.size))[0]).numpy()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        payload.update(model={k: torch.zeros_like(v) for k, v in state.items()}, best_state=state,
                       scaling=None if prep.scaling is None else prep.scaling.state_dict())
    save_checkpoint(payload, checkpoint_path(tmp_path, "m"))
    trained = load_trained(tmp_path, "m")
    assert (trained.kind, trained.feature_names, trained.cfg) == (kind, prep.features.names, cfg)
    if kind != "naive":  # the best weights are the ones loaded, in eval mode
        assert not trained.model.training
        assert all(torch.equal(v, state[k]) for k, v in trained.model.state_dict().items())
    np.testing.assert_array_equal(Forecaster(tmp_path, "m").forecast(prep, ends), expected)


def test_a_trained_run_forecasts_alike_through_predict_and_evaluate(synth, tmp_path):
    """train -> checkpoint -> the forecast frames of evaluate and the lean path of predict."""
    cfg = load_config(overrides=TINY)
    train(synth, tmp_path, "hfformer", cfg)
    prep = prepare(synth, cfg.data)
    ends = prep.ends["test"]
    torch_fc = Forecaster(tmp_path, "hfformer").forecast(prep, ends)
    evaluate(tmp_path, synth, n_boot=5)
    frame = pl.read_parquet(tmp_path / "forecasts" / "hfformer.parquet")
    np.testing.assert_array_equal(frame["f_h5_q50"].to_numpy(), torch_fc[:, 2, 1])
    np.testing.assert_allclose(Forecaster(tmp_path, "hfformer", lean=True).forecast(prep, ends), torch_fc,
                               atol=1e-4, rtol=0)


def test_a_checkpoint_written_before_the_activation_setting_loads_as_it_was_trained(synth, tmp_path):
    """Runs written with model.spiking (and no reset, learn_beta) load as the model they trained:
    LIF neurons without a reset, the same forecasts."""
    cfg = load_config(overrides=TINY)
    prep = prepare(synth, cfg.data)
    old = cfg.to_dict()
    old["model"] = {k: v for k, v in old["model"].items() if k not in ("activation", "reset", "learn_beta")}
    old["model"]["spiking"] = True
    (tmp_path / "config.toml").write_text(dumps(old))
    torch.manual_seed(0)
    model = build_model("hfformer", cfg, prep.features.x.shape[1]).eval()
    ends = prep.ends["test"]
    with torch.inference_mode():
        expected = model(prep.dataset("test").get_batch(np.arange(ends.size))[0]).numpy()
    save_checkpoint({"kind": "hfformer", "config": old, "feature_names": prep.features.names, "scaling": None,
                     "model": model.state_dict(), "best_state": None}, checkpoint_path(tmp_path, "old"))
    m = load_trained(tmp_path, "old").cfg.model
    assert (m.activation, m.reset, m.learn_beta) == ("spiking", "none", False)
    np.testing.assert_array_equal(Forecaster(tmp_path, "old").forecast(prep, ends), expected)
