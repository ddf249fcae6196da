from pathlib import Path

import pytest

from sentinel.rules import intel


def test_builtin_lists_load() -> None:
    i = intel.load()
    assert {3333, 14444} <= i.pool_ports
    assert 8080 in i.dev_ports and 8080 not in i.pool_ports
    assert i.is_miner_name("/usr/local/bin/XMRig")
    assert i.is_miner_name("t-rex") and i.is_miner_name("lolminer")
    assert not i.is_miner_name("python3")
    assert "chisel" in i.tunnel_tools


def test_domain_suffix_matches_on_label_boundary() -> None:
    i = intel.load()
    assert i.pool_domain("gulf.MoneroOcean.stream.") == "moneroocean.stream"
    assert i.pool_domain("notsupportxmr.com") is None
    assert i.tunnel_domain("abc.ngrok-free.app") == "ngrok-free.app"
    assert i.dyndns_domain("x.duckdns.org") == "duckdns.org"


def test_extra_dir_extends_lists(tmp_path: Path) -> None:
    (tmp_path / "miner_names.txt").write_text("# ours\nfancyminer\n")
    i = intel.load([str(tmp_path)])
    assert i.is_miner_name("fancyminer") and i.is_miner_name("xmrig")


def test_bad_entry_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "pool_ports.txt").write_text("# c\n3333\nnot-a-port\n")
    with pytest.raises(intel.IntelError, match=r"pool_ports\.txt:3: not a port number"):
        intel.load([str(tmp_path)])
    (tmp_path / "pool_ports.txt").write_text("70000\n")
    with pytest.raises(intel.IntelError, match=r"pool_ports\.txt:1"):
        intel.load([str(tmp_path)])
