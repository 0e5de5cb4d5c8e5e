"""`hfformer tune`: the same seeded search for each neural model, chosen on validation, test unread."""

import json

import pytest
from typer.testing import CliRunner

from data_loaders.synth import generate
from hfformer.cli import app
from hfformer.config import load_config
from hfformer.tune import SPACES, draw_trials

TINY = ["data.window=20", "data.horizons=[1,2,5]", "data.gap=25", "max_epochs=1", "max_train_windows=256",
        "max_val_windows=128", "batch_size=32", "progress=false", "warmup_steps=4", "device=cpu", "threads=1"]


def test_trials_are_distinct_seeded_draws_from_the_grid():
    trials = draw_trials("lstm", 5, seed=3)
    assert len({tuple(t.items()) for t in trials}) == 5 and trials == draw_trials("lstm", 5, seed=3)
    assert trials != draw_trials("lstm", 5, seed=4)
    assert all(t[key] in SPACES["lstm"][key] for t in trials for key in t)
    assert len(draw_trials("hfformer", 10_000, seed=0)) == 4 * 3 * 4  # a budget past the grid: the whole grid
    with pytest.raises(ValueError, match="not 'naive'"):
        draw_trials("naive", 2, seed=0)


def test_cli_tune_keeps_the_best_on_validation_and_never_reads_test(tmp_path):
    data = tmp_path / "synth"
    generate(data, minutes=4, seed=1)
    out = tmp_path / "tune"
    args = ["tune", "--data", str(data), "--out", str(out), "--model", "lstm", "--budget", "2", "--json"]
    result = CliRunner().invoke(app, args + [a for s in TINY for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "tune.json").read_text())
    losses = [t["val_loss"] for t in saved["trials"]]
    assert len(losses) == 2 and saved["best"]["val_loss"] == min(losses)
    best = load_config(out / "best.toml")
    for key, value in saved["best"]["settings"].items():
        section, name = key.split(".")
        assert getattr(getattr(best, section), name) == value
    assert best.data.window == 20  # the trials' shared settings are kept
    assert not list(out.glob("**/test_reads.json"))  # tuning never read the test split
    bad = CliRunner().invoke(app, [*args[:6], "lstm", "--budget", "0"])
    assert bad.exit_code == 2
