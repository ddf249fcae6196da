"""Path facts shared by collectors, detectors and the scanner."""

from __future__ import annotations


def under(path: str, top: str) -> bool:
    """Whether `path` is `top` or lies below it (by name, nothing is resolved)."""
    top = top.rstrip("/") or "/"
    return path == top or path.startswith(top if top == "/" else top + "/")
