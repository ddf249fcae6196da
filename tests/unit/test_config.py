from pathlib import Path

import pytest

from sentinel.cli import main
from sentinel.core import config


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_CONFIG", str(tmp_path / "absent.toml"))
    cfg = config.load()
    assert cfg.agent.interval == 5.0
    assert "/tmp" in cfg.watch.paths
    assert cfg.alert_log.endswith("alerts.jsonl")
    assert cfg.metrics.listen.startswith("127.0.0.1:")


def test_values_are_typed() -> None:
    cfg = config.parse(
        """
[agent]
interval = 2
[[runbook.jobs]]
name = "train"
exe = "/usr/bin/python3*"
user = "ml"
cmdline = "python .*train\\\\.py"
cpu = false
[[sinks]]
type = "slack"
url = "http://127.0.0.1:1/x"
""",
        "t.toml",
    )
    assert cfg.agent.interval == 2.0 and isinstance(cfg.agent.interval, float)
    assert cfg.runbook.jobs[0].name == "train" and cfg.runbook.jobs[0].cpu is False
    assert cfg.sinks[0].name == "slack-0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[agent]\ninterval = 'x'\n", "t.toml:2: agent.interval: expected float"),
        ("\n[agnt]\n", "t.toml:2: unknown key 'agnt'"),
        ("[agent]\n\nstate = 1\n", "t.toml:3: unknown key 'agent.state'"),
        ("[log]\nstdout = 1\n", "t.toml:2: log.stdout: expected true or false"),
        (
            "[[runbook.jobs]]\nname='a'\nexe='/x'\nuser='u'\ncmdline='('\n",
            "t.toml:5: runbook.jobs[0].cmdline: bad regex",
        ),
        ("[[runbook.jobs]]\nname='a'\n", "t.toml:1: runbook.jobs[0]: 'exe', 'user' required"),
        (
            "[[runbook.jobs]]\nname='a'\nexe='/x'\nuser='u'\n[[runbook.jobs]]\nname='b'\n"
            "cmdline='train\\\\.py'\n",
            "t.toml:7: runbook.jobs[1]: 'exe', 'user' required (a job names its exe and user",
        ),
        ("[[sinks]]\ntype='x'\nmin_severity='loud'\n", "t.toml:3: sinks[0].min_severity"),
        ("[agent\n", "t.toml: "),
        ("[watch]\npaths = '/tmp'\n", "t.toml:2: watch.paths: expected an array"),
    ],
)
def test_errors_name_file_key_and_line(text: str, expected: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse(text, "t.toml")
    assert expected in str(err.value)


def test_toml_syntax_error_has_line() -> None:
    with pytest.raises(config.ConfigError, match=r"t\.toml: .*line 2"):
        config.parse("[agent]\ninterval = = 3\n", "t.toml")


def test_check_config_exit_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent]\ninterval = -1\n")
    assert main(["check-config", "-c", str(bad)]) == 78
    err = capsys.readouterr().err
    assert str(bad) in err and "agent.interval" in err


def test_unreadable_config_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load(binary)


def test_broken_rule_file_stops_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ours.yar").write_text('rule ours {\n  strings: $a = "x"\n  condition: $a and\n}\n')
    cfg = tmp_path / "s.toml"
    cfg.write_text(f"[agent]\nstate_dir = '{tmp_path}'\n[scan]\nrules = ['{rules}']\n")
    assert main(["check-config", "-c", str(cfg)]) == 78
    assert f"{rules / 'ours.yar'}:" in capsys.readouterr().err


def test_metrics_listen_checked_with_the_config() -> None:
    with pytest.raises(config.ConfigError, match=r"t\.toml:2: metrics\.listen"):
        config.parse("[metrics]\nlisten = '0.0.0.0'\n", "t.toml")
