"""The rule catalogue: every rule's embedded tests, metadata lint, schema errors, user rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fakes import context, proc

from sentinel.cli import main
from sentinel.core import config
from sentinel.core.events import ProcExec
from sentinel.core.model import Category, Severity
from sentinel.detectors.process import ProcessDetector
from sentinel.rules import catalogue, intel, kinds, loader, selftest
from sentinel.rules.catalogue import CatalogueError
from sentinel.rules.loader import ATTACK_ID, ID_FORMAT


@pytest.fixture(scope="module")
def cat() -> catalogue.Catalogue:
    return loader.load(intel.load())


def test_rules_test_passes_over_the_whole_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\d+ rules, \d+ samples, 0 failed$", out, re.M), out


def test_every_rule_is_well_described(cat: catalogue.Catalogue) -> None:
    rules = cat.all_rules()
    assert len(rules) >= 35
    for r in rules:
        where = f"{r.id} ({r.where})"
        assert ID_FORMAT.match(r.id), where
        assert isinstance(r.category, Category) and isinstance(r.severity, Severity), where
        assert r.title and r.description and r.references, where
        assert r.attack and all(ATTACK_ID.match(a) for a in r.attack), where
        assert any(t.expect != "none" for t in r.tests), f"{where}: no positive test"
        assert any(t.expect == "none" for t in r.tests), f"{where}: no negative test"
        assert r.event in cat.kinds, where
        # a rule's category is the first part of its id, as the detectors report it
        assert r.id.split(".", 1)[0] == r.category.value, where


def test_rules_list_json_has_all_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    ids = {(r["id"], r["event"]) for r in listed}
    assert ("tunnel.reverse_shell", "process") in ids and ("tunnel.reverse_shell", "text") in ids
    first = listed[0]
    assert {"id", "title", "category", "severity", "event", "references", "attack"} <= set(first)
    assert main(["rules", "list"]) == 0
    assert "miner.process_name" in capsys.readouterr().out


def test_fields_are_computed_once_per_subject(
    cat: catalogue.Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = cat.kinds["process"].fields["names_by"]

    def counting(s: catalogue.Subject) -> dict[str, str]:
        calls.append(1)
        return original(s)

    monkeypatch.setitem(cat.kinds["process"].fields, "names_by", counting)
    assert cat.evaluate("process", proc(name="xmrig", exe="/opt/xmrig", cmdline=["xmrig"]))
    assert len(calls) == 1


RULE = """
[[rule]]
id = "local.demo"
title = "demo"
category = "miner"
severity = "high"
event = "process"
description = "d"
references = ["https://example.com"]
attack = ["T1496"]
match.all = [{ field = "name", op = "equals", value = "demo-miner" }]
summary = "demo"
tests = [{ argv = ["demo-miner"], expect = "high" }]
"""


def write(tmp_path: Path, text: str, name: str = "local.toml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path / name


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (('category = "miner"', 'category = "mining"'), 5, r"category: unknown category"),
        (('field = "name"', 'field = "nme"'), 11, r"match.all\[0\]: unknown field 'nme'"),
        (('op = "equals"', 'op = "is"'), 11, r"match.all\[0\]: unknown operator 'is'"),
        (('value = "demo-miner"', 'value = "@nolist"'), 11, r"unknown list '@nolist'"),
        (
            ('op = "equals", value = "demo-miner"', 'op = "matches", value = "(x"'),
            11,
            r"match.all\[0\]: bad regular expression",
        ),
        (('summary = "demo"', 'summary = "demo {nofield}"'), 12, r"summary: unknown field"),
        (('title = "demo"', 'titel = "demo"'), 4, r"titel: unknown rule key"),
        (('expect = "high"', 'expect = "hihg"'), 13, r"tests\[0\]: unknown severity"),
        (('severity = "high"', 'severity = "high"\n['), 7, r"bad TOML"),
    ],
)
def test_errors_name_file_line_and_key(
    tmp_path: Path, change: tuple[str, str], line: int, message: str
) -> None:
    path = write(tmp_path, RULE.replace(*change))
    with pytest.raises(CatalogueError, match=rf"^{re.escape(str(path))}:{line}: .*{message}"):
        loader.load(intel.load(), [tmp_path])


def test_duplicate_id_in_one_file(tmp_path: Path) -> None:
    path = write(tmp_path, RULE + RULE)
    with pytest.raises(CatalogueError, match=rf"^{re.escape(str(path))}:15: id: duplicate"):
        loader.load(intel.load(), [tmp_path])


def test_failing_embedded_test_names_rule_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, RULE.replace('expect = "high"', 'expect = "medium"'))
    assert main(["rules", "test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {path}:13: local.demo (process): expected medium, got high" in out
    assert "demo-miner" in out and "1 rules, 1 samples, 1 failed" in out
    write(tmp_path, RULE.replace("field", "feld"))
    assert main(["rules", "test", str(tmp_path)]) == 78


def test_user_rule_joins_and_overrides_ours(tmp_path: Path) -> None:
    override = RULE.replace("local.demo", "miner.process_name").replace("demo-miner", "xm")
    write(tmp_path, RULE)
    write(tmp_path, override, "over.toml")
    cat = loader.load(intel.load(), [tmp_path])
    named = [r for r in cat.all_rules() if r.id == "miner.process_name"]
    assert len(named) == 1 and named[0].file == str(tmp_path / "over.toml")
    got = {m.rule.id for m in cat.evaluate("process", proc(name="demo-miner"))}
    assert got == {"local.demo"}


CONFIG = """
[rules]
dirs = ["{dir}"]
disable = ["miner.process_name"]

[rules.exceptions]
"local.demo" = [{{ field = "user", op = "equals", value = "ci" }}]
"""


def test_config_dirs_disable_and_exceptions(tmp_path: Path) -> None:
    write(tmp_path, RULE)
    det = ProcessDetector(context(CONFIG.format(dir=tmp_path)))
    demo = proc(name="demo-miner", exe="/opt/demo-miner", cmdline=["demo-miner"])
    ci = proc(name="demo-miner", exe="/opt/demo-miner", cmdline=["demo-miner"], user="ci")
    xmrig = proc(name="xmrig", exe="/opt/xmrig", cmdline=["xmrig"])
    assert {f.rule for f in det.handle(ProcExec(0.0, demo))} == {"local.demo"}
    assert not list(det.handle(ProcExec(0.0, ci)))
    assert not list(det.handle(ProcExec(0.0, xmrig)))


def test_bad_exception_in_config_names_file_line_and_key(tmp_path: Path) -> None:
    write(tmp_path, RULE)
    cfg_path = tmp_path.parent / f"{tmp_path.name}.sentinel.toml"
    cfg_path.write_text(CONFIG.format(dir=tmp_path).replace('op = "equals"', 'op = "eq"'))
    cfg = config.load(str(cfg_path))
    with pytest.raises(CatalogueError, match=rf"^{cfg_path}:7: rules.exceptions.local.demo\[0\]"):
        loader.load(
            intel.load(), cfg.rules.dirs, exceptions=cfg.rules.exceptions, source=cfg.source
        )
    assert main(["check-config", "-c", str(cfg_path)]) == 78


def test_check_config_fails_on_a_failing_embedded_test(tmp_path: Path) -> None:
    write(tmp_path, RULE.replace('"high" }]', '"low" }]'))
    cfg_path = tmp_path.parent / f"{tmp_path.name}.sentinel.toml"
    cfg_path.write_text(f'[rules]\ndirs = ["{tmp_path}"]\n')
    assert main(["check-config", "-c", str(cfg_path)]) == 78


def test_every_kind_builds_samples_and_has_fields() -> None:
    for k in kinds.load_fields().values():
        assert k.sample is not None and k.fields, k.name


def test_selftest_counts_samples(cat: catalogue.Catalogue) -> None:
    count, failures = selftest.run(cat)
    assert count == sum(len(r.tests) for r in cat.all_rules()) and not failures


def test_user_lists_extend_ours(tmp_path: Path) -> None:
    write(
        tmp_path,
        '[lists]\nkthread_names = ["kfakethread"]\n[lists.masquerade_carriers]\nmyd = ["myd"]\n',
    )
    cat = loader.load(intel.load(), [tmp_path])
    fired = {m.rule.id for m in cat.evaluate("process", proc(name="kfakethread", exe="/opt/k"))}
    assert "evasion.kthread_masquerade" in fired
    fake = proc(name="myd", exe="/opt/w/miner", cmdline=["myd"])
    assert "evasion.name_masquerade" in {m.rule.id for m in cat.evaluate("process", fake)}
    assert "kworker.*" in cat.lists["kthread_names"] and "sshd" in cat.lists["masquerade_carriers"]
    path = write(tmp_path, '\n[lists]\nkthread_names = ["(bad"]\n')
    with pytest.raises(CatalogueError, match=rf"^{path}:3: lists.kthread_names: bad regular"):
        loader.load(intel.load(), [tmp_path])


PERSISTENCE_RULES = """
[[rule]]
id = "persistence.cron"
title = "cron, graded by us"
category = "persistence"
severity = "critical"
event = "persistence"
match.all = [{ field = "path", op = "matches", value = '(?:^|/)cron\\.d/' }]
set = { place = "cron" }
summary = "our cron {path}"

[[rule]]
id = "local.sudoers"
title = "sudoers drop-in"
category = "persistence"
severity = "high"
event = "persistence"
match.all = [{ field = "path", op = "prefix_in", value = ["/etc/sudoers.d/"] }]
summary = "sudoers {path}"

[[rule]]
id = "local.anything_under_etc"
title = "anything under /etc"
category = "persistence"
severity = "low"
event = "persistence"
match.all = [{ field = "path", op = "prefix_in", value = ["/etc/"] }]
summary = "etc {path}"
"""


def test_user_persistence_rules_fire_and_do_not_shadow_ours(tmp_path: Path) -> None:
    """Persistence is first-match: a replaced rule keeps its place, a new one goes before our
    catch-all (so it can fire) and after our specific places (so it cannot shadow them)."""
    from sentinel.core.events import FileChange

    write(tmp_path, PERSISTENCE_RULES)
    cat = loader.load(intel.load(), [tmp_path])

    def first(path: str) -> tuple[str, Severity]:
        (m,) = cat.evaluate("persistence", FileChange(1.0, path, "created", "persistence", ["x"]))
        return m.rule.id, m.severity

    assert first("/etc/cron.d/job") == ("persistence.cron", Severity.CRITICAL)
    assert first("/etc/sudoers.d/agent") == ("local.sudoers", Severity.HIGH)
    assert first("/etc/ld.so.preload")[0] == "persistence.ld_preload"
    assert first("/etc/other.conf")[0] == "local.anything_under_etc"
    assert first("/srv/watched")[0] == "persistence.other"
    order = [r.id for r in cat.rules["persistence"]]
    assert order[-1] == "persistence.other"


def test_a_field_that_raises_loses_only_its_rules(
    cat: catalogue.Catalogue, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One extractor failing on a hostile process must not drop the other rules' findings."""
    from sentinel.ops import metrics

    def boom(s: catalogue.Subject) -> object:
        raise ValueError("hostile input")

    monkeypatch.setitem(cat.kinds["process"].fields, "masquerade", boom)
    before = metrics.errors.labels("rules")._value.get()
    miner = proc(name="xmrig", exe="/tmp/xmrig", cmdline=["/tmp/xmrig"])
    got = {m.rule.id for m in cat.evaluate("process", miner)}
    assert {"miner.process_name", "evasion.exec_from_tmp"} <= got
    assert "evasion.name_masquerade" not in got
    assert metrics.errors.labels("rules")._value.get() == before + 1
    assert "evasion.name_masquerade" in caplog.text


DEMO_COND = 'op = "equals", value = "demo-miner"'


@pytest.mark.parametrize("rx", [r"^(\w+\s?)*$", r"(a+)+b", r"(?:x|(?:y*z)*)*$", r"(a*){2,9}"])
def test_catastrophic_regex_is_refused_at_load(tmp_path: Path, rx: str) -> None:
    """A nested repetition backtracks exponentially on an argv the watched agent writes
    (24 characters already stall the loop for a second): the loader refuses it."""
    rule = RULE.replace('op = "equals", value = "demo-miner"', f"op = \"matches\", value = '{rx}'")
    path = write(tmp_path, rule)
    with pytest.raises(
        CatalogueError, match=rf"^{re.escape(str(path))}:11: match.all\[0\]: .*nested"
    ):
        loader.load(intel.load(), [tmp_path])


def test_bounded_and_possessive_repetitions_load(tmp_path: Path) -> None:
    rx = r"^(?:\w++\s?)*+$|(?:ab){2,3}x+|(?>a+)+"
    write(
        tmp_path,
        RULE.replace('op = "equals", value = "demo-miner"', f"op = \"matches\", value = '{rx}'"),
    )
    loader.load(intel.load(), [tmp_path])


def test_catastrophic_pattern_list_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[lists]\nkthread_names = ['(k\\w+)+d']\n")
    with pytest.raises(
        CatalogueError, match=rf"^{re.escape(str(path))}:2: lists.kthread_names: .*nested"
    ):
        loader.load(intel.load(), [tmp_path])


def test_rules_list_shows_where_an_override_comes_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user rule that replaces ours (possibly narrowing it to nothing) is listed as such."""
    rules_d = tmp_path / "rules.d"
    rules_d.mkdir()
    over = write(rules_d, RULE.replace("local.demo", "miner.process_name"), "over.toml")
    cfg = write(tmp_path, f'[rules]\ndirs = ["{rules_d}"]\n', "sentinel.toml")
    assert main(["rules", "list", "--json", "-c", str(cfg)]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["id"] == "miner.process_name"]
    assert row["file"] == str(over)
    assert re.fullmatch(r".*signatures/rules/miner\.toml:\d+", row["replaces"])
    assert main(["rules", "list", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if "miner.process_name" in ln]
    assert "over.toml" in line and "replaces" in line


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        ((DEMO_COND, 'op = "in", value = { a = 1 }'), 11, r"match.all\[0\]: .*strings or numbers"),
        ((DEMO_COND, 'op = "in", value = [["x"]]'), 11, r"match.all\[0\]: .*strings or numbers"),
        ((DEMO_COND, DEMO_COND + ', negate = "yes"'), 11, r"match.all\[0\]: negate is true or"),
        (('argv = ["demo-miner"]', 'argv = "demo-miner"'), 13, r"tests\[0\]: bad sample: argv"),
        (('argv = ["demo-miner"]', 'argv = ["x"], pid = "x"'), 13, r"tests\[0\]: bad sample"),
    ],
)
def test_wrong_types_name_file_line_and_key(
    tmp_path: Path, change: tuple[str, str], line: int, message: str
) -> None:
    """Wrong value types are schema errors (exit 78 with the place), never a traceback."""
    path = write(tmp_path, RULE.replace(*change))
    with pytest.raises(CatalogueError, match=rf"^{re.escape(str(path))}:{line}: .*{message}"):
        loader.load(intel.load(), [tmp_path])
