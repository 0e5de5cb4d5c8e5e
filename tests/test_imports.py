"""Every module of the three packages imports in the environment pyproject.toml installs
(a dependency missing from pyproject.toml fails here, naming the module)."""

import importlib
import pkgutil

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
