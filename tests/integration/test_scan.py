"""`sentinel scan`: the real CLI over generated trees, hostile inputs and live processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import corpus
import pytest

from sentinel.core.model import Severity
from sentinel.rules import intel
from sentinel.rules.yara import load_rules
from sentinel.scan.scanner import CACHE_FILE, Scanner, ScanOptions

CLI_TIMEOUT = 180


def _config(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n{extra}')
    return cfg


def _scan(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel.cli", "scan", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _json(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.returncode in (0, 1), run.stderr
    return json.loads(run.stdout)  # exactly one document: json.loads rejects trailing data


def _by_path(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in doc["findings"]:
        if f["file"]:
            out.setdefault(f["file"]["path"], []).append(f)
    return out


def test_cli_finds_every_malicious_sample_and_no_benign_one(tmp_path) -> None:
    written = corpus.write(tmp_path / "tree")
    run = _scan("--json", "--no-cache", str(tmp_path / "tree"))
    doc = _json(run)
    assert run.returncode == 1
    found = _by_path(doc)
    for path, sample in written.items():
        categories = {f["category"] for f in found.get(str(path), [])}
        severities = {Severity.parse(f["severity"]) for f in found.get(str(path), [])}
        if sample.category:
            assert sample.category in categories, sample.name
        else:
            assert all(s < Severity.MEDIUM for s in severities), sample.name
    stats = doc["stats"]
    assert stats["files_scanned"] == len(written) and stats["skipped"] == []
    assert stats["findings"] == len(doc["findings"])
    first = doc["findings"][0]
    assert set(first) >= {"id", "time", "host", "rule", "category", "severity", "summary"}


def test_cli_exit_zero_on_benign_tree_and_below_threshold(tmp_path) -> None:
    tree = tmp_path / "tree"
    written = corpus.write(tree)
    for path, sample in written.items():
        if sample.category:
            path.unlink()
    (tree / "donate.txt").write_text(f"tips welcome: {corpus.bech32_address()}\n")
    run = _scan("--json", "--no-cache", str(tree))
    assert run.returncode == 0, run.stdout
    doc = json.loads(run.stdout)
    assert [f["rule"] for f in doc["findings"]] == ["yara.wallet_bitcoin_bech32"]
    strict = _config(tmp_path, '[scan]\nfail_severity = "low"\n')
    assert _scan("--json", "--no-cache", "-c", str(strict), str(tree)).returncode == 1


def test_terminal_output_is_a_table(tmp_path) -> None:
    (tmp_path / "run.sh").write_text("./x --donate-level=1 -o stratum+ssl://127.0.0.1:3333\n")
    run = _scan("--no-cache", str(tmp_path))
    assert run.returncode == 1
    assert "yara.miner_donate_level_option" in run.stdout and "4 findings," in run.stdout
    assert "miner.cmdline.miner_flag" in run.stdout  # the text rules, on the script's line


def test_cache_makes_a_rescan_read_nothing(tmp_path) -> None:
    tree = tmp_path / "tree"
    corpus.write(tree)
    cfg = str(_config(tmp_path))
    first = _json(_scan("--json", "-c", cfg, str(tree)))
    second = _json(_scan("--json", "-c", cfg, str(tree)))
    assert first["stats"]["cache"] == "on" and first["stats"]["files_scanned"] > 0
    assert second["stats"]["files_scanned"] == 0 and second["stats"]["bytes_scanned"] == 0
    assert second["stats"]["files_cached"] == first["stats"]["files_scanned"]

    def key(doc):
        return sorted((f["rule"], f["file"]["path"], f["file"]["sha256"]) for f in doc["findings"])

    assert key(second) == key(first)
    db = tmp_path / "state" / CACHE_FILE
    assert stat.S_IMODE(db.stat().st_mode) == 0o600

    changed = tree / "drop" / "donate.sh"
    changed.write_text("echo harmless now\n")
    third = _json(_scan("--json", "-c", cfg, str(tree)))
    assert third["stats"]["files_scanned"] == 1
    assert str(changed) not in _by_path(third)

    off = _json(_scan("--json", "--no-cache", "-c", cfg, str(tree)))
    assert off["stats"]["cache"] == "off" and off["stats"]["files_cached"] == 0


def test_corrupt_cache_is_moved_aside_not_fatal(tmp_path) -> None:
    cfg = str(_config(tmp_path))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / CACHE_FILE).write_bytes(b"not a database" * 100)
    (tmp_path / "f.txt").write_text("hello\n")
    doc = _json(_scan("--json", "-c", cfg, str(tmp_path / "f.txt")))
    assert doc["stats"]["cache"].startswith("on (a corrupt cache was moved")
    assert (tmp_path / "state" / (CACHE_FILE + ".corrupt")).exists()


def _churn(directory: Path, stop: threading.Event) -> None:
    """Create and delete files as fast as possible until told to stop."""
    directory.mkdir()
    i = 0
    while not stop.is_set():
        path = directory / f"v{i % 50}.sh"
        try:
            path.write_text("./x --donate-level=1\n")
            path.unlink()
        except OSError:
            pass
        i += 1


@pytest.mark.timeout(300)
def test_bad_input_tree_completes_with_reasons(tmp_path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mkfifo(tree / "pipe")
    os.symlink("loop_b", tree / "loop_a")
    os.symlink("loop_a", tree / "loop_b")
    os.symlink(".", tree / "self")
    with open(tree / "sparse.img", "wb") as f:
        f.truncate(4 << 30)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tree / "sock"))
    os.mknod(tree / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    bad = os.path.join(os.fsencode(tree), b"miner\xff\xfe.sh")
    with open(bad, "wb") as f:
        f.write(b"./x -o stratum+tcp://127.0.0.1:3333\n")
    (tree / "sub").mkdir()
    (tree / "sub" / "ok.txt").write_text("hello\n")
    stop = threading.Event()
    churner = threading.Thread(target=_churn, args=(tree / "churn", stop))
    churner.start()
    try:
        time.sleep(0.2)
        run = _scan("--json", "--no-cache", str(tree), timeout=120)
    finally:
        stop.set()
        churner.join()
        sock.close()
    doc = _json(run)
    skips = {(Path(s["path"]).name, s["reason"]) for s in doc["stats"]["skipped"]}
    assert {
        ("pipe", "fifo"),
        ("loop_a", "symlink-loop"),
        ("loop_b", "symlink-loop"),
        ("sparse.img", "too-large"),
        ("sock", "socket"),
        ("null", "device"),
    } <= skips
    assert all(s["reason"] for s in doc["stats"]["skipped"])
    vanished = [s for s in doc["stats"]["skipped"] if "/churn/" in s["path"]]
    assert all(s["reason"] == "vanished" for s in vanished)
    found = [f for f in doc["findings"] if "miner" in f["file"]["path"]]
    assert {f["rule"] for f in found} == {"yara.miner_stratum_url", "miner.cmdline.stratum_url"}
    assert all(f["file"]["path"].endswith("miner\\xff\\xfe.sh") for f in found)
    assert doc["stats"]["symlinks_not_followed"] == 3


def test_file_vanishing_between_listing_and_stat_is_reported(tmp_path, monkeypatch) -> None:
    (tmp_path / "stay.txt").write_text("x\n")
    (tmp_path / "vanish.txt").write_text("x\n")
    real = os.scandir

    class Vanishing:
        def __init__(self, path):
            self.it = real(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.it.close()

        def __iter__(self):
            for entry in self.it:
                if entry.name in (b"vanish.txt", "vanish.txt"):
                    os.unlink(tmp_path / os.fsdecode(entry.name))
                yield entry

    monkeypatch.setattr(os, "scandir", Vanishing)
    scanner = Scanner(load_rules(), ScanOptions())
    scanner.scan_paths([str(tmp_path)])
    _, stats = scanner.finish()
    assert [(Path(s.path).name, s.reason) for s in stats.skipped] == [("vanish.txt", "vanished")]
    assert stats.files_scanned == 1


def test_pseudo_filesystems_and_own_files_are_skipped(tmp_path) -> None:
    cfg = _config(tmp_path, f'[log]\npath = "{tmp_path / "alerts.jsonl"}"\n')
    (tmp_path / "state").mkdir()
    evidence = '{"evidence": {"data": "stratum+tcp://127.0.0.1:3333"}}\n'
    (tmp_path / "state" / "quarantined.json").write_text(evidence)
    (tmp_path / "alerts.jsonl").write_text(evidence)
    doc = _json(_scan("--json", "-c", str(cfg), "/proc", str(intel.builtin_dir()), str(tmp_path)))
    reasons = {s["path"]: s["reason"] for s in doc["stats"]["skipped"]}
    assert reasons["/proc"] == "pseudo-fs"
    assert reasons[str(intel.builtin_dir())] == "sentinel-own"
    assert reasons[str(tmp_path / "state")] == "sentinel-own"
    assert reasons[str(tmp_path / "alerts.jsonl")] == "sentinel-own"
    assert doc["findings"] == []


def test_missing_path_exits_2(tmp_path) -> None:
    run = _scan("--json", "--no-cache", str(tmp_path / "nope"))
    assert run.returncode == 2
    assert json.loads(run.stdout)["stats"]["skipped"][0]["reason"] == "not-found"


def test_rule_compile_error_exits_78_naming_file_and_line(tmp_path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.yar").write_text(
        "rule ok { condition: true }\nrule broken { condition: nosuch }\n"
    )
    run = _scan("--json", "--no-cache", "--rules", str(rules), str(tmp_path))
    assert run.returncode == 78
    assert f"{rules / 'broken.yar'}:2:" in run.stderr
    assert run.stdout == ""


def test_config_error_exits_78(tmp_path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[scan]\nmax_file_sise = 1\n")
    run = _scan("-c", str(cfg), str(tmp_path))
    assert run.returncode == 78
    assert "scan.max_file_sise" in run.stderr


def _wait_for_exec(pid: int, marker: bytes, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never showed {marker!r}")


def _miner_like_copy(tmp_path: Path) -> Path:
    """A copy of sleep(1) with XMRig-like strings appended: runs as sleep, scans as a miner."""
    exe = tmp_path / "kworker-upd"
    strings = ("XMRig/6.21.0", "--donate-level", "--randomx-1gb-pages", "rx/0", "cryptonight")
    exe.write_bytes(
        Path(shutil.which("sleep") or "/bin/sleep").read_bytes()
        + b"\0".join(s.encode() for s in strings)
    )
    exe.chmod(0o755)
    return exe


@pytest.mark.root
@pytest.mark.timeout(300)
def test_pids_reports_miner_like_processes(tmp_path, procs) -> None:
    link = tmp_path / "xmrig"
    os.symlink(sys.executable, link)  # comm becomes "xmrig"; the executable stays python
    wallet = corpus.monero_address()
    argv = [str(link), "-c", "import time; time.sleep(120)"]
    argv += ["--donate-level=1", "-o", "stratum+tcp://127.0.0.1:3333", "-u", wallet]
    talker = subprocess.Popen(argv)
    procs.append(talker)
    exe = _miner_like_copy(tmp_path)
    sleeper = subprocess.Popen([str(exe), "120"])
    procs.append(sleeper)
    _wait_for_exec(talker.pid, b"--donate-level")
    _wait_for_exec(sleeper.pid, b"120")
    exe.unlink()  # scanned through /proc/PID/exe all the same

    doc = _json(_scan("--json", "--no-cache", "--no-files", timeout=240))
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for f in doc["findings"]:
        if f["process"]:
            by_pid.setdefault(f["process"]["pid"], []).append(f)

    talk = by_pid[talker.pid]
    assert {"miner", "wallet"} <= {f["category"] for f in talk}
    assert any(Severity.parse(f["severity"]) >= Severity.HIGH for f in talk)
    record = talk[0]["process"]
    assert record["name"] == "xmrig" and "--donate-level=1" in record["cmdline"]
    assert record["ancestors"][0]["pid"] == os.getpid()

    (exe_hit,) = [f for f in by_pid[sleeper.pid] if f["rule"] == "yara.miner_xmrig_elf"]
    assert exe_hit["file"]["path"] == f"{exe} (deleted)"
    assert exe_hit["evidence"]["target"] == "exe" and exe_hit["file"]["sha256"]
    assert doc["stats"]["processes_scanned"] and doc["stats"]["processes"] > 2


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_system_trees_have_no_findings_at_medium_or_above() -> None:
    run = _scan("--json", "--no-cache", "/usr/bin", "/usr/lib", timeout=1100)
    doc = _json(run)
    loud = [
        (f["rule"], f["file"]["path"])
        for f in doc["findings"]
        if Severity.parse(f["severity"]) >= Severity.MEDIUM
    ]
    assert loud == []
    assert run.returncode == 0
    assert doc["stats"]["files_scanned"] > 1000
