"""Reliable HTTP delivery shared by the webhook, chat and Alertmanager sinks.

Each sink gets its own queue, worker task, token-bucket rate limit, full-jitter
exponential backoff and disk spool. The queue is ordered by severity (a critical goes out
before every queued high, a high before every medium, ...), and when a spool cap is hit
the lowest severity goes first: a high or critical is never dropped while a lower one
is spooled. Chat sinks roll a flooding rule up: after `rollup_after` messages of one
rule and severity below high within `rollup_window` seconds, the rest of that window
becomes one "+N medium findings of rule X in 5 min" message.

`submit` writes the alert to the spool (one file, tmp + fsync + rename, mode 0600)
and returns; the worker delivers it and deletes the file. Whatever is still in the spool
at the next start is replayed. URLs, secrets and header values never reach the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import heapq
import itertools
import json
import logging
import os
import random
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sentinel import __version__
from sentinel.core.config import ConfigError, SinkConfig
from sentinel.core.context import Context
from sentinel.core.model import Finding, Severity
from sentinel.ops import metrics
from sentinel.sinks import Sink
from sentinel.sinks._http.acks import Acks
from sentinel.sinks._http.acks import path_for as acks_path

# aiohttp is imported where it is used: it is ~23 MB of RSS, and an agent without an HTTP
# sink (every sink module is imported to register its class) never needs it
if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

log = logging.getLogger("sentinel.sinks")

RETRY_AFTER_CAP = 3600.0  # longest server-requested pause we honour, seconds
CLOSE_FLUSH = 2.0  # seconds `close` waits for a healthy endpoint to take what is queued
BODY_EXCERPT = 300
_seq = itertools.count()


@dataclass
class Outbound:
    """One message for one sink: the alert record plus what the sink needs to render it."""

    kind: str  # firing | resolved
    record: dict[str, Any]
    subject: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    key: str = ""
    attempts: int = 0

    def __post_init__(self) -> None:
        if not self.key:
            fid = re.sub(r"[^A-Za-z0-9_-]", "_", str(self.record.get("id", "")))[:64]
            self.key = f"{time.time_ns():020d}-{next(_seq):06d}-{fid}-{self.kind}"

    @property
    def severity(self) -> Severity:
        try:
            return Severity.parse(self.record.get("severity", "info"))
        except ValueError:
            return Severity.INFO

    def dump(self) -> bytes:
        doc = {
            "v": 1,
            "kind": self.kind,
            "record": self.record,
            "subject": self.subject,
            "extra": self.extra,
            "created": self.created,
        }
        # ASCII escapes keep undecodable file names (lone surrogates) intact and loadable
        return json.dumps(doc, ensure_ascii=True, default=str).encode("ascii")

    @classmethod
    def load(cls, key: str, data: bytes) -> Outbound:
        doc = json.loads(data)
        if not isinstance(doc, dict) or not isinstance(doc.get("record"), dict):
            raise ValueError("not a spooled alert")
        return cls(
            kind=str(doc["kind"]),
            record=doc["record"],
            subject=str(doc.get("subject", "")),
            extra=dict(doc.get("extra") or {}),
            created=float(doc["created"]),
            key=key,
        )


def to_json(doc: Any) -> bytes:
    """Compact UTF-8 JSON for a request body; undecodable characters become U+FFFD."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode("utf-8", "replace")


def write_atomic(directory: Path, name: str, data: bytes) -> None:
    """Write `directory/name` so that it is either absent or complete: tmp, fsync, rename."""
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, directory / name)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass
class Flood:
    """One rule and severity in one rollup window of a chat sink."""

    start: float
    sent: int = 0
    held: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


def rollup_record(rule: str, sev: str, flood: Flood, window: float) -> dict[str, Any]:
    """The one message standing for `flood.held` findings that were not sent one by one."""
    minutes = max(1, round(window / 60))
    last = flood.last
    return {
        **last,
        "id": f"rollup-{last.get('id', '')}",
        "summary": f"+{flood.held} {sev} findings of rule {rule} in {minutes} min "
        f"(last: {last.get('summary', '')})",
        "evidence": {"rollup": flood.held, "window_s": window, "last_summary": last.get("summary")},
    }


class Pending:
    """Messages waiting for the worker, most severe first, in order within a severity;
    `push(front=True)` puts a message ahead of the others of its severity (a retry)."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, Outbound]] = []
        self.order = itertools.count(1)

    def push(self, msg: Outbound, front: bool = False) -> None:
        n = next(self.order)
        heapq.heappush(self.heap, (-int(msg.severity), -n if front else n, msg))

    def pop(self) -> Outbound:
        return heapq.heappop(self.heap)[2]

    def __len__(self) -> int:
        return len(self.heap)

    def __iter__(self) -> Iterator[Outbound]:
        return (entry[2] for entry in self.heap)


class Spool:
    """Undelivered messages of one sink, one file each, capped by count, bytes and age.

    A cap of 0 turns that cap off. When the count or bytes cap is exceeded the oldest
    message of the lowest severity spooled is dropped (a high or critical only when
    nothing lower is left); past the age cap the oldest goes. Drops are counted in
    `sentinel_sink_spool_dropped_total{cap=...}`.
    """

    def __init__(self, directory: Path, sink: str, cfg: SinkConfig) -> None:
        self.dir = directory
        self.sink = sink
        self.max_count = cfg.spool_max_count
        self.max_bytes = cfg.spool_max_bytes
        self.max_age = cfg.spool_max_age
        self.entries: dict[str, tuple[int, float, bool]] = {}  # key -> size, created, on disk
        self.by_severity: dict[int, dict[str, None]] = {}  # severity -> keys, oldest first
        self.bytes = 0
        self._warned = False

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def _ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)

    def open(self) -> list[Outbound]:
        """Read what an earlier run left, oldest first; unreadable files are set aside."""
        try:
            self._ensure_dir()
            names = sorted(os.listdir(self.dir))
        except OSError as exc:
            log.error("sink %s: spool directory unusable: %s", self.sink, exc.strerror)
            metrics.errors.labels("spool").inc()
            return []
        found: list[Outbound] = []
        for name in names:
            path = self.dir / name
            if name.endswith(".tmp"):  # a write cut short by a crash: never renamed, never sent
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            key = name.removesuffix(".json")
            if not name.endswith(".json") or key in self.entries:
                continue
            try:
                data = path.read_bytes()
                msg = Outbound.load(key, data)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("sink %s: unreadable spool file %s set aside: %s", self.sink, name, exc)
                metrics.errors.labels("spool").inc()
                with contextlib.suppress(OSError):
                    path.rename(path.with_suffix(".bad"))
                continue
            self._add(msg.key, len(data), msg.created, True, msg.severity)
            found.append(msg)
        self.enforce(time.time())
        self._gauge()
        return [m for m in found if m.key in self.entries]

    def put(self, msg: Outbound) -> None:
        """Persist `msg`; if the disk refuses, keep it in memory only and say so once."""
        data = msg.dump()
        on_disk = False
        try:
            self._ensure_dir()
            write_atomic(self.dir, msg.key + ".json", data)
            on_disk = True
            self._warned = False
        except OSError as exc:
            metrics.errors.labels("spool").inc()
            if not self._warned:
                log.error(
                    "sink %s: cannot spool to disk (%s); keeping alerts in memory only",
                    self.sink,
                    exc.strerror,
                )
                self._warned = True
        self._add(msg.key, len(data), msg.created, on_disk, msg.severity)
        self.enforce(time.time())
        self._gauge()

    def _add(self, key: str, size: int, created: float, on_disk: bool, sev: Severity) -> None:
        self.entries[key] = (size, created, on_disk)
        self.by_severity.setdefault(int(sev), {})[key] = None
        self.bytes += size

    def _forget(self, key: str) -> tuple[int, float, bool] | None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            for keys in self.by_severity.values():
                if keys.pop(key, 0) is None:
                    break
        return entry

    def remove(self, key: str) -> None:
        entry = self._forget(key)
        if entry is None:
            return
        self.bytes -= entry[0]
        if entry[2]:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / f"{key}.json").unlink()
        self._gauge()

    def set_aside(self, key: str) -> None:
        """Keep a message that cannot be rendered as `.bad` for a human; stop sending it."""
        entry = self._forget(key)
        if entry is None:
            return
        self.bytes -= entry[0]
        if entry[2]:
            path = self.dir / f"{key}.json"
            with contextlib.suppress(OSError):
                path.rename(path.with_suffix(".bad"))
        self._gauge()

    def enforce(self, now: float) -> None:
        """Drop messages while a cap is exceeded: the lowest severity first for count and
        bytes, the oldest for age."""
        while self.entries:
            oldest, (_, created, _) = next(iter(self.entries.items()))
            if self.max_count and len(self.entries) > self.max_count:
                cap = "count"
            elif self.max_bytes and self.bytes > self.max_bytes:
                cap = "bytes"
            elif self.max_age and now - created > self.max_age:
                cap = "age"
            else:
                return
            victim = oldest if cap == "age" else self.lowest()
            metrics.spool_dropped.labels(self.sink, cap).inc()
            log.warning(
                "sink %s: spool %s cap reached; dropped the oldest %s alert",
                self.sink,
                cap,
                "" if cap == "age" else "lowest-severity",
            )
            self.remove(victim)

    def lowest(self) -> str:
        """The oldest key of the lowest severity spooled."""
        for sev in sorted(self.by_severity):
            keys = self.by_severity[sev]
            if keys:
                return next(iter(keys))
        raise LookupError("spool is empty")

    def _gauge(self) -> None:
        metrics.spool_depth.labels(self.sink).set(len(self.entries))


class RateLimiter:
    """Token bucket: `rate` messages per second in bursts of up to `burst`; 0 is unlimited."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.last = time.monotonic()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate) - 1
        self.last = now
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


@dataclass
class Answer:
    """What one delivery attempt got back."""

    ok: bool
    retry: bool
    detail: str  # e.g. "HTTP 429 Too Many Requests (retry after 2s)"; never holds the URL
    status: int | None = None
    retry_after: float | None = None
    body: str = ""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), RETRY_AFTER_CAP)


def transport_error(exc: BaseException) -> str:
    """A short description of a connection failure that names no URL or host."""
    import aiohttp

    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time"
    os_error = getattr(exc, "os_error", exc)
    if isinstance(os_error, OSError) and os_error.errno:
        # os.strerror, not the exception's text: asyncio puts the address in that
        return f"{type(exc).__name__}: {os.strerror(os_error.errno)}"
    return type(exc).__name__


class HttpSink(Sink):
    """Base of the HTTP sinks: subclasses say how a message becomes a request body."""

    default_rate: ClassVar[float] = 0.0  # messages per second when `rate` is not set
    default_burst: ClassVar[int] = 1
    rollup: ClassVar[bool] = False  # chat: a flooding rule becomes one message per window

    def __init__(self, cfg: SinkConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        where = f"{ctx.config.source}: sinks '{self.name}'"
        if not cfg.url:
            raise ConfigError(f"{where}: 'url' is required for type {self.type!r}")
        if not re.match(r"^https?://[^/\s]+", cfg.url):
            raise ConfigError(f"{where}: 'url' must start with http:// or https://")
        for key in ("timeout", "retry_initial", "retry_max_delay"):
            if getattr(cfg, key) <= 0:
                raise ConfigError(f"{where}: '{key}' must be > 0")
        for key in ("rate", "max_retries"):
            if getattr(cfg, key) < 0:
                raise ConfigError(f"{where}: '{key}' must be >= 0")
        rate = cfg.rate or self.default_rate
        burst = max(1, round(cfg.rate)) if cfg.rate else self.default_burst
        self.limiter = RateLimiter(rate, burst)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)
        self.spool = Spool(Path(ctx.config.agent.state_dir) / "spool" / safe, self.name, cfg)
        self.pending = Pending()
        self.floods: dict[tuple[str, str], Flood] = {}
        self.acks = Acks(acks_path(ctx.config.agent.state_dir, self.name))
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self.worker: asyncio.Task[None] | None = None
        self.streak = 0  # consecutive failed attempts against this endpoint
        self.proxy: URL | None = None
        self.proxy_auth: aiohttp.BasicAuth | None = None
        self._secrets = self._secret_strings()

    # what subclasses provide
    def body(self, msg: Outbound) -> bytes:
        """The request body for `msg`, rendered for each attempt."""
        raise NotImplementedError

    def extra_headers(self, msg: Outbound, body: bytes) -> dict[str, str]:
        return {}

    def endpoint(self) -> str:
        return self.cfg.url

    def retry_after(self, status: int, headers: Mapping[str, str], body: str) -> float | None:
        return parse_retry_after(headers.get("Retry-After"))

    # engine side: never blocks on the network
    def submit(self, finding: Finding) -> None:
        record = self.record(finding)
        if self.rollup and finding.severity < Severity.HIGH and self._held(record, time.time()):
            return
        self.enqueue(Outbound("firing", record, finding.subject))

    def _held(self, record: dict[str, Any], now: float) -> bool:
        """Count the record in its rule's window; True when it is rolled up, not sent."""
        key = (str(record.get("rule", "")), str(record.get("severity", "")))
        flood = self.floods.get(key)
        if flood is None or now - flood.start >= self.cfg.rollup_window:
            if flood is not None:
                self._roll(key)
            flood = self.floods[key] = Flood(start=now)
        if flood.sent < self.cfg.rollup_after:
            flood.sent += 1
            return False
        flood.held += 1
        flood.last = record
        if flood.timer is None:
            with contextlib.suppress(RuntimeError):
                delay = flood.start + self.cfg.rollup_window - now
                flood.timer = asyncio.get_running_loop().call_later(delay, self._roll, key)
        return True

    def _roll(self, key: tuple[str, str]) -> None:
        """End a rollup window: one message for what it held."""
        flood = self.floods.pop(key, None)
        if flood is None:
            return
        if flood.timer is not None:
            flood.timer.cancel()
        if flood.held:
            record = rollup_record(*key, flood, self.cfg.rollup_window)
            self.enqueue(Outbound("firing", record, f"rollup:{key[0]}"))

    def enqueue(self, msg: Outbound) -> None:
        self.spool.put(msg)
        self.pending.push(msg)
        self.idle.clear()
        self.wake.set()

    # lifecycle
    def _session(self) -> aiohttp.ClientSession:
        import aiohttp
        from aiohttp.helpers import get_env_proxy_for_url
        from yarl import URL

        # HTTPS_PROXY / NO_PROXY are read once here, not per request (as trust_env would)
        with contextlib.suppress(LookupError):
            self.proxy, self.proxy_auth = get_env_proxy_for_url(URL(self.endpoint()))
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeout),
            headers={"User-Agent": f"sentinel/{__version__}"},
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def start(self) -> None:
        self.session = self._session()
        replay = self.spool.open()
        if replay:
            log.info("sink %s: %d undelivered alerts from the spool", self.name, len(replay))
            for msg in replay:
                self.pending.push(msg)
            self.wake.set()
        self.worker = asyncio.create_task(self._run(), name=f"sink:{self.name}")

    async def close(self) -> None:
        """Give a healthy endpoint a moment to take what is queued; the rest stays spooled."""
        for key in list(self.floods):
            self._roll(key)  # held findings are spooled as their rollup, not lost
        if self.worker is not None:
            if self.pending and self.streak == 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_FLUSH):
                        await self.idle.wait()
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)
            self.worker = None
        if self.session is not None:
            await self.session.close()
            self.session = None

    # delivery
    async def _next(self) -> Outbound:
        while True:
            self.spool.enforce(time.time())
            while self.pending:
                msg = self.pending.pop()
                if msg.key in self.spool:  # else a cap dropped it meanwhile
                    return msg
            self.idle.set()
            self.wake.clear()
            await self.wake.wait()

    async def _run(self) -> None:
        while True:
            msg = await self._next()
            try:
                await self._deliver(msg)
            except Exception as exc:  # a bug here must not end delivery for this sink
                log.error(
                    "sink %s: delivery of alert %s broke (%s: %s); retrying later",
                    self.name,
                    msg.key,
                    type(exc).__name__,
                    self.redact(str(exc)),
                )
                metrics.errors.labels(f"sink.{self.type}").inc()
                self.pending.push(msg)
                await asyncio.sleep(self.cfg.retry_max_delay)

    async def _deliver(self, msg: Outbound) -> None:
        try:
            body = self.body(msg)
        except Exception:
            log.exception("sink %s: cannot render alert %s; set aside", self.name, msg.key)
            metrics.errors.labels(f"sink.{self.type}").inc()
            self.spool.set_aside(msg.key)
            return
        await self.limiter.acquire()
        answer = await self.attempt(msg, body)
        if self._settle(msg, answer):
            await asyncio.sleep(self._delay(answer))

    async def attempt(self, msg: Outbound, body: bytes) -> Answer:
        """One POST; any outcome becomes an Answer, never an exception."""
        import aiohttp

        assert self.session is not None
        headers = {
            "Content-Type": "application/json",
            **self.cfg.headers,
            **self.extra_headers(msg, body),
        }
        try:
            async with self.session.post(
                self.endpoint(),
                data=body,
                headers=headers,
                allow_redirects=False,
                proxy=self.proxy,
                proxy_auth=self.proxy_auth,
            ) as resp:
                raw = await resp.content.read(4096)
                text = raw.decode("utf-8", "replace")
                return self._answer(resp.status, resp.reason or "", resp.headers, text)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Answer(False, True, self.redact(transport_error(exc)))
        except Exception as exc:  # e.g. ValueError for credentials both in URL and header
            metrics.errors.labels(f"sink.{self.type}").inc()
            return Answer(False, True, f"request not sent: {type(exc).__name__}")

    def _answer(self, status: int, reason: str, headers: Mapping[str, str], text: str) -> Answer:
        ok = 200 <= status < 300
        retry = status in (408, 429) or 500 <= status <= 599
        after = self.retry_after(status, headers, text) if retry else None
        detail = f"HTTP {status} {reason}".strip()
        if after is not None:
            detail += f" (retry after {after:g}s)"
        excerpt = self.redact(" ".join(text.split())[:BODY_EXCERPT])
        return Answer(ok, retry and not ok, detail, status, after, excerpt)

    def _settle(self, msg: Outbound, answer: Answer) -> bool:
        """Book the outcome; True when the worker should back off before the next try."""
        fid = msg.record.get("id", "")
        if answer.ok:
            self.spool.remove(msg.key)
            if msg.kind == "firing" and fid:
                self.acks.add(str(fid))
            metrics.deliveries.labels(self.name).inc()
            metrics.delivery_latency.labels(self.name).observe(max(0.0, time.time() - msg.created))
            if self.streak:
                log.info(
                    "sink %s: endpoint answers again; %d alerts queued",
                    self.name,
                    len(self.pending),
                )
            self.streak = 0
            return False
        if not answer.retry:
            reason = f"rejected_{answer.status}" if answer.status else "rejected"
            metrics.delivery_failures.labels(self.name, reason).inc()
            self.spool.remove(msg.key)
            log.error(
                "sink %s: endpoint refused alert %s (%s%s); not retried",
                self.name,
                fid,
                answer.detail,
                f": {answer.body}" if answer.body else "",
            )
            return False
        reason = f"http_{answer.status}" if answer.status else "transport"
        metrics.delivery_failures.labels(self.name, reason).inc()
        self.streak += 1
        msg.attempts += 1
        if self.streak == 1 or self.streak % 20 == 0:
            log.warning(
                "sink %s: delivery failed (%s), %d in a row; %d alerts spooled, retrying",
                self.name,
                answer.detail,
                self.streak,
                len(self.spool),
            )
        if msg.attempts >= self.cfg.max_retries and self.pending:
            msg.attempts = 0  # let newer alerts try; this one stays in the spool
            self.pending.push(msg)
        else:
            self.pending.push(msg, front=True)
        return True

    def _delay(self, answer: Answer) -> float:
        """Full-jitter exponential backoff, or what the server asked for."""
        if answer.retry_after is not None:
            return answer.retry_after
        ceiling = min(
            self.cfg.retry_max_delay, self.cfg.retry_initial * 2 ** min(self.streak - 1, 30)
        )
        return random.uniform(0, ceiling)

    # test-alert
    async def probe(self, finding: Finding) -> Answer:
        """Send one message for `finding` now, bypassing queue and spool."""
        msg = self.probe_message(finding)
        async with self._session() as session:
            self.session = session
            try:
                return await self.attempt(msg, self.body(msg))
            finally:
                self.session = None

    def probe_message(self, finding: Finding) -> Outbound:
        return Outbound("firing", self.record(finding), finding.subject)

    # secrets
    def _secret_strings(self) -> list[str]:
        url = self.cfg.url
        found = [url, self.cfg.secret, *self.cfg.headers.values()]
        m = re.match(r"^https?://([^/?#]*)([^?#]*)(\?[^#]*)?", url)
        if m:
            userinfo = m.group(1).rpartition("@")[0]
            found += [userinfo, m.group(2) if len(m.group(2)) > 1 else "", m.group(3) or ""]
            found += [seg for seg in m.group(2).split("/") if len(seg) >= 16]
        return sorted({s for s in found if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with the URL, its path and query, the secret and header values removed."""
        for s in self._secrets:
            text = text.replace(s, "<redacted>")
        return text
