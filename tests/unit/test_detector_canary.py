"""Canary rules on plain fixture events."""

from __future__ import annotations

import time

from fakes import context, proc

from sentinel.core.events import FileAccess
from sentinel.core.model import Category, Severity
from sentinel.detectors.canary import CanaryDetector

PATH = "/root/.aws/credentials"


def test_each_reader_is_reported_with_its_process() -> None:
    det = CanaryDetector(context())
    cat, py = proc(pid=10, name="cat"), proc(pid=11, name="python3")
    found = list(det.handle(FileAccess(time.time(), PATH, "opened", [10, 11], [cat, py])))
    assert [f.process for f in found] == [cat, py]
    for f in found:
        assert (f.rule, f.category, f.severity) == ("canary.read", Category.CANARY, Severity.HIGH)
        assert f.file is not None and f.file.path == PATH
        assert f.evidence["pids"] == [10, 11]
    assert len({f.dedup_key for f in found}) == 2
    again = list(det.handle(FileAccess(time.time(), PATH, "read", [10], [cat])))
    assert again[0].dedup_key == found[0].dedup_key and again[0].summary == found[0].summary


def test_unknown_reader_and_other_kinds() -> None:
    det = CanaryDetector(context())
    (f,) = det.handle(FileAccess(time.time(), PATH, "read", [999], []))
    assert f.process is None and f.evidence["pids"] == [999] and f.severity == Severity.HIGH
    assert f.subject == f"file:{PATH}" and "unknown process" in f.summary
    (f,) = det.handle(FileAccess(time.time(), PATH, "deleted"))
    assert f.rule == "canary.deleted"
    (f,) = det.handle(FileAccess(time.time(), PATH, "modified", [5], [proc(pid=5)]))
    assert f.rule == "canary.modified" and f.process is not None
