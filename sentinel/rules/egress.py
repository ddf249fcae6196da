"""The egress allow-list (`[network] egress_allow`): entries `CIDR`, `CIDR:port` and
`[IPv6-CIDR]:port`, parsed once; a destination is allowed when one entry holds it."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ENTRY = re.compile(
    r"\[(?P<v6>[^\]]+)\]:(?P<v6port>\d+)|(?P<net>[^:\s]+):(?P<port>\d+)|(?P<any>\S+)"
)


@dataclass(frozen=True, slots=True)
class Allow:
    net: Network
    port: int | None  # None: every port

    def holds(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        return ip.version == self.net.version and ip in self.net and self.port in (None, port)


def parse_entry(entry: str) -> Allow:
    """One entry; ValueError says what is wrong with it."""
    m = ENTRY.fullmatch(entry.strip())
    if not m:
        raise ValueError(f"expected CIDR, CIDR:port or [IPv6-CIDR]:port, got {entry!r}")
    net = m["v6"] or m["net"] or m["any"]
    port_text = m["v6port"] or m["port"]
    try:
        network = ipaddress.ip_network(net, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r}: {net!r} is not an address or CIDR") from None
    port = int(port_text) if port_text else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{entry!r}: port {port} out of range")
    return Allow(network, port)


def parse(entries: list[str]) -> tuple[Allow, ...]:
    return tuple(parse_entry(e) for e in entries)


def address(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address (an IPv4-mapped IPv6 one as IPv4), or None when it does not parse."""
    try:
        ip = ipaddress.ip_address(addr.strip("[]"))
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def allowed(policy: tuple[Allow, ...], addr: str, port: int) -> bool:
    """Whether `addr:port` is held by an entry (an address that does not parse: not)."""
    ip = address(addr)
    return ip is not None and any(a.holds(ip, port) for a in policy)


def is_local(addr: str) -> bool:
    """Loopback or unspecified: a destination that does not leave the host."""
    ip = address(addr)
    return ip is not None and (ip.is_loopback or ip.is_unspecified)
