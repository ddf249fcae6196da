"""Network rules on new sockets: the catalogue's network rules on each outbound connection."""

from __future__ import annotations

from collections.abc import Iterable

from sentinel.core.events import Event, NetConn
from sentinel.core.model import Finding
from sentinel.detectors import Detector, _connection, register


@register
class NetworkDetector(Detector):
    """Judges each outbound connection by its port, its owner and the names the owner used."""

    name = "network"
    events = (NetConn,)

    def handle(self, event: Event) -> Iterable[Finding]:
        if isinstance(event, NetConn):
            yield from _connection.findings(self, "network", event)
