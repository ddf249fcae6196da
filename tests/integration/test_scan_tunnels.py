"""`sentinel scan` over tunnel and reverse-shell files (tests/support/tunnel_files.py): every
class is reported with its rule id at medium or above, the benign controls are not, and the
text rules' line findings survive the scan cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tunnel_files

SEVERITIES = ("info", "low", "medium", "high", "critical")
CLI_TIMEOUT = 180


def scan(*args: str) -> tuple[int, dict[str, Any]]:
    run = subprocess.run(
        [sys.executable, "-m", "sentinel.cli", "scan", "--json", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )
    assert run.returncode in (0, 1), run.stderr
    return run.returncode, json.loads(run.stdout)


def by_path(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in doc["findings"]:
        out.setdefault(f["file"]["path"], []).append(f)
    return out


def rank(finding: dict[str, Any]) -> int:
    return SEVERITIES.index(finding["severity"])


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, Any]]:
    root = tmp_path_factory.mktemp("tunnel-files")
    return root, tunnel_files.write(root / "tree")


@pytest.fixture(scope="module")
def scanned(tree: tuple[Path, dict[Path, Any]]) -> tuple[int, dict[str, Any]]:
    root, _ = tree
    cfg = root / "sentinel.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{root / "state"}"\n')
    return scan("-c", str(cfg), str(root / "tree"))


CLASSES = {
    "reverse_shells": tunnel_files.REVERSE_SHELLS,
    "ssh_tunnels": tunnel_files.SSH_TUNNELS,
    "tool_commands": tunnel_files.TOOL_FILES,
    "configs": tunnel_files.CONFIGS,
}


@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_each_file_class_is_reported_by_its_rule(
    cls: str, tree: tuple[Path, dict[Path, Any]], scanned: tuple[int, dict[str, Any]]
) -> None:
    rc, doc = scanned
    assert rc == 1
    found = by_path(doc)
    _, written = tree
    missed = []
    for path, sample in written.items():
        if sample not in CLASSES[cls]:
            continue
        hits = found.get(str(path), [])
        if not any(f["rule"] in sample.rules and rank(f) >= 2 for f in hits):
            missed.append((sample.name, [(f["rule"], f["severity"]) for f in hits]))
    assert missed == []


def test_line_findings_name_the_line_and_redact_it(scanned: tuple[int, dict[str, Any]]) -> None:
    _, doc = scanned
    (unit,) = [
        f
        for f in doc["findings"]
        if f["file"]["path"].endswith("ssh/backdoor.service") and f["rule"] == "tunnel.ssh_reverse"
    ]
    assert unit["detector"] == "filetext" and unit["severity"] == "high"
    assert unit["evidence"]["line"] == 7 and unit["evidence"]["lines"] == 1
    assert unit["evidence"]["excerpt"].startswith("ExecStart=/usr/bin/autossh")
    assert unit["evidence"]["destination"] == "tun@198.51.100.5"
    assert unit["file"]["sha256"] and unit["file"]["size"] > 0
    (cont,) = [
        f
        for f in doc["findings"]
        if f["file"]["path"].endswith("ssh/tunnel.sh") and f["rule"] == "tunnel.ssh_reverse"
    ]
    assert cont["evidence"]["line"] == 4  # the continued command, reported where it starts


def test_benign_controls_stay_below_medium(
    tree: tuple[Path, dict[Path, Any]], scanned: tuple[int, dict[str, Any]]
) -> None:
    """ssh -L to a notebook through a bastion: nothing; a port probe whose help text
    mentions /dev/tcp: nothing (comment lines are not judged); a README about ngrok and a
    plain socket client: nothing."""
    _, doc = scanned
    found = by_path(doc)
    _, written = tree
    for path, sample in written.items():
        if sample in tunnel_files.BENIGN:
            limit = SEVERITIES.index(sample.at_most)
            assert all(rank(f) <= limit for f in found.get(str(path), [])), sample.name


def test_benign_tree_exits_zero_and_cache_keeps_line_findings(tmp_path: Path) -> None:
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
    tunnel_files.write(tmp_path / "ok", tunnel_files.BENIGN)
    rc, doc = scan("-c", str(cfg), str(tmp_path / "ok"))
    assert rc == 0 and all(rank(f) < 2 for f in doc["findings"])
    bad = tunnel_files.write(tmp_path / "bad", tunnel_files.SSH_TUNNELS[:1])
    first_rc, first = scan("-c", str(cfg), str(tmp_path / "bad"))
    again_rc, again = scan("-c", str(cfg), str(tmp_path / "bad"))
    assert first_rc == again_rc == 1
    assert again["stats"]["files_cached"] == len(bad) and again["stats"]["files_scanned"] == 0
    rules = sorted(f["rule"] for f in again["findings"])
    assert rules == sorted(f["rule"] for f in first["findings"]) == ["tunnel.ssh_reverse"]
