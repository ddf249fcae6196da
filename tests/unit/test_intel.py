from pathlib import Path

import pytest

from sentinel.rules import intel, loader
from sentinel.rules.fields.process import sample_proc


def is_miner_name(i: intel.Intel, path: str) -> bool:
    """Whether the process rules take a process running `path` for a known miner."""
    cat = loader.load(i)
    p = sample_proc({"argv": [path], "exe": path, "name": "w"})
    return "miner.process_name" in {m.rule.id for m in cat.evaluate("process", p)}


def test_builtin_lists_load() -> None:
    i = intel.load()
    assert {3333, 14444} <= i.pool_ports
    assert 8080 in i.dev_ports and 8080 not in i.pool_ports
    assert is_miner_name(i, "/usr/local/bin/XMRig")
    assert is_miner_name(i, "t-rex") and is_miner_name(i, "lolminer")
    assert not is_miner_name(i, "python3")
    assert "chisel" in i.tunnel_tools


def test_domain_suffix_matches_on_label_boundary() -> None:
    i = intel.load()
    assert intel.domain_matches("gulf.MoneroOcean.stream.", i.pool_domains) == "moneroocean.stream"
    assert intel.domain_matches("notsupportxmr.com", i.pool_domains) is None
    assert intel.domain_matches("abc.ngrok-free.app", i.tunnel_domains) == "ngrok-free.app"
    assert intel.domain_matches("x.duckdns.org", i.dyndns_domains) == "duckdns.org"


def test_extra_dir_extends_lists(tmp_path: Path) -> None:
    (tmp_path / "miner_names.txt").write_text("# ours\nfancyminer\n")
    i = intel.load([str(tmp_path)])
    assert is_miner_name(i, "fancyminer") and is_miner_name(i, "xmrig")


def test_bad_entry_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "pool_ports.txt").write_text("# c\n3333\nnot-a-port\n")
    with pytest.raises(intel.IntelError, match=r"pool_ports\.txt:3: not a port number"):
        intel.load([str(tmp_path)])
    (tmp_path / "pool_ports.txt").write_text("70000\n")
    with pytest.raises(intel.IntelError, match=r"pool_ports\.txt:1"):
        intel.load([str(tmp_path)])
