"""Process evasion classes against the real agent, with real processes: payloads run
through the dynamic loader or an interpreter, confusable names, masquerade by path and a
fake busybox, executables deleted after the start, and zombie leaders with live threads.

The stand-ins are copies of system binaries (sleep) and a small C program the test
builds into its temp dir (tests/support/data/threads.c): nothing mines or leaves loopback.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_harness import AgentRun, Record
from fakes import free_pool_port, write_burner

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the C stand-in"),
    pytest.mark.timeout(90),
]

PYTHON = os.path.realpath(sys.executable)
LOADER = "/lib64/ld-linux-x86-64.so.2"
SLEEP = shutil.which("sleep") or "/bin/sleep"
SOURCE = Path(__file__).resolve().parent.parent / "support" / "data" / "threads.c"
BUSYBOX = shutil.which("busybox")


def build(dest: Path) -> Path:
    """The C stand-in compiled to `dest`."""
    subprocess.run(["gcc", "-O1", "-pthread", "-o", str(dest), str(SOURCE)], check=True)
    return dest


def spawn(procs: list[subprocess.Popen], argv: list[str], **kw: object) -> subprocess.Popen:
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    procs.append(p)
    return p


def about(pid: int, rule: str) -> Callable[[Record], bool]:
    def pred(rec: Record) -> bool:
        return rec["rule"] == rule and rec["process"] is not None and rec["process"]["pid"] == pid

    return pred


def rules_for(agent: AgentRun, pid: int) -> list[str]:
    return [r["rule"] for r in agent.records() if r["process"] and r["process"]["pid"] == pid]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRun]:
    run = AgentRun(tmp_path_factory.mktemp("agent-exec"))
    run.start()
    yield run
    assert run.stop() == 0, "agent did not stop cleanly:\n" + "".join(run.stderr[-40:])


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory under /tmp (a temp dir for the rules), unique to this test and pid."""
    d = Path("/tmp") / f"sentinel-exec-{os.getpid()}-{secrets.token_hex(3)}"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_loader_runs_miner_named_payload_from_tmp(agent: AgentRun, work: Path, procs) -> None:
    """ld.so --library-path X --preload Y --argv0 NAME ./xmrig: exe is ld.so, the payload's
    path and name are judged; deleting the payload afterwards is seen by the sweep."""
    payload = build(work / "xmrig")
    argv = [LOADER, "--library-path", str(work / "nolib"), "--preload", "libc.so.6"]
    argv += ["--argv0", "kworker", "./xmrig", "burn", "20"]
    p = spawn(procs, argv, cwd=work)
    miner = agent.wait_for(about(p.pid, "miner.process_name"))
    assert miner["severity"] == "high" and miner["evidence"]["payload"] == "xmrig"
    tmp = agent.wait_for(about(p.pid, "evasion.payload_from_tmp"))
    assert tmp["severity"] == "medium" and tmp["evidence"]["payload"] == str(payload)
    assert tmp["process"]["exe"].endswith("ld-linux-x86-64.so.2")
    assert agent.wait_for(about(p.pid, "evasion.loader_exec"))["severity"] == "low"
    payload.unlink()
    gone = agent.wait_for(about(p.pid, "evasion.payload_deleted"), timeout=15)
    assert gone["severity"] == "medium" and gone["evidence"]["payload"] == str(payload)


def test_scripts_judged_by_path_system_scripts_quiet(agent: AgentRun, work: Path, procs) -> None:
    """python and sh running a script from /tmp: low, by the script's path; bash running a
    script read from a pipe (bash <(...)): medium; python running a system script: quiet."""
    timeit = str(Path(sysconfig.get_paths()["stdlib"]) / "timeit.py")  # a system script
    quiet = spawn(procs, [PYTHON, timeit, "-n1", "-r1", "import time; time.sleep(15)"])
    script = work / f"job_{secrets.token_hex(3)}.py"
    script.write_text("import time\ntime.sleep(20)\n")
    py = spawn(procs, [PYTHON, "-u", str(script)])
    shell = work / "job.sh"
    shell.write_text("sleep 20\n")
    sh = spawn(procs, ["/bin/sh", "-e", "job.sh"], cwd=work)
    # its own process group: the inner bash and its sleep end with it (killpg below)
    piped = spawn(
        procs,
        ["/bin/bash", "-c", "/bin/bash <(printf 'sleep 20\\n'); true"],
        start_new_session=True,
    )
    try:
        rec = agent.wait_for(
            lambda r: (
                r["rule"] == "evasion.payload_from_pipe"
                and r["process"] is not None
                and piped.pid in [a["pid"] for a in r["process"]["ancestors"]]
            )
        )
        assert rec["severity"] == "medium" and rec["evidence"]["payload"].startswith("pipe:[")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(piped.pid, signal.SIGKILL)
    for p, path in ((py, script), (sh, shell)):
        rec = agent.wait_for(about(p.pid, "evasion.payload_from_tmp"))
        assert rec["severity"] == "low" and rec["evidence"]["payload"] == str(path)
        assert rec["evidence"]["kind"] == "script"
    assert rules_for(agent, quiet.pid) == []


@pytest.mark.parametrize("name", ["xmr\u0456g", "\uff58\uff4d\uff52\uff49\uff47", "xm\u200drig"])
def test_confusable_miner_names_fold(agent: AgentRun, work: Path, procs, name: str) -> None:
    """A Cyrillic i, fullwidth letters or a zero-width joiner: all read xmrig."""
    burner = write_burner(work / name)
    p = spawn(procs, [str(burner)], env={**os.environ, "BURN_SECONDS": "8"})
    rec = agent.wait_for(about(p.pid, "miner.process_name"))
    assert rec["severity"] == "high" and rec["summary"].startswith("miner name xmrig")


def test_masquerade_by_path_and_fake_busybox(agent: AgentRun, work: Path, procs) -> None:
    """A binary named sshd outside the system directories, and any file named busybox
    that is not the real one, masquerade; the real busybox carrying sh does not."""
    (work / "bb").mkdir()
    sshd = work / "sshd"
    shutil.copy(SLEEP, sshd)
    fake = work / "bb" / "busybox"
    shutil.copy(SLEEP, fake)
    (work / "bb" / "sh").symlink_to(fake)
    real = None
    if BUSYBOX:
        (work / "sh").symlink_to(BUSYBOX)
        real = spawn(procs, [str(work / "sh"), "-c", "sleep 15; true"])
    s = spawn(procs, [str(sshd), "20"])
    b = spawn(procs, [str(work / "bb" / "sh"), "20"])
    rec = agent.wait_for(about(s.pid, "evasion.name_masquerade"))
    assert rec["severity"] == "high" and rec["evidence"]["place"] == "path"
    assert rec["evidence"]["comm"] == "sshd"
    rec = agent.wait_for(about(b.pid, "evasion.name_masquerade"))
    assert rec["severity"] == "high" and rec["evidence"]["exe"] == str(fake)
    if real is not None:
        assert "evasion.name_masquerade" not in rules_for(agent, real.pid)


def test_binary_deleted_or_replaced_after_start(agent: AgentRun, work: Path, procs) -> None:
    """Each sweep re-reads /proc/PID/exe: a binary deleted after the start is medium; one
    replaced by a new file (an upgrade's shape) outside the system paths stays medium."""
    gone, swapped = work / f"g{secrets.token_hex(3)}", work / f"s{secrets.token_hex(3)}"
    shutil.copy(SLEEP, gone)
    shutil.copy(SLEEP, swapped)
    pg = spawn(procs, [str(gone), "30"])
    ps = spawn(procs, [str(swapped), "30"])
    for p in (pg, ps):  # seen while its binary is still there
        assert agent.wait_for(about(p.pid, "evasion.exec_from_tmp"))["severity"] == "low"
    gone.unlink()
    swapped.unlink()
    shutil.copy(SLEEP, swapped)
    rec = agent.wait_for(about(pg.pid, "evasion.exec_deleted"), timeout=15)
    assert rec["severity"] == "medium" and rec["evidence"]["exe"] == str(gone)
    assert rec["evidence"]["replaced"] is False
    rec = agent.wait_for(about(ps.pid, "evasion.exec_deleted"), timeout=15)
    assert rec["severity"] == "medium" and rec["evidence"]["replaced"] is True


def burns(rec: Record, pid: int) -> bool:
    """A load.cpu record that names pid or counts it in its process tree."""
    if rec["rule"] != "load.cpu":
        return False
    if rec["process"] and rec["process"]["pid"] == pid:
        return True
    return any(row["pid"] == pid for row in rec["evidence"].get("tree", {}).get("top", []))


LOAD = """
[load]
sample_interval = 1.0
sustain = 6.0
grace = 2.0
cpu_ceiling = 0.15
"""


def test_zombie_leader_with_live_thread(tmp_path: Path, work: Path, procs) -> None:
    """main() leaves through pthread_exit: the process lives on in its thread. One such
    process exists before the agent starts (read through /proc/PID/task/TID), one leaves
    its main after the agent judged it; neither exit is taken for the process's end: the
    findings are not repeated, the thread's socket has its owner, its CPU is seen."""
    miner = build(work / "xmrig")
    early = spawn(procs, [str(miner), "wait", "40", "0"])  # its thread sleeps
    deadline = time.monotonic() + 5
    while "Z" not in Path(f"/proc/{early.pid}/stat").read_text().split(")")[1][:3]:
        assert time.monotonic() < deadline, "the stand-in's leader did not exit"
        time.sleep(0.05)
    agent = AgentRun(tmp_path / "agent", extra=LOAD)
    agent.start()
    try:
        rec = agent.wait_for(about(early.pid, "miner.process_name"))
        assert rec["process"]["exe"] == str(miner) and rec["process"]["cmdline"][1] == "wait"
        assert agent.wait_for(about(early.pid, "evasion.leader_exited"))["severity"] == "low"
        other = work / "xmrig-notls"  # another program: not folded with the first one
        shutil.copy(miner, other)
        with free_pool_port() as pool:
            late = spawn(procs, [str(other), "leader", "30", "1.5", str(pool.port)])
            agent.wait_for(about(late.pid, "miner.process_name"))
            agent.wait_for(about(late.pid, "evasion.leader_exited"), timeout=15)
            net = agent.wait_for(about(late.pid, "network.pool_port"), timeout=15)
            assert net["process"]["exe"] == str(other)
            load = agent.wait_for(lambda r: burns(r, late.pid), timeout=30)
            assert load["evidence"]["unit"] == "cores"
        time.sleep(4)  # more sweeps: a leader exit taken for the end would be re-read
        for p in (early, late):
            assert p.poll() is None
            assert rules_for(agent, p.pid).count("miner.process_name") == 1
    finally:
        assert agent.stop() == 0, "".join(agent.stderr[-40:])
