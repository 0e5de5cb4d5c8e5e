"""`hfformer compare`: paired block-bootstrap intervals on the same test windows, on real runs."""

import json

import pytest
from typer.testing import CliRunner

from data_loaders.synth import generate
from hfformer.cli import app
from hfformer.compare import compare
from hfformer.config import load_config
from hfformer.evaluate import evaluate
from hfformer.train import train

TINY = ["data.window=20", "data.horizons=[1,2,5]", "data.gap=25", "progress=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data = tmp_path_factory.mktemp("regime")
    generate(data, minutes=8, seed=5, market="regime")
    a = tmp_path_factory.mktemp("a")
    train(data, a, "naive", load_config(overrides=TINY))
    evaluate(a, data, n_boot=20)
    other = tmp_path_factory.mktemp("other")  # another split: other test windows
    train(data, other, "naive", load_config(overrides=[*TINY, "data.fractions=[0.6, 0.2, 0.2]"]))
    evaluate(other, data, n_boot=20)
    return a, other


def test_a_model_against_itself_is_no_difference(runs):
    a, _ = runs
    result = compare(f"{a}:naive", f"{a}", n_boot=200)
    assert [r["horizon"] for r in result["rows"]] == ["1", "5", "all"]  # 1, 5, 30 and the paper's where trained
    for row in result["rows"]:
        assert row["diff"] == 0 and row["verdict"] == "no difference"
    # two "training seeds" that are the same run average to the same errors
    assert compare(f"{a}:naive,{a}:naive", f"{a}:naive", n_boot=50)["rows"] == result["rows"]


def test_the_oracle_beats_the_zero_forecast_and_the_interval_says_so(runs):
    a, _ = runs
    result = compare(f"{a}:zero", f"{a}:oracle", n_boot=500)
    by_h = {r["horizon"]: r for r in result["rows"]}
    assert by_h["5"]["verdict"] == "B better" and by_h["5"]["diff_lo"] > 0
    assert by_h["5"]["mse_a"] > by_h["5"]["mse_b"]
    assert result["block_windows"] == 25  # window + longest horizon
    flipped = compare(f"{a}:oracle", f"{a}:zero", n_boot=500)
    assert {r["horizon"]: r["verdict"] for r in flipped["rows"]}["5"] == "A better"


def test_other_test_windows_are_refused_and_a_run_with_several_models_must_name_one(runs):
    a, other = runs
    result = CliRunner().invoke(app, ["compare", f"{a}:naive", f"{other}:naive"])
    assert result.exit_code == 3 and "different test windows" in result.output
    result = CliRunner().invoke(app, ["compare", f"{a}:lstm", f"{a}:naive"])
    assert result.exit_code == 3 and "no test forecasts" in result.output


def test_cli_json(runs):
    a, _ = runs
    result = CliRunner().invoke(app, ["compare", f"{a}:zero", f"{a}:ceiling", "--json", "--resamples", "200"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["command"] == "hfformer compare" and summary["windows"] > 0
    assert summary["verdicts"]["5"] == "B better" and len(summary["rows"]) == 3
