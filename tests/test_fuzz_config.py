"""Property-based fuzzing of the hfformer settings (hfformer/config.py): TOML files and --set overrides.

Generated TOML holds known and unknown sections and keys with values of every TOML type (huge ints,
nan and inf, bools, strings, mixed lists, inline tables, dates), out-of-range numbers, and text that
is cut short or not UTF-8. Properties: load_config returns a config whose every setting has its
field's type and passes validate, or raises a ValueError naming the file (or the --set option).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hfformer.config import SECTIONS, Config, load_config, validate

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
KNOWN = {section: [f.name for f in fields(kind)] for section, kind in SECTIONS.items()}
TYPES = {section: {f.name: f.type for f in fields(kind)} for section, kind in SECTIONS.items()}

class Date(str):
    """A TOML date/time literal, written bare."""


SCALARS = st.one_of(
    st.integers(-3, 3), st.sampled_from([0, -1, 10**18, 2**63, 10**400, 130, 36, 6]),
    st.sampled_from([0.0, -0.5, 0.5, 1.0, 1.5, math.nan, math.inf, -math.inf, 1e-300, 1e308]),
    st.booleans(), st.sampled_from(["", "wmid", "cpu", "pinball", "x" * 50, "ünï", "1"]),
    st.sampled_from([Date("1979-05-27T07:32:00Z"), Date("07:32:00"), Date("1979-05-27")]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)),
                      max_leaves=6)


def toml_value(value: Any) -> str:
    if isinstance(value, Date):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


@st.composite
def toml_text(draw) -> bytes:
    sections = draw(st.lists(st.sampled_from([*KNOWN, "Data", "extra", "train.sub"]), max_size=3, unique=True))
    text = ""
    for section in sections:
        text += f"[{section}]\n"
        keys = KNOWN.get(section, ["x"]) + ["unknown_key"]
        for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
            value = draw(st.one_of(VALUES, _near_valid(section, key)))
            text += f"{key} = {toml_value(value)}\n"
    data = text.encode()
    cut = draw(st.sampled_from(["none"] * 6 + ["truncate", "non_utf8", "garbage"]))
    if cut == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif cut == "non_utf8":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff\xfe" + data[at:]
    elif cut == "garbage":
        data += draw(st.sampled_from([b"= 1\n", b"[data\n", b"a = \n", b"[data]\n", b'x = "\n', b"\x00"]))
    return data


def _near_valid(section: str, key: str) -> st.SearchStrategy:
    """A value of the setting's own type (so range checks, not type checks, are reached)."""
    kind = TYPES.get(section, {}).get(key, "int")
    if kind == "int":
        return st.integers(-5, 300)
    if kind == "float":
        return st.floats(-2, 2) | st.sampled_from([math.nan, math.inf])
    if kind == "bool":
        return st.booleans()
    if kind == "str":
        return st.sampled_from(["wmid", "microprice", "mid", "last", "cpu", "cuda", "auto", "mse", "window", "train"])
    if kind == "list[int]":
        return st.lists(st.integers(-2, 40), max_size=4) | st.lists(st.sampled_from([1.5, "1", True]), max_size=2)
    return st.lists(st.floats(-1, 2) | st.sampled_from([math.nan, True, "0.1"]), max_size=4)


def _well_typed(cfg: Config) -> None:
    """Every setting of a loaded config has its field's type, and the config passes validate."""
    for section, types in TYPES.items():
        for key, kind in types.items():
            value = getattr(getattr(cfg, section), key)
            items = value if kind.startswith("list[") else [value]
            item = kind.removeprefix("list[").removesuffix("]")
            assert isinstance(value, list) == kind.startswith("list["), (section, key, value)
            for v in items:
                assert type(v).__name__ == item, (section, key, value)
                assert item != "float" or math.isfinite(v), (section, key, value)
    validate(cfg)


@FUZZ
@given(toml_text())
def test_fuzz_toml_settings(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.toml"
        path.write_bytes(data)
        try:
            cfg = load_config(path)
        except ValueError as exc:  # tomllib.TOMLDecodeError and UnicodeDecodeError are ValueErrors
            assert str(path) in str(exc), f"error names no file: {exc}"
            return
        _well_typed(cfg)


@FUZZ
@given(st.sampled_from([f"{s}.{k}" for s, keys in KNOWN.items() for k in keys] + ["lr", "dropout", "x.y", "", "a.b.c"]),
       st.one_of(VALUES.map(toml_value), st.sampled_from(["", "=", "[1,", "'", "cpu", "1e400", "nan"])))
def test_fuzz_set_overrides(key: str, raw: str) -> None:
    option = f"{key}={raw}"
    try:
        cfg = load_config(None, [option])
    except ValueError as exc:
        assert f"--set {key}" in str(exc) or f"--set {option}" in str(exc), f"error names no option: {exc}"
        return
    _well_typed(cfg)


# --- regressions: the inputs the fuzzing found, each as a plain test -------------------------------
@pytest.mark.parametrize(("toml", "message"), [
    ("[data]\nhorizons = ['a']\n", "data.horizons must be list[int], got ['a']"),  # was a TypeError in validate
    ("[data]\nhorizons = [1.5]\n", "data.horizons must be list[int], got [1.5]"),  # was accepted
    ("[data]\nhorizons = [true]\n", "data.horizons must be list[int], got [True]"),  # was accepted
    ("[data]\nfractions = ['a', 0.1, 0.1]\n", "data.fractions must be list[float]"),  # float('a'): no file named
    ("[model]\nquantiles = [[0.5]]\n", "model.quantiles must be list[float]"),  # float([0.5]): a TypeError
    ("[data]\nfractions = [true, 0.1, 0.1]\n", "data.fractions must be list[float]"),  # was read as 1.0
    ("[train]\nlr = inf\n", "train.lr must be float, got inf"),  # was accepted
    ("[train]\nweight_decay = nan\n", "train.weight_decay must be float, got nan"),
    ("[ridge]\nalpha = 1" + "0" * 400 + "\n", "ridge.alpha must be float"),  # float(10**400): OverflowError
    ("[train]\nbatch_size = 'x'\n", "train.batch_size must be int"),  # named no file
    ("[train]\nbatch_size = 0\n", "bad settings: train.batch_size must be >= 1"),  # named no file
    ("[train\n", "not a TOML file"),  # tomllib's message named no file
])
def test_bad_settings_name_the_file(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(toml)
    with pytest.raises(ValueError) as info:
        load_config(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_non_utf8_toml_names_the_file(tmp_path: Path) -> None:
    """A TOML file that is not UTF-8 raised a bare UnicodeDecodeError naming no file."""
    path = tmp_path / "run.toml"
    path.write_bytes(b"[train]\nlr = 0.1 # \xff\n")
    with pytest.raises(ValueError, match=f"{path}: not a TOML file"):
        load_config(path)


def test_bad_override_names_the_option() -> None:
    with pytest.raises(ValueError, match=r"--set train.lr=nan: train.lr must be float, got nan"):
        load_config(None, ["train.lr=nan"])
