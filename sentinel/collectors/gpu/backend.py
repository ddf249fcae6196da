"""GPU backends behind one small interface: NVML through pynvml, and a scripted fake for tests.

A backend answers one question per call so that the collector can treat a failure per
metric (NOT_SUPPORTED), per device (GPU_IS_LOST) or for the whole library (no driver).
Calls block; the collector runs them in a worker thread with a timeout.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pynvml

# GpuError kinds
NOT_SUPPORTED = "not_supported"
LOST = "lost"
NOT_FOUND = "not_found"
ERROR = "error"


class GpuUnavailable(Exception):
    """No NVML library, no driver, or no permission: the GPU collector stays off."""


class GpuError(Exception):
    """One call failed; `kind` is NOT_SUPPORTED, LOST, NOT_FOUND or ERROR."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ProcUtil:
    """One per-process utilisation sample; `timestamp` is NVML's (microseconds)."""

    pid: int
    timestamp: int
    sm_util: float


class Backend(Protocol):
    def init(self) -> None: ...

    def shutdown(self) -> None: ...

    def count(self) -> int:
        """Number of devices; called first in every pass."""
        ...

    def uuid(self, index: int) -> str: ...

    def name(self, index: int) -> str: ...

    def mig(self, index: int) -> bool: ...

    def utilization(self, index: int) -> tuple[float, float]:
        """(SM %, memory controller %)."""
        ...

    def memory(self, index: int) -> tuple[int, int]:
        """(used, total) bytes."""
        ...

    def power_w(self, index: int) -> float: ...

    def temperature_c(self, index: int) -> float: ...

    def sm_clock_mhz(self, index: int) -> float: ...

    def process_utilization(self, index: int, since: int) -> list[ProcUtil]:
        """Samples newer than `since` (NVML microsecond timestamp)."""
        ...

    def compute_processes(self, index: int) -> list[tuple[int, int | None]]:
        """(pid, GPU memory bytes or None) of each compute process."""
        ...


_KINDS = {
    pynvml.NVML_ERROR_NOT_SUPPORTED: NOT_SUPPORTED,
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND: NOT_SUPPORTED,
    pynvml.NVML_ERROR_GPU_IS_LOST: LOST,
    pynvml.NVML_ERROR_NOT_FOUND: NOT_FOUND,
}


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class NvmlBackend:
    """The real thing, through nvidia-ml-py; device handles are cached per index."""

    def __init__(self) -> None:
        self._handles: dict[int, Any] = {}
        self._count = -1
        self._procs_v3 = True

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except pynvml.NVMLError as exc:
            raise GpuError(_KINDS.get(exc.value, ERROR), str(exc)) from None

    def _handle(self, index: int) -> Any:
        handle = self._handles.get(index)
        if handle is None:
            handle = self._handles[index] = self._call(pynvml.nvmlDeviceGetHandleByIndex, index)
        return handle

    def init(self) -> None:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise GpuUnavailable(str(exc)) from None
        self._handles.clear()

    def shutdown(self) -> None:
        self._handles.clear()
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()

    def count(self) -> int:
        n = int(self._call(pynvml.nvmlDeviceGetCount))
        if n != self._count:  # indices may now name other devices
            self._handles.clear()
            self._count = n
        return n

    def uuid(self, index: int) -> str:
        return _text(self._call(pynvml.nvmlDeviceGetUUID, self._handle(index)))

    def name(self, index: int) -> str:
        return _text(self._call(pynvml.nvmlDeviceGetName, self._handle(index)))

    def mig(self, index: int) -> bool:
        try:
            current, _pending = self._call(pynvml.nvmlDeviceGetMigMode, self._handle(index))
        except GpuError as exc:
            if exc.kind == NOT_SUPPORTED:
                return False
            raise
        return bool(current == pynvml.NVML_DEVICE_MIG_ENABLE)

    def utilization(self, index: int) -> tuple[float, float]:
        rates = self._call(pynvml.nvmlDeviceGetUtilizationRates, self._handle(index))
        return float(rates.gpu), float(rates.memory)

    def memory(self, index: int) -> tuple[int, int]:
        info = self._call(pynvml.nvmlDeviceGetMemoryInfo, self._handle(index))
        return int(info.used), int(info.total)

    def power_w(self, index: int) -> float:
        return self._call(pynvml.nvmlDeviceGetPowerUsage, self._handle(index)) / 1000.0

    def temperature_c(self, index: int) -> float:
        handle = self._handle(index)
        sensor = pynvml.NVML_TEMPERATURE_GPU
        return float(self._call(pynvml.nvmlDeviceGetTemperature, handle, sensor))

    def sm_clock_mhz(self, index: int) -> float:
        handle = self._handle(index)
        return float(self._call(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM))

    def process_utilization(self, index: int, since: int) -> list[ProcUtil]:
        handle = self._handle(index)
        try:
            samples = pynvml.nvmlDeviceGetProcessUtilization(handle, since)
        except pynvml.NVMLError as exc:
            # NOT_FOUND: no sample newer than `since`; pynvml raises SUCCESS when none at all
            if exc.value in (pynvml.NVML_SUCCESS, pynvml.NVML_ERROR_NOT_FOUND):
                return []
            raise GpuError(_KINDS.get(exc.value, ERROR), str(exc)) from None
        return [ProcUtil(int(s.pid), int(s.timeStamp), float(s.smUtil)) for s in samples]

    def compute_processes(self, index: int) -> list[tuple[int, int | None]]:
        handle = self._handle(index)
        if self._procs_v3:
            try:
                procs = self._call(pynvml.nvmlDeviceGetComputeRunningProcesses_v3, handle)
            except GpuError as exc:
                if exc.kind != NOT_SUPPORTED:  # a driver older than _v3 lacks the symbol
                    raise
                self._procs_v3 = False
        if not self._procs_v3:
            procs = self._call(pynvml.nvmlDeviceGetComputeRunningProcesses_v2, handle)
        return [(int(p.pid), p.usedGpuMemory) for p in procs]


class FakeBackend:
    """A scripted backend for tests: devices, per-pass traces, processes and failures.

    Script (a dict, or a JSON file through `load`)::

        {"init_error": "Driver Not Loaded",              # optional: nvmlInit fails
         "devices": [{"uuid": "GPU-fake-0", "name": "Fake GPU", "mem_total": 1e10,
                      "mig": false}],
         "steps": [{"repeat": 30,                        # passes this step lasts
                    "devices": [{"util_sm": 97, "util_mem": 40, "mem_used": 2e9,
                                 "power_w": 280, "temp_c": 71, "sm_clock_mhz": 1800}],
                    "processes": [{"device": 0, "pid": 1234, "sm_util": 95,
                                   "mem_used": 2e9}]}],
         "failures": [{"at": 4, "device": 0, "metric": "power", "error": "not_supported"},
                      {"at": 9, "device": 0, "error": "lost"},
                      {"at": 6, "device": 0, "metric": "utilization", "error": "hang",
                       "seconds": 2}]}

    A pass starts with `count()`, which moves the script to the next pass; the last step
    holds. "lost" and "not_supported" last from pass `at` on; "error" and "hang" (sleep,
    then answer) hit that pass only. Metrics: utilization, memory, power, temperature,
    sm_clock, process_utilization, compute_processes, uuid, name, mig, count (none: every
    call of that device).
    """

    def __init__(self, script: dict[str, Any]) -> None:
        self.script = script
        self.devices: list[dict[str, Any]] = list(script.get("devices", []))
        self.steps: list[dict[str, Any]] = []
        for step in script.get("steps", []):
            self.steps.extend([step] * int(step.get("repeat", 1)))
        self.failures: list[dict[str, Any]] = list(script.get("failures", []))
        self.passes = -1
        self.calls: list[tuple[int, str, int]] = []  # (pass, metric, device)
        self.since: list[tuple[int, int]] = []  # (since asked, newest timestamp returned)

    @classmethod
    def load(cls, path: str) -> FakeBackend:
        """Read a JSON script; ValueError or OSError name the file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: not a JSON script: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a fake GPU script is a JSON object")
        return cls(data)

    def _step(self) -> dict[str, Any]:
        if not self.steps:
            return {}
        return self.steps[min(max(self.passes, 0), len(self.steps) - 1)]

    def _check(self, metric: str, index: int) -> None:
        self.calls.append((self.passes, metric, index))
        for f in self.failures:
            if f.get("device", index) != index or f.get("metric", metric) != metric:
                continue
            at, kind = int(f.get("at", 0)), f["error"]
            if kind in (LOST, NOT_SUPPORTED) and self.passes >= at:
                raise GpuError(kind, f"fake {kind} at pass {self.passes}")
            if self.passes == at and kind == "hang":
                time.sleep(float(f.get("seconds", 1.0)))
            elif self.passes == at and kind in (ERROR, NOT_FOUND):
                raise GpuError(kind, f"fake {kind} at pass {self.passes}")

    def _value(self, index: int, key: str, default: float = 0.0) -> float:
        devices = self._step().get("devices", [])
        row = devices[index] if index < len(devices) else {}
        return float(row.get(key, default))

    def init(self) -> None:
        if self.script.get("init_error"):
            raise GpuUnavailable(str(self.script["init_error"]))

    def shutdown(self) -> None:
        self.calls.append((self.passes, "shutdown", -1))

    def count(self) -> int:
        self.passes += 1
        self._check("count", -1)
        return len(self.devices)

    def uuid(self, index: int) -> str:
        self._check("uuid", index)
        return str(self.devices[index].get("uuid", f"GPU-fake-{index}"))

    def name(self, index: int) -> str:
        self._check("name", index)
        return str(self.devices[index].get("name", "Fake GPU"))

    def mig(self, index: int) -> bool:
        self._check("mig", index)
        return bool(self.devices[index].get("mig", False))

    def utilization(self, index: int) -> tuple[float, float]:
        self._check("utilization", index)
        return self._value(index, "util_sm"), self._value(index, "util_mem")

    def memory(self, index: int) -> tuple[int, int]:
        self._check("memory", index)
        total = int(self.devices[index].get("mem_total", 16 * 2**30))
        return int(self._value(index, "mem_used")), total

    def power_w(self, index: int) -> float:
        self._check("power", index)
        return self._value(index, "power_w")

    def temperature_c(self, index: int) -> float:
        self._check("temperature", index)
        return self._value(index, "temp_c")

    def sm_clock_mhz(self, index: int) -> float:
        self._check("sm_clock", index)
        return self._value(index, "sm_clock_mhz")

    def _procs(self, index: int) -> list[dict[str, Any]]:
        return [p for p in self._step().get("processes", []) if int(p.get("device", 0)) == index]

    def process_utilization(self, index: int, since: int) -> list[ProcUtil]:
        self._check("process_utilization", index)
        now = max(int(time.time() * 1e6), since + 1)
        out = [
            ProcUtil(int(p["pid"]), now, float(p["sm_util"]))
            for p in self._procs(index)
            if "sm_util" in p
        ]
        self.since.append((since, now if out else since))
        return out

    def compute_processes(self, index: int) -> list[tuple[int, int | None]]:
        self._check("compute_processes", index)
        return [
            (int(p["pid"]), None if p.get("mem_used") is None else int(p["mem_used"]))
            for p in self._procs(index)
        ]


def make_backend(kind: str, script: str = "") -> Backend:
    """'nvml' or 'fake' (with a JSON script path); ValueError for anything else."""
    if kind == "nvml":
        return NvmlBackend()
    if kind == "fake":
        if not script:
            raise ValueError("gpu.backend 'fake' needs gpu.script (a JSON file)")
        return FakeBackend.load(script)
    raise ValueError(f"unknown gpu.backend {kind!r} (one of nvml, fake)")
