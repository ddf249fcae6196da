"""Built-in YARA rules against the generated corpus; rule loading, errors and file reads."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import corpus
import pytest
import yara

from sentinel.core.model import Category, Finding, Severity
from sentinel.rules import intel
from sentinel.rules.yara import (
    Rules,
    RulesError,
    Unscannable,
    compile_rules,
    load_rules,
    read_regular,
)

THEMES = {
    "miners_cpu", "miners_gpu", "miner_configs", "miner_kits", "droppers", "tunnels", "wallets",
    "tunnel_configs", "reverse_shells",
}  # fmt: skip


def match(rules: Rules, data: bytes) -> list[Finding]:
    """Findings for a buffer, as the scanner makes them from hits."""
    return [h.finding() for h in rules.hits(data, 60)]


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, corpus.Sample]:
    return corpus.write(tmp_path_factory.mktemp("corpus"))


def _malicious(written):
    return [(p, s) for p, s in written.items() if s.category]


def test_every_malicious_sample_is_found_with_its_category(rules, written) -> None:
    missed = []
    for path, sample in _malicious(written):
        found = rules.match_file(str(path))
        if sample.category not in {str(f.category) for f in found}:
            missed.append((sample.name, sample.category, [f.rule for f in found]))
    assert missed == []


def test_no_benign_lookalike_at_medium_or_above(rules, written) -> None:
    noisy = []
    for path, sample in written.items():
        if sample.category is None:
            found = [f for f in rules.match_file(str(path)) if f.severity >= Severity.MEDIUM]
            noisy += [(sample.name, f.rule) for f in found]
    assert noisy == []


def test_corpus_covers_every_theme_file(rules, written) -> None:
    hit = {
        os.path.splitext(f.evidence["rule_file"])[0]
        for path, _ in _malicious(written)
        for f in rules.match_file(str(path))
    }
    assert hit == THEMES


def test_finding_carries_file_facts_rule_id_and_truncated_evidence(rules, tmp_path) -> None:
    data = b"#!/bin/sh\n./run -o stratum+tcp://" + b"a" * 500 + b".invalid:3333\n"
    path = tmp_path / "long.sh"
    path.write_bytes(data)
    (f,) = rules.match_file(str(path))
    assert f.rule == "yara.miner_stratum_url"
    assert f.category is Category.MINER and f.severity is Severity.HIGH
    assert f.file is not None and f.file.size == len(data) and f.file.path == str(path)
    assert f.file.sha256 == hashlib.sha256(data).hexdigest()
    assert all(len(s["data"]) <= 80 for s in f.evidence["strings"])
    record = f.to_record()
    assert record["file"]["sha256"] == f.file.sha256 and record["rule"] == f.rule


def test_wallet_rule_reports_only_checksum_valid_addresses(rules) -> None:
    good, bad = corpus.monero_address(), corpus.corrupt(corpus.monero_address())
    assert match(rules, f"WALLET={bad}\n".encode()) == []
    (f,) = match(rules, f"WALLET={bad}\nwallet: {good}\n".encode())
    assert f.rule == "yara.wallet_monero"
    assert f.evidence["wallets"] == [{"kind": "monero", "address": good, "keyed": True}]


def test_binary_rules_need_an_elf_header(rules) -> None:
    elf = corpus.fake_elf("XMRig/6.21.0", "--donate-level", "rx/0", "cryptonight")
    assert "yara.miner_xmrig_elf" in {f.rule for f in match(rules, elf)}
    assert "yara.miner_xmrig_elf" not in {f.rule for f in match(rules, b"MZ" + elf[4:])}


def test_every_builtin_rule_declares_its_meta() -> None:
    for path in intel.builtin_dir().glob("*.yar"):
        compiled = yara.compile(filepath=str(path))
        for rule in compiled:
            if rule.is_private:
                continue
            meta = rule.meta
            assert Category(meta["category"]), rule.identifier
            assert Severity.parse(meta["severity"]) is not None, rule.identifier
            assert len(meta["description"]) > 10, rule.identifier


def test_rules_digest_follows_content(tmp_path) -> None:
    src = tmp_path / "r.yar"
    src.write_text('rule t { meta: category = "miner" condition: false }\n')
    first = compile_rules([src]).digest
    assert compile_rules([src]).digest == first
    src.write_text('rule t { meta: category = "miner" condition: true }\n')
    assert compile_rules([src]).digest != first


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # libyara names the line where its parser noticed the error
        ('rule a {\n  strings: $a = "x"\n  condition: $b\n}\n', r"bad\.yar:[34]: undefined"),
        ("rule a {\n  condition: true and\n", r"bad\.yar:2: syntax error"),
        ('rule a {\n  meta: category = "mining"\n  condition: true\n}\n', r"bad\.yar:1: rule a"),
        ('\n\nrule a {\n  meta: severity = "x"\n  condition: true\n}\n', r"bad\.yar:3: rule a"),
    ],
)
def test_rule_errors_name_file_and_line(tmp_path, text: str, where: str) -> None:
    (tmp_path / "bad.yar").write_text(text)
    with pytest.raises(RulesError, match=where):
        load_rules([tmp_path])


def test_duplicate_rule_name_across_files_is_an_error(tmp_path) -> None:
    (tmp_path / "mine.yar").write_text("\nrule miner_stratum_url { condition: false }\n")
    with pytest.raises(RulesError, match=r"mine\.yar:2: rule miner_stratum_url is already"):
        load_rules([tmp_path])


def test_user_rules_get_defaults_and_join_the_builtin_set(tmp_path) -> None:
    (tmp_path / "extra.yar").write_text('rule local_marker { strings: $a = "zqx" condition: $a }')
    rules = load_rules([tmp_path])
    (f,) = match(rules, b"..zqx..")
    assert f.rule == "yara.local_marker"
    assert f.category is Category.INTEGRITY and f.severity is Severity.MEDIUM
    assert tmp_path in rules.dirs and intel.builtin_subdir("yara") in rules.dirs


def test_missing_rules_dir_is_an_error(tmp_path) -> None:
    with pytest.raises(RulesError, match="not found"):
        load_rules([tmp_path / "nope"])


def test_read_regular_refuses_fifo_symlink_and_oversize_without_blocking(tmp_path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(Unscannable) as err:
        read_regular(str(fifo), 1024)  # O_NONBLOCK: returns at once, no writer needed
    assert err.value.reason == "fifo"
    (tmp_path / "f").write_bytes(b"x" * 100)
    os.symlink(tmp_path / "f", tmp_path / "link")
    with pytest.raises(Unscannable, match="symlink"):
        read_regular(str(tmp_path / "link"), 1024)
    data, _ = read_regular(str(tmp_path / "link"), 1024, follow=True)
    assert bytes(data) == b"x" * 100
    with pytest.raises(Unscannable, match="too-large"):
        read_regular(str(tmp_path / "f"), 99)
    with pytest.raises(Unscannable, match="vanished"):
        read_regular(str(tmp_path / "gone"), 99)
    other = os.stat(tmp_path / "fifo")
    with pytest.raises(Unscannable, match="changed"):
        read_regular(str(tmp_path / "f"), 1024, expect=(other.st_dev, other.st_ino))


@pytest.mark.skipif(shutil.which("yara") is None, reason="yara command-line tool not installed")
def test_rule_files_also_compile_with_the_yara_command(tmp_path) -> None:
    for path in sorted(intel.builtin_dir().glob("*.yar")):
        run = subprocess.run(
            ["yara", "-w", str(path), str(tmp_path)], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, (path.name, run.stderr)
