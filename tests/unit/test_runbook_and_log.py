import asyncio
import json
import os
from pathlib import Path

from sentinel.core import config
from sentinel.core.config import RunbookJob, SinkConfig
from sentinel.core.context import Context
from sentinel.core.model import Ancestor, Category, Finding, Proc, Severity
from sentinel.core.proctable import ProcTable
from sentinel.core.runbook import Runbook
from sentinel.rules import intel
from sentinel.sinks.jsonl import JsonlSink
from sentinel.sinks.stdout import describe


def proc(pid: int, cmd: list[str], ppid: int = 1, user: str = "ml", anc=(), exe: str = "") -> Proc:
    exe = exe or f"/usr/bin/{cmd[0]}"
    return Proc(pid, ppid, cmd[0], exe, cmd, user, 1.0, list(anc))


def test_runbook_matches_process_or_same_exe_ancestor_and_kind() -> None:
    rb = Runbook(
        [
            RunbookJob(
                name="train",
                exe="/usr/bin/python3*",
                user="ml",
                cmdline=r"python3? (\S*/)?train\.py( .*)?",
                cpu=False,
            ),
            RunbookJob(name="build", exe="/usr/bin/make", user="ml"),
            RunbookJob(name="svc", exe="/opt/svc/bin/*", user="svc", unit="svc.service"),
        ]
    )
    table = ProcTable()
    trainer = proc(10, ["python3", "train.py", "--epochs", "3"])
    worker = proc(11, ["python3", "-c", "work"], 10, anc=[Ancestor(10, "python3", "")])
    table.add(trainer)
    assert rb.explains(worker, table, "gpu") == "train"
    assert rb.explains(worker, table, "cpu") is None  # cpu = false
    assert rb.explains(worker, table) == "train"
    assert rb.explains(proc(12, ["python3", "train.py"], user="other"), table) is None
    assert rb.explains(proc(13, ["make", "-j2"]), table, "cpu") == "build"
    assert rb.explains(proc(14, ["xmrig"]), table) is None
    assert Runbook([]).explains(trainer) is None
    # exec -a "python3 train.py" ./miner: argv says trainer, the executable does not
    spoof = proc(15, ["python3", "train.py"], exe="/tmp/x/miner")
    assert rb.explains(spoof, table) is None
    # a child of the trainer that runs another program is not the trainer's work
    child = proc(16, ["./miner"], 10, anc=[Ancestor(10, "python3", "")], exe="/tmp/x/miner")
    assert rb.explains(child, table) is None
    # the cmdline is anchored: train.py as a mere argument of another script is not it
    assert rb.explains(proc(17, ["python3", "miner.py", "--cfg", "train.py"]), table) is None
    # an executable deleted after start could be anything now
    gone = proc(18, ["python3", "train.py"])
    gone.exe_deleted = True
    assert rb.explains(gone, table) is None
    # the job's interpreter running a script that was deleted is not the job
    erased = proc(22, ["python3", "train.py"])
    erased.payload, erased.payload_deleted = "/home/ml/train.py", True
    assert rb.explains(erased, table) is None
    # however broad the exe glob, a descendant is explained only running its job's exe
    broad = Runbook([RunbookJob(name="any", exe="*", user="ml", cmdline=r".*train\.py( .*)?")])
    assert broad.explains(worker, table) == "any"
    shell = proc(20, ["sh", "-c", "./x"], 10, anc=[Ancestor(10, "python3", "")])
    assert broad.explains(shell, table) is None
    unit = proc(19, ["svcd"], user="svc", exe="/opt/svc/bin/svcd")
    assert rb.explains(unit, table) is None  # not in its unit
    unit.cgroup = "/system.slice/svc.service"
    assert rb.explains(unit, table) == "svc"


def test_jsonl_rotates_by_size_and_stays_private(tmp_path: Path) -> None:
    cfg = config.parse(f"[agent]\nstate_dir='{tmp_path}'\n[log]\nmax_bytes = 2000\nbackups = 2\n")
    sink = JsonlSink(SinkConfig(type="jsonl"), Context(cfg, intel.load()))
    asyncio.run(sink.start())
    ids = []
    for i in range(40):
        f = Finding(f"t.r{i}", Category.MINER, Severity.HIGH, "x" * 100, "t")
        ids.append(f.id)
        sink.submit(f)
    asyncio.run(sink.close())
    log = Path(cfg.alert_log)
    files = [log, Path(f"{log}.1"), Path(f"{log}.2")]
    assert all(p.exists() for p in files) and not Path(f"{log}.3").exists()
    for p in files:
        assert p.stat().st_size <= 2000
        assert os.stat(p).st_mode & 0o777 == 0o600
    records = [json.loads(x) for p in reversed(files) for x in p.read_text().splitlines()]
    kept = [r["id"] for r in records if r.get("type") != "checkpoint"]  # one after a rotation
    assert kept == ids[-len(kept) :]  # newest kept, in order, none torn


def test_stdout_line_is_readable() -> None:
    p = proc(4242, ["xmrig", "-o", "stratum+tcp://127.0.0.1:3333"])
    f = Finding("miner.name", Category.MINER, Severity.HIGH, "miner process xmrig", "t", p)
    line = describe(f)
    assert "HIGH" in line and "miner.name" in line and "pid=4242 xmrig" in line


def test_jsonl_record_with_non_utf8_argv_stays_parseable(tmp_path: Path) -> None:
    cfg = config.parse(f"[agent]\nstate_dir='{tmp_path}'\n")
    sink = JsonlSink(SinkConfig(type="jsonl"), Context(cfg, intel.load()))
    asyncio.run(sink.start())
    argv = b"xmrig\xff".decode("utf-8", "surrogateescape")
    p = proc(7, [argv, "-o", "stratum+tcp://127.0.0.1:3333"])
    sink.submit(Finding("miner.name", Category.MINER, Severity.HIGH, "m", "t", p))
    asyncio.run(sink.close())
    rec = json.loads(Path(cfg.alert_log).read_text())
    assert rec["process"]["cmdline"][0] == argv
