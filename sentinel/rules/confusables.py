"""Names folded before they are matched: NFKC (fullwidth and compatibility letters),
invisible format characters and combining marks dropped, then each remaining non-ASCII
character replaced by its ASCII prototype from Unicode's confusables (UTS #39), so that
xmrig with a Cyrillic i (U+0456), in fullwidth letters (U+FF58...) or with a zero-width
joiner inside all read `xmrig`.

ASCII names (nearly all) return at once; the table is read the first time a non-ASCII
name is folded."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from sentinel.rules.intel import IntelError, builtin_subdir

TABLE = "confusables.txt"
NAME_MAX = 255
DROPPED = frozenset({"Cf", "Mn", "Me"})  # format (zero-width joiners, bidi), marks


@lru_cache(maxsize=1)
def table() -> dict[str, str]:
    """Character -> ASCII prototype, from signatures/lists/confusables.txt."""
    path = builtin_subdir("lists") / TABLE
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IntelError(f"{path}: cannot read: {exc}") from None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        try:
            point, proto = line
            out[chr(int(point.removeprefix("U+"), 16))] = proto
        except ValueError:
            raise IntelError(f"{path}:{n}: want 'U+XXXX prototype', got {raw.strip()!r}") from None
    return out


def fold(name: str) -> str:
    """The lower-case ASCII skeleton a name is matched by (lower-cased when ASCII); a
    name longer than a file name can be is folded on its first NAME_MAX characters."""
    return name.lower() if name.isascii() else _fold(name[:NAME_MAX])


@lru_cache(maxsize=1024)
def _fold(name: str) -> str:
    text = unicodedata.normalize("NFKD", name.lower().rstrip("\ufffd"))  # a cut character
    text = "".join(c for c in text if unicodedata.category(c) not in DROPPED)
    text = unicodedata.normalize("NFKC", text)
    protos = table()
    return "".join(c if c.isascii() else protos.get(c, c) for c in text).lower()
