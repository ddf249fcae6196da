"""Shared fixtures: tmp configs, process cleanup by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# harnesses, fakes, receivers and recorded data shared by unit and integration tests
sys.path.insert(0, str(Path(__file__).parent / "support"))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; each is ended by its pid afterwards."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


@pytest.fixture
def detached() -> Iterator[list[int]]:
    """Pids of detached processes a test started (support/detach.py); each is killed by its
    pid afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/*.expected.jsonl from the current engine",
    )
