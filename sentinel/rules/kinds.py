"""The registry of event kinds rules are written for: each kind's fields and sample builder.

A kind is a subject type (a process, a connection, a persistence change, a line of text).
Its fields are extractors registered by name; a rule names fields, never Python. A kind
also builds the subject of an embedded rule test from a TOML sample table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from sentinel.rules.catalogue import Subject

Extractor = Callable[["Subject"], Any]
T = TypeVar("T")
SampleBuilder = Callable[[dict[str, Any]], Any]


@dataclass
class Kind:
    """One event kind: named field extractors and a builder of test samples."""

    name: str
    fields: dict[str, Extractor] = field(default_factory=dict)
    sample: SampleBuilder | None = None
    sample_keys: frozenset[str] = frozenset()
    first_match: bool = False  # only the first matching rule (catalogue order) counts


KINDS: dict[str, Kind] = {}


def kind(name: str, *, first_match: bool = False) -> Kind:
    """The kind called `name`, created on first use."""
    k = KINDS.get(name)
    if k is None:
        k = KINDS[name] = Kind(name, first_match=first_match)
    return k


def extractor(kind_name: str, name: str) -> Callable[[Extractor], Extractor]:
    """Register `fn(subject)` as field `name` of kind `kind_name`; a duplicate is an error."""

    def deco(fn: Extractor) -> Extractor:
        k = kind(kind_name)
        if name in k.fields:
            raise RuntimeError(f"field {kind_name}.{name} registered twice")
        k.fields[name] = fn
        return fn

    return deco


def once(key: str, fn: Callable[[Subject], T]) -> Callable[[Subject], T]:
    """fn's value kept in the subject's cache under `key` (not a field): several fields
    that read one parse or scan do it once per subject."""

    def get(s: Subject) -> T:
        if key not in s.cache:
            s.cache[key] = fn(s)
        return cast(T, s.cache[key])

    return get


def fact_group(
    kind_name: str, prefix: str, keys: tuple[str, ...]
) -> Callable[[Extractor], Extractor]:
    """Register `fn(subject) -> dict` as field `prefix` and each key as `prefix.key`.

    One call of fn fills every `prefix.key` of the subject at once, so that rules on
    several of them cost one parse.
    """

    names = [(k, f"{prefix}.{k}") for k in keys]
    unset = dict.fromkeys(full for _, full in names)

    def deco(fn: Extractor) -> Extractor:
        def whole(s: Subject) -> Any:
            facts = fn(s)
            if facts:
                s.cache.update({full: facts.get(k) for k, full in names})
            else:
                s.cache.update(unset)
            return facts

        def part(key: str) -> Extractor:
            return lambda s: (s.get(prefix), s.cache[key])[1]

        extractor(kind_name, prefix)(whole)
        for k in keys:
            extractor(kind_name, f"{prefix}.{k}")(part(f"{prefix}.{k}"))
        return fn

    return deco


def sample_builder(kind_name: str, keys: set[str]) -> Callable[[SampleBuilder], SampleBuilder]:
    """Register the builder of test samples for a kind, with the sample keys it accepts."""

    def deco(fn: SampleBuilder) -> SampleBuilder:
        k = kind(kind_name)
        k.sample, k.sample_keys = fn, frozenset(keys)
        return fn

    return deco


def load_fields() -> dict[str, Kind]:
    """Every kind with its fields (importing the field modules registers them)."""
    from sentinel.rules.fields import (  # noqa: F401
        network,
        persistence,
        process,
        text,
        traffic,
        tunnels,
    )

    return KINDS
