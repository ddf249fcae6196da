"""The drill's own safety: what it writes to real files, and which findings it marks."""

from __future__ import annotations

from pathlib import Path

from fakes import context

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
