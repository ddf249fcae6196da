"""Pool and wallet indicators in (name, value) pairs: an environment's variables or a config
file's lines. Only the indicators are kept, never the text: URLs with credentials redacted,
`host:port` values of pool-named variables, checksum-valid wallets and the names of the
variables holding them."""

from __future__ import annotations

import re
from typing import Any

from sentinel.core.events import Indicators
from sentinel.rules import cmdline, redact, wallets

MAX_ITEMS = 8  # indicators of each sort kept
POOL_NAME = re.compile(r"pool|stratum|mining|miner", re.IGNORECASE)  # a variable's name
HOST_PORT = re.compile(r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}:\d{2,5}")


def indicators(pairs: list[tuple[str, str]], source: str) -> Indicators | None:
    """The indicators in (name, value) pairs, or None when there are none. For a file's
    lines the name is ''."""
    urls: list[str] = []
    pools: list[str] = []
    found: list[tuple[str, str]] = []
    names: list[str] = []

    def keep(into: list[Any], item: Any) -> None:
        if len(into) < MAX_ITEMS and item not in into:
            into.append(item)

    for name, value in pairs:
        in_urls = [redact.redact(url) for url, _ in cmdline.stratum_urls(value)]
        in_pools = [] if in_urls or not POOL_NAME.search(name) else HOST_PORT.findall(value)
        in_wallets = wallets.find_wallets(value, limit=16)
        for url in in_urls:
            keep(urls, url)
        for pool in in_pools:
            keep(pools, pool)
        for wallet in in_wallets:
            keep(found, wallet)
        if name and (in_urls or in_pools or in_wallets):
            keep(names, name)
    if not (urls or pools or found):
        return None
    return Indicators(source, tuple(urls), tuple(pools), tuple(found), tuple(names))


def as_evidence(hidden: tuple[Indicators, ...]) -> dict[str, Any] | None:
    """Indicators by source, as a finding's evidence shows them; None when there are none."""
    return {
        h.source: {
            "variables": list(h.names),
            "urls": list(h.urls),
            "pools": list(h.pools),
            "wallets": [{"kind": k, "address": a} for k, a in h.wallets],
        }
        for h in hidden
    } or None
