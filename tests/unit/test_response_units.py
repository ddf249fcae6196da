"""Response policy, config, redaction, artifacts, quarantine vault and forensics budgets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fakes import proc

from sentinel.core import config
from sentinel.core.model import Category, Connection, FileFacts, Finding, Severity
from sentinel.response import forensics, quarantine
from sentinel.response.policy import Policy, remote
from sentinel.response.sequence import Step, record
from sentinel.response.targets import identity


def finding(rule: str = "miner.process_name", sev: Severity = Severity.HIGH, **kw) -> Finding:
    category = Category(rule.split(".", 1)[0])
    return Finding(rule, category, sev, "s", "test", **kw)


def policy(toml: str) -> Policy:
    return Policy(config.parse(toml).response)


def test_off_by_default_and_default_rules_when_enforcing() -> None:
    assert Policy(config.Config().response).actions_for(finding()) == []
    p = policy('[response]\nmode = "enforce"\n')
    assert p.actions_for(finding()) == list(config.RESPONSE_ACTIONS)
    assert p.actions_for(finding("tunnel.ssh_reverse", Severity.CRITICAL))
    assert p.actions_for(finding("miner.process_name", Severity.MEDIUM)) == []
    assert p.actions_for(finding("persistence.cron", Severity.CRITICAL)) == []
    assert p.actions_for(finding("integrity.collector_off")) == []


def test_rules_match_by_glob_category_and_severity_first_match_wins() -> None:
    p = policy(
        """
[response]
mode = "dry-run"
[[response.rules]]
rule = "wallet.*"
min_severity = "medium"
actions = ["kill", "freeze"]
[[response.rules]]
category = "network"
actions = ["egress"]
"""
    )
    assert p.actions_for(finding("wallet.address", Severity.MEDIUM)) == ["freeze", "kill"]
    assert p.actions_for(finding("wallet.address", Severity.LOW)) == []
    assert p.actions_for(finding("network.pool_port")) == ["egress"]
    assert p.actions_for(finding("miner.process_name")) == []
    responded = Finding("response.freeze", Category.INTEGRITY, Severity.HIGH, "s", "response")
    assert p.actions_for(responded) == []  # never a response to a response


def test_plan_takes_the_file_and_a_remote_destination_not_loopback() -> None:
    p = policy('[response]\nmode = "dry-run"\n')
    gone = proc(pid=2**22 + 7)  # no such pid: the identity cannot be confirmed
    f = finding(
        process=gone,
        file=FileFacts("/tmp/x", None, 1),
        connection=Connection("10.0.0.2:1", "198.51.100.9", 3333, "tcp"),
    )
    plan = p.decide(f)
    assert plan is not None and plan.dry_run and plan.roots == []
    assert plan.skipped == {gone.pid: "identity changed before the decision"}
    assert plan.files == ["/tmp/x"] and plan.destinations == ["198.51.100.9"]
    assert plan.records[0]["id"] == f.id
    assert not remote("127.0.0.1") and not remote("::1") and not remote("junk")


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ('mode = "on"', "response.mode"),
        ('scope = "host:x"', "response.scope"),
        ('[[response.rules]]\nactions = ["explode"]', "response.rules[0].actions"),
        ('[[response.rules]]\ncategory = "minor"', "response.rules[0].category"),
        ('[[response.rules]]\nmin_severity = "huge"', "response.rules[0].min_severity"),
        ("block_timeout = 0", "response.block_timeout"),
        ("quarantine_total = -1", "response.quarantine_total"),
        ("forensics_budget = -5", "response.forensics_budget"),
    ],
)
def test_config_errors_name_file_line_and_key(toml: str, where: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse(f"[response]\n{toml}\n", "/etc/s.toml")
    line = 2 if toml.count("\n") == 0 else 3
    assert str(err.value).startswith(f"/etc/s.toml:{line}: {where}: ")


def test_record_is_a_response_finding_with_the_incident_severity() -> None:
    p = policy('[response]\nmode = "enforce"\n')
    plan = p.decide(finding(sev=Severity.CRITICAL, process=proc(pid=2**22 + 9)))
    assert plan is not None
    step = Step("kill", "done", [5, 6], {7: "outside scope user x"}, "sigkill", duration=0.0123)
    rec = record(step, plan).to_record()
    assert rec["rule"] == "response.kill" and rec["category"] == "integrity"
    assert rec["severity"] == "critical"
    ev = rec["evidence"]
    assert ev["pids"] == [5, 6] and ev["skipped"] == {"7": "outside scope user x"}
    assert ev["duration_ms"] == 12.3 and ev["mode"] == "enforce" and ev["incident"] == plan.incident


def test_environ_secrets_redacted() -> None:
    raw = b"PATH=/bin\0AWS_SECRET_ACCESS_KEY=abc\0GH_TOKEN=t\0DB=postgres://u:pw@db/x\0PWD=/w\0"
    lines = forensics.redact_environ(raw)
    assert lines == [
        "PATH=/bin",
        "AWS_SECRET_ACCESS_KEY=<redacted>",
        "GH_TOKEN=<redacted>",
        "DB=postgres://<redacted>@db/x",
        "PWD=/w",
    ]


def test_token_values_and_secret_options_redacted() -> None:
    gh, oa = "ghp_" + "a1" * 18, "sk-proj-" + "x9" * 12
    raw = f"MY_CREDS_FILE=/x\0HELPER={gh}\0NOTE=see {oa} here\0".encode()
    assert forensics.redact_environ(raw) == [
        "MY_CREDS_FILE=/x",
        "HELPER=<redacted>",
        "NOTE=see <redacted> here",
    ]
    argv = ["xmrig", "-o", "stratum+tcp://pool.test:3333", "-u", "4Awallet", "--api-key", "k1"]
    argv += ["--password=hunter2", f"--header=Authorization: token {gh}", "-p", "x"]
    assert forensics.redact_argv(argv) == [
        "xmrig",
        "-o",
        "stratum+tcp://pool.test:3333",
        "-u",
        "4Awallet",
        "--api-key",
        "<redacted>",
        "--password=<redacted>",
        "--header=Authorization: token <redacted>",
        "-p",
        "x",
    ]


def test_interpreters_give_their_script_not_themselves() -> None:
    py = "/usr/bin/python3.11"
    assert quarantine.artifacts(py, ["python3", "-u", "miner.py", "-o", "x"], "/w") == [
        ("/w/miner.py", "script")
    ]
    assert quarantine.artifacts(py, ["python3", "-W", "ignore", "/t/m.py"], "/") == [
        ("/t/m.py", "script")
    ]
    assert quarantine.artifacts(py, ["python3", "-c", "print(1)"], "/") == []
    assert quarantine.artifacts("/bin/bash", ["bash", "run.sh"], "/h") == [("/h/run.sh", "script")]
    assert quarantine.artifacts("/tmp/xmrig (deleted)", ["xmrig"], "/") == [
        ("/tmp/xmrig", "executable")
    ]


def test_package_and_system_files_are_never_quarantined(tmp_path: Path) -> None:
    info = tmp_path / "info"
    info.mkdir()
    owned = tmp_path / "owned"
    owned.write_text("x")
    (info / "pkg.list").write_text(f"/.\n{owned}\n")
    pkgs = quarantine.Packages(str(info))
    assert quarantine.refuse("/usr/bin/python3", pkgs).startswith("in a system")
    assert quarantine.refuse(str(owned), pkgs) == "belongs to an installed package"
    assert quarantine.refuse(str(tmp_path / "drop"), pkgs) == ""


def test_vault_round_trip_and_refusals(tmp_path: Path) -> None:
    vault = quarantine.Vault(str(tmp_path / "q"))
    src = tmp_path / "xmrig"
    src.write_bytes(b"\x7fELF" + os.urandom(100))
    src.chmod(0o751)
    os.utime(src, (1_700_000_000, 1_700_000_000))
    entry = vault.put(str(src), "inc1", 1 << 20)
    assert not src.exists() and (tmp_path / "q" / entry.sha256).stat().st_mode & 0o7777 == 0
    assert [e.sha256 for e in vault.entries()] == [entry.sha256]
    link = tmp_path / "link"
    link.symlink_to("/etc/passwd")
    with pytest.raises(quarantine.QuarantineError):
        vault.put(str(link), "inc1", 1 << 20)  # never follows a symlink
    assert Path("/etc/passwd").exists()
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100)
    with pytest.raises(quarantine.QuarantineError, match="over the 10 cap"):
        vault.put(str(big), "inc1", 10)
    assert big.exists()
    with pytest.raises(quarantine.QuarantineError, match="not a sha256"):
        vault.restore("../../etc")
    restored = vault.restore(entry.sha256)
    assert restored.path == str(src) and src.stat().st_mode & 0o777 == 0o751
    assert src.stat().st_mtime == 1_700_000_000 and vault.entries() == []


def test_forensics_budget_and_oldest_bundles_dropped(tmp_path: Path) -> None:
    root = tmp_path / "forensics"
    for i, size in enumerate((400, 400)):
        old = root / f"old{i}"
        old.mkdir(parents=True)
        (old / "blob").write_bytes(b"x" * size)
        os.utime(old, (1000 + i, 1000 + i))
    me = identity(os.getpid())
    bundle = forensics.snapshot(
        str(root), "inc", [me], [{"id": "inc"}], budget=1 << 20, total_budget=600, exe_copy_max=64
    )
    assert "old0" in bundle.pruned and not (root / "old0").exists()
    assert forensics.verify(bundle.path) == []
    (Path(bundle.path) / "tree.json").write_text("[]")
    assert forensics.verify(bundle.path) == ["tree.json"]
    tiny = forensics.snapshot(
        str(root), "inc2", [me], [], budget=50, total_budget=1 << 30, exe_copy_max=64
    )
    assert (
        "tree.json" in tiny.dropped
        and "# dropped (budget): tree.json" in (Path(tiny.path) / "MANIFEST").read_text()
    )
    with pytest.raises(ValueError):
        forensics.snapshot(str(root), "../x", [me], [], budget=1, total_budget=1, exe_copy_max=1)


def test_vault_keeps_every_path_of_one_content(tmp_path: Path) -> None:
    vault = quarantine.Vault(str(tmp_path / "q"))
    a, b = tmp_path / "a", tmp_path / "b"
    for f in (a, b):
        f.write_bytes(b"same bytes")
    first = vault.put(str(a), "inc", 1 << 20)
    vault.put(str(b), "inc", 1 << 20)
    (entry,) = vault.entries()
    assert entry.path == str(a) and entry.also == (str(b),)
    vault.restore(first.sha256)
    assert a.read_bytes() == b.read_bytes() == b"same bytes"


async def test_responder_survives_a_failing_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from sentinel.ops import metrics
    from sentinel.response import responder as mod

    def explode(self, plan):
        raise RuntimeError("boom")

    monkeypatch.setattr(mod.Sequence, "run", explode)
    cfg = config.parse('[response]\nmode = "dry-run"\n')
    published: list[Finding] = []
    r = mod.Responder(lambda: cfg, published.append)
    before = metrics.errors.labels("response")._value.get()
    me = proc(pid=os.getpid(), start_time=identity(os.getpid()).start_time)
    r.consider(finding(process=me))
    r.consider(finding("miner.cmdline.stratum_url", process=me))  # same tree: no second run
    assert len(r.tasks) == 1
    await asyncio.gather(*r.tasks)
    assert metrics.errors.labels("response")._value.get() == before + 1
    assert published == []
    r.close()


def test_vault_never_follows_a_symlinked_directory(tmp_path: Path) -> None:
    """A dropped file's directory swapped for a symlink (to /etc, say) before the move."""
    system = tmp_path / "etc"
    system.mkdir()
    (system / "shadow").write_text("root:$6$hash")
    drop = tmp_path / "drop"
    drop.symlink_to(system)
    vault = quarantine.Vault(str(tmp_path / "q"))
    with pytest.raises(quarantine.Refused, match="symlink"):
        vault.put(str(drop / "shadow"), "inc", 1 << 20)
    assert (system / "shadow").read_text() == "root:$6$hash" and vault.entries() == []
    # restore never writes through a directory that became a symlink after the move
    real = tmp_path / "real"
    real.mkdir()
    (real / "cron").write_text("* * * * * root evil")
    entry = vault.put(str(real / "cron"), "inc", 1 << 20)
    real.rmdir()
    real.symlink_to(system)
    with pytest.raises(quarantine.QuarantineError, match="symlink"):
        vault.restore(entry.sha256)
    assert not (system / "cron").exists() and len(vault.entries()) == 1


def test_vault_checks_the_file_is_the_one_expected_and_its_owner(tmp_path: Path) -> None:
    vault = quarantine.Vault(str(tmp_path / "q"))
    ran = tmp_path / "ran"
    ran.write_bytes(b"first")
    st = ran.stat()
    ran.rename(tmp_path / "moved")  # the process's file renamed away, another put in its place
    ran.write_bytes(b"someone else's")
    with pytest.raises(quarantine.Refused, match="no longer the file"):
        vault.put(str(ran), "inc", 1 << 20, same_as=(st.st_dev, st.st_ino))
    with pytest.raises(quarantine.Refused, match="owned by"):
        vault.put(str(ran), "inc", 1 << 20, owner=os.getuid() + 1)
    assert ran.read_bytes() == b"someone else's" and vault.entries() == []


async def test_a_tree_seen_in_dry_run_is_contained_once_enforce_is_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dry-run first, then enforce (the advised order): the miner still running from the
    dry-run days must get the real sequence, once."""
    import asyncio

    from sentinel.response import responder as mod

    ran: list[bool] = []
    monkeypatch.setattr(mod.Sequence, "run", lambda self, plan: ran.append(plan.dry_run))
    cfgs = [config.parse('[response]\nmode = "dry-run"\n')]
    r = mod.Responder(lambda: cfgs[-1], lambda f: None)
    me = proc(pid=os.getpid(), start_time=identity(os.getpid()).start_time)
    r.consider(finding(process=me))
    cfgs.append(config.parse('[response]\nmode = "enforce"\n'))  # a reload
    r.consider(finding(process=me))
    r.consider(finding("miner.cmdline.stratum_url", process=me))
    await asyncio.gather(*r.tasks)
    assert ran == [True, False]
    r.close()


def test_a_full_quarantine_leaves_the_file_in_place(tmp_path: Path) -> None:
    vault = quarantine.Vault(str(tmp_path / "q"))
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"x" * 600)
    second.write_bytes(b"y" * 600)
    vault.put(str(first), "inc", 1 << 20, total=1000)
    with pytest.raises(quarantine.Refused, match="quarantine is full"):
        vault.put(str(second), "inc", 1 << 20, total=1000)
    assert second.exists() and len(vault.entries()) == 1


def test_an_unknown_admin_user_is_said_not_silently_unprotected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sentinel.response.policy import Plan
    from sentinel.response.sequence import Sequence

    cfg = config.parse('[response]\nadmin_users = ["root", "no-such-admin-x"]\n')
    with caplog.at_level("WARNING", logger="sentinel.response"):
        guard = Sequence(cfg).guard(Plan("i", [], False))
    assert guard.admin_uids == {0}
    assert "unknown user 'no-such-admin-x' is not protected" in caplog.text
