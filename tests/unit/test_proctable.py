import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sentinel.core import proctable
from sentinel.core.proctable import ProcTable, read_proc

SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


def test_reads_own_process() -> None:
    p = read_proc(os.getpid())
    assert p is not None
    assert p.pid == os.getpid() and p.ppid == os.getppid()
    assert p.exe == os.path.realpath(sys.executable)
    assert p.user and abs(p.start_time - time.time()) < 3600 * 24
    assert p.ancestors and p.ancestors[0].pid == os.getppid()


def test_child_facts_and_ancestors(procs: list[subprocess.Popen]) -> None:
    child = subprocess.Popen([*SLEEPER, "--donate-level=1"])
    procs.append(child)
    time.sleep(0.2)
    p = read_proc(child.pid)
    assert p is not None
    assert p.cmdline[-1] == "--donate-level=1"
    assert p.ancestors[0].pid == os.getpid()
    assert not p.exe_deleted


def test_deleted_binary_is_flagged(tmp_path: Path, procs: list[subprocess.Popen]) -> None:
    exe = tmp_path / "sleepy"
    shutil.copy("/bin/sleep", exe)
    child = subprocess.Popen([str(exe), "30"])
    procs.append(child)
    time.sleep(0.2)
    exe.unlink()
    p = read_proc(child.pid)
    assert p is not None and p.exe_deleted and p.exe == str(exe)


def test_vanished_process_is_none(procs: list[subprocess.Popen]) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert read_proc(child.pid) is None
    assert proctable.cpu_times(child.pid) is None


def test_table_caches_and_detects_pid_reuse(procs: list[subprocess.Popen]) -> None:
    child = subprocess.Popen(SLEEPER)
    procs.append(child)
    time.sleep(0.1)
    table = ProcTable()
    first = table.get(child.pid)
    assert first is not None and table.get(child.pid) is first
    stale = first.__class__(**{**{s: getattr(first, s) for s in first.__slots__}})
    stale.start_time -= 100
    table.add(stale)
    fresh = table.get(child.pid)
    assert fresh is not None and fresh is not stale and fresh.start_time == first.start_time


def test_fixture_procfs_root(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    (root / "42").mkdir(parents=True)
    (root / "stat").write_text("cpu 1 2 3\nbtime 1700000000\n")
    fields = ["S", "1"] + ["0"] * 9 + ["250", "50"] + ["0"] * 6 + ["1000"]
    (root / "42" / "stat").write_text(f"42 (my (odd) name) {' '.join(fields)}\n")
    (root / "42" / "cmdline").write_bytes(b"xmrig\x00-o\x00stratum+tcp://127.0.0.1:3333\x00")
    (root / "42" / "status").write_text("Name:\tx\nUid:\t0\t0\t0\t0\n")
    p = read_proc(42, str(root))
    assert p is not None
    assert p.name == "my (odd) name" and p.ppid == 1
    assert p.cmdline == ["xmrig", "-o", "stratum+tcp://127.0.0.1:3333"]
    assert p.start_time == 1700000000 + 1000 / proctable.CLK_TCK
    assert p.user == "root"
    assert proctable.cpu_times(42, str(root))[0] == 300 / proctable.CLK_TCK  # type: ignore[index]
    assert proctable.list_pids(str(root)) == [42]
