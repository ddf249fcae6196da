"""Socket classes on fixtures: the egress allow-list (config, verdicts, once per executable
and destination), indicators from an environment, listener-port classification and
namespace moves (on a fixture procfs)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from collector_run import Running
from fakes import context, fake_monero_address, proc

from sentinel.collectors import net
from sentinel.collectors.net import (
    ESTABLISHED,
    LISTEN,
    Namespaces,
    NetCollector,
    Sock,
    connected,
    holds,
)
from sentinel.core import config, ownerfacts
from sentinel.core.events import NetConn, OwnerFacts
from sentinel.core.model import Connection, Severity
from sentinel.detectors.network import NetworkDetector
from sentinel.rules import egress
from sentinel.rules.indicators import indicators

CURL = proc(pid=4300, name="curl", exe="/usr/bin/curl", cmdline=["curl", "http://x/"])


def event(raddr: str, rport: int, p=CURL, owner: OwnerFacts | None = None) -> NetConn:
    return NetConn(
        1000.0, Connection("10.0.0.2:40000", raddr, rport, "tcp"), p, "ESTABLISHED", owner
    )


def rules(det: NetworkDetector, ev: NetConn) -> dict[str, Severity]:
    return {f.rule: f.severity for f in det.handle(ev)}


@pytest.mark.parametrize(
    ("entry", "addr", "port", "held"),
    [
        ("198.51.100.0/24", "198.51.100.9", 22, True),
        ("198.51.100.1/32:443", "198.51.100.1", 443, True),
        ("198.51.100.1/32:443", "198.51.100.1", 80, False),
        ("198.51.100.1", "198.51.100.2", 443, False),
        ("[2001:db8::/32]:443", "2001:db8::5", 443, True),
        ("2001:db8::/32", "2001:db8::5", 22, True),
        ("2001:db8::/32", "198.51.100.1", 22, False),
        ("198.51.100.0/24", "::ffff:198.51.100.9", 22, True),
    ],
)
def test_allow_list_entries(entry: str, addr: str, port: int, held: bool) -> None:
    assert egress.allowed(egress.parse([entry]), addr, port) is held


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.org:443", "10.0.0.1:70000", ""])
def test_a_bad_entry_names_the_file_line_and_key(bad: str) -> None:
    text = f'[agent]\ninterval = 1.0\n\n[network]\negress_allow = ["10.0.0.0/8", "{bad}"]\n'
    with pytest.raises(config.ConfigError) as err:
        config.parse(text, "/etc/sentinel/sentinel.toml")
    assert str(err.value).startswith("/etc/sentinel/sentinel.toml:5: network.egress_allow[1]:")


def test_unset_is_off_and_an_empty_list_denies_all_egress() -> None:
    off = NetworkDetector(context())
    assert "network.egress_unknown" not in rules(off, event("198.51.100.7", 443))
    deny = NetworkDetector(context("[network]\negress_allow = []\n"))
    assert rules(deny, event("198.51.100.7", 443))["network.egress_unknown"] == Severity.MEDIUM
    assert "network.egress_unknown" not in rules(deny, event("127.0.0.1", 443))  # stays home


def test_egress_unknown_once_per_executable_and_destination() -> None:
    det = NetworkDetector(context('[network]\negress_allow = ["198.51.100.1/32:8081"]\n'))
    assert "network.egress_unknown" not in rules(det, event("198.51.100.1", 8081))
    assert "network.egress_unknown" in rules(det, event("198.51.100.1", 8082))
    again = proc(pid=4301, name="curl", exe="/usr/bin/curl", cmdline=["curl", "-s"])
    assert "network.egress_unknown" not in rules(det, event("198.51.100.1", 8082, again))
    assert "network.egress_unknown" in rules(det, event("198.51.100.1", 8083, again))
    wget = proc(pid=4302, name="wget", exe="/usr/bin/wget", cmdline=["wget", "x"])
    assert "network.egress_unknown" in rules(det, event("198.51.100.1", 8082, wget))


def test_environment_indicators_keep_no_secret() -> None:
    wallet = fake_monero_address()
    found = indicators(
        [
            ("POOL", "stratum+tcp://worker:hunter2@pool.minepool.test:3333"),
            ("WALLET", wallet),
            ("MINING_HOST", "pool.minepool.test:4444"),
            ("DATABASE_URL", "postgres://u:pw@db.test:5432/x"),
            ("REDIS", "cache.test:6379"),
        ],
        "environ",
    )
    assert found is not None
    assert found.urls == ("stratum+tcp://<redacted>@pool.minepool.test:3333",)
    assert found.pools == ("pool.minepool.test:4444",)
    assert found.wallets == (("monero", wallet),)
    assert found.names == ("POOL", "WALLET", "MINING_HOST")
    assert "hunter2" not in json.dumps([found.urls, found.pools, found.names])
    assert indicators([("HOME", "/root"), ("REDIS", "cache.test:6379")], "environ") is None


def test_environment_pool_names_the_miner_on_its_connection() -> None:
    det = NetworkDetector(context())
    found = indicators([("POOL", "stratum+tcp://198.51.100.7:3333")], "environ")
    plain = proc(name="python3", exe="/usr/bin/python3.11", cmdline=["python3", "job.py"])
    f = next(
        f
        for f in det.handle(event("198.51.100.7", 3333, plain, OwnerFacts((), "pipe", (found,))))
        if f.rule == "network.stratum_connection"
    )
    assert f.severity == Severity.HIGH
    assert f.evidence["hidden"]["environ"]["urls"] == ["stratum+tcp://198.51.100.7:3333"]


def sock(inode: int, lport: int, state: int, rip: str = "198.51.100.1", rport: int = 0) -> Sock:
    return Sock(
        inode, "tcp", 2, "0.0.0.0" if state == LISTEN else "198.51.100.2", lport, rip, rport, state
    )


def test_a_connected_socket_carries_the_listeners_on_its_port() -> None:
    socks = [
        sock(10, 7070, LISTEN, "0.0.0.0"),
        sock(11, 7070, LISTEN, "0.0.0.0"),  # a second SO_REUSEPORT listener
        sock(20, 7070, ESTABLISHED, rport=3333),
        sock(21, 40000, ESTABLISHED, rport=443),
    ]
    assert {s.inode: shared for s, shared in connected(socks)} == {
        20: frozenset({10, 11}),
        21: frozenset(),
    }


def test_holds_reads_the_fds_of_one_process(tmp_path: Path) -> None:
    fd = tmp_path / "4242" / "fd"
    fd.mkdir(parents=True)
    (fd / "3").symlink_to("socket:[10]")
    (fd / "4").symlink_to("/dev/null")
    assert holds(str(tmp_path), 4242, frozenset({10, 11}))
    assert not holds(str(tmp_path), 4242, frozenset({12}))
    assert not holds(str(tmp_path), 4243, frozenset({10}))


def test_a_process_moving_namespace_is_followed(tmp_path: Path) -> None:
    """A known pid whose ns/net link changes (unshare, setns, no exec) moves at the next
    call, with no exec event and no listing of procfs."""
    procfs = tmp_path / "proc"
    (procfs / "self" / "ns").mkdir(parents=True)
    (procfs / "self" / "ns" / "net").symlink_to("net:[1]")
    (procfs / "700" / "ns").mkdir(parents=True)
    link = procfs / "700" / "ns" / "net"
    link.symlink_to("net:[1]")
    ctx = context()
    ctx.procfs = str(procfs)
    ctx.procs.complete = True
    spaces = Namespaces(ctx)
    assert spaces.find() == {"": 0}  # the listing: pid 700 is in the agent's own
    link.unlink()
    link.symlink_to("net:[2]")
    ctx.procs.ran(700)  # seen running (CPU, a fork, a thread): read at the next call
    assert spaces.find() == {"": 0, "net:[2]": 700}
    link.unlink()
    link.symlink_to("net:[1]")  # moved back while asleep: seen within FOLLOW_ROTATE calls
    found = [spaces.find() for _ in range(net.FOLLOW_ROTATE)]
    assert found[0] == {"": 0, "net:[2]": 700}  # not every pid every call: not yet its turn
    assert found[-1] == {"": 0}


def test_owner_facts_read_stdio_stdin_and_environ(tmp_path: Path) -> None:
    wallet = fake_monero_address()
    fd = tmp_path / "900" / "fd"
    fd.mkdir(parents=True)
    (fd / "0").symlink_to("socket:[55]")
    (fd / "1").symlink_to("pipe:[9]")
    (fd / "2").symlink_to("socket:[55]")
    secret = "s3cr3t-" + os.urandom(4).hex()
    (tmp_path / "900" / "environ").write_bytes(
        b"\0".join([b"PATH=/usr/bin", f"WALLET={wallet}".encode(), f"TOKEN={secret}".encode()])
    )
    facts = ownerfacts.OwnerReader(str(tmp_path), ["/tmp"]).facts(900, 1.0, 55)
    assert facts.stdio == ("stdin", "stderr") and facts.stdin == "socket"
    (found,) = facts.hidden
    assert found.wallets == (("monero", wallet),) and found.names == ("WALLET",)
    assert secret not in repr(facts)


def fixture_proc(root: Path, pid: int, name: str, ppid: int, fds: dict[str, str]) -> None:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    fields = ["S", str(ppid)] + ["0"] * 17 + ["500"]
    (d / "stat").write_text(f"{pid} ({name}) {' '.join(fields)}\n")
    (d / "cmdline").write_bytes(name.encode() + b"\0")
    (d / "status").write_text("Uid:\t0\t0\t0\t0\n")
    for fd, target in fds.items():
        (d / "fd" / fd).symlink_to(target)


async def test_a_socket_bound_to_a_listeners_port_is_outbound_unless_its_holder_accepted(
    tmp_path: Path,
) -> None:
    """On a fixture procfs: the listener's holder owns its accepted connection (inbound);
    another process bound the same port and connected out (outbound)."""
    root = tmp_path / "proc"
    (root / "net").mkdir(parents=True)
    (root / "stat").write_text("cpu 1 2 3\nbtime 1700000000\n")
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"
    rest = "00000000:00000000 00:00000000 00000000 0 0"
    (root / "net" / "tcp").write_text(
        header
        + f"0: 00000000:1B9E 00000000:0000 0A {rest} 100 1\n"  # a listener on 7070
        + f"1: 0200000A:1B9E 0100000A:A000 01 {rest} 101 1\n"  # accepted by its holder
        + f"2: 0200000A:1B9E 0100000A:0D05 01 {rest} 105 1\n"  # bound 7070, out to :3333
    )
    fixture_proc(root, 4242, "server", 1, {"3": "socket:[100]", "4": "socket:[101]"})
    fixture_proc(root, 4343, "reuser", 1, {"3": "socket:[105]"})
    cfg = config.parse("[agent]\ninterval = 0.2\n")
    async with Running(NetCollector, cfg, str(root)) as run:
        out = await run.wait(NetConn, lambda e: e.conn.rport == 3333)
        assert out.proc is not None and out.proc.pid == 4343
        assert out.conn.laddr == "10.0.0.2:7070"
        await asyncio.sleep(0.5)
        assert [e.conn.rport for e in run.of(NetConn)] == [3333]
        assert run.collector.servers == {100: 4242}
        # a second connection accepted by the same server: found in its own fds
        with (root / "net" / "tcp").open("a") as table:
            table.write(f"3: 0200000A:1B9E 0100000A:A001 01 {rest} 106 1\n")
        (root / "4242" / "fd" / "5").symlink_to("socket:[106]")
        await asyncio.sleep(0.6)
        assert [e.conn.rport for e in run.of(NetConn)] == [3333]
