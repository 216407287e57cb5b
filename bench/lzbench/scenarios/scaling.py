"""Scenario 4, scaling: the same batch of sleeping jobs on fresh platforms
with 1, 2 and 4 workers of one slot each (`LZ_WORKER_SLOTS=1`), then on one
worker with several slots; makespan against the ideal, speed-up and how the
jobs spread over the workers. Scenario 3 runs on the 1-worker platform first."""

from __future__ import annotations

import statistics
import time

from ..config import JOBS_PARTITIONS, SCALE_TARGET_PCT, log
from ..measure import Measure, bottleneck
from ..platform import Platform
from ..run import Run
from ..stats import parse_ts, r1, r2
from .latency import job_latency


def shapes(p: dict) -> list[tuple[int, int]]:
    """(workers, slots per worker) of each run: scale_workers with one slot,
    then one worker with each of scale_worker_slots. The first, 1 × 1, is
    the base of the speed-ups."""
    return [(w, 1) for w in p["scale_workers"]] + [(1, k) for k in p["scale_worker_slots"]]


def key(workers: int, slots: int) -> str:
    """A run's name in the record's `measures` (report.py looks runs up by it)."""
    return f"{workers}x{slots}"


def scaling(run: Run) -> dict:
    """Records scenario 3 (on the 1-worker platform) on the way and returns
    scenario 4."""
    p = run.p
    runs = []
    for w, k in shapes(p):
        # Explicit even at 1, so that the runs do not depend on the worker's
        # default (the machine's CPUs).
        plat = run.platform(f"scale{key(w, k)}", w, {"LZ_WORKER_SLOTS": str(k)})
        token = plat.api.tokens(1)["alice"][0]
        if (w, k) == (1, 1):
            run.record(job_latency(run, plat, token))
        else:
            # One job per worker first, so every worker has cloned once.
            warm = [plat.api.submit(token, {"url": run.repo(f"sleep-{p['scale_sleep']}")}) for _ in range(w)]
            plat.api.wait_terminal(token, warm, 60)
        # Jobs finished before the batch, which the batch's count starts from.
        base = plat.api.count(token, "succeeded") + plat.api.count(token, "failed")
        log(f"4. Scaling: {p['scale_jobs']} × sleep {p['scale_sleep']} s on {w} worker(s) × {k} slot(s)")
        r = batch(run, plat, token, w, k, base)
        r["startup_s"] = r2(plat.startup_seconds)
        runs.append(r)
        log(f"   makespan {r['makespan_s']} s (ideal {r['ideal_makespan_s']} s, {r['ideal_pct']} % of it), "
            f"jobs per worker {r['jobs_per_worker']}")
        plat.stop()
    base = runs[0]["makespan_s"]
    for r in runs:
        r["speedup"] = r2(base / r["makespan_s"])
        r["efficiency"] = r2(base / r["makespan_s"] / (r["workers"] * r["slots"]))
    return {
        "id": "scaling", "title": f"Scaling: {p['scale_jobs']} × sleep {p['scale_sleep']} s",
        "settings": {"jobs": p["scale_jobs"], "sleep_s": p["scale_sleep"], "workers": p["scale_workers"],
                     "worker_slots": p["scale_worker_slots"], "jobs_partitions": JOBS_PARTITIONS,
                     "makespan": "last finishedAt minus first submittedAt (records)",
                     "ideal": "jobs × sleep ÷ (workers × slots)", "target_pct_of_ideal": SCALE_TARGET_PCT},
        "results": {"runs": [{k: v for k, v in r.items() if k != "measure"} for r in runs]},
        "measure": _widest(runs)["measure"],
        "measures": {key(r["workers"], r["slots"]): r["measure"] for r in runs},
        "limited_by": _limited(runs),
    }


def _widest(runs: list[dict]) -> dict:
    """The run with the most workers (one slot each): the scenario's measure."""
    return max((r for r in runs if r["slots"] == 1), key=lambda r: r["workers"])


def _limited(runs: list[dict]) -> str:
    """Why the makespans are what they are: the partition split of the
    one-slot runs, and the machine at the most workers and at the most slots."""
    skew = [r for r in runs if r["slots"] == 1 and r["jobs_per_worker"][0] * r["workers"] > r["jobs"]]
    note = ("Sleeping jobs: the workers wait, they do not compute. Jobs are keyed by id over "
            f"{JOBS_PARTITIONS} partitions and a worker only takes jobs from its own partitions, so the "
            "busiest worker sets the makespan" + (
                f" (uneven split at {', '.join(str(r['workers']) for r in skew)} workers: "
                + "; ".join(f"{r['jobs_per_worker']}" for r in skew) + ")" if skew else "") + ".")
    wide = _widest(runs)
    text = note + f" Machine at {wide['workers']} workers: " + bottleneck(wide["measure"])
    slotted = [r for r in runs if r["slots"] > 1]
    if slotted:
        deep = max(slotted, key=lambda r: r["slots"])
        text += f" At {deep['workers']} worker × {deep['slots']} slots: " + bottleneck(deep["measure"])
    return text


def batch(run: Run, plat: Platform, token: str, workers: int, slots: int, base: int) -> dict:
    """scale_jobs sleeping jobs submitted at once, until all have ended
    (`base` jobs had ended before). The ideal counts slots, not workers: a
    worker with k slots should finish k jobs in one job's time."""
    p = run.p
    n, s = p["scale_jobs"], p["scale_sleep"]
    url = run.repo(f"sleep-{s}")
    with Measure(run.procs(plat)) as m:
        t0 = time.monotonic()
        ids = [plat.api.submit(token, {"url": url}) for _ in range(n)]
        t_sub = time.monotonic() - t0
        while plat.api.count(token, "succeeded") + plat.api.count(token, "failed") < n + base:
            if time.monotonic() - t0 > 30 + 3 * n * s:
                raise RuntimeError("scaling batch did not finish")
            time.sleep(0.05)
        client_makespan = time.monotonic() - t0
    jobs = plat.api.wait_terminal(token, ids, 30)
    first_sub = min(parse_ts(j["submittedAt"]) for j in jobs)
    last_end = max(parse_ts(j["finishedAt"]) for j in jobs)
    makespan = last_end - first_sub
    per_worker: dict[str, int] = {}
    for j in jobs:
        per_worker[j.get("workerId") or "?"] = per_worker.get(j.get("workerId") or "?", 0) + 1
    service = [j["elapsedSeconds"] for j in jobs if j.get("elapsedSeconds") is not None]
    ideal = n * s / (workers * slots)
    meas = m.result()
    return {
        "workers": workers, "slots": slots, "jobs": n, "sleep_s": s,
        "failed": sum(j["status"] != "succeeded" for j in jobs),
        "submit_seconds": r2(t_sub),
        "makespan_s": r2(makespan), "client_makespan_s": r2(client_makespan),
        "ideal_makespan_s": r2(ideal),
        "ideal_pct": r1(100 * ideal / makespan),
        "jobs_per_worker": sorted(per_worker.values(), reverse=True),
        "ideal_from_busiest_worker_s": r2(max(per_worker.values()) * s / slots),
        "mean_job_elapsed_s": r2(statistics.fmean(service)) if service else None,
        # Slot time per job beyond its sleep.
        "overhead_per_job_s": r2(makespan * workers * slots / n - s),
        **_where_the_time_went(jobs, s, slots, first_sub),
        "measure": meas,
    }


def _where_the_time_went(jobs: list[dict], sleep: float, slots: int, first_sub: float) -> dict:
    """The makespan in parts: the first start after the first submission,
    the gap a one-slot worker leaves between a job's sleep and its next
    job's start (start to start, less the sleep), and the last job's end
    after its sleep (its upload and terminal event)."""
    starts = [parse_ts(j["startedAt"]) for j in jobs if j.get("startedAt")]
    if not starts:
        return {}
    last = max(jobs, key=lambda j: parse_ts(j["finishedAt"]))
    out = {"first_start_ms": round(1000 * (min(starts) - first_sub)),
           "last_end_after_sleep_ms": round(1000 * (parse_ts(last["finishedAt"]) - parse_ts(last["startedAt"]) - sleep))}
    if slots == 1:
        gaps = []
        by_worker: dict[str, list[float]] = {}
        for j in jobs:
            if j.get("startedAt"):
                by_worker.setdefault(j.get("workerId") or "?", []).append(parse_ts(j["startedAt"]))
        for ts in by_worker.values():
            ts.sort()
            gaps += [1000 * (b - a - sleep) for a, b in zip(ts, ts[1:])]
        if gaps:
            gaps.sort()
            out["start_gap_ms"] = {"p50": round(gaps[len(gaps) // 2]), "max": round(gaps[-1]),
                                   "sum": round(sum(gaps))}
        out["last_start_spread_ms"] = round(1000 * (max(max(ts) for ts in by_worker.values())
                                                   - min(max(ts) for ts in by_worker.values())))
    return out
