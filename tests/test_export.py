"""ONNX export agrees with PyTorch (ONNX Runtime) to 1e-4, at the default size and from a run."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from data_loaders.synth import generate
from hfformer.cli import app
from hfformer.config import load_config
from hfformer.data import prepare
from hfformer.export import check_onnx, export_onnx, onnx_session
from hfformer.lean import FastHFformer
from hfformer.loader import WindowDataset
from hfformer.model import HFformer, HFformerConfig
from hfformer.predict import Forecaster
from hfformer.train import train

pytest.importorskip("onnxruntime")
torch.set_num_threads(1)


@pytest.mark.parametrize("settings", [{}, {"activation": "relu"}, {"dec_rank": 4}, {"activation": "gelu"},
                                      {"reset": "zero", "learn_beta": True}])
def test_default_size_hfformer_onnx_agrees(tmp_path, settings):
    torch.manual_seed(0)
    model = HFformer(HFformerConfig(n_features=42, **settings)).eval()
    export_onnx(model, 42, 100, tmp_path / "m.onnx")
    assert check_onnx(model, tmp_path / "m.onnx", 42, 100) < 1e-4
    out = onnx_session(tmp_path / "m.onnx").run(None, {"x": np.zeros((3, 100, 42), np.float32)})[0]
    assert out.shape == (3, 30, 3)  # dynamic batch


def test_cli_export_from_a_run(tmp_path):
    data = tmp_path / "synth"
    generate(data, minutes=3, seed=3)
    tiny = ["data.window=20", "data.horizons=[1,5]", "data.gap=25", "max_epochs=1", "batch_size=32",
            "max_train_windows=64", "max_val_windows=64", "progress=false"]
    train(data, tmp_path / "run", "hfformer", load_config(overrides=tiny))
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--format", "onnx",
                                 "--out", str(tmp_path / "m.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["max_abs_diff"] < 1e-4 and (tmp_path / "m.onnx").exists()
    bad = runner.invoke(app, ["export", str(tmp_path / "run"), "--format", "tflite", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 3 and "only onnx" in bad.output
    f = Forecaster(tmp_path / "run", "hfformer", lean=True)  # forecasts through the lean kernel...
    prep = prepare(data, f.cfg.data)
    ends = prep.ends["test"]
    xb, _ = prep.dataset("test").get_batch(np.arange(ends.size))
    with torch.no_grad():
        expected = f.model(xb).numpy()  # ...the same as the PyTorch model's
    assert f.fast is not None and ends.size > 10
    np.testing.assert_allclose(f.forecast(prep, ends), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("settings", [{}, {"activation": "relu", "pos_encoding": True}, {"norm_first": True},
                                      {"norm_first": True, "dec_rank": 4}, {"activation": "gelu"},
                                      {"reset": "subtract"}, {"reset": "zero", "threshold": 0.5},
                                      {"learn_beta": True, "reset": "subtract"}])
def test_lean_numba_path_agrees_with_pytorch(settings):
    torch.manual_seed(1)
    model = HFformer(HFformerConfig(n_features=42, **settings)).eval()
    if settings.get("learn_beta"):  # learned decays differ by layer; one beyond 1 is used as 1
        with torch.no_grad():
            model.blocks[0].ff.act.beta.fill_(0.6)
            model.blocks[1].ff.act.beta.fill_(1.3)
    x = np.random.default_rng(1).standard_normal((40, 100, 42), dtype=np.float32) * 3
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = FastHFformer(model)(x)
    assert got.shape == (40, 30, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_lean_path_zscores_windows_of_the_feature_matrix_as_get_batch():
    """forecast_ends z-scores inside the kernel; same forecasts as get_batch + the PyTorch model,
    on features with large offsets and a constant column (std 0: only eps divides)."""
    torch.manual_seed(2)
    model = HFformer(HFformerConfig(n_features=5, window=30, horizons=[1, 4], d_model=16, n_heads=4,
                                    quantiles=[0.1, 0.25, 0.5, 0.9])).eval()
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((200, 5)) * [1, 10, 0.1, 1, 0] + [0, 5e4, -3, 0, 7]).astype(np.float32)
    ends = np.array([29, 30, 77, 199, 150])
    xb, _ = WindowDataset(x, np.zeros((200, 1), np.float32), ends, 30).get_batch(np.arange(5))
    with torch.no_grad():
        expected = model(xb).numpy()
    fast = FastHFformer(model)
    np.testing.assert_allclose(fast.forecast_ends(x, ends), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(fast(xb.numpy()), expected, atol=1e-4, rtol=0)
    assert fast.forecast_ends(x, ends[:0]).shape == (0, 2, 4)
    with pytest.raises(ValueError, match="window ends"):
        fast.forecast_ends(x, np.array([28]))
