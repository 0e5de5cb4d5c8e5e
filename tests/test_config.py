"""Settings are checked when loaded: a value out of range is named in one line, before any work."""

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from hfformer.config import DEFAULT_TOML, SECTIONS, Config, load_config, read_toml

BAD = {
    "data.window=0": "data.window must be >= 1",
    "model.dropout=2.0": "model.dropout must be in [0, 1)",
    "train.batch_size=0": "train.batch_size must be >= 1",
    "model.n_heads=5": "must be a multiple of model.n_heads (5)",
    "data.fractions=[0.7, 0.3, 0.3]": "data.fractions must be three positive",
    "model.quantiles=[0.9, 0.1]": "model.quantiles must be increasing",
    "data.price='last'": "data.price must be one of wmid, microprice, mid",
    "train.lr=0": "train.lr must be > 0",
}


@pytest.mark.parametrize("override", BAD)
def test_out_of_range_settings_are_named(override):
    with pytest.raises(ValueError, match=BAD[override].replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        load_config(None, [override])


def test_every_problem_is_named_at_once():
    with pytest.raises(ValueError) as info:
        load_config(None, ["data.window=0", "train.batch_size=0"])
    assert "data.window" in str(info.value) and "train.batch_size" in str(info.value)


@pytest.mark.parametrize("config", ["default.toml", "tuned.toml", "tuned_v2.toml"])
def test_shipped_configs_are_valid(config):
    load_config(Path(__file__).parents[1] / "hfformer" / config, [])


def test_tuned_v2_is_tuned_with_only_its_documented_changes():
    """tuned_v2.toml repeats every key of tuned.toml and changes only what its comments justify."""
    tuned, v2 = (read_toml(Path(__file__).parents[1] / "hfformer" / name) for name in ("tuned.toml", "tuned_v2.toml"))
    assert all(key in v2[section] for section in tuned for key in tuned[section])
    changed = {(section, key) for section in v2 for key in v2[section] if tuned[section].get(key) != v2[section][key]}
    assert changed == {("data", "return_norm"), ("train", "max_epochs"), ("train", "max_train_windows")}
    assert load_config(Path(__file__).parents[1] / "hfformer" / "tuned_v2.toml").data.return_norm == "train"


def test_cli_reports_a_bad_setting_in_one_line_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hfformer.cli", "train", "--data", str(tmp_path), "--out",
                           str(tmp_path / "run"), "--set", "train.batch_size=0"],
                          capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1])
    assert done.returncode != 0
    assert "train.batch_size must be >= 1" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_default_toml_is_the_one_declaration_of_the_settings():
    """The config dataclasses hold exactly default.toml's sections, keys (in file order), defaults
    and types (each default's TOML type)."""
    table = read_toml(DEFAULT_TOML)
    assert Config().to_dict() == table and list(SECTIONS) == list(table)
    for section, values in table.items():
        assert [f.name for f in fields(SECTIONS[section])] == list(values)
    types = {f.name: f.type for f in fields(SECTIONS["train"])}
    assert (types["lr"], types["batch_size"], types["compile"], types["loss"]) == ("float", "int", "bool", "str")
    assert {f.name: f.type for f in fields(SECTIONS["data"])}["horizons"] == "list[int]"
    first, second = Config(), Config()
    first.data.horizons.append(99)  # list defaults are copies, never shared between configs
    assert second.data.horizons == table["data"]["horizons"]


@pytest.mark.parametrize("old,activation", [("true", "spiking"), ("false", "relu")])
def test_the_old_spiking_key_reads_as_the_activation(tmp_path, old, activation):
    """Run configs and checkpoints written with model.spiking load as today's model.activation."""
    assert load_config(None, [f"model.spiking={old}"]).model.activation == activation
    assert load_config(None, [f"spiking={old}"]).model.activation == activation
    path = tmp_path / "old.toml"
    path.write_text(f"[model]\nspiking = {old}\nbeta = 0.8\n")
    cfg = load_config(path)
    assert (cfg.model.activation, cfg.model.beta, cfg.model.reset) == (activation, 0.8, "none")
    assert "spiking" not in cfg.to_dict()["model"]


@pytest.mark.parametrize("toml,message", [
    ("[model]\nspiking = 1\n", "model.spiking must be one of [True, False], got 1"),
    ("[model]\nspiking = false\nactivation = 'spiking'\n", "contradicts model.activation = 'spiking'"),
    ("[model]\nactivation = 'tanh'\n", "model.activation must be one of spiking, relu, gelu, got 'tanh'"),
    ("[model]\nreset = 'soft'\n", "model.reset must be one of none, subtract, zero, got 'soft'"),
    ("[model]\nlearn_beta = 1\n", "model.learn_beta must be bool"),
])
def test_bad_activation_settings_are_named(tmp_path, toml, message):
    path = tmp_path / "run.toml"
    path.write_text(toml)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)
