"""Typed events that collectors emit and detectors consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentinel.core.model import Connection, Proc


@dataclass(slots=True)
class Event:
    time: float


@dataclass(slots=True)
class ProcExec(Event):
    """A process seen for the first time (exec event or sweep discovery)."""

    proc: Proc
    source: str = "sweep"


@dataclass(slots=True)
class ProcExit(Event):
    pid: int
    start_time: float


@dataclass(slots=True)
class ProcCpu(Event):
    """CPU seconds per live process since the previous sample, and the sample's span."""

    span: float
    cpu: dict[int, float]
    procs: dict[int, Proc]


@dataclass(slots=True)
class HostCpu(Event):
    """Whole-host CPU busy fraction (0..1 of all cores) over the last interval."""

    busy: float
    cores: int


@dataclass(slots=True)
class FileChange(Event):
    """A file was created, modified or moved into a watched place."""

    path: str
    kind: str  # created | modified | moved
    role: str  # drop | persistence
    added: list[str] = field(default_factory=list)
    sha256: str | None = None  # of the whole file, when the collector read it
    size: int = -1
    partial: bool = False  # `added` is not all: the file was read or its lines carried capped


@dataclass(slots=True)
class FileAccess(Event):
    """A canary file was opened or read."""

    path: str
    kind: str  # opened | read | modified | deleted
    pids: list[int] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Indicators:
    """Pool and wallet indicators found outside argv (never the text they were found in)."""

    source: str  # "environ" or "stdin:PATH"
    urls: tuple[str, ...] = ()  # stratum URLs, credentials redacted
    pools: tuple[str, ...] = ()  # host:port values
    wallets: tuple[tuple[str, str], ...] = ()  # (kind, address)
    names: tuple[str, ...] = ()  # the variables that held them


@dataclass(frozen=True, slots=True)
class OwnerFacts:
    """What the socket's owner shows beyond its argv (see core/ownerfacts.py)."""

    stdio: tuple[str, ...] = ()  # its standard streams that are this socket
    stdin: str = ""  # pipe, socket, tty, a file's path, or ''
    hidden: tuple[Indicators, ...] = ()


@dataclass(slots=True)
class LogLines(Event):
    """Lines appended to a followed log that may hold a wallet or miner string."""

    path: str
    lines: list[tuple[int | None, str]]  # (line number when known, text)
    size: int = -1


@dataclass(slots=True)
class NetConn(Event):
    """A socket not seen before, with its owner when it could be found."""

    conn: Connection
    proc: Proc | None
    state: str = ""
    owner: OwnerFacts | None = None


@dataclass(slots=True)
class FlowPayload(Event):
    """The first bytes of one direction of a flow, tied to the local process: the sender
    for a client's message (`role` client), the receiver for a server's (`role` server).
    The bytes stay in memory; findings carry at most an excerpt."""

    conn: Connection
    proc: Proc | None
    role: str
    data: bytes
    netns: str = ""


@dataclass(slots=True)
class GpuDevice:
    index: int
    uuid: str
    name: str
    util_sm: float | None = None
    util_mem: float | None = None
    mem_used: int | None = None
    mem_total: int | None = None
    power_w: float | None = None
    temp_c: float | None = None
    sm_clock_mhz: float | None = None
    mig: bool = False
    lost: bool = False
    unsupported: list[str] = field(default_factory=list)


@dataclass(slots=True)
class GpuProcess:
    pid: int
    gpu_uuid: str
    sm_util: float | None = None
    mem_used: int | None = None


@dataclass(slots=True)
class GpuSample(Event):
    devices: list[GpuDevice]
    processes: list[GpuProcess]
    procs: dict[int, Proc] = field(default_factory=dict)


@dataclass(slots=True)
class CollectorState(Event):
    """A collector started, degraded or failed; reported once per change."""

    collector: str
    ok: bool
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Tick(Event):
    """Engine heartbeat every agent.interval, for time-based detectors."""
