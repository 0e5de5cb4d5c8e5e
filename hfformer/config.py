"""Run configuration: defaults (default.toml) < a user TOML file < `--set section.key=value`.

hfformer/default.toml is the one declaration of every setting: its name, default, type (the TOML
type of the default; a float is written with a decimal point) and meaning (its comment). The
section dataclasses below are built from it, so a new section or key is a line in that file (plus
its range or choices in RANGES / CHOICES here, where it has one).
The resolved config is written to RUN/config.toml so every later command (evaluate, predict,
export, backtest) rebuilds exactly the same features, windows and split.
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import asdict, field, fields, make_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data_loaders.atomic import write_bytes
from data_loaders.features import PRICES, SIZE_NORMS

DEFAULT_TOML = Path(__file__).with_name("default.toml")
PAPER_HORIZONS = (1, 3, 5, 10, 20, 30)  # the horizons the paper reports results for


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table; text that is not UTF-8 or not TOML is a ValueError naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not a TOML file: {exc}") from None


def _type_name(value: Any) -> str:
    """A default's setting type as config fields name it: int, float, bool, str or list[item]."""
    if isinstance(value, list):
        return f"list[{_type_name(value[0])}]"  # a list default names its item type by example
    return type(value).__name__


def _section(name: str, table: dict[str, Any]) -> type:
    """The dataclass of one default.toml section: its keys, in file order, with their defaults."""
    def default(value: Any) -> Any:
        return field(default_factory=lambda: copy.deepcopy(value)) if isinstance(value, list) else value

    cls = make_dataclass(f"{name.capitalize()}Config",
                         [(key, _type_name(value), default(value)) for key, value in table.items()])
    cls.__doc__ = f"The [{name}] settings; each is declared, with its default and meaning, in {DEFAULT_TOML.name}."
    return cls


def _to_dict(self) -> dict[str, dict[str, Any]]:
    """{section: {key: value}}, the shape of the TOML files and of a checkpoint's config."""
    return asdict(self)


SECTIONS: dict[str, type] = {name: _section(name, table) for name, table in read_toml(DEFAULT_TOML).items()}
Config = make_dataclass("Config", [(name, cls, field(default_factory=cls)) for name, cls in SECTIONS.items()],
                        namespace={"to_dict": _to_dict})
DataConfig, ModelConfig, LSTMConfig = SECTIONS["data"], SECTIONS["model"], SECTIONS["lstm"]


SCALARS = {"int": int, "float": float, "bool": bool, "str": str}


def _fits(value: Any, type_name: str) -> bool:
    """Does a TOML value fit a field of this scalar type? An int fits a float field (within float's
    range); a bool fits only a bool field; a float must be finite (TOML allows nan and inf)."""
    if isinstance(value, bool) or type_name == "bool":
        return isinstance(value, bool) and type_name == "bool"
    if type_name == "float":
        return isinstance(value, int) and abs(value) < 1e308 or isinstance(value, float) and math.isfinite(value)
    return isinstance(value, SCALARS[type_name])


def _coerce(section: str, key: str, value: Any, kind: type, origin: str) -> Any:
    """A TOML value as its field's type (ints in float fields become floats), or a ValueError naming the setting."""
    annotation = {f.name: f.type for f in fields(kind)}[key]
    item = annotation.removeprefix("list[").removesuffix("]")
    is_list = item != annotation
    values = value if is_list and isinstance(value, list) else [value]
    if is_list != isinstance(value, list) or not all(_fits(v, item) for v in values):
        raise ValueError(f"{origin}: {section}.{key} must be {annotation}, got {value!r}")
    values = [float(v) if item == "float" else v for v in values]
    return values if is_list else values[0]


# Keys that runs written earlier hold (RUN/config.toml, checkpoints, users' files), read as today's:
# "section.old_key" -> ("new_key", {old value: new value}).
RENAMED: dict[str, tuple[str, dict[Any, Any]]] = {
    "model.spiking": ("activation", {True: "spiking", False: "relu"}),
}


def _renamed(section: str, values: dict[str, Any], origin: str) -> dict[str, Any]:
    """A section's table with renamed keys as today's; an old value outside the mapping, or an old
    and a new key that disagree, is a ValueError naming the setting."""
    out = dict(values)
    for old, value in values.items():
        if f"{section}.{old}" not in RENAMED:
            continue
        new, mapping = RENAMED[f"{section}.{old}"]
        allowed = [v for v in mapping if type(v) is type(value) and v == value]  # true is not 1
        if not allowed:
            raise ValueError(f"{origin}: {section}.{old} must be one of {list(mapping)}, got {value!r}")
        if new in values and values[new] != mapping[allowed[0]]:
            raise ValueError(f"{origin}: {section}.{old} = {value!r} contradicts {section}.{new} = "
                             f"{values[new]!r}; give only {section}.{new}")
        del out[old]
        out[new] = mapping[allowed[0]]
    return out


def merge(cfg: Config, table: dict[str, Any], origin: str) -> Config:
    """Apply a TOML-like {section: {key: value}} table; unknown sections or keys are errors."""
    for section, values in table.items():
        if section not in SECTIONS or not isinstance(values, dict):
            raise ValueError(f"{origin}: unknown config section {section!r}; expected {sorted(SECTIONS)}")
        target = getattr(cfg, section)
        known = {f.name for f in fields(SECTIONS[section])}
        for key, value in _renamed(section, values, origin).items():
            if key not in known:
                raise ValueError(f"{origin}: unknown key {section}.{key}; known: {sorted(known)}")
            setattr(target, key, _coerce(section, key, value, SECTIONS[section], origin))
    return cfg


def parse_override(text: str) -> dict[str, Any]:
    """'train.lr=3e-4' or 'lr=3e-4' (when the key is unique) -> {"train": {"lr": 0.0003}}."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = (part.strip() for part in text.split("=", 1))
    if "." in key:
        section, key = key.split(".", 1)
    else:
        owners = [s for s, kind in SECTIONS.items()
                  if key in {f.name for f in fields(kind)} or f"{s}.{key}" in RENAMED]
        if len(owners) != 1:
            raise ValueError(f"--set {key}: give section.key (matches sections {owners or 'none'})")
        section = owners[0]
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string such as device=cpu
    return {section: {key: value}}


def load_config(path: Path | None = None, overrides: list[str] = (),
                base: dict[str, dict[str, Any]] | None = None) -> Config:
    """Defaults < `base` (e.g. a checkpoint's config, to resume) < the TOML file < overrides."""
    cfg = Config()
    if base is not None:
        cfg = merge(cfg, base, "checkpoint config")
    if path is not None:
        cfg = merge(cfg, read_toml(Path(path)), str(path))
    for text in overrides:
        cfg = merge(cfg, parse_override(text), f"--set {text}")
    validate(cfg, " and ".join([str(path)] * (path is not None) + [f"--set {t}" for t in overrides]))
    return cfg


def utc_ns(text: str) -> int:
    """UTC nanoseconds of an ISO 8601 time ("2024-07-24", "2024-07-24T06:00:00Z"); naive means UTC."""
    when = datetime.fromisoformat(text)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def _is_time(text: str) -> bool:
    try:
        utc_ns(text)
    except (TypeError, ValueError):
        return False
    return True


# Ranges of the numeric settings: (section.key, holds, what it must be). Checked when a config is
# loaded, so a bad value is named before any work (not a crash mid-training).
RANGES: tuple[tuple[str, Any, str], ...] = (
    ("data.levels", lambda v: v >= 1, ">= 1"),
    ("data.window", lambda v: v >= 1, ">= 1"),
    ("data.gap", lambda v: v >= 0, ">= 0"),
    ("data.test_start", lambda v: v == "" or _is_time(v), "an ISO 8601 UTC time, or empty"),
    ("data.test_end", lambda v: v == "" or _is_time(v), "an ISO 8601 UTC time, or empty"),
    ("data.fractions", lambda v: len(v) == 3 and min(v) > 0 and sum(v) <= 1 + 1e-9,
     "three positive train/validation/test fractions summing to at most 1"),
    ("model.quantiles", lambda v: bool(v) and all(0 < q < 1 for q in v) and v == sorted(set(v)),
     "increasing values in (0, 1)"),
    ("model.d_model", lambda v: v >= 1, ">= 1"),
    ("model.n_heads", lambda v: v >= 1, ">= 1"),
    ("model.n_layers", lambda v: v >= 1, ">= 1"),
    ("model.d_ff", lambda v: v >= 1, ">= 1"),
    ("model.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("model.attn_dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("model.d_dec", lambda v: v >= 1, ">= 1"),
    ("model.dec_rank", lambda v: v >= 0, ">= 0 (0: full rank)"),
    ("model.beta", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("model.threshold", lambda v: v > 0, "> 0"),
    ("lstm.hidden", lambda v: v >= 1, ">= 1"),
    ("lstm.layers", lambda v: v >= 1, ">= 1"),
    ("lstm.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("ridge.lags", lambda v: v >= 1, ">= 1"),
    ("ridge.alpha", lambda v: v >= 0, ">= 0"),
    ("linear.lags", lambda v: v >= 1, ">= 1"),
    ("linear.alphas", lambda v: bool(v) and min(v) > 0, "a non-empty list of penalties > 0"),
    ("lightgbm.lags", lambda v: v >= 1, ">= 1"),
    ("lightgbm.num_leaves", lambda v: bool(v) and min(v) >= 2, "a non-empty list of values >= 2"),
    ("lightgbm.min_data_in_leaf", lambda v: bool(v) and min(v) >= 1, "a non-empty list of values >= 1"),
    ("lightgbm.learning_rate", lambda v: v > 0, "> 0"),
    ("lightgbm.max_rounds", lambda v: v >= 1, ">= 1"),
    ("lightgbm.early_stopping", lambda v: v >= 1, ">= 1"),
    ("lightgbm.feature_fraction", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("lightgbm.num_threads", lambda v: v >= 0, ">= 0 (0: OpenMP's default)"),
    ("train.batch_size", lambda v: v >= 1, ">= 1"),
    ("train.lr", lambda v: v > 0, "> 0"),
    ("train.weight_decay", lambda v: v >= 0, ">= 0"),
    ("train.warmup_steps", lambda v: v >= 0, ">= 0"),
    ("train.lr_decay", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("train.grad_clip", lambda v: v >= 0, ">= 0 (0: no clipping)"),
    ("train.max_epochs", lambda v: v >= 1, ">= 1"),
    ("train.max_steps", lambda v: v >= 0, ">= 0 (0: no limit)"),
    ("train.max_train_windows", lambda v: v >= 0, ">= 0 (0: all)"),
    ("train.max_val_windows", lambda v: v >= 0, ">= 0 (0: all)"),
    ("train.val_every_steps", lambda v: v >= 0, ">= 0 (0: once per epoch)"),
    ("train.patience", lambda v: v >= 1, ">= 1"),
    ("train.ema_decay", lambda v: 0 <= v < 1, "in [0, 1) (0: off)"),
    ("train.threads", lambda v: v >= 0, ">= 0 (0: torch's default)"),
)


# The settings that take one of a few strings.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.price": PRICES,
    "data.size_norm": SIZE_NORMS,
    "data.return_norm": SIZE_NORMS,
    "model.activation": ("spiking", "relu", "gelu"),
    "model.reset": ("none", "subtract", "zero"),
    "train.loss": ("pinball", "mse"),
    "train.device": ("auto", "cpu", "cuda"),
}


def validate(cfg: Config, origin: str = "") -> None:
    """Every setting's range and choices; all problems named in one error, after `origin` (where the
    settings came from: a file, --set options) when given."""
    def setting(name: str) -> Any:  # "section.key" -> its value
        section, key = name.split(".")
        return getattr(getattr(cfg, section), key)

    problems = [f"{name} must be {rule}, got {value!r}" for name, holds, rule in RANGES
                if not holds(value := setting(name))]
    for name, allowed in CHOICES.items():
        if (value := setting(name)) not in allowed:
            problems.append(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    if not cfg.data.horizons or min(cfg.data.horizons) < 1:
        problems.append(f"data.horizons must be positive, got {cfg.data.horizons}")
    for section in ("linear", "lightgbm"):  # every return and flow the features read lies in the window
        if getattr(cfg, section).lags >= cfg.data.window:
            problems.append(f"{section}.lags ({getattr(cfg, section).lags}) must be < data.window ({cfg.data.window})")
    if cfg.model.n_heads >= 1 and cfg.model.d_model % cfg.model.n_heads:
        problems.append(f"model.d_model ({cfg.model.d_model}) must be a multiple of model.n_heads "
                        f"({cfg.model.n_heads})")
    if problems:
        raise ValueError(f"{origin + ': ' if origin else ''}bad settings: " + "; ".join(problems))


def quantiles(cfg: Config) -> list[float]:
    """The quantiles the models output: the median only when trained with MSE."""
    return [0.5] if cfg.train.loss == "mse" else list(cfg.model.quantiles)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def dumps(table: dict[str, dict[str, Any]]) -> str:
    return "\n".join(
        f"[{section}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())
        for section, values in table.items()
    )


def save_config(cfg: Config, path: Path) -> None:
    write_bytes(path, dumps(cfg.to_dict()).encode())


def read_run_config(run_dir: Path) -> Config:
    """The resolved config a run was trained with (RUN/config.toml)."""
    path = Path(run_dir) / "config.toml"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a directory written by `hfformer train`?")
    cfg = merge(Config(), read_toml(path), str(path))
    validate(cfg, str(path))
    return cfg
