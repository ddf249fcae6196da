"""The package layout: every package shipped, plugins discovered, duplicates refused."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from sentinel import collectors, detectors, sinks
from sentinel.core.plugins import DuplicatePlugin, Registry

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_ships_every_package() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        str(Path(d).relative_to(ROOT)).replace(os.sep, ".")
        for d, _, files in os.walk(ROOT / "sentinel")
        if "__init__.py" in files
    }
    assert found | {"sentinel.signatures"} == listed


def test_plugins_are_discovered_from_their_files() -> None:
    for package, registry in (
        ("collectors", collectors.load_all()),
        ("detectors", detectors.load_all()),
        ("sinks", sinks.load_all()),
    ):
        files = {
            p.stem if p.is_file() else p.name
            for p in (ROOT / "sentinel" / package).iterdir()
            if not p.name.startswith("_") and (p.suffix == ".py" or (p / "__init__.py").exists())
        }
        modules = {cls.__module__.split(".")[2] for cls in registry.values()}
        assert modules == files, package


def test_a_duplicate_registration_is_an_error() -> None:
    reg: Registry[object] = Registry("sentinel.detectors", "name")

    class One:
        name = "same"

    class Two:
        name = "same"

    reg.register(One)
    with pytest.raises(DuplicatePlugin, match="'same' registered by"):
        reg.register(Two)
