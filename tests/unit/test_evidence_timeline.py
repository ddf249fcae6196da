"""Timelines from recorder rows and alert-log findings: tree, order, user, spans."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sentinel.core.model import rfc3339
from sentinel.evidence import recorder, timeline


def _rows(db: Path, rows: list[recorder.Row]) -> None:
    rec = recorder.Recorder(str(db), 0, 0)
    for row in rows:
        rec.put(row)
    rec.close()


def test_tree_depth_order_user_and_findings(tmp_path: Path) -> None:
    t = time.time() - 30
    db, log = tmp_path / "r.db", tmp_path / "alerts.jsonl"
    _rows(
        db,
        [
            recorder.Row(t, "exec", 10, 1, "alice", {"name": "bash", "argv": ["bash"]}),
            recorder.Row(t + 1, "exec", 11, 10, "alice", {"name": "curl", "argv": ["curl"]}),
            recorder.Row(t + 2, "exec", 12, 11, "alice", {"name": "sh", "argv": ["sh"]}),
            recorder.Row(t + 0.2, "exec", 99, 1, "bob", {"name": "vim", "argv": ["vim"]}),
            recorder.Row(t + 3, "connect", 12, 11, "alice", {"raddr": "127.0.0.1", "rport": 9}),
            recorder.Row(t + 4, "file", None, None, None, {"path": "/tmp/x", "change": "created"}),
            recorder.Row(t + 5, "exit", 12, None, None, {}),
        ],
    )
    finding = {
        "id": "f1",
        "time": rfc3339(t + 3.5),
        "rule": "tunnel.x",
        "severity": "high",
        "summary": "s",
        "process": {"pid": 12, "ppid": 11, "name": "sh"},
    }
    log.write_text(json.dumps(finding) + "\n")
    entries = timeline.build(str(db), str(log), t - 1, pid=10)
    assert [(e.kind, e.pid) for e in entries] == [
        ("exec", 10),
        ("exec", 11),
        ("exec", 12),
        ("connect", 12),
        ("finding", 12),
        ("file", None),
        ("exit", 12),
    ]
    assert [e.depth for e in entries if e.kind == "exec"] == [0, 1, 2]
    by_user = timeline.build(str(db), str(log), t - 1, user="bob")
    assert [(e.kind, e.pid) for e in by_user] == [("exec", 99)]
    assert timeline.incident(str(log), "f1")["process"]["pid"] == 12


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400)]
)
def test_spans(text: str, seconds: float) -> None:
    assert timeline.parse_span(text) == seconds


def test_bad_span() -> None:
    with pytest.raises(ValueError):
        timeline.parse_span("ten minutes")


def test_the_table_escapes_what_the_watched_process_chose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An argv or name with ESC sequences must not drive the reader's terminal (a cursor-up
    and erase-line would hide the rows above it)."""
    from sentinel.cli import main

    monkeypatch.setenv("COLUMNS", "300")
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text(f"[agent]\nstate_dir = '{state}'\n")
    evil = "x\x1b[1A\x1b[2K\x1b]0;title\x07\u202e"
    _rows(
        state / "recorder.db",
        [recorder.Row(time.time() - 5, "exec", 10, 1, "u", {"name": evil, "argv": [evil, "-o"]})],
    )
    (state / "alerts.jsonl").write_text("")
    assert main(["timeline", "-c", str(cfg), "--pid", "10"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert "x\\x1b[1A\\x1b[2K" in out
