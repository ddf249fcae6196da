"""Rolling series in numpy ring buffers: robust baselines (median, MAD) and runs."""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np

from sentinel.core.config import LoadConfig

RECENT = 60  # raw points per series kept for the finding's history (sparkline)


def _median_mad_full(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD of rows with no missing sample; partitions `rows` in place."""
    h = rows.shape[1]
    kth = [h // 2 - 1, h // 2] if h % 2 == 0 else [h // 2]
    rows.partition(kth, axis=1)
    med = rows[:, kth].mean(axis=1)
    rows -= med[:, None]  # a permutation of the row: the deviations are the same multiset
    np.abs(rows, out=rows)
    rows.partition(kth, axis=1)
    return med, rows[:, kth].mean(axis=1)


def _median_mad_sparse(rows: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD over the non-NaN values of each row (NaN sorts last); sorts in place."""
    r = np.arange(len(rows))
    lo, hi = (counts - 1) // 2, counts // 2
    rows.sort(axis=1)
    med = (rows[r, lo] + rows[r, hi]) / 2
    rows -= med[:, None]
    np.abs(rows, out=rows)
    rows.sort(axis=1)
    return med, (rows[r, lo] + rows[r, hi]) / 2


class SeriesSet:
    """Series sampled together, one column per tick, in preallocated numpy ring buffers.

    `base` holds what baselines are computed from (NaN: no sample, or taken while the
    series was anomalous or suppressed); `recent` holds the last RECENT raw values. Slots
    are allocated and freed as series come and go; the arrays double when full.
    """

    def __init__(self, cfg: LoadConfig, capacity: int = 64) -> None:
        self.history = max(2, cfg.history)
        self.min_history = min(max(1, cfg.min_history), self.history)
        self.margin, self.mad_k = cfg.margin, cfg.mad_k
        self.sustain, self.grace = cfg.sustain, cfg.grace
        self.period = max(1, self.history // 10)
        self.col = self.rcol = self.cursor = 0
        self.last_t: float | None = None
        self.dt = 0.0  # seconds between the last two ticks
        self.keys: list[Hashable | None] = []
        self.meta: list[Any] = []
        self.index: dict[Hashable, int] = {}
        self.free: list[int] = []
        self.capacity = 0
        self._grow(capacity)

    _FILL: dict[str, tuple[Any, Any]] = {
        "valid": (np.int32, 0),
        "rn": (np.int32, 0),
        "med": (np.float32, np.nan),
        "thr": (np.float32, np.nan),
        "scale": (np.float32, 1.0),
        "relative": (bool, False),
        "ceiling": (np.float32, np.inf),
        "active": (bool, False),
        "run_start": (np.float64, np.nan),
        "last_above": (np.float64, np.nan),
        "run_sum": (np.float64, 0.0),
        "run_n": (np.int32, 0),
        "firing": (bool, False),
        "last": (np.float32, np.nan),
    }

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        shapes = {"base": (capacity, self.history), "recent": (capacity, RECENT)}
        for name, (dtype, fill) in {
            **self._FILL,
            "base": (np.float32, np.nan),
            "recent": (np.float32, np.nan),
        }.items():
            arr = np.full(shapes.get(name, (capacity,)), fill, dtype=dtype)
            if old:
                arr[:old] = getattr(self, name)
            setattr(self, name, arr)
        self.keys.extend([None] * (capacity - old))
        self.meta.extend([None] * (capacity - old))
        self.free.extend(range(capacity - 1, old - 1, -1))
        self.capacity = capacity

    def alloc(
        self, key: Hashable, meta: Any, scale: float, ceiling: float, relative: bool = False
    ) -> int:
        """A slot for a new series; ceiling <= 0 means none."""
        if not self.free:
            self._grow(self.capacity * 2)
        slot = self.free.pop()
        self.keys[slot], self.meta[slot] = key, meta
        self.index[key] = slot
        self.active[slot] = True
        self.scale[slot] = scale
        self.relative[slot] = relative
        self.ceiling[slot] = ceiling if ceiling > 0 else np.inf
        return slot

    def release(self, slot: int) -> None:
        key = self.keys[slot]
        self.index.pop(key, None)
        self.keys[slot] = self.meta[slot] = None
        for name, (_, fill) in self._FILL.items():
            getattr(self, name)[slot] = fill
        self.base[slot] = np.nan
        self.recent[slot] = np.nan
        self.free.append(slot)

    def in_run(self, slot: int) -> bool:
        return not math.isnan(self.run_start[slot])

    def tick(
        self, t: float, values: np.ndarray, suppress: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add one sample per series (NaN: none); return the slots that fired and that ended."""
        dt = self.dt = 0.0 if self.last_t is None else max(0.0, t - self.last_t)
        self.last_t = t
        act = self.active
        with np.errstate(invalid="ignore"):
            above = act & (values > np.fmin(self.thr, self.ceiling))
        quiet = ~act if suppress is None else ~act | suppress
        above &= ~quiet
        self.last_above[above] = t
        self.run_start[above & np.isnan(self.run_start)] = t
        inrun = ~np.isnan(self.run_start)
        broken = inrun & (t - self.last_above > self.grace)
        ended = np.flatnonzero(broken & self.firing)
        if broken.any():
            self.run_start[broken] = np.nan
            self.run_sum[broken] = 0.0
            self.run_n[broken] = 0
            self.firing[broken] = False
            inrun &= ~broken
        seen = inrun & ~np.isnan(values)
        self.run_sum[seen] += values[seen]
        self.run_n[seen] += 1
        fired = inrun & ~self.firing & (self.last_above - self.run_start + dt >= self.sustain)
        self.firing |= fired

        sample = np.where(quiet | inrun, np.nan, values)
        self.valid += ~np.isnan(sample)
        self.valid -= ~np.isnan(self.base[:, self.col])
        self.base[:, self.col] = sample
        self.recent[:, self.rcol] = np.where(act, values, np.nan)
        self.last[:] = values
        self.rn[act] = np.minimum(self.rn[act] + 1, RECENT)
        self.col = (self.col + 1) % self.history
        self.rcol = (self.rcol + 1) % RECENT
        self._refresh(act & ~inrun & (self.valid >= self.min_history))
        return np.flatnonzero(fired), ended

    def _refresh(self, eligible: np.ndarray) -> None:
        """Recompute baselines of a rotating batch and of series that just became eligible."""
        n = self.capacity
        batch = -(-n // self.period)
        idx = np.arange(self.cursor, self.cursor + batch) % n
        self.cursor = (self.cursor + batch) % n
        idx = idx[eligible[idx]]
        fresh = np.flatnonzero(eligible & np.isnan(self.med))
        if fresh.size:
            idx = np.union1d(idx, fresh)
        if idx.size:
            self._baseline(idx)

    def _baseline(self, idx: np.ndarray) -> None:
        rows = self.base[idx]
        counts = self.valid[idx]
        full = counts == self.history
        med = np.empty(len(idx), np.float32)
        mad = np.empty(len(idx), np.float32)
        if full.all():
            med[:], mad[:] = _median_mad_full(rows)
        else:
            if full.any():
                med[full], mad[full] = _median_mad_full(rows[full])
            part = ~full
            med[part], mad[part] = _median_mad_sparse(rows[part], counts[part])
        scale = self.scale[idx]
        scale = np.where(self.relative[idx], np.maximum(med, scale), scale)
        self.med[idx] = med
        self.thr[idx] = med + np.maximum(self.margin * scale, self.mad_k * 1.4826 * mad)

    def history_of(self, slot: int) -> list[float]:
        """The series' last raw values, oldest first (at most RECENT)."""
        n = int(self.rn[slot])
        pos = (self.rcol - n + np.arange(n)) % RECENT
        return [round(float(v), 4) for v in self.recent[slot, pos] if not math.isnan(v)]
