"""The file-signature detector on real files in a tmp dir."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fakes import context, fake_elf_miner, fake_monero_address

from sentinel.core.events import FileChange
from sentinel.core.model import Category, Finding
from sentinel.detectors.filesig import FileSigDetector, candidate


@pytest.fixture(scope="module")
def det(tmp_path_factory: pytest.TempPathFactory) -> FileSigDetector:
    state = tmp_path_factory.mktemp("state")
    return FileSigDetector(context(f"[agent]\nstate_dir = '{state}'\n"))


def drop(det: FileSigDetector, path: Path, role: str = "drop") -> list[Finding]:
    return list(det.handle(FileChange(time.time(), str(path), "created", role)))


def test_runs_in_a_worker_thread() -> None:
    assert FileSigDetector.blocking


def test_dropped_miner_binary(det: FileSigDetector, tmp_path: Path) -> None:
    path = fake_elf_miner(tmp_path / "kswapd")
    found = drop(det, path)
    assert found and all(f.file is not None and f.file.path == str(path) for f in found)
    assert {f.category for f in found} == {Category.MINER}
    assert found[0].file is not None and found[0].file.size == path.stat().st_size
    assert found[0].evidence["candidate"] == "executable"
    path.chmod(0o644)
    assert drop(det, path)[0].evidence["candidate"] == "elf"


def test_miner_config_with_wallet(det: FileSigDetector, tmp_path: Path) -> None:
    wallet = fake_monero_address()
    conf = {
        "donate-level": 1,
        "randomx": {"1gb-pages": True},
        "pools": [{"url": "127.0.0.1:3333", "user": wallet, "pass": "x", "keepalive": True}],
    }
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(conf, indent=2))
    found = drop(det, path)
    assert Category.MINER in {f.category for f in found}
    wallets = [w for f in found for w in f.evidence.get("wallets", [])]
    assert {"kind": "monero", "address": wallet, "keyed": True} in wallets


def test_non_candidates_are_not_scanned(det: FileSigDetector, tmp_path: Path) -> None:
    data = tmp_path / "weights.bin"
    data.write_bytes(b"\0\x93NUMPY" + b"XMRig --donate-level --cpu-priority rx/0 cn/r " * 10)
    assert candidate(str(data), data.stat(), 1 << 20) is None  # binary data, not text
    assert drop(det, data) == []
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    assert drop(det, fifo) == []  # never opened: a FIFO would block the worker
    link = tmp_path / "link.sh"
    link.symlink_to(fake_elf_miner(tmp_path / "real"))
    assert drop(det, link) == []
    assert drop(det, tmp_path / "vanished.sh") == []


def test_small_text_files_are_candidates_whatever_their_name(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.write_text("remember to pay\n")
    assert candidate(str(notes), notes.stat(), 1 << 30) == "text"
    notes.write_text("x" * (2 << 20))  # past MAX_TEXT_SIZE: a text this big is data
    assert candidate(str(notes), notes.stat(), 1 << 30) is None


def test_persistence_role_and_own_files_are_skipped(det: FileSigDetector, tmp_path: Path) -> None:
    path = fake_elf_miner(tmp_path / "w")
    assert drop(det, path, role="persistence") == []
    own = Path(det.ctx.config.agent.state_dir) / "alerts.jsonl"
    own.write_text('{"summary": "XMRig --donate-level --cpu-priority"}\n')
    own.chmod(0o755)
    assert drop(det, own) == []
