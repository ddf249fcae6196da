"""End to end with the real agent: the flight recorder's timeline, run records, the drill."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from agent_harness import AgentRun
from receiver import Receiver

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(90),
]

PYTHON = os.path.realpath(sys.executable)


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    """A real webhook receiver on loopback, served from a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    receiver = asyncio.run_coroutine_threadsafe(Receiver().start(), loop).result(10)
    try:
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, hook: Receiver) -> Iterator[AgentRun]:
    extra = (
        "[evidence]\ncheckpoint_every = 5\n"
        f'[[sinks]]\ntype = "webhook"\nname = "hook"\nurl = "{hook.url()}"\n'
        'min_severity = "low"\n'
    )
    run = AgentRun(tmp_path_factory.mktemp("evidence"), extra=extra)
    run.start()
    yield run
    assert run.stop() == 0, "agent did not stop cleanly:\n" + "".join(run.stderr[-40:])


def cli(agent: AgentRun, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cfg = agent.root / "sentinel.toml"
    return subprocess.run(
        [sys.executable, "-m", "sentinel.cli", *args, "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def server() -> Iterator[int]:
    """A loopback TCP server that accepts and holds connections; its port."""
    srv = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conns.append(srv.accept()[0])
            except OSError:
                return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()
        for c in conns:
            c.close()
        t.join(5)


def test_timeline_of_a_real_process_tree(agent: AgentRun, server: int) -> None:
    out = agent.watch / f"tl-{secrets.token_hex(3)}.txt"
    connect = (
        f"import socket, time; s = socket.create_connection(('127.0.0.1', {server})); time.sleep(2)"
    )
    script = f'( exec {PYTHON} -c "{connect}" ); echo done > {out}; sleep 1.5'
    sh = subprocess.Popen(["sh", "-c", script], stdin=subprocess.DEVNULL)
    try:
        sh.wait(20)
    finally:
        if sh.poll() is None:
            sh.kill()
            sh.wait(5)
    deadline = time.monotonic() + 15
    while True:
        res = cli(agent, "timeline", "--pid", str(sh.pid), "--since", "5m", "--json")
        assert res.returncode == 0, res.stderr
        entries: list[dict[str, Any]] = json.loads(res.stdout)
        kinds = [(e["kind"], e["pid"]) for e in entries]
        child = next(
            (e["pid"] for e in entries if e["kind"] == "exec" and e["ppid"] == sh.pid), None
        )
        wanted = [
            ("exec", sh.pid),
            ("exec", child),
            ("connect", child),
            ("exit", child),
            ("file", None),
            ("exit", sh.pid),
        ]
        if child is not None and all(w in kinds for w in wanted):
            break
        assert time.monotonic() < deadline, f"timeline incomplete: {entries}"
        time.sleep(0.3)
    order = [kinds.index(w) for w in wanted]
    assert order == sorted(order), entries
    conn = next(e for e in entries if e["kind"] == "connect" and e["pid"] == child)
    assert conn["rport"] == server and conn["raddr"] == "127.0.0.1"
    assert next(e for e in entries if e["kind"] == "file")["path"] == str(out)
    depth = {e["pid"]: e["depth"] for e in entries if e["kind"] == "exec"}
    assert depth[sh.pid] == 0 and depth[child] == 1
    table = cli(agent, "timeline", "--pid", str(sh.pid), "--since", "5m")
    assert table.returncode == 0 and str(child) in table.stdout


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_signed_run_record_says_what_the_run_left_behind(agent: AgentRun, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    cron = agent.etc / "cron.d" / f"run-{tag}"
    tool = agent.watch / f"tool-{tag}"
    pidfile = tmp_path / "daemon.pid"
    daemon = (
        "import os, time\n"
        "if os.fork(): os._exit(0)\n"
        "os.setsid()\n"
        "if os.fork(): os._exit(0)\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(30)\n"
    )
    script = (
        f"echo '* * * * * root /opt/w/sync' > {cron}; "
        f"printf '#!/bin/sh\\nexit 0\\n' > {tool}; chmod +x {tool}; "
        f'{PYTHON} -c "$DAEMON" </dev/null >/dev/null 2>&1; sleep 2'
    )
    env = {**os.environ, "DAEMON": daemon}
    cfg = agent.root / "sentinel.toml"
    try:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "sentinel.cli",
                "run",
                "-c",
                str(cfg),
                f"eval-{tag}",
                "--meta",
                "model=m1",
                "--",
                "sh",
                "-c",
                script,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert res.returncode == 0, res.stderr
        record = Path(res.stdout.strip().splitlines()[-1])
        assert record.parent == agent.state / "runs" and record.suffix == ".json"
        ok = cli(agent, "run", "verify", str(record))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        envelope = json.loads(record.read_text())
        statement = json.loads(base64.b64decode(envelope["payload"]))
        pred = statement["predicate"]
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert pred["run"]["meta"] == {"model": "m1"} and pred["run"]["exit_code"] == 0
        left = pred["left_behind"]
        assert str(cron) in [p["path"] for p in left["persistence"]]
        assert {"path": str(tool), "kind": "script"}.items() <= next(
            e for e in left["executables"] if e["path"] == str(tool)
        ).items()
        assert int(pidfile.read_text()) in [d["pid"] for d in left["daemons"]]
        assert pred["findings"]["by_severity"].get("medium", 0) >= 1  # the cron entry
        assert pred["config"]["sha256"] and pred["rules"]["sha256"]

        pred["findings"]["by_severity"] = {}
        statement["subject"][0]["digest"]["sha256"] = runs_digest(pred)
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps(envelope))
        bad = cli(agent, "run", "verify", str(forged))
        assert bad.returncode == 1 and "no signature verifies" in bad.stdout
    finally:
        if pidfile.exists():
            _kill(int(pidfile.read_text()))
        cron.unlink(missing_ok=True)
        tool.unlink(missing_ok=True)


def runs_digest(predicate: dict[str, Any]) -> str:
    from sentinel.evidence.runs import _digest

    return _digest(predicate)


def test_drill_passes_against_the_agent_and_leaves_nothing(
    agent: AgentRun, hook: Receiver, tmp_path: Path
) -> None:
    watched = {p: p.read_bytes() for p in agent.persistence_paths() if p.is_file()}
    units = set(os.listdir(agent.etc / "systemd" / "system"))
    report = tmp_path / "drill.md"
    res = cli(agent, "drill", "--json", "--report", str(report), "--timeout", "25", timeout=400)
    rows = json.loads(res.stdout)
    assert res.returncode == 0, [r for r in rows if r["status"] != "caught"]
    assert {r["status"] for r in rows} == {"caught"} and len(rows) == 15
    by_name = {r["scenario"]: r for r in rows}
    assert by_name["reverse-shell-dev-tcp"]["caught_by"] == "tunnel.reverse_shell"
    assert by_name["cron-persistence"]["control"] == "persistence"
    assert any("hook" in r["sinks"] for r in rows if r["severity"] in ("high", "critical"))
    text = report.read_text()
    assert "| miner-stratum | process |" in text and "Result: 15 of 15" in text
    ids = {r["finding_id"] for r in rows}
    marked = [r for r in agent.records() if r["id"] in ids]
    assert marked and all(r["evidence"]["drill"] and "[DRILL]" in r["summary"] for r in marked)
    assert all(r["evidence"]["recent"] for r in marked if r["process"])
    miner = by_name["miner-stratum"]["finding_id"]
    tl = cli(agent, "timeline", "--incident", miner, "--json")
    entries = json.loads(tl.stdout)
    assert any(e["kind"] == "finding" and e["id"] == miner for e in entries)
    assert any(e["kind"] == "exec" and "xmrig" in " ".join(e["argv"]) for e in entries)
    # restored: files as they were, no unit left, no process, no registry
    assert {p: p.read_bytes() for p in watched} == watched
    assert set(os.listdir(agent.etc / "systemd" / "system")) == units
    assert not (agent.state / "drill.json").exists()
    assert not list(agent.watch.glob("sentinel-drill-*"))
    # the log stayed intact and its checkpoints reached the webhook
    assert cli(agent, "verify-log").returncode == 0
    bodies = [r.json() for r in hook.requests]
    assert any(b.get("type") == "checkpoint" for b in bodies)


def test_drill_fails_when_the_detector_is_disabled(tmp_path: Path) -> None:
    run = AgentRun(tmp_path, extra='[detectors]\ndisable = ["persistence"]\n')
    run.start()
    try:
        res = cli(
            run,
            "drill",
            "--only",
            "cron-persistence",
            "--only",
            "canary-read",
            "--timeout",
            "4",
            timeout=120,
        )
        assert res.returncode == 1, res.stdout + res.stderr
        assert "cron-persistence" in res.stdout and "MISSED" in res.stdout
        assert "canary.read" in res.stdout
        interrupted_drill_restores_everything(run)
    finally:
        assert run.stop() == 0


def interrupted_drill_restores_everything(run: AgentRun) -> None:
    """Ctrl-C while a scenario waits: its processes end and the file it changed is restored."""
    rc = run.home / ".bashrc"
    before = rc.read_bytes()
    cfg = run.root / "sentinel.toml"
    argv = [sys.executable, "-m", "sentinel.cli", "drill", "-c", str(cfg), "--with-load"]
    drill = subprocess.Popen(
        [*argv, "--only", "shell-rc-persistence", "--timeout", "30"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while rc.read_bytes() == before:
            assert time.monotonic() < deadline, "the drill never changed .bashrc"
            time.sleep(0.05)
        started = [p.pid for p in psutil.Process(drill.pid).children(recursive=True)]
        assert started, "the load processes are not running"
        drill.send_signal(signal.SIGINT)
        assert drill.wait(20) == 1  # an interrupted drill proves nothing
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.wait(5)
    assert rc.read_bytes() == before
    assert not [
        p for p in started if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
    ]
    assert not (run.state / "drill.json").exists()
