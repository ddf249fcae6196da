"""Payloads of loader and interpreter processes, and names folded before matching."""

from __future__ import annotations

import pytest

from sentinel.core import launch
from sentinel.rules import confusables, intel, loader
from sentinel.rules.fields.process import sample_proc

LD = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"


@pytest.mark.parametrize(
    ("exe", "argv", "want"),
    [
        (LD, ["ld.so", "./p", "-x"], ("loader", "./p", "")),
        (
            LD,
            ["ld.so", "--library-path", "/x", "--preload", "/y.so", "--argv0", "sshd", "p"],
            ("loader", "p", "sshd"),
        ),
        (LD, ["ld.so", "--argv0=kw", "--inhibit-cache", "/tmp/p"], ("loader", "/tmp/p", "kw")),
        ("/lib/ld-musl-x86_64.so.1", ["ld", "/tmp/p"], ("loader", "/tmp/p", "")),
        (
            "/usr/bin/python3.11",
            ["python3", "-u", "-W", "ignore", "-Xdev", "/tmp/a.py"],
            ("script", "/tmp/a.py", ""),
        ),
        ("/usr/bin/perl", ["perl", "-I", "/tmp/lib", "-w", "x.pl"], ("script", "x.pl", "")),
        ("/usr/bin/ruby3.1", ["ruby", "-r", "json", "x.rb"], ("script", "x.rb", "")),
        ("/usr/bin/node", ["node", "--require", "m", "x.js"], ("script", "x.js", "")),
        ("/usr/bin/php8.2", ["php", "-d", "a=b", "-f", "/tmp/x.php"], ("script", "/tmp/x.php", "")),
        ("/usr/bin/bash", ["bash", "-o", "pipefail", "--", "x.sh"], ("script", "x.sh", "")),
        ("/usr/bin/dash", ["sh", "-ex", "/dev/shm/x"], ("script", "/dev/shm/x", "")),
    ],
)
def test_payload_found(exe: str, argv: list[str], want: tuple[str, str, str]) -> None:
    found = launch.parse(exe, argv)
    assert found is not None and (found.kind, found.path, found.argv0) == want


@pytest.mark.parametrize(
    ("exe", "argv"),
    [
        ("/usr/bin/python3.11", ["python3", "-c", "pass", "/tmp/x"]),
        ("/usr/bin/python3.11", ["python3", "-uc", "pass"]),
        ("/usr/bin/python3.11", ["python3", "-m", "http.server"]),
        ("/usr/bin/python3.11", ["python3", "-"]),
        ("/usr/bin/perl", ["perl", "-ne", "print", "/tmp/x"]),
        ("/usr/bin/bash", ["bash", "-c", "sleep 1", "/tmp/x"]),
        ("/usr/bin/bash", ["bash", "-s", "/tmp/x"]),
        ("/usr/bin/node", ["node", "-e", "1"]),
        ("/usr/bin/php", ["php", "-r", "echo 1;"]),
        ("/usr/bin/sleep", ["sleep", "/tmp/x"]),
        (LD, ["ld.so", "--list"]),
    ],
)
def test_no_payload(exe: str, argv: list[str]) -> None:
    assert launch.parse(exe, argv) is None


def test_absolute_against_cwd() -> None:
    assert launch.absolute("./w", "/tmp/x") == "/tmp/x/w"
    assert launch.absolute("/srv/w", "/tmp/x") == "/srv/w"
    assert launch.absolute("/usr/../tmp/w", "") == "/tmp/w"  # no way around the temp dirs
    assert launch.absolute("//tmp/./w", "/srv") == "/tmp/w"
    assert launch.absolute("w", "") == "w"  # no working directory: left as given


@pytest.mark.parametrize(
    "name",
    ["xmr\u0456g", "\uff58\uff4d\uff52\uff49\uff47", "xm\u200drig", "XMR\u0406G", "\u0445mrig"],
)
def test_confusables_fold_to_ascii(name: str) -> None:
    assert confusables.fold(name) == "xmrig"


def test_ascii_names_unchanged_but_lower() -> None:
    assert confusables.fold("Kworker/0:1") == "kworker/0:1"


def test_table_is_what_the_library_says() -> None:
    """signatures/lists/confusables.txt is scripts/gen_confusables.py's output."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "gen_confusables.py"
    spec = importlib.util.spec_from_file_location("gen_confusables", script)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert confusables.table() == gen.table()


def test_loader_payload_names_and_confusable_claims_in_rules() -> None:
    cat = loader.load(intel.load())
    ld = sample_proc({"argv": [LD, "--argv0", "kworker", "./xmrig"], "exe": LD, "cwd": "/srv"})
    got = {m.rule.id: m for m in cat.evaluate("process", ld)}
    assert got["miner.process_name"].evidence == {"payload": "xmrig"}
    assert "evasion.payload_from_tmp" not in got  # /srv is no temp dir
    fake = sample_proc({"argv": ["\u0455\u0455hd"], "exe": "/tmp/x", "name": "\u0455shd"})
    assert "evasion.name_masquerade" in {m.rule.id for m in cat.evaluate("process", fake)}
    tool = sample_proc({"argv": [LD, "/tmp/.t/chisel", "client"], "exe": LD})
    got = {m.rule.id: m for m in cat.evaluate("process", tool)}
    assert "tunnel.tool" in got and got["evasion.payload_from_tmp"].severity.name == "MEDIUM"
    # a confusable name the kernel cut at 15 bytes, mid-character: still a miner prefix
    cut = "srbm\u0456ner-mult\ufffd"  # srbminer-multi spelt with two Cyrillic i
    mid = sample_proc({"argv": ["w"], "exe": "/srv/w", "name": cut})
    got = {m.rule.id: m for m in cat.evaluate("process", mid)}
    assert got["miner.process_name"].evidence == {"comm": "srbminer-multi"}
