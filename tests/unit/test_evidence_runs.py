"""Signed run records: verified with the agent's key, rejected when modified or re-keyed."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sentinel.cli import main
from sentinel.evidence import keys


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text(f"[agent]\nstate_dir = '{tmp_path / 'state'}'\n")
    return cfg


def test_run_record_verifies_and_a_modified_or_rekeyed_one_does_not(tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path)
    assert main(["run", "begin", "eval-1", "--meta", "model=m", "-c", str(cfg)]) == 0
    assert main(["run", "end", "eval-1", "-c", str(cfg)]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert path.parent == tmp_path / "state" / "runs" and path.suffix == ".json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert main(["run", "verify", str(path), "-c", str(cfg)]) == 0
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicate"]["run"]["meta"] == {"model": "m"}
    assert statement["predicate"]["findings"]["by_severity"] == {}

    statement["predicate"]["run"]["meta"]["model"] = "other"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    modified = tmp_path / "modified.json"
    modified.write_text(json.dumps(envelope))
    capsys.readouterr()
    assert main(["run", "verify", str(modified), "-c", str(cfg)]) == 1
    assert "INVALID" in capsys.readouterr().out

    other = tmp_path / "other.pem"
    other.write_text(keys.public_pem(Ed25519PrivateKey.generate()))
    assert main(["run", "verify", str(path), "--pubkey", str(other), "-c", str(cfg)]) == 1


def test_run_wraps_a_command_and_keeps_its_exit_code(tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path)
    assert main(["run", "-c", str(cfg), "wrapped", "--", "sh", "-c", "exit 3"]) == 3
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    statement = json.loads(base64.b64decode(json.loads(path.read_text())["payload"]))
    assert statement["predicate"]["run"]["command"] == ["sh", "-c", "exit 3"]
    assert statement["predicate"]["run"]["exit_code"] == 3


def test_run_names_and_states_are_checked(tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path)
    assert main(["run", "end", "never-begun", "-c", str(cfg)]) == 2
    assert main(["run", "begin", "../escape", "-c", str(cfg)]) == 2
    assert main(["run", "begin", "twice", "-c", str(cfg)]) == 0
    assert main(["run", "begin", "twice", "-c", str(cfg)]) == 2
    assert "already begun" in capsys.readouterr().err
