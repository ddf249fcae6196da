"""The alert log's hash chain and signed checkpoints, checked by `sentinel verify-log`."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sentinel.cli import main
from sentinel.core import config
from sentinel.core.config import SinkConfig
from sentinel.core.context import Context
from sentinel.core.model import Category, Finding, Severity
from sentinel.evidence import chain, keys
from sentinel.rules import intel
from sentinel.sinks.jsonl import JsonlSink


def _write_log(tmp_path: Path, n: int, extra: str = "") -> tuple[Path, Path]:
    cfgfile = tmp_path / "sentinel.toml"
    cfgfile.write_text(f"[agent]\nstate_dir='{tmp_path}'\n{extra}")
    cfg = config.load(cfgfile)
    sink = JsonlSink(SinkConfig(type="jsonl"), Context(cfg, intel.load()))
    asyncio.run(sink.start())
    for i in range(n):
        sink.submit(Finding(f"t.r{i}", Category.MINER, Severity.HIGH, f"finding {i}", "t"))
    asyncio.run(sink.close())
    return Path(cfg.alert_log), cfgfile


def _verify(cfgfile: Path, *args: str) -> int:
    return main(["verify-log", "-c", str(cfgfile), *args])


def _lines(log: Path) -> list[bytes]:
    return log.read_bytes().splitlines(keepends=True)


def test_intact_log_across_rotations_verifies(tmp_path: Path, capsys) -> None:
    log, cfgfile = _write_log(tmp_path, 30, "[log]\nmax_bytes = 1500\nbackups = 20\n")
    files = chain.rotated(str(log))
    assert len(files) > 3
    first_of_newer = json.loads(Path(files[1]).read_bytes().splitlines()[0])
    assert first_of_newer["prev"] == chain.line_hash(Path(files[0]).read_bytes().splitlines()[-1])
    assert _verify(cfgfile) == 0
    cps = sum(b'"type": "checkpoint"' in x for f in files for x in _lines(Path(f)))
    assert cps == len(files) - 1  # one right after each rotation
    assert f"OK: {30 + cps} lines" in capsys.readouterr().out


def test_restart_continues_the_chain(tmp_path: Path) -> None:
    log, cfgfile = _write_log(tmp_path, 3)
    _write_log(tmp_path, 2)
    seqs = [json.loads(x)["seq"] for x in _lines(log)]
    assert seqs == [0, 1, 2, 3, 4]
    assert _verify(cfgfile) == 0


def _tampered(capsys, cfgfile: Path) -> str:
    assert _verify(cfgfile) == 1
    return capsys.readouterr().out


def test_edited_line_is_named(tmp_path: Path, capsys) -> None:
    log, cfgfile = _write_log(tmp_path, 8)
    lines = _lines(log)
    lines[4] = lines[4].replace(b"finding 4", b"finding X")
    log.write_bytes(b"".join(lines))
    assert f"{log}:5: edited" in _tampered(capsys, cfgfile)


def test_removed_line_is_named(tmp_path: Path, capsys) -> None:
    log, cfgfile = _write_log(tmp_path, 8)
    lines = _lines(log)
    del lines[3]
    log.write_bytes(b"".join(lines))
    assert f"{log}:4: seq 4 follows seq 2: records removed" in _tampered(capsys, cfgfile)


def test_inserted_line_is_named(tmp_path: Path, capsys) -> None:
    log, cfgfile = _write_log(tmp_path, 8)
    lines = _lines(log)
    forged = json.loads(lines[2])
    forged["summary"] = "forged"
    lines.insert(3, (json.dumps(forged) + "\n").encode())  # seq 2 again, its prev correct
    log.write_bytes(b"".join(lines))
    assert f"{log}:3: seq 2 appears twice: line inserted" in _tampered(capsys, cfgfile)
    plain = _lines(log)
    plain[3] = b'{"rule": "forged"}\n'
    log.write_bytes(b"".join(plain))
    assert f"{log}:4: no 'seq'" in _tampered(capsys, cfgfile)


def test_reordered_lines_are_named(tmp_path: Path, capsys) -> None:
    log, cfgfile = _write_log(tmp_path, 8)
    lines = _lines(log)
    lines[5], lines[6] = lines[6], lines[5]
    log.write_bytes(b"".join(lines))
    assert f"{log}:6: seq 6 follows seq 4" in _tampered(capsys, cfgfile)


def test_truncated_line_is_named(tmp_path: Path, capsys) -> None:
    log, cfgfile = _write_log(tmp_path, 8)
    data = log.read_bytes()
    log.write_bytes(data[:-20])
    assert f"{log}:8: truncated" in _tampered(capsys, cfgfile)


def test_removed_first_line_of_rotated_file_is_named(tmp_path: Path, capsys) -> None:
    log, cfgfile = _write_log(tmp_path, 30, "[log]\nmax_bytes = 1500\nbackups = 20\n")
    newer = Path(chain.rotated(str(log))[2])
    newer.write_bytes(b"".join(_lines(newer)[1:]))
    assert f"{newer}:1: seq" in _tampered(capsys, cfgfile)


def test_rotation_that_drops_old_files_verifies(tmp_path: Path, capsys) -> None:
    log, cfgfile = _write_log(tmp_path, 60, "[log]\nmax_bytes = 1500\nbackups = 2\n")
    files = chain.rotated(str(log))
    assert len(files) == 3 and json.loads(_lines(Path(files[0]))[0])["seq"] > 0
    assert _verify(cfgfile) == 0
    assert "OK:" in capsys.readouterr().out


def test_removed_head_of_the_log_is_named(tmp_path: Path, capsys) -> None:
    """The oldest file removed (or its first lines): no rotation said so, a checkpoint
    signed after the last rotation still names the first seq the log kept."""
    log, cfgfile = _write_log(tmp_path, 60, "[log]\nmax_bytes = 1500\nbackups = 4\n")
    files = [Path(f) for f in chain.rotated(str(log))]
    assert _verify(cfgfile) == 0
    capsys.readouterr()
    files[0].unlink()
    out = _tampered(capsys, cfgfile)
    assert f"{files[1]}:1: history removed" in out
    (tmp_path / "b").mkdir()
    log, cfgfile = _write_log(tmp_path / "b", 60, "[log]\nmax_bytes = 1500\nbackups = 4\n")
    oldest = Path(chain.rotated(str(log))[0])
    oldest.write_bytes(b"".join(_lines(oldest)[2:]))
    assert f"{oldest}:1: history removed" in _tampered(capsys, cfgfile)


def test_rotating_after_the_head_was_removed_cannot_launder_it(tmp_path: Path, capsys) -> None:
    """The agent counts the files it rotated itself: after the head is removed behind its
    back, its next rotation's checkpoint still names the lines it had kept."""
    extra = "[log]\nmax_bytes = 1500\nbackups = 20\n"
    cfgfile = tmp_path / "sentinel.toml"
    cfgfile.write_text(f"[agent]\nstate_dir='{tmp_path}'\n{extra}")
    cfg = config.load(cfgfile)
    sink = JsonlSink(SinkConfig(type="jsonl"), Context(cfg, intel.load()))
    asyncio.run(sink.start())
    for i in range(25):
        sink.submit(Finding(f"t.r{i}", Category.MINER, Severity.HIGH, f"finding {i}", "t"))
    files = chain.rotated(cfg.alert_log)
    assert len(files) >= 3
    Path(files[0]).unlink()  # behind the running sink's back
    for i in range(10):  # more rotations, each with its checkpoint
        sink.submit(Finding(f"t.s{i}", Category.MINER, Severity.HIGH, f"later {i}", "t"))
    asyncio.run(sink.close())
    assert "history removed" in _tampered(capsys, cfgfile)


def test_checkpoint_verifies_with_the_public_key_and_not_another(tmp_path: Path, capsys) -> None:
    log, cfgfile = _write_log(tmp_path, 7, "[evidence]\ncheckpoint_every = 3\n")
    recs = [json.loads(x) for x in _lines(log)]
    cps = [r for r in recs if r.get("type") == "checkpoint"]
    assert len(cps) == 2 and cps[0]["covers"]["seq"] == 2
    assert main(["log", "pubkey", "-c", str(cfgfile)]) == 0
    pub = tmp_path / "pub.pem"
    pub.write_text(capsys.readouterr().out)
    assert _verify(cfgfile, "--pubkey", str(pub)) == 0
    assert "2 checkpoints verified" in capsys.readouterr().out
    other = tmp_path / "other.pem"
    other.write_text(keys.public_pem(Ed25519PrivateKey.generate()))
    out = _verify(cfgfile, "--pubkey", str(other))
    assert out == 1
    assert f"{log}:4: checkpoint signature does not verify" in capsys.readouterr().out


def test_key_is_private_and_kept(tmp_path: Path) -> None:
    a = keys.load_or_create(str(tmp_path))
    b = keys.load_or_create(str(tmp_path))
    assert keys.key_id(a) == keys.key_id(b)
    assert (Path(keys.key_path(str(tmp_path))).stat().st_mode & 0o777) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_key_file_someone_else_could_have_written_or_read_is_refused(tmp_path: Path) -> None:
    # a watched user who could write in state_dir plants a key whose private half they keep
    planted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = Path(keys.key_path(str(tmp_path)))
    path.write_bytes(planted)
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(keys.KeyFileError, match="owned by uid 65534"):
        keys.load_or_create(str(tmp_path))
    os.chown(path, 0, 0)
    path.chmod(0o644)
    with pytest.raises(keys.KeyFileError, match="mode 0644"):
        keys.load_or_create(str(tmp_path))
    path.unlink()
    real = tmp_path / "elsewhere.key"
    real.write_bytes(planted)
    real.chmod(0o600)
    path.symlink_to(real)
    with pytest.raises(keys.KeyFileError, match="symlink"):
        keys.load_or_create(str(tmp_path))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_log_path_someone_else_prepared_is_refused(tmp_path: Path) -> None:
    """A log configured in a directory the watched user can write: a symlink planted at
    its name must not make root append to (and chmod 0600) the file it points to, and a
    file the user owns (theirs to edit, and re-sealed at the next restart) is refused."""
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0::/root:/bin/sh\n")
    victim.chmod(0o644)
    cfgfile = tmp_path / "sentinel.toml"
    log = tmp_path / "alerts.jsonl"
    cfgfile.write_text(f"[agent]\nstate_dir='{tmp_path}'\n[log]\npath='{log}'\n")
    cfg = config.load(cfgfile)
    log.symlink_to(victim)
    sink = JsonlSink(SinkConfig(type="jsonl"), Context(cfg, intel.load()))
    with pytest.raises(OSError):
        asyncio.run(sink.start())
    assert victim.read_text() == "root:x:0:0::/root:/bin/sh\n"
    assert victim.stat().st_mode & 0o777 == 0o644
    log.unlink()
    log.write_text("")
    os.chown(log, 65534, 65534)
    with pytest.raises(OSError, match="owned by uid 65534"):
        asyncio.run(sink.start())


def test_a_write_cut_short_leaves_the_chain_whole(tmp_path: Path) -> None:
    """A full disk (a watched user can fill a shared filesystem) cuts a write short: the
    partial line must not stay, or every later line is glued to it and verify-log calls
    the log tampered from there on. RLIMIT_FSIZE stands in for the full disk."""
    import subprocess
    import sys

    cfgfile = tmp_path / "sentinel.toml"
    cfgfile.write_text(f"[agent]\nstate_dir='{tmp_path}'\n")
    script = f"""
import asyncio, os, resource, signal
from sentinel.core import config
from sentinel.core.config import SinkConfig
from sentinel.core.context import Context
from sentinel.core.model import Category, Finding, Severity
from sentinel.rules import intel
from sentinel.sinks.jsonl import JsonlSink

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
cfg = config.load({str(cfgfile)!r})
sink = JsonlSink(SinkConfig(type="jsonl"), Context(cfg, intel.load()))
asyncio.run(sink.start())
f = lambda s: Finding("t.r", Category.MINER, Severity.HIGH, s, "t")
sink.submit(f("before"))
size = os.path.getsize(cfg.alert_log)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
try:
    sink.submit(f("x" * 5000))
except OSError:
    print("refused")
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
sink.submit(f("after"))
asyncio.run(sink.close())
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "refused" in res.stdout, res.stderr
    assert _verify(cfgfile) == 0
    summaries = [json.loads(line)["summary"] for line in _lines(Path(tmp_path, "alerts.jsonl"))]
    assert summaries == ["before", "after"]


def test_time_based_checkpoint_and_its_signature() -> None:
    key = Ed25519PrivateKey.generate()
    c = chain.Chain(key, 0, 10.0)
    c.advance(c.line({"a": 1}))
    assert not c.due(c.last_checkpoint + 5)
    assert c.due(c.last_checkpoint + 11)
    rec = c.checkpoint()
    assert chain.check_signature(rec, key.public_key())
    moved = {**rec, "covers": {**rec["covers"], "seq": 7}}
    assert not chain.check_signature(moved, key.public_key())


def test_unknown_disabled_detector_names_file_and_line(tmp_path: Path) -> None:
    text = '[agent]\ninterval = 1.0\n[detectors]\ndisable = ["procss"]\n'
    try:
        config.parse(text, "x.toml")
    except config.ConfigError as exc:
        assert str(exc).startswith("x.toml:4: detectors.disable: unknown detector 'procss'")
    else:
        raise AssertionError("accepted an unknown detector")
    assert config.parse('[detectors]\ndisable = ["network"]\n').detectors.disable == ["network"]


def test_a_sink_that_reopens_the_log_continues_the_chain(tmp_path: Path) -> None:
    log, cfgfile = _write_log(tmp_path, 3)
    sink = JsonlSink(SinkConfig(type="jsonl"), Context(config.load(cfgfile), intel.load()))
    sink.submit(Finding("t.late", Category.MINER, Severity.HIGH, "before start", "t"))
    asyncio.run(sink.close())
    assert [json.loads(x)["seq"] for x in _lines(log)] == [0, 1, 2, 3]
    assert _verify(cfgfile) == 0


def test_checkpoints_ride_on_webhook_and_alertmanager(tmp_path: Path) -> None:
    from sinkkit import build, cfg_for, table

    from sentinel.sinks._http.delivery import Outbound

    c = chain.Chain(Ed25519PrivateKey.generate(), 1, 0)
    c.advance(c.line({"rule": "t"}))
    cp = c.checkpoint()
    hook = build(cfg_for(tmp_path, table("webhook", "http://127.0.0.1:9/h", "hook")))
    hook.checkpoint(cp)
    assert [json.loads(hook.body(m)) for m in hook.pending] == [cp]
    am = build(cfg_for(tmp_path, table("alertmanager", "http://127.0.0.1:9", "am")))
    am.checkpoint(cp)
    record = Finding("t.r", Category.MINER, Severity.HIGH, "m", "t").to_record()
    (alert,) = json.loads(am.body(Outbound("firing", record, "host")))
    assert json.loads(alert["annotations"]["log_checkpoint"]) == cp
