"""The agent's own Prometheus metrics, one registry for the whole process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

findings = Counter(
    "sentinel_findings_total",
    "Findings published after deduplication",
    ["category", "severity"],
    registry=REGISTRY,
)
suppressed = Counter(
    "sentinel_findings_suppressed_total",
    "Findings folded into an earlier alert (dedup or incident)",
    ["reason"],
    registry=REGISTRY,
)
events = Counter(
    "sentinel_events_total", "Events emitted by collectors", ["type"], registry=REGISTRY
)
events_dropped = Counter(
    "sentinel_events_dropped_total",
    "Events dropped because the queue was full or a source overflowed",
    ["source"],
    registry=REGISTRY,
)
errors = Counter(
    "sentinel_errors_total",
    "Errors handled without stopping the agent",
    ["component"],
    registry=REGISTRY,
)
collector_up = Gauge(
    "sentinel_collector_up",
    "1 while the collector runs at full capability, 0 when degraded or off",
    ["collector"],
    registry=REGISTRY,
)
collector_duration = Histogram(
    "sentinel_collector_duration_seconds",
    "Time spent in one collector pass",
    ["collector"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)
collector_success = Counter(
    "sentinel_collector_runs_total",
    "Collector passes by outcome",
    ["collector", "outcome"],
    registry=REGISTRY,
)
detector_duration = Histogram(
    "sentinel_detector_duration_seconds",
    "Time spent handling one event in a detector",
    ["detector"],
    registry=REGISTRY,
    buckets=(0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 1),
)
detector_errors = Counter(
    "sentinel_detector_errors_total",
    "Events a detector failed on (logged and skipped)",
    ["detector"],
    registry=REGISTRY,
)
