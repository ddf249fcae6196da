"""Records and command lines are capped in a defined way."""

from __future__ import annotations

import hashlib
import json

from fakes import proc

from sentinel.core.model import CMDLINE_CAP, Category, Finding, Severity, cap_argv
from sentinel.sinks._cap import RECORD_CAP, capped, size


def test_a_huge_argv_is_capped_with_the_hash_and_length_of_the_whole() -> None:
    argv = ["/usr/bin/x", *["A" * 100_000] * 19, "--donate-level", "1"]
    kept, digest, length = cap_argv(argv) or ([], "", 0)
    whole = "\0".join(argv).encode()
    assert digest == hashlib.sha256(whole).hexdigest() and length == len(whole)
    assert sum(len(a) + 1 for a in kept) <= CMDLINE_CAP + 1 and kept[0] == "/usr/bin/x"
    p = proc(cmdline=argv)
    p.cap_cmdline()
    rec = p.to_record()
    assert rec["cmdline"] == kept and rec["cmdline_sha256"] == digest
    assert rec["cmdline_len"] == length
    assert cap_argv(["ls", "-l"]) is None and "cmdline_sha256" not in proc().to_record()


def test_a_record_over_64_kib_is_cut_and_marked_still_valid_json() -> None:
    f = Finding(
        rule="t.r",
        category=Category.MINER,
        severity=Severity.HIGH,
        summary="s",
        detector="t",
        process=proc(),
        evidence={"lines": ["x" * 5000] * 200, "nested": {"a": {"b": {"c": {"d": ["y" * 9999]}}}}},
    )
    rec = f.to_record()
    assert size(rec) > RECORD_CAP
    out = capped(rec)
    assert size(out) <= RECORD_CAP and out["truncated"] is True
    assert json.loads(json.dumps(out)) == out
    assert out["rule"] == "t.r" and out["process"]["pid"] == rec["process"]["pid"]
    small = Finding(
        rule="t", category=Category.MINER, severity=Severity.LOW, summary="s", detector="t"
    )
    assert capped(small.to_record()) == small.to_record()  # a record that fits is untouched
