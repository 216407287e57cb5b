"""Latency statistics and rounding: pure functions, no I/O."""

from __future__ import annotations

import heapq
import statistics
from datetime import datetime


def r1(x):
    return None if x is None else round(x, 1)


def r2(x):
    return None if x is None else round(x, 2)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def summary_ms(values_s: list[float]) -> dict:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": r1(pct(ms, 50)),
        "p95_ms": r1(pct(ms, 95)),
        "p99_ms": r1(pct(ms, 99)),
        "mean_ms": r1(statistics.fmean(ms)) if ms else None,
        "min_ms": r1(min(ms)) if ms else None,
        "max_ms": r1(max(ms)) if ms else None,
    }


def fifo_waits(arrivals: list[float], services: list[float], servers: int) -> list[float]:
    """Queue waits in one shared FIFO queue with `servers` servers: jobs start
    in arrival order (ties in list order), each on the first server free.
    The best a dispatcher can do without knowing run times ahead, so the
    mixed-load scenario's yardstick. Waits come in the order of `arrivals`.

    >>> fifo_waits([0, 0, 0, 1, 5], [2, 3, 1, 1, 1], 2)
    [0.0, 0.0, 2.0, 2.0, 0.0]
    """
    free = [0.0] * servers  # when each server is next free (a heap)
    waits = [0.0] * len(arrivals)
    for i in sorted(range(len(arrivals)), key=lambda i: arrivals[i]):
        start = max(arrivals[i], heapq.heappop(free))
        waits[i] = float(start - arrivals[i])
        heapq.heappush(free, start + services[i])
    return waits


def parse_ts(s: str | None) -> float | None:
    """Epoch seconds of a job record's RFC 3339 timestamp."""
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def histogram_quantiles(before: dict, after: dict) -> dict:
    """p50/p95/p99 in ms of the requests between two snapshots of cumulative
    bucket counts, interpolated inside buckets like Prometheus'
    histogram_quantile()."""
    les = sorted(after)
    cum = [(le, after[le] - before.get(le, 0.0)) for le in les]
    if not cum or cum[-1][1] <= 0:
        return {}
    total = cum[-1][1]
    res = {"n": int(total)}
    for q in (50, 95, 99):
        rank = total * q / 100
        prev_le, prev_c = 0.0, 0.0
        for le, c in cum:
            if c >= rank:
                if le == float("inf"):
                    val = prev_le
                else:
                    val = prev_le + (le - prev_le) * ((rank - prev_c) / max(1e-9, c - prev_c))
                res[f"p{q}_ms"] = r1(val * 1000)
                break
            prev_le, prev_c = le, c
    res["over_1s"] = int(total - next((c for le, c in cum if le == 1.0), total))
    return res
