"""docs/RULES.md: its example rule loads, passes its tests and fires; every field is listed."""

from __future__ import annotations

import re
from pathlib import Path

from fakes import proc

from sentinel.rules import intel, kinds, loader, selftest

DOC = Path(__file__).resolve().parents[2] / "docs" / "RULES.md"


def example() -> str:
    text = DOC.read_text()
    m = re.search(r"<!-- example-rule -->\n```toml\n(.*?)```", text, re.S)
    assert m, "docs/RULES.md has no example rule"
    return m.group(1)


def test_example_rule_loads_passes_its_tests_and_fires(tmp_path: Path) -> None:
    (tmp_path / "local.toml").write_text(example())
    cat = loader.load(intel.load(), [tmp_path])
    (rule,) = [r for r in cat.all_rules() if r.file == str(tmp_path / "local.toml")]
    count, failures = selftest.run(cat, [rule])
    assert count == 4 and failures == []
    found = cat.evaluate("process", proc(name="stress-ng", exe="/tmp/x/stress-ng"))
    (m,) = [m for m in found if m.rule.id == "local.load_tool_outside_lab"]
    assert m.summary == "load generator stress-ng at /tmp/x/stress-ng"


def test_doc_lists_every_field_of_every_kind() -> None:
    text = DOC.read_text()
    for k in kinds.load_fields().values():
        for name in k.fields:
            assert f"`{name}`" in text, f"{k.name} field {name} missing from docs/RULES.md"
