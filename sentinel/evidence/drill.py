"""`sentinel drill`: safe scenarios against the running agent, read back from its alert log.

Every scenario acts (a miner-like burner, a tunnel attempt, a persistence entry...), then
waits, with a deadline, for a finding of the control expected to catch it. Nothing real
is used: burners are python loops, the pool and the tunnel peers are servers on
127.0.0.1 that never leave the box, wallets are random bytes with a valid checksum,
persistence entries never fire (a cron line for 31 February, a unit never enabled) and
are removed or restored from a backup as soon as the scenario ends. Everything the drill
starts runs in its own session and is ended by pid; every file it touched is restored,
even on Ctrl-C or SIGTERM. The drill registers itself in `state_dir/drill.json` so that
the agent marks its findings `drill: true` and [DRILL] (sentinel/evidence/drillmark.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel.core.config import Config
from sentinel.core.model import Severity
from sentinel.core.proctable import read_stat
from sentinel.evidence import drillmark
from sentinel.evidence.drillkit import FakePool, free_pool_port
from sentinel.evidence.timeline import record_time
from sentinel.sinks._http import acks

Record = dict[str, Any]
Match = Callable[[Record], bool]
PYTHON = os.path.realpath(sys.executable)
REGISTRY_TTL = 300.0  # seconds a registry stays valid without being rewritten
ACK_WAIT = 5.0  # seconds the drill waits at the end for sinks to acknowledge
# the detector names a finding carries, for each detector that can be disabled
RECORD_DETECTORS = {"filesig": {"filesig", "yara"}}


class Skip(Exception):
    """A scenario that cannot run on this box (no ssh, no canary configured...)."""


@dataclass
class Row:
    scenario: str
    control: str
    caught_by: str = ""
    latency: float | None = None
    severity: str = ""
    sinks: list[str] = field(default_factory=list)
    finding_id: str = ""
    status: str = "missed"  # caught | missed | skipped
    note: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "control": self.control,
            "caught_by": self.caught_by or None,
            "latency_s": None if self.latency is None else round(self.latency, 3),
            "severity": self.severity or None,
            "sinks": self.sinks,
            "finding_id": self.finding_id or None,
            "status": self.status,
            "note": self.note,
        }


@dataclass
class Scenario:
    name: str
    control: str  # the detector expected to catch it (as in [detectors] disable)
    category: str  # the category of the finding that counts
    act: Callable[[Drill], Match]
    timeout_extra: float = 0.0  # seconds beyond the base deadline (collectors that poll)
    rule: str = ""  # when set, only this rule counts

    def counts(self, rec: Record) -> bool:
        detectors = RECORD_DETECTORS.get(self.control, {self.control})
        return (
            rec.get("detector") in detectors
            and rec.get("category") == self.category
            and (not self.rule or rec.get("rule") == self.rule)
        )


class LogTail:
    """New findings in the agent's alert log since the drill began."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.offset = os.path.getsize(path)
        except OSError:
            self.offset = 0
        self.records: list[Record] = []

    def poll(self) -> list[Record]:
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self.offset:
                    self.offset = 0  # rotated
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.records
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict) and "rule" in rec:
                    self.records.append(rec)
        return self.records


class Staller:
    """A TCP server on 127.0.0.1 that accepts and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()
        self.thread.join(5)


def regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


class Drill:
    """One drill run: its scratch dir, its processes, its backups and its registry."""

    def __init__(self, cfg: Config, timeout: float = 15.0, with_load: bool = False) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self.with_load = with_load
        self.tag = secrets.token_hex(4)
        self.registry = drillmark.path_of(cfg.agent.state_dir)
        self.marks = drillmark.Marks()
        self.register(os.getpid())
        self.groups: list[int] = []  # session ids (= leader pids) of what the drill started
        self.restores: list[Callable[[], None]] = []
        self.stack = contextlib.ExitStack()
        self.detached: list[int] = []  # pids of daemons re-parented to init
        self.pool: FakePool | None = None
        self.staller: Staller | None = None
        self.work = Path()
        self.tail = LogTail(cfg.alert_log)
        self.keep = 0  # background processes (load) kept across scenarios

    # setup and teardown
    def __enter__(self) -> Drill:
        try:
            self._setup()
        except BaseException:
            self.cleanup()
            raise
        return self

    def _setup(self) -> None:
        self.mark()
        watch = next((p for p in self.cfg.watch.paths if os.path.isdir(p)), None)
        if watch is None:
            raise Skip("no watched drop directory exists")
        self.work = Path(tempfile.mkdtemp(prefix=f"sentinel-drill-{self.tag}-", dir=watch))
        self.marks.paths.append(str(self.work))
        self.mark()
        self.pool = self.stack.enter_context(free_pool_port())
        self.staller = Staller()
        if self.with_load:
            for _ in range(os.cpu_count() or 1):
                self.spawn([PYTHON, "-c", "while True: pass"])

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """End every process by its session, restore every file, drop the registry."""
        for sid in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(sid, signal.SIGKILL)
        for sid in self.groups:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(sid, 0)
        self.groups.clear()
        while self.restores:
            restore = self.restores.pop()
            with contextlib.suppress(OSError):
                restore()
        self._kill_detached()
        with contextlib.suppress(Exception):
            self.stack.close()
        self.pool = None
        if self.staller is not None:
            self.staller.close()
            self.staller = None
        if self.work != Path() and self.work.is_dir():
            shutil.rmtree(self.work, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.registry)

    def register(self, pid: int) -> None:
        """List a process of the drill's (by pid and start time) in the registry."""
        st = read_stat(pid)
        if st is not None:
            self.marks.procs[pid] = st[2]

    def mark(self) -> None:
        self.marks.until = time.time() + REGISTRY_TTL
        drillmark.write(self.registry, self.marks)

    # what scenarios use
    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Run argv under a shell of its own, in a new session; the shell's pid."""
        p = subprocess.Popen(
            ["sh", "-c", '"$@"; exit 0', "sh", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.groups.append(p.pid)
        return p.pid

    def spawn_detached(self, code: str) -> int:
        """Run python `code` in a daemon re-parented to init, registered before it runs.

        Detached, it descends from nothing that alerted before (the engine folds a finding
        into an older alert about an ancestor); the registry lists its pid, so its findings
        are still marked as the drill's.
        """
        launcher = (
            "import os, sys\n"
            "if os.fork(): os._exit(0)\n"
            "os.setsid()\n"
            "if os.fork(): os._exit(0)\n"
            "print(os.getpid(), flush=True)\n"
            "if sys.stdin.readline() != 'go\\n': os._exit(0)\n"  # the drill let go of it
        ) + code
        p = subprocess.Popen(
            [PYTHON, "-c", launcher],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert p.stdin is not None and p.stdout is not None
        try:  # until "go" is written, closing its stdin makes the helper exit unrun
            try:
                pid = int(p.stdout.readline())
            except ValueError:
                raise Skip("the detached helper did not start") from None
            finally:
                p.wait(10)
                p.stdout.close()
            self.detached.append(pid)
            self.register(pid)
            self.mark()
            p.stdin.write("go\n")
        finally:
            p.stdin.close()
        return pid

    def _kill_detached(self) -> None:
        for pid in self.detached:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.detached.clear()

    def file(self, name: str, data: str | bytes, mode: int = 0o644) -> Path:
        path = self.work / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)
        return path

    def append(self, path: str, text: str) -> None:
        """Append to an existing regular file, restored from a backup when the scenario ends.

        One descriptor reads the backup, appends and restores: whatever the file's owner
        does to the names on its path meanwhile (a directory swapped for a link to root's),
        the restore writes back to the file the backup came from and nowhere else.
        """
        if not regular(path):
            raise Skip(f"{path} is not a regular file")
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Skip(f"{path} is not a regular file")
            backup = _read_all(fd)
        except BaseException:
            os.close(fd)
            raise

        def restore() -> None:
            try:
                os.ftruncate(fd, 0)
                _write_all(fd, backup, 0)
            finally:
                os.close(fd)

        self.restores.append(restore)
        self.watch_path(path)
        line = text if backup.endswith(b"\n") or not backup else "\n" + text
        _write_all(fd, line.encode(), os.fstat(fd).st_size)

    def create(self, directory: str, name: str, text: str) -> str:
        """A new file in a persistence directory, removed when the scenario ends."""
        path = os.path.join(directory, name)
        self.watch_path(path)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
        self.restores.append(lambda: os.unlink(path))
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def watch_path(self, path: str) -> None:
        self.marks.paths.append(path)
        self.mark()

    def end_scenario(self) -> None:
        """Undo what the scenario left: its processes, its files, its registry paths."""
        for sid in self.groups[self.keep :]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(sid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(sid, 0)
        del self.groups[self.keep :]
        self._kill_detached()
        while self.restores:
            with contextlib.suppress(OSError):
                self.restores.pop()()
        self.marks.paths = self.marks.paths[:1]
        self.mark()

    def wait(self, scenario: Scenario, match: Match, started: float) -> Row:
        row = Row(scenario.name, scenario.control)
        deadline = time.monotonic() + self.timeout + scenario.timeout_extra
        seen = 0
        while time.monotonic() < deadline:
            records = self.tail.poll()
            for rec in records[seen:]:
                if match(rec) and scenario.counts(rec):
                    row.status, row.caught_by = "caught", str(rec.get("rule"))
                    row.latency = max(0.0, record_time(rec) - started)
                    row.severity, row.finding_id = str(rec.get("severity")), str(rec.get("id"))
                    row.sinks = ["log"]
                    return row
            seen = len(records)
            time.sleep(0.1)
        row.note = f"no {scenario.control} finding in {self.timeout + scenario.timeout_extra:.0f}s"
        return row

    def run(self, scenarios: list[Scenario]) -> list[Row]:
        self.keep = len(self.groups)
        rows = []
        for sc in scenarios:
            started = time.time()
            try:
                match = sc.act(self)
            except Skip as exc:
                rows.append(Row(sc.name, sc.control, status="skipped", note=str(exc)))
                self.end_scenario()
                continue
            try:
                rows.append(self.wait(sc, match, started))
            finally:
                self.end_scenario()
        self.acknowledged(rows)
        return rows

    def acknowledged(self, rows: list[Row]) -> None:
        """Add the sinks whose endpoint accepted each caught finding (their acks files)."""
        wanted = {s.name: Severity.parse(s.min_severity) for s in self.cfg.sinks if s.name}
        deadline = time.monotonic() + ACK_WAIT
        while True:
            missing = False
            for row in rows:
                if row.status != "caught":
                    continue
                for name, floor in wanted.items():
                    if Severity.parse(row.severity) < floor or name in row.sinks:
                        continue
                    path = acks.path_for(self.cfg.agent.state_dir, name)
                    if row.finding_id in acks.read(path):
                        row.sinks.append(name)
                    else:
                        missing = True
            if not missing or time.monotonic() > deadline:
                return
            time.sleep(0.2)


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


# matchers


def by_process(pid: int) -> Match:
    """A finding about process `pid` or one of its descendants."""

    def match(rec: Record) -> bool:
        proc = rec.get("process") or {}
        return proc.get("pid") == pid or any(a.get("pid") == pid for a in proc.get("ancestors", []))

    return match


def by_file(path: str | Path) -> Match:
    def match(rec: Record) -> bool:
        return (rec.get("file") or {}).get("path") == str(path)

    return match


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM and SIGHUP end the drill like Ctrl-C does: through its cleanup."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run(cfg: Config, chosen: list[Scenario], timeout: float, with_load: bool) -> list[Row]:
    """Run the chosen scenarios (sentinel/evidence/scenarios.py) and clean up after them."""
    with interrupts_as_keyboard(), Drill(cfg, timeout, with_load) as drill:
        return drill.run(chosen)
