"""Following logs: offsets per inode, rotation, truncation, caps, symlinks; and the logs
detector's findings. Real files in a tmp dir; the collector's passes are called directly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import corpus
import pytest
from fakes import context, fake_monero_address

from sentinel.collectors import logs
from sentinel.collectors.logs import LogsCollector, expand
from sentinel.core.events import Event, LogLines
from sentinel.core.model import Severity
from sentinel.detectors import logs as logs_mod
from sentinel.detectors.logs import WALLET_RULE, LogsDetector


def _collector(pattern: str, extra: str = "") -> tuple[LogsCollector, list[Event]]:
    got: list[Event] = []
    return LogsCollector(context(f'[watch]\nlogs = ["{pattern}"]\n{extra}'), got.append), got


def _lines(c: LogsCollector) -> list[tuple[str, int | None, str]]:
    return [(Path(e.path).name, n, t) for e in c.poll() for n, t in e.lines]


def test_only_appended_lines_are_read_with_their_numbers(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("pool old line\n" * 3)
    c, _ = _collector(f"{tmp_path}/*.log")
    c.rescan()
    assert _lines(c) == []
    with log.open("a") as f:
        f.write("loss 0.1\nconnect stratum+tcp://p.test:3333\npartial wallet")
    assert _lines(c) == [("a.log", 5, "connect stratum+tcp://p.test:3333")]
    with log.open("a") as f:
        f.write(" line\n")
    assert _lines(c) == [("a.log", 6, "partial wallet line")]
    assert _lines(c) == []


def test_rotation_and_truncation_start_again_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("pool 1\npool 2\n")
    c, _ = _collector(f"{tmp_path}/*.log")
    c.rescan()
    os.rename(log, tmp_path / "a.log.1")
    log.write_text("pool new\n")
    assert _lines(c) == [("a.log", 1, "pool new")]
    log.write_text("")  # truncated
    log.write_text("miner again\n")
    assert _lines(c) == [("a.log", 1, "miner again")]


def test_a_file_that_appears_later_is_read_from_its_start(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    c, _ = _collector(f"{tmp_path}/**/*.log")
    c.rescan()
    (tmp_path / "sub" / "new.log").write_text("xmrig started\n")
    c.rescan()
    assert _lines(c) == [("new.log", 1, "xmrig started")]


def test_reads_are_capped_per_pass_and_nothing_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "MAX_READ", 64)
    monkeypatch.setattr(logs, "MAX_LINES", 2)
    log = tmp_path / "a.log"
    log.write_text("")
    c, _ = _collector(str(log))
    c.rescan()
    log.write_text("".join(f"pool {i:02d} ................\n" for i in range(8)))
    seen = []
    for _ in range(8):
        seen.extend(n for _, n, _ in _lines(c))
    assert seen == list(range(1, 9))


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "x.log").symlink_to(secret)
    (tmp_path / "real").mkdir()
    (tmp_path / "logs" / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "real" / "deep.log").write_text("")
    assert expand(f"{tmp_path}/logs/**/*.log") == []
    assert expand(f"{tmp_path}/logs/*.log") == []


def test_no_patterns_turns_the_collector_off(tmp_path: Path) -> None:
    c = LogsCollector(context("[watch]\nlogs = []\n"), [].append)
    assert not c.enabled()
    job = '[[runbook.jobs]]\nname = "t"\nexe = "/usr/bin/py*"\nuser = "ml"\nlogs = ["/x/*.log"]\n'
    assert LogsCollector(context(f"[watch]\nlogs = []\n{job}"), [].append).enabled()


def _judge(path: str, *lines: str) -> list:
    event = LogLines(time.time(), path, [(i + 1, t) for i, t in enumerate(lines)], 100)
    return list(LogsDetector(context()).handle(event))


def test_detector_grades_wallets_and_runs_text_rules() -> None:
    xmr, eth = fake_monero_address(), corpus.eth_address()
    found = _judge("/var/log/app.log", f"joined as {xmr}", f"tx {eth}", f"payout={eth}")
    wallets = [(f.evidence["line"], f.severity) for f in found if f.rule == WALLET_RULE]
    assert wallets == [(1, Severity.MEDIUM), (2, Severity.LOW), (3, Severity.MEDIUM)]
    assert all("line" in f.summary for f in found)
    (url,) = _judge("/var/log/app.log", "w -o stratum+tcp://p.test:3333")
    assert url.rule == "miner.cmdline.stratum_url" and url.evidence["line"] == 1
    (vec,) = _judge("/srv/node_modules/x/test.log", xmr)
    assert vec.severity is Severity.LOW
    assert _judge("/var/log/app.log", "DataLoader worker pool started", "loss 0.1") == []


def test_a_flood_of_matching_lines_is_a_few_findings_and_a_rollup() -> None:
    """A watched process writing 2,000 pool URLs to a followed log: PER_WINDOW findings
    that name their lines, then one finding per pass that counts the rest."""
    det = LogsDetector(context())
    lines = [(i + 1, f"w -o stratum+tcp://p{i}.test:3333") for i in range(2000)]
    first = list(det.handle(LogLines(time.time(), "/var/log/app.log", lines, 100)))
    named = [f for f in first if "held_back" not in f.evidence]
    (rollup,) = [f for f in first if "held_back" in f.evidence]
    assert len(named) == logs_mod.PER_WINDOW and named[0].evidence["line"] == 1
    assert rollup.evidence["held_back"] == 2000 - logs_mod.PER_WINDOW
    assert "more lines of it held back" in rollup.summary
    again = list(det.handle(LogLines(time.time(), "/var/log/app.log", lines[:10], 100)))
    assert len(again) == 1 and again[0].evidence["held_back"] == 10  # still in its window
    other = list(det.handle(LogLines(time.time(), "/var/log/other.log", lines[:2], 100)))
    assert len(other) == 2  # another log has its own share


def test_line_numbers_are_unknown_past_the_counting_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "MAX_COUNT", 10)
    log = tmp_path / "big.log"
    log.write_text("old line that is long\n")
    c, _ = _collector(str(log))
    c.rescan()
    with log.open("a") as f:
        f.write("pool new\n")
    assert _lines(c) == [("big.log", None, "pool new")]
    (found,) = _judge(str(log), "w -o stratum+tcp://p.test:3333")
    assert str(log) in found.summary


def test_lines_refused_by_a_full_queue_are_sent_again(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    sent: list[Event] = []
    full = [True]

    def emit(event: Event) -> bool:
        if full[0]:
            return False
        sent.append(event)
        return True

    c = LogsCollector(context(f'[watch]\nlogs = ["{log}"]\nlogs_interval = 0.01\n'), emit)

    async def passes(n: int) -> None:
        task = asyncio.create_task(c.run())
        for _ in range(n):
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(passes(4))  # the first pass sees the file empty
    log.write_text("pool one\n")
    asyncio.run(passes(4))
    assert sent == [] and c.unsent
    full[0] = False
    log.write_text("pool one\npool two\n")
    asyncio.run(passes(4))
    got = [t for e in sent if isinstance(e, LogLines) for _, t in e.lines]
    assert got == ["pool one", "pool two"]
