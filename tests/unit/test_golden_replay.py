"""Golden replay: recorded events through the real engine, findings diffed against a file.

tests/golden/events.jsonl holds process, connection and persistence events (with their
process and connection facts); tests/golden/findings.expected.jsonl holds what the engine
published for them, with id, time and host normalised. `pytest --update-golden` rewrites
the expected file, so that every rule change shows as a reviewable diff.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from sentinel.core import config
from sentinel.engine import replay
from sentinel.rules import intel, loader

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
EVENTS = GOLDEN / "events.jsonl"
EXPECTED = GOLDEN / "findings.expected.jsonl"
VOLATILE = {"id": "<id>", "time": "<time>", "host": "<host>"}


def normalised(records: list[dict]) -> list[str]:
    return [
        json.dumps({**r, **{k: v for k, v in VOLATILE.items() if k in r}}, sort_keys=True)
        for r in records
    ]


def test_golden_replay(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    cfg = config.parse(
        f"[agent]\nstate_dir = '{tmp_path}'\n[log]\nstdout = false\n[metrics]\nenabled = false\n"
        # the rules' findings alone: the recorder's evidence.recent is tested on its own
        "[evidence]\nrecorder = false\n"
        # the egress allow-list on: the test range allowed, another destination not
        "[network]\negress_allow = ['198.51.100.0/24']\n"
    )
    events = [replay.decode(json.loads(line)) for line in EVENTS.read_text().splitlines()]
    got = normalised([f.to_record() for f in replay.replay(cfg, events)])
    if request.config.getoption("--update-golden"):
        EXPECTED.write_text("".join(line + "\n" for line in got))
    want = EXPECTED.read_text().splitlines()
    diff = "\n".join(difflib.unified_diff(want, got, "expected", "got", lineterm="", n=0))
    assert got == want, f"findings differ from {EXPECTED} (pytest --update-golden):\n{diff}"


def test_every_rule_fires_in_the_golden_stream() -> None:
    fired = {json.loads(line)["rule"] for line in EXPECTED.read_text().splitlines()}
    ids = {r.id for r in loader.load(intel.load()).all_rules()}
    assert ids - fired == set()


def test_events_round_trip() -> None:
    for line in EVENTS.read_text().splitlines()[:20]:
        record = json.loads(line)
        assert replay.encode(replay.decode(record)) == record
