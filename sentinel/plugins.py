"""A package of plugins (collectors, detectors, sinks): one module each, registered by class."""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes keyed by one of their attributes; the package's modules load on first use."""

    def __init__(self, package: str, modules: list[str], key: str) -> None:
        self.package, self.modules, self.key = package, modules, key
        self.classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: `@register` in the plugin's module."""
        self.classes[getattr(cls, self.key)] = cls
        return cls

    def load_all(self) -> dict[str, type[T]]:
        for module in self.modules:
            importlib.import_module(f"{self.package}.{module}")
        return self.classes
