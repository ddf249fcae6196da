"""Traffic rules: the catalogue's `traffic` rules on the first bytes of each flow direction.

Pool, tunnel and dynamic-DNS names from SNI, HTTP Host and DNS answers reach the network
rules through Connection.domain (filled by the collectors); these rules judge the payload.
"""

from __future__ import annotations

from collections.abc import Iterable

from sentinel.core.events import Event, FlowPayload
from sentinel.core.model import Finding
from sentinel.detectors import Detector, _connection, register


@register
class TrafficDetector(Detector):
    """Judges the first message of each flow direction by what its bytes say."""

    name = "traffic"
    events = (FlowPayload,)

    def handle(self, event: Event) -> Iterable[Finding]:
        if isinstance(event, FlowPayload):
            yield from _connection.findings(self, "traffic", event)
