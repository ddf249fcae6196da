"""Response with real processes: freeze, forensics, egress in a test netns, kill, quarantine."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import write_forker

from sentinel.core import config
from sentinel.core.model import Category, Finding, Severity
from sentinel.response import forensics
from sentinel.response.egress import Nft
from sentinel.response.freeze import cgroup_mounts, stop_tree
from sentinel.response.policy import Plan
from sentinel.response.sequence import Sequence
from sentinel.response.targets import Guard, Held, Identity, descendants, identity, read_info

NOBODY = 65534
SERVER = "198.51.100.2"
TREE = 50
counter = itertools.count()
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(counter)}"


def host_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def wait_until(cond, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not met in {timeout}s"
        time.sleep(0.01)


def state(pid: int) -> str:
    info = read_info(pid)
    return info.state if info else "gone"


def alive(pid: int) -> bool:
    return state(pid) not in ("gone", "Z", "X")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users can read (tmp_path is 0700), removed afterwards."""
    path = Path("/tmp") / unique("sentinel-resp")
    path.mkdir(mode=0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def trees() -> Iterator[list[subprocess.Popen]]:
    """Process trees a test starts (each its own session); ended by pid and group."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        for pid in reversed(descendants([p.pid])):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)


def start_tree(trees: list, script: Path, prefix: list[str] = (), **kw) -> subprocess.Popen:
    env = {"PATH": "/usr/bin:/bin", "BURN_SECONDS": "30", "FAKE_TOKEN": "s3cr3t-value"}
    p = subprocess.Popen(
        [*prefix, str(script), "--donate-level", "1"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        **kw,
    )
    trees.append(p)
    return p


def grow(p: subprocess.Popen, n: int = TREE) -> None:
    wait_until(lambda: len(descendants([p.pid])) >= n, what=f"{n} processes in the tree")


def make_cfg(tmp_path: Path, extra: str = "") -> config.Config:
    return config.parse(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[metrics]\nenabled = false\n'
        f'[response]\nmode = "enforce"\n{extra}'
    )


def plan_for(pid: int, actions: list[str], dry_run: bool = False) -> Plan:
    ident = identity(pid)
    assert ident is not None
    plan = Plan(f"test-{pid}", actions, dry_run, Severity.HIGH, roots=[ident])
    plan.records.append(
        {"id": f"test-{pid}", "rule": "miner.process_name", "process": {"pid": pid}}
    )
    return plan


# network namespaces: "box" (the scope's processes) and "inet" (a server) over a veth


@pytest.fixture
def netns() -> Iterator[dict[str, str]]:
    box, inet = unique("sbox"), unique("sinet")
    veth = f"sv{os.getpid() % 100000}{next(counter)}"
    server = None
    cmds = [
        ["ip", "netns", "add", box],
        ["ip", "netns", "add", inet],
        [
            "ip",
            "link",
            "add",
            veth + "a",
            "netns",
            box,
            "type",
            "veth",
            "peer",
            veth + "b",
            "netns",
            inet,
        ],
        ["ip", "-n", box, "addr", "add", "198.51.100.1/24", "dev", veth + "a"],
        ["ip", "-n", inet, "addr", "add", f"{SERVER}/24", "dev", veth + "b"],
        ["ip", "-n", box, "link", "set", veth + "a", "up"],
        ["ip", "-n", inet, "link", "set", veth + "b", "up"],
        ["ip", "-n", box, "link", "set", "lo", "up"],
    ]
    try:
        for cmd in cmds:
            subprocess.run(cmd, check=True, timeout=10)
        code = (
            "import socket\ns=socket.create_server(('0.0.0.0', 8443))\n"
            "while True:\n c,_=s.accept(); c.sendall(b'ok'); c.close()\n"
        )
        server = subprocess.Popen(["ip", "netns", "exec", inet, sys.executable, "-c", code])
        wait_until(lambda: connects(box), what="test server up")
        yield {"box": box, "inet": inet}
    finally:
        if server is not None:
            server.kill()
            server.wait(10)
        for ns in (box, inet):
            subprocess.run(["ip", "netns", "del", ns], timeout=10)


@pytest.fixture
def inner(netns: dict[str, str]) -> Iterator[str]:
    """A third netns (a container's) routed to the server through "box", which forwards."""
    ns, box, inet = unique("sinner"), netns["box"], netns["inet"]
    veth = f"si{os.getpid() % 100000}{next(counter)}"
    cmds = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", veth + "a", "netns", box, "type", "veth", "peer", veth + "b"],
        ["ip", "link", "set", veth + "b", "netns", ns],
        ["ip", "-n", box, "addr", "add", "198.51.100.129/30", "dev", veth + "a"],
        ["ip", "-n", ns, "addr", "add", "198.51.100.130/30", "dev", veth + "b"],
        ["ip", "-n", box, "link", "set", veth + "a", "up"],
        ["ip", "-n", ns, "link", "set", veth + "b", "up"],
        ["ip", "-n", ns, "route", "add", "default", "via", "198.51.100.129"],
        ["ip", "-n", inet, "route", "add", "198.51.100.128/30", "via", "198.51.100.1"],
        ["ip", "netns", "exec", box, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
    ]
    try:
        for cmd in cmds:
            subprocess.run(cmd, check=True, timeout=10)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=10)


def connects(box: str, uid: int | None = None) -> bool:
    """Whether a fresh process in `box` (as `uid`) reaches the server in the peer netns."""
    code = (
        "import socket,sys\ntry:\n"
        f" s=socket.create_connection(('{SERVER}', 8443), timeout=1)\n"
        " sys.exit(s.recv(2) != b'ok')\n"
        "except OSError: sys.exit(1)\n"
    )
    prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid else []
    cmd = ["ip", "netns", "exec", box, *prefix, os.path.realpath(sys.executable), "-c", code]
    return subprocess.run(cmd, timeout=10).returncode == 0


def nft_in(ns: str) -> Nft:
    # nsenter keeps /sys as it is (ip netns exec remounts it, hiding the cgroup tree)
    return Nft(["nsenter", f"--net=/run/netns/{ns}", "nft"])


def test_forking_tree_frozen_snapshotted_cut_off_killed_quarantined(
    tmp_path: Path, shared_dir: Path, trees, netns
) -> None:
    before = host_ruleset()
    script = write_forker(shared_dir / "xmrig")
    os.chown(script, NOBODY, NOBODY)  # the scope's own file: the quarantine may move it
    box = netns["box"]
    assert connects(box, NOBODY) and connects(box)
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    p = start_tree(trees, script, ["ip", "netns", "exec", box, *drop])
    grow(p)  # still forking: FORK_MAX is 120
    cfg = make_cfg(tmp_path, 'scope = "user:nobody"\n')
    plan = plan_for(p.pid, ["freeze", "forensics", "egress", "kill", "quarantine"])
    steps = {s.action: s for s in Sequence(cfg, nft=nft_in(box)).run(plan)}
    assert all(s.result == "done" for s in steps.values()), steps

    freeze = steps["freeze"]
    assert freeze.method == "sigstop" and len(freeze.pids) >= TREE and not freeze.skipped
    snap = Path(steps["forensics"].extra["path"])
    assert snap.stat().st_mode & 0o777 == 0o700
    assert forensics.verify(str(snap)) == []
    tree = forensics.json.loads((snap / "tree.json").read_text())
    assert {t["pid"] for t in tree} == set(freeze.pids)
    assert all(t["state"] == "T" for t in tree)  # read from /proc while stopped
    assert {t["user"] for t in tree} == {"nobody"}
    detail = (snap / "procs" / f"{p.pid}.json").read_text()
    assert '"FAKE_TOKEN=<redacted>"' in detail and "s3cr3t" not in detail
    assert any("libc" in line for line in forensics.json.loads(detail)["maps"])
    assert (snap / "alerts.jsonl").read_text().count(f"test-{p.pid}") == 1

    cut = steps["egress"].extra["cut"]
    assert cut["uids"] == [NOBODY]
    assert not connects(box, NOBODY), "the scope still reaches the server"
    assert connects(box), f"a process outside the scope lost its network: {cut}"
    assert nft_in(box).counters(cut["comment"]) > 0
    assert host_ruleset() == before

    assert steps["kill"].method == "sigkill" and set(steps["kill"].pids) == set(freeze.pids)
    assert not any(alive(pid) for pid in freeze.pids)

    q = steps["quarantine"].extra
    assert [f["path"] for f in q["files"]] == [str(script)] and not script.exists()
    sha = q["files"][0]["sha256"]
    assert sha == forensics.hashlib.sha256(write_forker(tmp_path / "copy").read_bytes()).hexdigest()
    vault = tmp_path / "state" / "quarantine" / sha
    assert vault.stat().st_mode & 0o7777 == 0
    assert any("interpreter" in left["why"] for left in q["left"])  # python3 stays put

    conf = tmp_path / "sentinel.toml"
    conf.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
    cli = [sys.executable, "-m", "sentinel.cli", "quarantine", "-c", str(conf)]
    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, timeout=30)
    assert sha in listed.stdout and str(script) in listed.stdout
    restored = subprocess.run([*cli, "restore", sha], capture_output=True, text=True, timeout=30)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert script.stat().st_mode & 0o777 == 0o755
    assert forensics.sha256_file(str(script))[0] == sha


def test_sink_destination_stays_reachable_for_the_agent_only(tmp_path: Path, netns) -> None:
    """The sink's address must not be a way out for the contained user (a shared front
    such as a webhook host's CDN reaches many other sites)."""
    box = netns["box"]
    sink = f'[[sinks]]\ntype = "webhook"\nname = "hook"\nurl = "http://{SERVER}:8443/x"\n'
    cfg = make_cfg(tmp_path, f'scope = "user:nobody"\n{sink}')
    (step,) = [
        s
        for s in Sequence(cfg, nft=nft_in(box)).run(Plan("t-sink", ["egress"], False))
        if s.action == "egress"
    ]
    assert step.result == "done" and step.extra["cut"]["allowed"] == [SERVER], step
    assert connects(box), "the agent lost its sink"
    assert not connects(box, NOBODY), "the contained user reaches the network through the sink"


def test_release_of_one_incident_keeps_another_incidents_block(tmp_path: Path, netns) -> None:
    from sentinel.response.release import release

    box = netns["box"]
    wrapper = tmp_path / "nft"
    wrapper.write_text(f'#!/bin/sh\nexec nsenter --net=/run/netns/{box} nft "$@"\n')
    wrapper.chmod(0o755)
    cfg = make_cfg(tmp_path, f'nft = "{wrapper}"\n')
    scoped = make_cfg(tmp_path, f'nft = "{wrapper}"\nscope = "user:nobody"\n')
    # incident a blocks the server's address (no scope: a destination only, no rule);
    # incident b cuts the user nobody and blocks the same address
    for name, c in (("rel-a", cfg), ("rel-b", scoped)):
        plan = Plan(name, ["egress"], False, destinations=[SERVER])
        assert [s.result for s in Sequence(c).run(plan)] == ["skipped", "done"]
    assert not connects(box) and not connects(box, NOBODY)
    (res,) = release(cfg, {"incident": "rel-b"})
    assert res[:2] == ("egress", True) and "kept" in res[3], res
    assert not connects(box), "releasing b reopened the address incident a blocks"
    (res,) = release(cfg, {"incident": "rel-a"})
    assert res[:2] == ("egress", True) and "table inet sentinel" in res[3], res
    assert connects(box, NOBODY) and nft_in(box).table() == []


def test_blocked_destination_is_blocked_for_a_container_behind_the_host(
    tmp_path: Path, netns, inner: str
) -> None:
    """A process in another netns (a container routed through the host) reaches the pool
    through the host's forward path, which an output-only chain never sees."""
    box = netns["box"]
    assert connects(inner)
    plan = Plan("t-fwd", ["egress"], False, destinations=[SERVER])
    steps = Sequence(make_cfg(tmp_path), nft=nft_in(box)).run(plan)
    assert steps[-1].result == "done", steps
    assert not connects(box) and not connects(inner), "the container still reaches the pool"


def test_cgroup_v2_tree_frozen_and_killed_by_the_cgroup(
    tmp_path: Path, shared_dir: Path, trees
) -> None:
    v2 = cgroup_mounts()["v2"]
    cg = Path(v2) / unique("sentinel-test")
    cg.mkdir()
    try:
        script = write_forker(shared_dir / "xmrig")
        enter = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" "$@"']
        p = start_tree(trees, script, enter)
        grow(p, 20)
        plan = plan_for(p.pid, ["freeze", "kill"])
        steps = {s.action: s for s in Sequence(make_cfg(tmp_path)).run(plan)}
        assert steps["freeze"].method == f"cgroup v2:/{cg.name}", steps
        assert steps["freeze"].result == "done" and len(steps["freeze"].pids) >= 20
        assert steps["kill"].method.startswith("cgroup.kill") and steps["kill"].result == "done"
        wait_until(lambda: (cg / "cgroup.procs").read_text() == "", what="cgroup empty")
    finally:
        (cg / "cgroup.kill").write_text("1")
        wait_until(lambda: (cg / "cgroup.procs").read_text() == "", what="cgroup empty")
        cg.rmdir()


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (they keep it when their parent dies)."""
    out = []
    for name in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            rest = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            if int(rest[2]) == pgid and rest[0] not in (b"Z", b"X"):
                out.append(int(name))
    return out


def test_children_forked_after_a_sigcont_are_killed_too(tmp_path: Path, trees) -> None:
    """A SIGSTOP freeze is undone by any process of the same user (a sibling outside the
    tree sends SIGCONT); what the tree forks after that must not outlive the kill."""
    p = subprocess.Popen(
        ["sh", "-c", "while :; do sleep 30 & sleep 0.02; done"], start_new_session=True
    )
    trees.append(p)
    grow(p, 4)
    late: list[int] = []

    def sibling(step) -> None:
        if step.action == "freeze":
            os.killpg(p.pid, signal.SIGCONT)
            wait_until(lambda: len(descendants([p.pid])) > len(step.pids) + 2, what="new children")
            late.extend(set(descendants([p.pid])) - set(step.pids))

    steps = Sequence(make_cfg(tmp_path), on_step=sibling).run(plan_for(p.pid, ["freeze", "kill"]))
    assert steps[0].method == "sigstop" and late, steps
    assert steps[-1].result == "done", steps[-1]
    wait_until(lambda: group_members(p.pid) == [], timeout=5, what="every process of the tree dead")


def test_a_process_moved_out_of_the_frozen_cgroup_is_killed_too(
    tmp_path: Path, shared_dir: Path, trees
) -> None:
    """An agent with a delegated cgroup subtree moves a frozen member to a sibling cgroup
    (it thaws there) before the kill: cgroup.kill alone misses it."""
    v2 = cgroup_mounts()["v2"]
    cg, out = Path(v2) / unique("sentinel-test"), Path(v2) / unique("sentinel-test")
    cg.mkdir()
    out.mkdir()
    moved: list[int] = []

    def escape(step) -> None:
        if step.action == "freeze":
            pid = max(step.pids)
            (out / "cgroup.procs").write_text(str(pid))
            moved.append(pid)

    try:
        script = f"echo $$ > {cg}/cgroup.procs; sleep 30 & sleep 30 & wait"
        p = subprocess.Popen(["sh", "-c", script], start_new_session=True)
        trees.append(p)
        grow(p, 3)
        steps = Sequence(make_cfg(tmp_path), on_step=escape).run(
            plan_for(p.pid, ["freeze", "kill"])
        )
        kill = steps[-1]
        assert kill.result == "done" and kill.method.startswith("cgroup.kill"), kill
        wait_until(lambda: not alive(moved[0]), timeout=5, what="the moved process killed")
    finally:
        for g in (cg, out):
            (g / "cgroup.kill").write_text("1")
            wait_until(lambda g=g: (g / "cgroup.procs").read_text() == "", what="cgroup empty")
            g.rmdir()


def test_v1_freezer_tree(tmp_path: Path, shared_dir: Path, trees) -> None:
    mounts = cgroup_mounts()
    if "freezer" not in mounts:
        pytest.skip("no v1 freezer mounted")
    cg = Path(mounts["freezer"]) / unique("sentinel-test")
    cg.mkdir()
    try:
        script = write_forker(shared_dir / "xmrig")
        enter = ["sh", "-c", f'echo $$ > {cg}/tasks && exec "$0" "$@"']
        p = start_tree(trees, script, enter)
        grow(p, 20)
        steps = {s.action: s for s in Sequence(make_cfg(tmp_path)).run(plan_for(p.pid, ["freeze"]))}
        assert steps["freeze"].method == f"cgroup v1:/{cg.name}", steps
        assert (cg / "freezer.state").read_text().strip() == "FROZEN"
        assert len((cg / "tasks").read_text().split()) == len(steps["freeze"].pids)
    finally:
        (cg / "freezer.state").write_text("THAWED")
        for pid in (cg / "tasks").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        wait_until(lambda: (cg / "tasks").read_text() == "", what="freezer cgroup empty")
        cg.rmdir()


def test_protected_and_outside_scope_never_touched(tmp_path: Path, shared_dir: Path, trees) -> None:
    guard = Guard()
    assert guard.refuse(1).startswith("protected")
    assert guard.refuse(2).startswith("protected")
    assert "sentinel itself" in guard.refuse(os.getpid())
    fake_sshd = shutil.copy("/bin/sleep", shared_dir / "sshd")
    decoy = start_tree(trees, Path(fake_sshd), [])  # `sleep --donate-level` exits: use argv
    decoy.wait(5)
    decoy = subprocess.Popen([fake_sshd, "30"], start_new_session=True)
    trees.append(decoy)
    assert guard.refuse(decoy.pid) == ""  # a program named sshd outside /usr/sbin is not protected
    # nor is a look-alike at a system path, bind-mounted in a mount namespace of its own
    fake = shutil.copy("/bin/sleep", shared_dir / "fake")
    inner = f"mount --bind {fake} /usr/sbin/agetty && exec /usr/sbin/agetty 30"
    lookalike = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", inner], start_new_session=True
    )
    trees.append(lookalike)
    wait_until(lambda: forensics._link(f"/proc/{lookalike.pid}/exe") == "/usr/sbin/agetty")
    assert guard.refuse(lookalike.pid) == ""
    # a scope of one uid: the tree runs as nobody, one child of the test runs as root
    script = write_forker(shared_dir / "xmrig")
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    p = start_tree(trees, script, drop)
    grow(p, 10)
    cfg = make_cfg(tmp_path, 'scope = "user:nobody"\n')
    own = identity(os.getpid())
    plan = plan_for(p.pid, ["freeze", "kill"])
    plan.roots += [own, identity(decoy.pid)]
    steps = {s.action: s for s in Sequence(cfg).run(plan)}
    skipped = steps["freeze"].skipped
    assert "sentinel itself" in skipped[os.getpid()]
    assert skipped[decoy.pid].startswith("outside scope")
    assert decoy.pid not in steps["kill"].pids and alive(decoy.pid) and state(decoy.pid) == "S"
    assert not any(alive(pid) for pid in steps["kill"].pids) and p.pid in steps["kill"].pids


def test_forensics_lists_a_bounded_number_of_fds(tmp_path: Path, trees) -> None:
    """A process holding many dup'd fds (cheap for it) gets a bounded fd list; a secret
    option in its argv is not written."""
    code = (
        "import os, resource, sys, time\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))\n"
        "fd = os.open('/dev/null', os.O_RDONLY)\n"
        "for _ in range(forensics.MAX_FDS * 2): os.dup(fd)\n"
        "print('ok', flush=True)\ntime.sleep(30)\n"
    ).replace("forensics.MAX_FDS", str(forensics.MAX_FDS))
    p = subprocess.Popen(
        [sys.executable, "-c", code, "--token=s3cr3t-arg"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    trees.append(p)
    assert p.stdout.readline() == b"ok\n"
    steps = Sequence(make_cfg(tmp_path)).run(plan_for(p.pid, ["freeze", "forensics"]))
    snap = Path(steps[1].extra["path"])
    detail = json.loads((snap / "procs" / f"{p.pid}.json").read_text())
    assert len(detail["fds"]) == forensics.MAX_FDS and detail["fds_total"] > forensics.MAX_FDS * 2
    assert any(f"pid {p.pid}:" in d for d in steps[1].extra["dropped"])
    tree = (snap / "tree.json").read_text()
    assert "--token=<redacted>" in tree and "s3cr3t-arg" not in tree
    assert forensics.verify(str(snap)) == []


def test_forensics_hashes_a_bounded_prefix_of_a_huge_executable(
    tmp_path: Path, shared_dir: Path, trees, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forensics, "HASH_MAX", 1 << 20)
    exe = Path(shutil.copy("/bin/sleep", shared_dir / "xmrig"))
    with open(exe, "r+b") as f:
        f.truncate(64 << 20)  # sparse: costs the attacker nothing
    p = subprocess.Popen([str(exe), "30"], start_new_session=True)
    trees.append(p)
    wait_until(lambda: forensics._link(f"/proc/{p.pid}/exe") == str(exe))
    steps = Sequence(make_cfg(tmp_path)).run(plan_for(p.pid, ["freeze", "forensics"]))
    snap = Path(steps[1].extra["path"])
    (entry,) = json.loads((snap / "executables.json").read_text())
    assert entry["size"] == 64 << 20 and entry["hashed_bytes"] == 1 << 20
    with open(exe, "rb") as f:
        assert entry["sha256"] == forensics.hashlib.sha256(f.read(1 << 20)).hexdigest()


def test_quarantine_leaves_another_users_file_and_a_look_alike_path(
    tmp_path: Path, shared_dir: Path, trees
) -> None:
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    # nobody runs a program of root's (readable, not writable by nobody) with miner arguments
    theirs = Path(shutil.copy("/bin/sleep", shared_dir / "train"))
    a = subprocess.Popen([*drop, str(theirs), "30"], start_new_session=True)
    trees.append(a)
    # a process in its own mount namespace sees another file at a path of the host's
    host, mine = shared_dir / "tool", shared_dir / "mine"
    for f in (host, mine):
        shutil.copy("/bin/sleep", f)
        os.chown(f, NOBODY, NOBODY)
    mine.write_bytes(mine.read_bytes() + b"\0")  # another inode and content
    inner = f"mount --bind {mine} {host} && exec {' '.join(drop)} {host} 30"
    b = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", inner], start_new_session=True
    )
    trees.append(b)
    for p in (a, b):
        wait_until(lambda p=p: forensics._link(f"/proc/{p.pid}/exe").endswith(("train", "tool")))
        wait_until(lambda p=p: forensics.uid_of(p.pid) == NOBODY)
    plan = plan_for(a.pid, ["freeze", "kill", "quarantine"])
    plan.roots.append(identity(b.pid))
    steps = {s.action: s for s in Sequence(make_cfg(tmp_path)).run(plan)}
    q = steps["quarantine"]
    assert q.extra["files"] == [] and q.result == "skipped", q
    why = {left["path"]: left["why"] for left in q.extra["left"]}
    assert "owned by root, not by the process's user nobody" in why[str(theirs)]
    assert "no longer the file the process ran" in why[str(host)]
    assert theirs.exists() and host.exists() and mine.exists()
    assert not alive(a.pid) and not alive(b.pid)


def test_pid_whose_identity_changed_is_not_signalled(tmp_path: Path, trees) -> None:
    p = subprocess.Popen(
        ["sh", "-c", "read line; exec sleep 30"], stdin=subprocess.PIPE, start_new_session=True
    )
    trees.append(p)
    wait_until(lambda: identity(p.pid) is not None)
    plan = plan_for(p.pid, ["freeze", "kill"])
    decided = plan.roots[0]
    p.stdin.write(b"go\n")
    p.stdin.close()
    wait_until(lambda: identity(p.pid) != decided, what="exec into sleep")
    steps = {s.action: s for s in Sequence(make_cfg(tmp_path)).run(plan)}
    assert steps["freeze"].skipped == {p.pid: "identity changed"} and steps["freeze"].pids == []
    assert state(p.pid) == "S"  # neither stopped nor killed
    recycled = Identity(p.pid, decided.start_ticks + 1, decided.exe_dev, decided.exe_ino)
    assert Held.open(recycled) is None


def spawn_at(pid: int, trees: list) -> subprocess.Popen | None:
    """A `sleep` that gets `pid` (through ns_last_pid), or None if another fork took it."""
    for _ in range(20):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        p = subprocess.Popen(["sleep", "30"], start_new_session=True)
        trees.append(p)
        if p.pid == pid:
            return p
    return None


def test_a_pid_recycled_between_the_check_and_the_pin_is_not_signalled(trees) -> None:
    """The walk finds a child, the guard clears it, the child exits and its pid goes to
    another process: that process must not be stopped on the first one's clearance."""
    root = subprocess.Popen(["sh", "-c", "sleep 30 & wait; exec sleep 30"], start_new_session=True)
    trees.append(root)
    wait_until(lambda: len(descendants([root.pid])) == 2, what="the child")
    child = descendants([root.pid])[1]
    other: list[subprocess.Popen] = []

    class Racing(Guard):
        def refuse(self, pid: int, info=None) -> str:
            verdict = super().refuse(pid, info)
            if pid == child and not other:
                os.kill(child, signal.SIGKILL)
                os.kill(root.pid, signal.SIGCONT)  # stopped by the walk: let it reap
                wait_until(lambda: read_info(child) is None, what="the child reaped")
                p = spawn_at(child, trees)
                if p is None:
                    pytest.skip("another fork took the pid")
                other.append(p)
            return verdict

    out = stop_tree([identity(root.pid)], Racing())
    assert other, "the race was not staged"
    assert other[0].pid not in out.held and state(other[0].pid) == "S", out


def test_dry_run_changes_nothing(tmp_path: Path, shared_dir: Path, trees, netns) -> None:
    before = host_ruleset()
    script = write_forker(shared_dir / "xmrig")
    os.chown(script, NOBODY, NOBODY)
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    p = start_tree(trees, script, ["ip", "netns", "exec", netns["box"], *drop])
    grow(p, 10)
    cfg = make_cfg(tmp_path, 'scope = "user:nobody"\n')
    plan = plan_for(p.pid, ["freeze", "forensics", "egress", "kill", "quarantine"], dry_run=True)
    steps = {s.action: s for s in Sequence(cfg, nft=nft_in(netns["box"])).run(plan)}
    assert {s.result for s in steps.values()} == {"planned"}, steps
    assert p.pid in steps["freeze"].pids
    assert steps["quarantine"].extra["files"] == [str(script)]
    assert all(state(pid) in "SR" for pid in steps["freeze"].pids)
    assert script.exists() and not (tmp_path / "state").exists()
    assert nft_in(netns["box"]).table() == [] and host_ruleset() == before
    assert connects(netns["box"], NOBODY)


def test_cli_contain_and_release(tmp_path: Path, shared_dir: Path, trees) -> None:
    script = write_forker(shared_dir / "xmrig")
    p = start_tree(trees, script)
    grow(p, 10)
    conf = tmp_path / "sentinel.toml"
    conf.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[metrics]\nenabled = false\n')
    cli = [sys.executable, "-m", "sentinel.cli"]
    contain = [*cli, "contain", "-c", str(conf), "--pid", str(p.pid), "--no-kill", "--keep-network"]
    res = subprocess.run(contain, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[1].split()[:2] == ["ACTION", "RESULT"]
    assert [ln.split()[:2] for ln in lines[2:]] == [
        ["freeze", "done"],
        ["forensics", "done"],
        ["quarantine", "done"],
        ["revoke", "skipped"],
    ]
    pids = descendants([p.pid])
    assert all(state(pid) == "T" for pid in pids)
    log = (tmp_path / "state" / "alerts.jsonl").read_text()
    assert '"rule": "response.freeze"' in log and '"rule": "response.quarantine"' in log
    res = subprocess.run(
        [*cli, "release", "-c", str(conf), "--pid", str(p.pid)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "thaw" in res.stdout and "done" in res.stdout
    wait_until(lambda: all(state(pid) in "SR" for pid in pids), what="thawed")
    again = subprocess.run(
        [*cli, "release", "-c", str(conf), "--pid", str(p.pid)], capture_output=True, timeout=60
    )
    assert again.returncode == 1  # nothing recorded any more
    failed = subprocess.run(
        [*cli, "contain", "-c", str(conf), "--pid", str(os.getpid()), "--keep-network"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1 and "sentinel itself" in failed.stdout, failed.stdout


def test_cli_contain_user_cuts_egress_and_release_undoes_it(
    tmp_path: Path, shared_dir: Path, trees, netns
) -> None:
    before = host_ruleset()
    box = netns["box"]
    wrapper = tmp_path / "nft"
    wrapper.write_text(f'#!/bin/sh\nexec nsenter --net=/run/netns/{box} nft "$@"\n')
    wrapper.chmod(0o755)
    conf = tmp_path / "sentinel.toml"
    conf.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[response]\nnft = "{wrapper}"\n'
        "[metrics]\nenabled = false\n"
    )
    uid = 60000 + os.getpid() % 5000  # a uid of this test alone: --user takes all its processes
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    p = start_tree(trees, write_forker(shared_dir / "xmrig"), ["ip", "netns", "exec", box, *drop])
    grow(p, 10)
    cli = [sys.executable, "-m", "sentinel.cli"]
    res = subprocess.run(
        [*cli, "contain", "-c", str(conf), "--user", str(uid), "--no-kill"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {ln.split()[0]: ln.split()[1] for ln in res.stdout.splitlines()[2:]}
    assert rows["freeze"] == rows["egress"] == "done", res.stdout
    assert all(state(pid) == "T" for pid in descendants([p.pid]))
    assert not connects(box, uid) and connects(box)
    res = subprocess.run(
        [*cli, "release", "-c", str(conf), "--user", str(uid)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "table inet sentinel" in res.stdout
    wait_until(lambda: all(state(pid) in "SR" for pid in descendants([p.pid])), what="thawed")
    assert connects(box, uid) and nft_in(box).table() == []
    assert host_ruleset() == before


def test_cli_contain_incident_checks_the_recorded_identity(tmp_path: Path, trees) -> None:
    p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    trees.append(p)
    wait_until(lambda: identity(p.pid) is not None)
    from sentinel.core.proctable import read_proc

    proc = read_proc(p.pid)
    assert proc is not None
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    log = state_dir / "alerts.jsonl"
    good = Finding("miner.process_name", Category.MINER, Severity.CRITICAL, "s", "t", proc)
    older = dataclasses.replace(proc, start_time=proc.start_time - 5)  # an earlier holder
    stale = Finding("miner.process_name", Category.MINER, Severity.HIGH, "s", "t", older)
    log.write_text(f"{json.dumps(good.to_record())}\n{json.dumps(stale.to_record())}\n")
    conf = tmp_path / "sentinel.toml"
    conf.write_text(f'[agent]\nstate_dir = "{state_dir}"\n[metrics]\nenabled = false\n')
    cli = [sys.executable, "-m", "sentinel.cli", "contain", "-c", str(conf), "--dry-run"]
    res = subprocess.run([*cli, "--incident", good.id], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"incident {good.id} (dry-run)" in res.stdout
    assert f"freeze      planned  {p.pid}" in res.stdout
    res = subprocess.run([*cli, "--incident", stale.id], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no longer the process" in res.stdout
    assert state(p.pid) == "S"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    freeze = [r for r in records if r["rule"] == "response.freeze"]
    assert len(freeze) == 1 and freeze[0]["evidence"]["result"] == "planned"
    assert freeze[0]["severity"] == "critical"  # the incident's


def test_on_contain_runs_with_the_incident_and_a_timeout(tmp_path: Path) -> None:
    out = tmp_path / "revoked"
    cfg = make_cfg(tmp_path, f'on_contain = ["sh", "-c", "echo $0 > {out}", "{{incident}}"]\n')
    plan = Plan("inc-42", ["revoke"], False)
    (step,) = Sequence(cfg).run(plan)
    assert (step.result, step.detail) == ("done", "exit 0") and out.read_text() == "inc-42\n"
    cfg = make_cfg(tmp_path, 'on_contain = ["sleep", "5"]\non_contain_timeout = 0.2\n')
    (step,) = Sequence(cfg).run(plan)
    assert step.result == "failed" and step.detail == "timed out after 0.2s"
    cfg = make_cfg(tmp_path, 'on_contain = ["sh", "-c", "exit 3"]\n')
    assert Sequence(cfg).run(plan)[0].detail == "exit 3"


def test_on_contain_timeout_ends_its_whole_group_and_an_exit_is_an_exit(tmp_path: Path) -> None:
    """A revoke command that times out goes with its children; one that exits 0 but
    leaves a child holding stderr open is done, not timed out."""
    pidfile = tmp_path / "child"
    children: list[int] = []
    try:
        for tail, result, detail in (("wait", "failed", "timed out"), ("exit 0", "done", "exit 0")):
            script = f"sleep 60 & echo $! > {pidfile}; {tail}"
            cfg = make_cfg(
                tmp_path, f'on_contain = ["sh", "-c", "{script}"]\non_contain_timeout = 0.5\n'
            )
            (step,) = Sequence(cfg).run(Plan("i", ["revoke"], False))
            children.append(int(pidfile.read_text()))
            assert step.result == result and detail in step.detail, step
        wait_until(lambda: not alive(children[0]), timeout=5, what="the timed-out group ended")
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
