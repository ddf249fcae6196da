"""The real agent Engine with one test-only source: findings injected on stdin.

Run as `python outage_agent.py CONFIG`. Each stdin line `ID N` becomes an event that a
pass-through detector turns into a finding with that id; it then takes the normal path
(engine dedup, the JSONL log, every configured sink). After the sinks have taken a
finding, the line `acked ID` goes to stdout. Used by test_outage.py, which kills this
process with SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sentinel import collectors, detectors
from sentinel.core import config
from sentinel.core.events import Event
from sentinel.core.model import Category, Finding, Severity
from sentinel.engine import Engine
from sentinel.sinks import Sink


@dataclass(slots=True)
class Injected(Event):
    finding_id: str
    n: int


class StdinSource(collectors.Collector):
    name = "stdin"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        self.report(True)
        while line := await reader.readline():
            fid, n = line.decode().split()
            self.emit(Injected(time=time.time(), finding_id=fid, n=int(n)))
        await asyncio.Event().wait()


class PassThrough(detectors.Detector):
    name = "inject"
    events = (Injected,)

    def handle(self, event: Event) -> Iterable[Finding]:
        assert isinstance(event, Injected)
        yield Finding(
            rule="test.injected",
            category=Category.MINER,
            severity=Severity.HIGH,
            summary=f"injected finding #{event.n}",
            detector=self.name,
            id=event.finding_id,
            subject=f"injected:{event.n}",
        )


class Ack(Sink):
    """Last in line: says on stdout that every real sink has taken the finding."""

    type = "ack"

    def __init__(self) -> None:  # not built from config
        self.name = "ack"

    def wants(self, finding: Finding) -> bool:
        return True

    def submit(self, finding: Finding) -> None:
        sys.stdout.write(f"acked {finding.id}\n")
        sys.stdout.flush()


def main() -> int:
    collectors.load_all = lambda: {StdinSource.name: StdinSource}
    detectors.load_all = lambda: {PassThrough.name: PassThrough}
    engine = Engine(config.load(sys.argv[1]))
    engine.sinks.append(Ack())
    return asyncio.run(engine.run())


if __name__ == "__main__":
    sys.exit(main())
