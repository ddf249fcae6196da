"""Indicator lists from signatures/lists/: pool ports and domains, miner names, tunnel tools."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class IntelError(Exception):
    """A malformed indicator list; the message names the file and line."""


def builtin_dir() -> Path:
    """The signatures directory: inside an installed package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "signatures", here.parent / "signatures"):
        if candidate.is_dir():
            return candidate
    raise IntelError(f"no signatures directory near {here}")


def builtin_subdir(name: str) -> Path:
    """One part of the built-in signatures: 'rules' (TOML), 'yara' or 'lists'."""
    return builtin_dir() / name


def _read_list(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise IntelError(f"{path}: cannot read: {exc}") from None
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip().lower()
        if line:
            if any(c.isspace() for c in line):
                raise IntelError(f"{path}:{n}: one entry per line, got {raw.strip()!r}")
            out.append((n, line))
    return out


def _ports(path: Path) -> set[int]:
    ports = set()
    for n, entry in _read_list(path):
        if not entry.isdigit() or not 0 < int(entry) < 65536:
            raise IntelError(f"{path}:{n}: not a port number: {entry!r}")
        ports.add(int(entry))
    return ports


def _domains(path: Path) -> tuple[str, ...]:
    out = []
    for n, entry in _read_list(path):
        entry = entry.lstrip("*.").rstrip(".")
        if "." not in entry or "/" in entry:
            raise IntelError(f"{path}:{n}: not a domain suffix: {entry!r}")
        out.append(entry)
    return tuple(out)


def _names(path: Path) -> frozenset[str]:
    return frozenset(entry for _, entry in _read_list(path))


def domain_matches(name: str, suffixes: tuple[str, ...]) -> str | None:
    """The suffix that `name` equals or ends with at a label boundary, if any."""
    name = name.lower().rstrip(".")
    for suffix in suffixes:
        if name == suffix or name.endswith("." + suffix):
            return suffix
    return None


@dataclass(frozen=True)
class Intel:
    pool_ports: set[int] = field(default_factory=set)
    dev_ports: set[int] = field(default_factory=set)
    pool_domains: tuple[str, ...] = ()
    tunnel_domains: tuple[str, ...] = ()
    dyndns_domains: tuple[str, ...] = ()
    miner_names: frozenset[str] = frozenset()
    tunnel_tools: frozenset[str] = frozenset()
    doh_domains: tuple[str, ...] = ()
    browsers: frozenset[str] = frozenset()


_LISTS = {
    "pool_ports": ("pool_ports.txt", _ports),
    "dev_ports": ("dev_ports.txt", _ports),
    "pool_domains": ("pool_domains.txt", _domains),
    "tunnel_domains": ("tunnel_domains.txt", _domains),
    "dyndns_domains": ("dyndns_domains.txt", _domains),
    "miner_names": ("miner_names.txt", _names),
    "tunnel_tools": ("tunnel_tools.txt", _names),
    "doh_domains": ("doh_resolvers.txt", _domains),
    "browsers": ("browsers.txt", _names),
}


def load(extra_dirs: list[str] | None = None) -> Intel:
    """Built-in lists, extended by same-named files in each extra directory."""
    dirs = [builtin_subdir("lists"), *(Path(x) for x in extra_dirs or [])]
    values: dict[str, object] = {}
    for key, (filename, reader) in _LISTS.items():
        parts = [reader(d / filename) for d in dirs if (d / filename).is_file()]
        if not parts:
            raise IntelError(f"{dirs[0] / filename}: indicator list missing")
        merged = parts[0]
        for part in parts[1:]:
            merged = merged + part if isinstance(merged, tuple) else merged | part  # type: ignore[operator]
        values[key] = merged
    return Intel(**values)  # type: ignore[arg-type]
