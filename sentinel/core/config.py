"""TOML configuration mapped onto typed dataclasses; every key has a default."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel.core.model import Category, Severity

DEFAULT_PATH = Path("/etc/sentinel/sentinel.toml")


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key or line."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


def _default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/sentinel"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "sentinel")


@dataclass
class AgentConfig:
    interval: float = 5.0
    state_dir: str = field(default_factory=_default_state_dir)
    hostname: str = ""
    netlink: bool = True
    queue_size: int = 20000
    max_open_files: int = 65536  # RLIMIT_NOFILE set at start (the unit's LimitNOFILE too)


@dataclass
class LogConfig:
    path: str = ""  # default: <state_dir>/alerts.jsonl
    max_bytes: int = 50 * 1024 * 1024
    backups: int = 5
    stdout: bool = True
    min_severity: str = "info"


@dataclass
class ScanConfig:
    max_file_size: int = 64 * 1024 * 1024
    threads: int = 0  # 0: one per CPU
    rules: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    fail_severity: str = "medium"
    timeout: int = 60


@dataclass
class WatchConfig:
    paths: list[str] = field(
        default_factory=lambda: ["/tmp", "/var/tmp", "/dev/shm", "/home", "/root", "/opt", "/srv"]
    )
    persistence: list[str] = field(
        default_factory=lambda: [
            "/etc/crontab",
            "/etc/cron.d",
            "/etc/cron.hourly",
            "/etc/cron.daily",
            "/etc/cron.weekly",
            "/etc/cron.monthly",
            "/var/spool/cron",
            "/etc/systemd/system",
            "/usr/lib/systemd/system",
            "/lib/systemd/system",
            "/run/systemd/system",
            "/etc/init.d",
            "/etc/rc.local",
            "/etc/profile",
            "/etc/profile.d",
            "/etc/bash.bashrc",
            "/etc/ld.so.preload",
            "/etc/ld.so.conf.d",
        ]
    )
    # files inside each home (and /root) watched for additions
    home_files: list[str] = field(
        default_factory=lambda: [
            ".bashrc",
            ".bash_profile",
            ".profile",
            ".zshrc",
            ".bash_logout",
            ".ssh/authorized_keys",
            ".ssh/authorized_keys2",
            ".config/systemd/user",
            ".config/autostart",
        ]
    )
    # home directories (glob patterns) in which each of home_files is watched
    homes: list[str] = field(default_factory=lambda: ["/root", "/home/*"])
    max_depth: int = 4
    max_watches: int = 65536
    snapshot_budget: int = 32 * 1024 * 1024  # bytes of line hashes kept of persistence files
    # log files (glob patterns, ** for any depth) followed for appended lines
    logs: list[str] = field(default_factory=lambda: ["/var/log/**/*.log"])
    logs_interval: float = 5.0  # seconds between stats of the followed logs


@dataclass
class CanaryConfig:
    paths: list[str] = field(default_factory=list)


@dataclass
class RunbookJob:
    name: str = ""
    exe: str = ""  # glob on the executable's full path (required)
    user: str = ""  # the user it runs as (required)
    unit: str = ""  # systemd unit (from /proc/PID/cgroup) it must run in; empty: any
    cgroup: str = ""  # glob on its cgroup path; empty: any
    cmdline: str = ""  # regex the whole command line must match (anchored); narrows only
    cpu: bool = True
    gpu: bool = True
    logs: list[str] = field(default_factory=list)  # the job's log files (globs), followed


@dataclass
class RunbookConfig:
    jobs: list[RunbookJob] = field(default_factory=list)


@dataclass
class DaemonsConfig:
    min_age: float = 300.0
    allow: list[str] = field(default_factory=list)  # exe or name regexes


@dataclass
class LoadConfig:
    enabled: bool = True
    sample_interval: float = 10.0
    sustain: float = 120.0
    history: int = 360
    margin: float = 0.25
    mad_k: float = 6.0
    cpu_ceiling: float = 0.35  # fraction of one core per process tree
    host_cpu_ceiling: float = 0.90  # fraction of all cores
    gpu_ceiling: float = 30.0  # percent SM utilisation
    power_ceiling: float = 0.0  # watts; 0 disables
    min_history: int = 30
    grace: float = 30.0  # seconds below the threshold that do not end a sustained run


@dataclass
class GpuConfig:
    enabled: bool = True
    interval: float = 2.0
    timeout: float = 5.0
    backend: str = "nvml"  # or "fake" (tests), scripted by `script`
    script: str = ""  # JSON script of the fake backend


@dataclass
class TrafficConfig:
    enabled: bool = True
    snaplen: int = 2048  # bytes kept of each accepted packet
    flow_bytes: int = 4096  # first bytes of a flow reassembled at most (split ClientHello)
    map_size: int = 65536  # address -> name entries kept from DNS answers, all namespaces
    max_namespaces: int = 256  # namespaces watched at once (each costs two fds)


@dataclass
class NetworkConfig:
    # destinations allowed out ("CIDR", "CIDR:port", "[v6-CIDR]:port"); set (even to []),
    # every other new outbound connection is network.egress_unknown; unset: off
    egress_allow: list[str] | None = None


@dataclass
class EngineConfig:
    dedup_window: float = 3600.0
    incident_window: float = 60.0


@dataclass
class SinkConfig:
    type: str = ""
    name: str = ""
    url: str = ""
    min_severity: str = "medium"
    secret: str = ""
    rate: float = 0.0  # messages per second; 0 uses the type's default
    timeout: float = 10.0
    max_retries: int = 8
    retry_initial: float = 1.0  # seconds; full-jitter backoff doubles it per failure
    retry_max_delay: float = 300.0
    resend_interval: float = 60.0
    resolve_after: float = 300.0
    spool_max_count: int = 10000
    spool_max_bytes: int = 64 * 1024 * 1024
    spool_max_age: float = 7 * 24 * 3600.0
    rollup_after: int = 5  # chat sinks: messages per rule and severity (below high) ...
    rollup_window: float = 300.0  # ... per window; the rest become one rollup message
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class MetricsConfig:
    listen: str = "127.0.0.1:9812"
    enabled: bool = True
    auth: str = "token"  # bearer token from token_file; "none" only by explicit choice
    token_file: str = ""  # default: <state_dir>/metrics.token (generated, 0600)
    unix_socket: str = ""  # listen here (mode 0600) instead of TCP
    max_connections: int = 64
    idle_timeout: float = 10.0  # seconds for a request to arrive in full


RESPONSE_ACTIONS = ("freeze", "forensics", "egress", "kill", "quarantine", "revoke")


@dataclass
class ResponseRule:
    rule: str = ""  # glob on the rule id; empty: any
    category: str = ""  # empty: any
    min_severity: str = "high"
    actions: list[str] = field(default_factory=lambda: list(RESPONSE_ACTIONS))


@dataclass
class ResponseConfig:
    mode: str = "off"  # off, dry-run or enforce
    rules: list[ResponseRule] = field(default_factory=list)
    scope: str = ""  # "user:NAME", "cgroup:/PATH" or "unit:NAME"; empty: none
    admin_users: list[str] = field(default_factory=list)
    forensics_budget: int = 64 * 1024 * 1024  # bytes per incident
    forensics_total: int = 1024 * 1024 * 1024  # bytes for all incidents, oldest dropped
    exe_copy_max: int = 16 * 1024 * 1024
    quarantine_max: int = 256 * 1024 * 1024  # larger files are left in place
    quarantine_total: int = 4 * 1024 * 1024 * 1024  # bytes the vault may hold in all
    on_contain: list[str] = field(default_factory=list)
    on_contain_timeout: float = 30.0
    nft: str = "/usr/sbin/nft"
    block_timeout: int = 3600  # seconds a blocked destination stays blocked


@dataclass
class RulesConfig:
    dirs: list[str] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)
    exceptions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class EvidenceConfig:
    checkpoint_every: int = 1000  # records between signed log checkpoints; 0: by time only
    checkpoint_seconds: float = 300.0  # at most this long between checkpoints; 0: by count only
    recorder: bool = True  # the flight recorder (state_dir/recorder.db)
    recorder_max_bytes: int = 1024**3
    recorder_max_days: float = 7.0
    run_dir: str = ""  # default: <state_dir>/runs


@dataclass
class DetectorsConfig:
    disable: list[str] = field(default_factory=list)  # detector names, e.g. ["network"]


@dataclass
class Config:
    agent: AgentConfig = field(default_factory=AgentConfig)
    log: LogConfig = field(default_factory=LogConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    canaries: CanaryConfig = field(default_factory=CanaryConfig)
    runbook: RunbookConfig = field(default_factory=RunbookConfig)
    daemons: DaemonsConfig = field(default_factory=DaemonsConfig)
    load: LoadConfig = field(default_factory=LoadConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    sinks: list[SinkConfig] = field(default_factory=list)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    response: ResponseConfig = field(default_factory=ResponseConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    detectors: DetectorsConfig = field(default_factory=DetectorsConfig)
    source: str = "<defaults>"

    @property
    def alert_log(self) -> str:
        return self.log.path or os.path.join(self.agent.state_dir, "alerts.jsonl")

    @property
    def rule_dirs(self) -> list[str]:
        """User rule directories and files: [scan] rules, then [rules] dirs."""
        return [*self.scan.rules, *self.rules.dirs]


_SEVERITY_KEYS = {"min_severity", "fail_severity"}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    if tp is Any:
        return value  # checked by its owner (rules.exceptions: the rule catalogue)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{source}: {where}: expected a table, got {type(value).__name__}", where
            )
        return _build(tp, value, where, source)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(
                f"{source}: {where}: expected an array, got {type(value).__name__}", where
            )
        return [_coerce(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(
                f"{source}: {where}: expected a table, got {type(value).__name__}", where
            )
        return {str(k): _coerce(v, vt, f"{where}.{k}", source) for k, v in value.items()}
    optional = typing.get_args(tp) if isinstance(tp, types.UnionType) else ()
    if len(optional) == 2 and type(None) in optional:  # TOML has no null: the value is set
        return _coerce(value, next(t for t in optional if t is not type(None)), where, source)
    if isinstance(tp, types.UnionType):
        raise ConfigError(f"{source}: {where}: unsupported type", where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: {where}: expected true or false, got {value!r}", where)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{source}: {where}: expected an integer, got {value!r}", where)
    if not isinstance(value, tp):
        raise ConfigError(
            f"{source}: {where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}",
            where,
        )
    return value


def _build(cls: Any, data: dict[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{source}: unknown key '{where}' (known here: {known})", where)
        kwargs[key] = _coerce(value, hints[key], where, source)
        if key in _SEVERITY_KEYS:
            try:
                Severity.parse(kwargs[key])
            except ValueError as exc:
                raise ConfigError(f"{source}: {where}: {exc}", where) from None
    return cls(**kwargs)


def _validate(cfg: Config, source: str) -> None:
    for i, job in enumerate(cfg.runbook.jobs):
        _validate_job(i, job, source)
    for i, pattern in enumerate(cfg.daemons.allow):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"{source}: daemons.allow[{i}]: bad regex: {exc}", "daemons.allow"
            ) from None
    _validate_response(cfg.response, source)
    try:
        parse_listen(cfg.metrics.listen)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}", exc.where) from None
    for key, low, high in (
        ("snaplen", 64, 65535),
        ("flow_bytes", 64, 1 << 20),
        ("map_size", 1, 1 << 24),
        ("max_namespaces", 1, 1 << 16),
    ):
        if not low <= getattr(cfg.traffic, key) <= high:
            where = f"traffic.{key}"
            raise ConfigError(f"{source}: {where}: must be between {low} and {high}", where)
    if cfg.metrics.auth not in ("token", "none"):
        raise ConfigError(f"{source}: metrics.auth: 'token' or 'none'", "metrics.auth")
    if cfg.metrics.max_connections < 1 or cfg.metrics.idle_timeout <= 0:
        raise ConfigError(
            f"{source}: metrics.max_connections and idle_timeout must be > 0",
            "metrics.max_connections",
        )
    if cfg.agent.max_open_files < 64:
        raise ConfigError(f"{source}: agent.max_open_files: must be >= 64", "agent.max_open_files")
    if cfg.agent.interval <= 0:
        raise ConfigError(f"{source}: agent.interval: must be > 0", "agent.interval")
    if cfg.watch.logs_interval <= 0:
        raise ConfigError(f"{source}: watch.logs_interval: must be > 0", "watch.logs_interval")
    _validate_evidence(cfg, source)
    _validate_network(cfg.network, source)
    seen: set[str] = set()
    for i, sink in enumerate(cfg.sinks):
        if not sink.type:
            raise ConfigError(f"{source}: sinks[{i}].type: required", "sinks")
        sink.name = sink.name or f"{sink.type}-{i}"
        if sink.name in seen:
            raise ConfigError(
                f"{source}: sinks[{i}].name: duplicate name {sink.name!r}", f"sinks[{i}].name"
            )
        seen.add(sink.name)


def _validate_job(i: int, job: RunbookJob, source: str) -> None:
    """A job names its executable and user: argv alone is what `exec -a` forges."""
    missing = [k for k in ("name", "exe", "user") if not getattr(job, k)]
    if missing:
        where = f"runbook.jobs[{i}].cmdline" if job.cmdline else f"runbook.jobs[{i}]"
        need = ", ".join(f"'{k}'" for k in missing)
        raise ConfigError(
            f"{source}: runbook.jobs[{i}]: {need} required (a job names its exe and user; "
            "cmdline only narrows it, since argv can be forged)",
            where,
        )
    if job.cmdline:
        try:
            re.compile(job.cmdline)
        except re.error as exc:
            where = f"runbook.jobs[{i}].cmdline"
            raise ConfigError(f"{source}: {where}: bad regex: {exc}", where) from None


def _validate_response(r: ResponseConfig, source: str) -> None:
    def fail(where: str, msg: str) -> None:
        raise ConfigError(f"{source}: response.{where}: {msg}", f"response.{where}")

    if r.mode not in ("off", "dry-run", "enforce"):
        fail("mode", f"expected off, dry-run or enforce, got {r.mode!r}")
    kind, _, value = r.scope.partition(":")
    if r.scope and (kind not in ("user", "cgroup", "unit") or not value):
        fail("scope", f"expected user:NAME, cgroup:/PATH or unit:NAME, got {r.scope!r}")
    categories = {str(c) for c in Category}
    for i, rule in enumerate(r.rules):
        if rule.category and rule.category not in categories:
            fail(f"rules[{i}].category", f"unknown category {rule.category!r}")
        unknown = [a for a in rule.actions if a not in RESPONSE_ACTIONS]
        if unknown:
            fail(f"rules[{i}].actions", f"unknown {unknown} (known: {', '.join(RESPONSE_ACTIONS)})")
    for key in ("on_contain_timeout", "block_timeout", "quarantine_max", "quarantine_total"):
        if getattr(r, key) <= 0:
            fail(key, "must be > 0")
    for key in ("forensics_budget", "forensics_total", "exe_copy_max"):
        if getattr(r, key) < 0:
            fail(key, "must be >= 0")


def _validate_evidence(cfg: Config, source: str) -> None:
    ev = cfg.evidence
    for key in (
        "checkpoint_every",
        "checkpoint_seconds",
        "recorder_max_bytes",
        "recorder_max_days",
    ):
        if getattr(ev, key) < 0:
            raise ConfigError(f"{source}: evidence.{key}: must be >= 0", f"evidence.{key}")
    if cfg.detectors.disable:
        from sentinel import detectors

        known = detectors.load_all()
        for name in cfg.detectors.disable:
            if name not in known:
                raise ConfigError(
                    f"{source}: detectors.disable: unknown detector {name!r} "
                    f"(known: {', '.join(sorted(known))})",
                    "detectors.disable",
                )


def _validate_network(net: NetworkConfig, source: str) -> None:
    from sentinel.rules import egress

    for i, entry in enumerate(net.egress_allow or ()):
        try:
            egress.parse_entry(entry)
        except ValueError as exc:
            where = f"network.egress_allow[{i}]"
            raise ConfigError(f"{source}: {where}: {exc}", where) from None


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces) into (host, port)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]*):(\d+)", value.strip())
    if not m:
        raise ConfigError(
            f"metrics.listen: expected host:port or [ipv6]:port, got {value!r}", "metrics.listen"
        )
    host = m.group(1) if m.group(1) is not None else m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ConfigError(f"metrics.listen: port {port} out of range", "metrics.listen")
    return host or "0.0.0.0", port


def parse(text: str, source: str = "<string>") -> Config:
    """Parse TOML text into a Config; errors name the source and the key or line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        cfg = _build(Config, data, "", source)
        cfg.source = source
        _validate(cfg, source)
    except ConfigError as exc:
        line = _line_of(text, exc.where) if exc.where else 0
        if line:
            prefix = f"{source}: "
            msg = str(exc).removeprefix(prefix)
            raise ConfigError(f"{source}:{line}: {msg}", exc.where) from None
        raise
    return cfg


def _line_of(text: str, where: str) -> int:
    """Best-effort line number of a dotted key such as 'sinks[1].url' in TOML text."""
    parts = re.sub(r"\[\d+\]", "", where).split(".")
    table, key = ".".join(parts[:-1]), parts[-1]
    index = re.match(r"^([A-Za-z0-9_.\-]+)\[(\d+)\]", where)  # an [[array]] entry: count
    current = ""
    header_line = 0
    seen = -1
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = re.match(r"^\[\[?\s*([A-Za-z0-9_.\-\s\"]+?)\s*\]\]?", line)
        if m:
            current = m.group(1).replace(" ", "").replace('"', "")
            if index and current == index.group(1) and line.startswith("[["):
                seen += 1
                if seen != int(index.group(2)):
                    current = ""  # another entry of the array: not the one named
                elif where == index.group(0):
                    return n
                continue
            if current == where.split("[")[0] or current == ".".join(parts):
                header_line = header_line or n
            continue
        km = re.match(r"^\"?([A-Za-z0-9_\-]+)\"?\s*=", line)
        if km and km.group(1) == key and current == table:
            return n
        if km and not table and not current and km.group(1) == key:
            return n
    return header_line


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the given file, the default file if it exists, or built-in defaults."""
    if path is None:
        env = os.environ.get("SENTINEL_CONFIG")
        path = Path(env) if env else DEFAULT_PATH
        if not path.exists():
            cfg = Config()
            _validate(cfg, cfg.source)
            return cfg
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text: {exc}") from None
    return parse(text, str(p))
