"""The engine: lifecycle and routing, with incident folding and collector health apart."""

from sentinel.engine.lifecycle import Engine

__all__ = ["Engine"]
