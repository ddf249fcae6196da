"""The drill's own safety: what it writes to real files, and which findings it marks."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest
from fakes import context, proc

from sentinel.core.model import Ancestor, Category, Finding, Severity
from sentinel.core.proctable import read_stat
from sentinel.evidence import drillmark
from sentinel.evidence.drill import Drill


def drill_in(tmp_path: Path) -> Drill:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return Drill(context(f"[agent]\nstate_dir = '{state}'\n").config)


def test_restore_goes_to_the_file_it_backed_up_not_through_a_swapped_directory(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    ssh = home / ".ssh"
    ssh.mkdir(parents=True)
    keys = ssh / "authorized_keys"
    keys.write_text("ssh-ed25519 AAAA user@box\n")
    root_ssh = tmp_path / "root-ssh"
    root_ssh.mkdir()
    victim = root_ssh / "authorized_keys"
    victim.write_text("root's own keys\n")
    d = drill_in(tmp_path)
    try:
        d.append(str(keys), "drill line\n")
        assert keys.read_text() == "ssh-ed25519 AAAA user@box\ndrill line\n"
        # the watched user (who owns ~/.ssh) swaps it for a link to root's directory
        ssh.rename(home / ".ssh.old")
        ssh.symlink_to(root_ssh)
        d.end_scenario()
    finally:
        d.cleanup()
    assert victim.read_text() == "root's own keys\n"
    assert (home / ".ssh.old" / "authorized_keys").read_text() == "ssh-ed25519 AAAA user@box\n"


def test_a_pid_the_drill_registered_marks_nothing_once_another_process_has_it(
    tmp_path: Path,
) -> None:
    me = read_stat(os.getpid())
    assert me is not None
    registry = drillmark.path_of(str(tmp_path))
    drillmark.write(
        registry,
        drillmark.Marks(procs={os.getpid(): me[2], 500: 1000.0}, until=time.time() + 60),
    )
    reg = drillmark.Registry(str(tmp_path))

    def finding(pid: int, start: float, ancestor: int | None = None) -> Finding:
        p = proc(pid=pid, start_time=start)
        p.ancestors = [] if ancestor is None else [Ancestor(ancestor, "sentinel", "/x")]
        return Finding("t.r", Category.MINER, Severity.HIGH, "miner", "t", p)

    assert reg.matches(finding(500, 1000.0))  # the drill's own process
    assert not reg.matches(finding(500, 1500.0))  # a miner that got pid 500 after it
    assert reg.matches(finding(4242, 1600.0, ancestor=os.getpid()))  # below the live drill
    # the drill's pid now held by another process: what descends from it is not the drill's
    drillmark.write(
        registry, drillmark.Marks(procs={os.getpid(): me[2] - 60}, until=time.time() + 60)
    )
    os.utime(registry, (1, 1))
    assert not reg.matches(finding(4242, 1600.0, ancestor=os.getpid()))


def test_a_detached_helper_the_drill_never_released_does_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the drill reads the helper's pid: the helper, whose pid the drill never
    learnt (so cannot end), must exit when its stdin closes instead of running its code."""
    import signal
    import subprocess

    from sentinel.evidence import drill as drill_mod

    seen: list[int] = []
    real_popen = subprocess.Popen

    class Interrupted(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, **kw)
            real_readline = self.stdout.readline

            def readline() -> str:
                seen.append(int(real_readline()))
                raise KeyboardInterrupt

            self.stdout.readline = readline

    monkeypatch.setattr(drill_mod.subprocess, "Popen", Interrupted)
    d = drill_in(tmp_path)
    try:
        with pytest.raises(KeyboardInterrupt):
            d.spawn_detached("import time; time.sleep(60)")
    finally:
        d.cleanup()
    assert seen
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and read_stat(seen[0]) is not None:
            time.sleep(0.05)
        assert read_stat(seen[0]) is None, "the unreleased helper went on to run its code"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(seen[0], signal.SIGKILL)
