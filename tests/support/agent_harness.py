"""Runs the real `sentinel agent` CLI on a tmp config and reads its JSONL alert log."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

Record = dict[str, Any]
SEVERITIES = ("info", "low", "medium", "high", "critical")


def severity_at_least(record: Record, level: str) -> bool:
    return SEVERITIES.index(record["severity"]) >= SEVERITIES.index(level)


def record_time(record: Record) -> float:
    return datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()


def touches(record: Record, pids: Iterable[int] = (), under: str | None = None) -> bool:
    """Whether a record is about one of the pids (or a descendant), or a path under `under`."""
    wanted = set(pids)
    proc = record.get("process")
    if proc and (proc["pid"] in wanted or any(a["pid"] in wanted for a in proc["ancestors"])):
        return True
    file = record.get("file")
    return bool(under and file and file["path"].startswith(under.rstrip("/") + "/"))


class AgentRun:
    """One agent process on a config whose every path lies under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        interval: float = 0.5,
        min_age: float = 2.0,
        extra: str = "",
        homes: list[str] | None = None,
        home_files: list[str] | None = None,
        watch_extra: str = "",
        stdout: bool = False,
        metrics: str = "enabled = false",
        agent: str = "",
    ) -> None:
        self.root = root
        self.state = root / "state"
        self.watch = root / "watch"
        self.etc = root / "etc"
        self.home = root / "home" / "u"
        self.canary = root / "secrets" / "credentials"
        self.log = self.state / "alerts.jsonl"
        self.interval = interval
        self.min_age = min_age
        self.extra = extra
        self.homes = homes
        self.home_files = home_files or []
        self.watch_extra = watch_extra
        self.stdout = stdout  # the stdout sink on, its lines written to `out`
        self.out = root / "stdout.log"
        self.metrics = metrics  # the body of the [metrics] table
        self.agent = agent  # more keys of the [agent] table
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr: list[str] = []
        self._records: list[Record] = []
        self._offset = 0
        self._ready = threading.Event()

    def persistence_paths(self) -> list[Path]:
        return [
            self.etc / "cron.d",
            self.etc / "systemd" / "system",
            self.etc / "rc.local",
            self.home / ".bashrc",
            self.home / ".ssh" / "authorized_keys",
        ]

    def prepare(self) -> Path:
        """Create the tmp tree (files that persistence watches need a baseline) and config."""
        for d in (self.state, self.watch, self.etc / "cron.d", self.etc / "systemd" / "system"):
            d.mkdir(parents=True, exist_ok=True)
        (self.home / ".ssh").mkdir(parents=True, exist_ok=True)
        (self.etc / "rc.local").write_text("#!/bin/sh\nexit 0\n")
        (self.home / ".bashrc").write_text("# ~/.bashrc\nalias ll='ls -l'\n")
        (self.home / ".ssh" / "authorized_keys").write_text("")
        self.canary.parent.mkdir(parents=True, exist_ok=True)
        self.canary.write_text("[default]\naws_access_key_id = CANARY\n")
        persistence = ", ".join(f'"{p}"' for p in self.persistence_paths())
        cfg = self.root / "sentinel.toml"
        cfg.write_text(
            f"""
[agent]
interval = {self.interval}
state_dir = "{self.state}"
{self.agent}
[log]
path = "{self.log}"
stdout = {"true" if self.stdout else "false"}
[watch]
paths = ["{self.watch}"]
persistence = [{persistence}]
home_files = {json.dumps(self.home_files)}
{f"homes = {json.dumps(self.homes)}" if self.homes is not None else ""}
{self.watch_extra}
{"" if "logs" in self.watch_extra else "logs = []  # the box's own logs are not the test's"}
[canaries]
paths = ["{self.canary}"]
[daemons]
min_age = {self.min_age}
[metrics]
{self.metrics}
{self.extra}
"""
        )
        return cfg

    def start(self, timeout: float = 30.0, env: dict[str, str] | None = None) -> None:
        cfg = self.prepare()
        self._ready.clear()
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sentinel.cli", "agent", "-c", str(cfg)],
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out if self.stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise AssertionError("agent not ready in time:\n" + "".join(self.stderr[-40:]))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.stderr.append(line)
            if "ready" in line:
                self._ready.set()

    def metrics_port(self) -> int:
        """The TCP port the agent's metrics endpoint said it listens on."""
        for line in self.stderr:
            m = re.search(r"metrics on http://[^ ]+:(\d+)/metrics", line)
            if m:
                return int(m.group(1))
        raise AssertionError("the agent announced no metrics port")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("agent has no VmRSS")

    def records(self) -> list[Record]:
        """Every finding in the log so far (checkpoints skipped); only new lines are parsed."""
        try:
            with self.log.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self._records
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        self._offset += len(complete)
        lines = (json.loads(line) for line in complete.splitlines())
        self._records.extend(r for r in lines if r.get("type") != "checkpoint")
        return self._records

    def wait_for(self, pred: Callable[[Record], bool], timeout: float = 10.0) -> Record:
        """The first record matching `pred`, polling the log until the deadline."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            records = self.records()
            for rec in records[checked:]:
                if pred(rec):
                    return rec
            checked = len(records)
            if time.monotonic() > deadline:
                seen = [(r["rule"], r["summary"]) for r in self.records()][-30:]
                raise AssertionError(
                    f"no matching finding in {timeout}s; last seen: {seen}; agent stderr:\n"
                    + "".join(self.stderr[-20:])
                )
            assert self.alive(), "agent died:\n" + "".join(self.stderr[-40:])
            time.sleep(0.05)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode
