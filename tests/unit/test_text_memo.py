"""Text rules are judged once per distinct text: a repeat gets the same matches, each
caller its own copy, and a text too long to keep is judged afresh."""

from __future__ import annotations

import pytest
from fakes import context, fake_monero_address

from sentinel.rules.fields import text


def test_a_repeated_text_is_judged_once_each_caller_gets_its_own_copy() -> None:
    cat = context().catalogue
    line = f"./w -o stratum+tcp://10.1.2.3:3333 -u {fake_monero_address()} --donate-level 1"
    first = text.matches(cat, line)
    assert {m.rule.id for m in first} >= {"miner.cmdline.stratum_url", "wallet.cmdline"}
    judge = cat.memos[text.KIND]
    hits = judge.cache_info().hits
    first[0].evidence["tampered"] = True  # a caller's copy; the kept matches do not change
    again = text.matches(cat, line)
    assert judge.cache_info().hits == hits + 1
    assert [(m.rule.id, m.severity, m.summary) for m in again] == [
        (m.rule.id, m.severity, m.summary) for m in first
    ]
    assert all("tampered" not in m.evidence for m in again)


def test_a_long_text_is_not_kept_and_catalogues_keep_their_own() -> None:
    cat = context().catalogue
    long_line = "x " * text.MEMO_CHARS + "stratum+tcp://10.1.2.3:3333"
    assert text.matches(cat, long_line)
    assert text.KIND not in cat.memos or cat.memos[text.KIND].cache_info().currsize == 0
    other = context().catalogue
    text.matches(cat, "sleep 60")
    assert text.KIND not in other.memos  # a reloaded catalogue starts with nothing kept


def test_a_text_on_which_a_rule_failed_is_judged_again(monkeypatch: pytest.MonkeyPatch) -> None:
    cat = context().catalogue
    fields = cat.kinds[text.KIND].fields
    wallets = fields["wallets"]

    def fragile(s: object) -> object:
        if "boom" in str(s.obj):  # type: ignore[attr-defined]
            raise ValueError("hostile text")
        return wallets(s)

    monkeypatch.setitem(fields, "wallets", fragile)
    line = "boom stratum+tcp://10.1.2.3:3333"
    for seen in (1, 2):  # not kept: the failure is logged and counted each time
        ids = {m.rule.id for m in text.matches(cat, line)}
        assert "miner.cmdline.stratum_url" in ids and "wallet.cmdline" not in ids
        assert cat.failures == seen
