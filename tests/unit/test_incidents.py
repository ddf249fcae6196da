"""Incident folding: what merges notifications, and what it never hides."""

from __future__ import annotations

import time

from sentinel.core.config import EngineConfig
from sentinel.core.model import Ancestor, Category, FileFacts, Finding, Proc, Severity
from sentinel.engine.incidents import Incidents, evidence_class


def proc(pid: int, exe: str, parent: Proc | None = None) -> Proc:
    ancestors = [Ancestor(parent.pid, parent.name, parent.exe), *parent.ancestors] if parent else []
    ppid = parent.pid if parent else 1
    return Proc(pid, ppid, exe.rsplit("/", 1)[-1], exe, [exe], "root", 1000.0 + pid, ancestors)


def found(p: Proc, sev: Severity = Severity.HIGH, **evidence: object) -> Finding:
    return Finding("miner.x", Category.MINER, sev, f"miner {p.pid}", "t", p, evidence=evidence)


def test_a_decoy_wrapper_folds_only_its_own_kind_and_never_hides_it() -> None:
    inc = Incidents(EngineConfig(incident_window=60.0))
    wrapper = proc(10, "/tmp/d/xmrig")
    root = found(wrapper, name="xmrig")
    assert inc.suppress_reason(root, 0.0) == ""
    # a child running another executable is another class: sent
    miner = proc(11, "/tmp/m/xmrig", wrapper)
    assert inc.suppress_reason(found(miner, name="xmrig"), 1.0) == ""
    # a worker of the wrapper's own program, same evidence: folded and marked
    worker = found(proc(12, "/tmp/d/xmrig", wrapper), name="xmrig")
    assert inc.suppress_reason(worker, 2.0) == "incident"
    assert worker.evidence["folded_into"] == {"incident": root.id, "count": 1}
    assert root.evidence["incident"]["folded"] == 1
    assert root.evidence["incident"]["latest"]["pid"] == 12
    # same program, but what it names differs (another pool): sent
    other = found(proc(13, "/tmp/d/xmrig", wrapper), name="xmrig", pool="p2")
    assert inc.suppress_reason(other, 3.0) == ""
    # more severe than its incident: sent
    worse = found(proc(14, "/tmp/d/xmrig", wrapper), Severity.CRITICAL, name="xmrig")
    assert inc.suppress_reason(worse, 4.0) == ""
    # after incident_window, not the hour of dedup_window: sent again
    late = found(proc(15, "/tmp/d/xmrig", wrapper), name="xmrig")
    assert inc.suppress_reason(late, 65.0) == ""


def test_evidence_class_names_what_was_seen_not_how_much() -> None:
    p = proc(20, "/usr/bin/python3")
    a = found(p, urls=["stratum+tcp://a.test:3333"], age_seconds=5.0, since="t1")
    b = found(p, urls=["stratum+tcp://a.test:3333"], age_seconds=99.0, since="t2")
    c = found(p, urls=["stratum+tcp://b.test:3333"])
    assert evidence_class(a) == evidence_class(b) != evidence_class(c)
    deleted = found(proc(20, "/usr/bin/python3"), urls=["stratum+tcp://a.test:3333"])
    assert deleted.process is not None
    deleted.process.exe_deleted = True
    assert evidence_class(deleted) != evidence_class(a)


def test_a_rewritten_file_is_not_an_exact_repeat() -> None:
    """Same path and summary, other content (a decoy wallet, then the real one): sent."""
    inc = Incidents(EngineConfig())
    now = time.time()

    def about(sha: str) -> Finding:
        return Finding(
            "yara.wallet_monero",
            Category.WALLET,
            Severity.MEDIUM,
            "wallet address in /home/u/.cache/notes.txt",
            "filesig",
            file=FileFacts("/home/u/.cache/notes.txt", sha, 120),
        )

    assert inc.suppress_reason(about("a" * 64), now) == ""
    assert inc.suppress_reason(about("a" * 64), now + 600) == "dedup"  # the same bytes again
    assert inc.suppress_reason(about("b" * 64), now + 601) == ""
