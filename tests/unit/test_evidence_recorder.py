"""The flight recorder: batched writes, budgets, the per-tree ring in findings."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from fakes import context, proc

from sentinel.core.events import CollectorState, FileChange, ProcExec, ProcExit, Tick
from sentinel.core.model import Ancestor, Category, FileFacts, Finding, Severity
from sentinel.evidence import drillmark, recorder
from sentinel.evidence import hub as hub_mod
from sentinel.evidence.hub import RECENT, Hub


def test_rows_are_written_in_batches_and_read_back(tmp_path: Path) -> None:
    rec = recorder.Recorder(str(tmp_path / "r.db"), 0, 0)
    for i in range(3000):
        rec.put(recorder.Row(1000.0 + i, "exec", i, 1, "root", {"exe": "/bin/x", "argv": ["x"]}))
    rec.close()
    assert rec.written == 3000 and rec.batches <= 3000 // 100
    rows = list(recorder.query(str(tmp_path / "r.db"), 0, pids={5, 6}))
    assert [r.pid for r in rows] == [5, 6] and rows[0].data["exe"] == "/bin/x"
    assert os.stat(tmp_path / "r.db").st_mode & 0o777 == 0o600


def test_flush_returns_once_what_was_queued_is_readable(tmp_path: Path) -> None:
    rec = recorder.Recorder(str(tmp_path / "r.db"), 0, 0)
    try:
        for round_ in range(3):
            for i in range(5):
                rec.put(recorder.Row(1000.0 + i, "exec", 10 * round_ + i, 1, "u", {}))
            assert rec.flush(5.0)
            assert len(list(recorder.query(str(tmp_path / "r.db")))) == 5 * (round_ + 1)
        assert rec.flush(5.0)  # nothing queued: returns at once
    finally:
        rec.close()


def test_a_full_queue_is_written_without_waiting_for_batches_to_gather(tmp_path: Path) -> None:
    """A flood must not meet a cap of BATCH_MAX rows per BATCH_WAIT (8000 rows/s)."""
    import threading

    class Counting(threading.Event):
        waits = 0

        def wait(self, timeout: float | None = None) -> bool:
            Counting.waits += 1
            return super().wait(timeout)

    rec = recorder.Recorder(str(tmp_path / "r.db"), 0, 0)
    rec._wake = Counting()
    for i in range(5 * recorder.BATCH_MAX):
        rec.put(recorder.Row(1000.0 + i, "exec", i, 1, "u", {}))
    rec.close()
    assert rec.written == 5 * recorder.BATCH_MAX and rec.batches >= 5
    assert Counting.waits <= 2, f"{Counting.waits} waits for {rec.batches} batches"


def test_budget_drops_the_oldest_first(tmp_path: Path) -> None:
    db = recorder.connect(str(tmp_path / "r.db"))
    now = time.time()
    with db:
        db.executemany(
            "INSERT INTO events(time, kind, pid, ppid, user, data) VALUES (?,?,?,?,?,?)",
            [
                (now - 10 * 86400 if i < 10 else now + i, "exec", i, 1, "u", "x" * 500)
                for i in range(5000)
            ],
        )
    assert recorder.enforce_budget(db, 0, 7.0) == (10, 0)  # by age: nothing cut short
    before = recorder.used_bytes(db)
    dropped, young = recorder.enforce_budget(db, before // 2, 7.0)
    assert dropped == young > 0  # by space: each of them younger than the 7 days kept
    assert recorder.used_bytes(db) <= before // 2
    oldest = db.execute("SELECT min(pid), max(pid) FROM events").fetchone()
    assert oldest[0] > 10 and oldest[1] == 4999


def test_lost_and_evicted_rows_degrade_the_recorder_then_it_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows evicted by the byte budget before max_days, or lost to a full queue, are a
    medium integrity state (the history is shorter than configured), ok again later."""
    ctx = context(f"[agent]\nstate_dir = '{tmp_path}'\n[evidence]\nrecorder_max_bytes = 65536\n")
    states: list[CollectorState] = []
    hub = Hub(ctx, [], emit=states.append)
    hub.handle(Tick(time.time()))
    assert not states  # nothing recorded, nothing lost
    for i in range(2000):  # 4 KiB of argv each: far past the 64 KiB budget
        hub.handle(ProcExec(time.time(), proc(pid=1000 + i, ppid=1, cmdline=["x" * 4096])))
    assert hub.flush(30)
    hub.handle(Tick(time.time()))
    assert len(states) == 1 and not states[0].ok and states[0].collector == "recorder"
    assert states[0].detail["severity"] == "medium" and states[0].detail["evicted"] > 0
    assert "younger than 7 days evicted for space" in states[0].reason
    hub.handle(Tick(time.time()))
    assert len(states) == 1  # said once
    monkeypatch.setattr(recorder, "QUEUE_MAX", 0)  # the writer is behind: the queue is full
    hub.handle(ProcExec(time.time(), proc(pid=5000, ppid=1)))
    hub.handle(Tick(time.time()))
    assert states[-1].detail["lost"] == 1 and "not recorded (queue full)" in states[-1].reason
    hub.lost_at -= hub_mod.LOSS_HOLD + 1
    hub.handle(Tick(time.time()))
    assert states[-1].ok
    hub.close()


def test_argv_is_capped() -> None:
    capped = recorder.cap_argv(["a" * 5000, *["b"] * 100])
    assert sum(map(len, capped)) <= recorder.ARGV_MAX_CHARS and len(capped) == 1
    assert len(recorder.cap_argv(["b"] * 100)) == recorder.ARGV_MAX_ARGS


def test_finding_carries_recent_events_of_its_tree_and_drill_mark(tmp_path: Path) -> None:
    ctx = context(f"[agent]\nstate_dir = '{tmp_path}'\n")
    hub = Hub(ctx, [])
    shell = proc(pid=500, ppid=1, name="bash", exe="/bin/bash")
    t0 = time.time()
    hub.handle(ProcExec(t0, shell))
    for i in range(30):
        hub.handle(ProcExec(t0 + i, proc(pid=600 + i, ppid=500)))
        hub.handle(ProcExit(t0 + i + 0.5, 600 + i, 1000.0))
    hub.handle(ProcExec(t0 + 3, proc(pid=900, ppid=1, name="other")))
    hub.handle(FileChange(t0 + 4, str(tmp_path / "f"), "created", "drop"))
    child = proc(pid=629, ppid=500)
    child.ancestors = [Ancestor(500, "bash", "/bin/bash")]
    f = Finding("t.r", Category.MINER, Severity.HIGH, "miner", "t", child)
    hub.annotate(f)
    recent = f.evidence["recent"]
    assert len(recent) == RECENT and recent[-1] == {**recent[-1], "kind": "exit", "pid": 629}
    assert all(r["pid"] != 900 for r in recent)
    assert {r["pid"] for r in recent} > {629, 628}  # siblings under the same shell too
    assert "drill" not in f.evidence
    hub.close()
    assert (
        sqlite3.connect(tmp_path / "recorder.db")
        .execute("SELECT count(*) FROM events")
        .fetchone()[0]
        == 63
    )

    marks = drillmark.Marks(
        procs={629: 1000.0}, paths=[str(tmp_path / "d")], until=time.time() + 60
    )
    drillmark.write(drillmark.path_of(str(tmp_path)), marks)
    g = Finding("t.r", Category.MINER, Severity.HIGH, "miner", "t", child)
    hub.annotate(g)
    assert g.evidence["drill"] is True and g.summary.startswith("[DRILL] ")
    os.chmod(drillmark.path_of(str(tmp_path)), 0o644)  # a registry others could have written
    os.utime(drillmark.path_of(str(tmp_path)), (1, 1))
    h = Finding("t.r", Category.MINER, Severity.HIGH, "miner", "t", child)
    hub.annotate(h)
    assert "drill" not in h.evidence


def test_file_lines_are_recorded_redacted(tmp_path: Path) -> None:
    """Lines added to a persistence file reach the store and `evidence.recent` (so the alert
    log and the webhooks) only as the persistence finding's excerpt would show them."""
    ctx = context(f"[agent]\nstate_dir = '{tmp_path}'\n")
    hub = Hub(ctx, [])
    token = "ghp_" + "a1" * 18
    body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
    added = [
        f"Exec=/tmp/run --token {token}",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        body,
        "-----END OPENSSH PRIVATE KEY-----",
    ]
    path = str(tmp_path / "sync.desktop")
    hub.handle(FileChange(time.time(), path, "created", "persistence", added=added))
    f = Finding("t.p", Category.PERSISTENCE, Severity.HIGH, "p", "t", file=FileFacts(path, None, 0))
    hub.annotate(f)
    # a sibling that had the same text on its command line (a key cut short by the cap too)
    writer = proc(pid=700, ppid=500, cmdline=["python3", "-c", "w", "\n".join(added)[:150]])
    hub.handle(ProcExec(time.time(), writer))
    g = Finding("t.m", Category.MINER, Severity.HIGH, "m", "t", proc(pid=701, ppid=500))
    hub.annotate(g)
    hub.close()
    stored = sqlite3.connect(tmp_path / "recorder.db").execute("SELECT data FROM events").fetchall()
    for text in (repr(f.evidence["recent"]), repr(g.evidence["recent"]), repr(stored[:1])):
        assert token not in text and body[:40] not in text, text
        assert "<redacted> private key" in text


def test_acks_keep_the_newest_ids(tmp_path: Path) -> None:
    from sentinel.sinks._http import acks

    path = acks.path_for(str(tmp_path), "hook/1")
    path.parent.mkdir()
    book = acks.Acks(path)
    for i in range(acks.KEEP + 5):
        book.add(f"id{i}")
    seen = acks.read(path)
    assert len(seen) == acks.KEEP and "id0" not in seen and f"id{acks.KEEP + 4}" in seen
    assert path.name == "hook_1.acked" and path.stat().st_mode & 0o777 == 0o600


def test_recent_events_carry_no_secret_or_key_body(tmp_path: Path) -> None:
    """A relative's argv or an added line holding a token or a private key reaches
    evidence.recent (and so chat) redacted."""
    ctx = context(f"[agent]\nstate_dir = '{tmp_path}'\n")
    hub = Hub(ctx, [])
    body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
    pem = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----"
    token = "ghp_" + "a1" * 18
    t0 = time.time()
    hub.handle(ProcExec(t0, proc(pid=500, ppid=1, name="bash", exe="/bin/bash")))
    writer = proc(pid=501, ppid=500, cmdline=["python3", "-c", "w()", pem, f"--token={token}"])
    hub.handle(ProcExec(t0 + 1, writer))
    hub.handle(FileChange(t0 + 2, str(tmp_path / "x.desktop"), "created", "persistence", [pem]))
    child = proc(pid=502, ppid=500)
    child.ancestors = [Ancestor(500, "bash", "/bin/bash")]
    f = Finding("t.r", Category.MINER, Severity.HIGH, "miner", "t", child)
    hub.annotate(f)
    shown = repr(f.evidence["recent"])
    hub.close()
    assert "w()" in shown and "<redacted>" in shown
    assert body not in shown and token not in shown


def test_recent_rows_carry_no_secret() -> None:
    """File text and argv in evidence.recent are redacted as persistence excerpts are."""
    from sentinel.evidence.hub import compact, row_of

    body = "QmFzZTY0IGJvZHkgb2YgYSBrZXkgdGhhdCBtdXN0IG5ldmVyIHJlYWNoIGEgY2hhdCByb29tIG5vIG5v"
    key = ["-----BEGIN OPENSSH PRIVATE KEY-----", body, "-----END OPENSSH PRIVATE KEY-----"]
    token = "ghp_" + "a1" * 18
    change = row_of(FileChange(time.time(), "/home/u/.bashrc", "modified", "persistence", key))
    p = proc(1234, "sh", cmdline=["sh", "-c", "\n".join(key), "--token", token])
    exec_row = row_of(ProcExec(time.time(), p, "netlink"))
    assert change is not None and exec_row is not None
    text = str([compact(change), compact(exec_row)])
    assert body not in text and token not in text
