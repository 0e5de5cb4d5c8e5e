"""Every module of the three packages imports in the environment pyproject.toml installs
(a dependency missing from pyproject.toml fails here, naming the module)."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import data_loaders
import dbbench
import hfformer

MODULES = sorted(
    info.name
    for package in (data_loaders, hfformer, dbbench)
    for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + ".")
)


def test_every_package_has_modules():
    assert {m.split(".")[0] for m in MODULES} == {"data_loaders", "hfformer", "dbbench"}
    assert len(MODULES) > 30


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str):
    importlib.import_module(name)


@pytest.mark.parametrize("module,never", [
    ("hfformer.predict", ("hfformer.train", "hfformer.export")),  # forecasting needs no trainer
    ("hfformer.export", ("hfformer.train", "hfformer.predict")),
    ("data_loaders.windows", ("torch",)),  # numpy windows; tensors are made in hfformer.loader
])
def test_modules_do_not_import_what_they_must_not(module: str, never: tuple[str, ...]):
    """predict and export share hfformer.checkpoint instead of importing each other or train;
    the data layer's windows work without PyTorch."""
    code = f"import sys, {module}; print(sorted(m for m in {never!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
