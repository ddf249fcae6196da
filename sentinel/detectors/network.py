"""Network rules on new sockets: the catalogue's network rules on each outbound connection,
with the egress allow-list of `[network] egress_allow` in force."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from sentinel.core.context import Context
from sentinel.core.events import Event, NetConn
from sentinel.core.model import Finding
from sentinel.detectors import Detector, _connection, register
from sentinel.rules import egress

ONCE_TAG = "once-per-destination"  # a rule reported once per executable and destination
ONCE_CAP = 65536  # (rule, executable, destination) keys remembered, oldest dropped first


@register
class NetworkDetector(Detector):
    """Judges each outbound connection by its port, its owner and the names the owner used."""

    name = "network"
    events = (NetConn,)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        allow = ctx.config.network.egress_allow
        self.egress = egress.parse(allow) if allow is not None else None
        self.once: OrderedDict[tuple[str, str, str, int, str], float] = OrderedDict()

    def handle(self, event: Event) -> Iterable[Finding]:
        if not isinstance(event, NetConn):
            return
        catalogue = self.ctx.catalogue
        subject = catalogue.subject("network", event)
        subject.cache["egress.allow"] = self.egress
        for m in catalogue.evaluate_subject(subject):
            if ONCE_TAG in m.rule.tags and self.repeat(m.rule.id, event):
                continue
            yield _connection.finding(self, m, event)

    def repeat(self, rule: str, event: NetConn) -> bool:
        """Whether this rule was already reported for this executable and destination
        within the engine's dedup window."""
        proc, conn = event.proc, event.conn
        exe = (proc.exe or proc.name) if proc else ""
        key = (rule, exe, conn.raddr, conn.rport, conn.proto)
        last = self.once.get(key)
        if last is not None and event.time - last < self.ctx.config.engine.dedup_window:
            return True
        self.once[key] = event.time
        self.once.move_to_end(key)
        if len(self.once) > ONCE_CAP:
            self.once.popitem(last=False)
        return False
