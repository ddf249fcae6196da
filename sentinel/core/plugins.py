"""A package of plugins (collectors, detectors, sinks): one module each, registered by class."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T")


class DuplicatePlugin(Exception):
    """Two plugin classes registered under one key."""


class Registry(Generic[T]):
    """Classes keyed by one of their attributes. Every module and subpackage of the package
    whose name does not start with '_' is imported on first use, so a plugin is one file."""

    def __init__(self, package: str, key: str) -> None:
        self.package, self.key = package, key
        self.classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: `@register` in the plugin's module."""
        name = getattr(cls, self.key)
        prev = self.classes.get(name)
        if prev is not None and prev.__qualname__ != cls.__qualname__:
            raise DuplicatePlugin(
                f"{self.package}: {self.key} {name!r} registered by {prev.__module__}."
                f"{prev.__qualname__} and by {cls.__module__}.{cls.__qualname__}"
            )
        self.classes[name] = cls
        return cls

    def modules(self) -> list[str]:
        """The plugin modules of the package, in name order."""
        pkg = importlib.import_module(self.package)
        return sorted(
            m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")
        )

    def load_all(self) -> dict[str, type[T]]:
        for module in self.modules():
            importlib.import_module(f"{self.package}.{module}")
        return self.classes
