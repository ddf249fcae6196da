"""The agent's own Prometheus metrics, one registry for the whole process."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from sentinel.core.events import GpuSample

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
cpu_clamped = Counter(
    "sentinel_cpu_samples_clamped_total",
    "Per-process CPU samples above cores x elapsed time (a misread), cut to that bound",
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

# The agent's own CPU seconds, resident memory and open fds, read from /proc/self on scrape.
ProcessCollector(namespace="sentinel", registry=REGISTRY)

deliveries = Counter(
    "sentinel_sink_deliveries_total",
    "Alerts a sink delivered (the endpoint answered 2xx)",
    ["sink"],
    registry=REGISTRY,
)
delivery_failures = Counter(
    "sentinel_sink_failures_total",
    "Failed delivery attempts by reason (http_NNN, transport, rejected_NNN)",
    ["sink", "reason"],
    registry=REGISTRY,
)
delivery_latency = Histogram(
    "sentinel_sink_delivery_seconds",
    "Time from submit to delivery, retries included",
    ["sink"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600, 3600),
)
spool_depth = Gauge(
    "sentinel_sink_spool_depth",
    "Undelivered alerts waiting in the sink's disk spool",
    ["sink"],
    registry=REGISTRY,
)
spool_dropped = Counter(
    "sentinel_sink_spool_dropped_total",
    "Spooled alerts dropped, oldest first, by the cap that dropped them (count, bytes, age)",
    ["sink", "cap"],
    registry=REGISTRY,
)
gpu_util = Gauge(
    "sentinel_gpu_utilization_percent", "GPU SM utilisation", ["uuid"], registry=REGISTRY
)
gpu_mem_used = Gauge(
    "sentinel_gpu_memory_used_bytes", "GPU memory in use", ["uuid"], registry=REGISTRY
)
gpu_power = Gauge("sentinel_gpu_power_watts", "GPU power draw", ["uuid"], registry=REGISTRY)
gpu_temp = Gauge("sentinel_gpu_temperature_celsius", "GPU temperature", ["uuid"], registry=REGISTRY)
_GPU_GAUGES = (
    (gpu_util, "util_sm"),
    (gpu_mem_used, "mem_used"),
    (gpu_power, "power_w"),
    (gpu_temp, "temp_c"),
)


def observe_gpu(sample: GpuSample) -> None:
    """Set the GPU gauges from one NVML sample; a lost device or unsupported value has none."""
    for dev in sample.devices:
        for gauge, attr in _GPU_GAUGES:
            value = getattr(dev, attr)
            if dev.lost or value is None:
                with contextlib.suppress(KeyError):
                    gauge.remove(dev.uuid)
            else:
                gauge.labels(dev.uuid).set(value)


traffic_packets = Counter(
    "sentinel_traffic_packets_total",
    "Packets the traffic filter passed, by what they were (dns, payload, malformed, other)",
    ["kind"],
    registry=REGISTRY,
)
loop_slowest_step = Gauge(
    "sentinel_loop_slowest_step_seconds",
    "Longest the event loop was held by one step (its work between two waits) since start",
    registry=REGISTRY,
)
idle_samples_skipped = Counter(
    "sentinel_idle_samples_skipped_total",
    "CPU samples that did not read idle processes: the busy ones explained the host's CPU",
    registry=REGISTRY,
)
loop_slow_steps = Counter(
    "sentinel_loop_slow_steps_total", "Event-loop steps over 50 ms", registry=REGISTRY
)
