"""Scenario 4, scaling: the same batch of sleeping jobs on fresh platforms
with 1, 2 and 4 workers; makespan, speed-up and how the jobs spread over
the workers. Scenario 3 runs on the 1-worker platform first."""

from __future__ import annotations

import statistics
import time

from ..config import JOBS_PARTITIONS, log
from ..measure import Measure, bottleneck
from ..platform import Platform
from ..run import Run
from ..stats import parse_ts, r2
from .latency import job_latency


def scaling(run: Run) -> dict:
    """Records scenario 3 (on the 1-worker platform) on the way and returns
    scenario 4."""
    p = run.p
    runs = []
    for w in p["scale_workers"]:
        plat = run.platform(f"scale{w}", w)
        token = plat.api.tokens(1)["alice"][0]
        if w == 1:
            run.record(job_latency(run, plat, token))
        else:
            # One job per worker first, so every worker has cloned once.
            warm = [plat.api.submit(token, {"url": run.repo(f"sleep-{p['scale_sleep']}")}) for _ in range(w)]
            plat.api.wait_terminal(token, warm, 60)
        # Jobs finished before the batch, which the batch's count starts from.
        base = plat.api.count(token, "succeeded") + plat.api.count(token, "failed")
        log(f"4. Scaling: {p['scale_jobs']} × sleep {p['scale_sleep']} s on {w} worker(s)")
        r = batch(run, plat, token, w, base)
        r["startup_s"] = r2(plat.startup_seconds)
        runs.append(r)
        log(f"   makespan {r['makespan_s']} s (ideal {r['ideal_makespan_s']} s), jobs per worker {r['jobs_per_worker']}")
        plat.stop()
    base = runs[0]["makespan_s"]
    for r in runs:
        r["speedup"] = r2(base / r["makespan_s"])
        r["efficiency"] = r2(base / r["makespan_s"] / r["workers"])
    skew = [r for r in runs if r["jobs_per_worker"][0] * r["workers"] > r["jobs"]]
    note = ("Sleeping jobs: the workers wait, they do not compute. Jobs are keyed by id over "
            f"{JOBS_PARTITIONS} partitions and a worker only takes jobs from its own partitions, so the "
            "busiest worker sets the makespan" + (
                f" (uneven split at {', '.join(str(r['workers']) for r in skew)} workers: "
                + "; ".join(f"{r['jobs_per_worker']}" for r in skew) + ")" if skew else "") + ".")
    return {
        "id": "scaling", "title": f"Scaling: {p['scale_jobs']} × sleep {p['scale_sleep']} s",
        "settings": {"jobs": p["scale_jobs"], "sleep_s": p["scale_sleep"], "workers": p["scale_workers"],
                     "jobs_partitions": JOBS_PARTITIONS,
                     "makespan": "last finishedAt minus first submittedAt (records)"},
        "results": {"runs": [{k: v for k, v in r.items() if k != "measure"} for r in runs]},
        "measure": runs[-1]["measure"], "measures": {str(r["workers"]): r["measure"] for r in runs},
        "limited_by": note + " Machine at 4 workers: " + bottleneck(runs[-1]["measure"]),
    }


def batch(run: Run, plat: Platform, token: str, workers: int, base: int) -> dict:
    """scale_jobs sleeping jobs submitted at once, until all have ended
    (`base` jobs had ended before)."""
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
    ideal = n * s / workers
    meas = m.result()
    return {
        "workers": workers, "jobs": n, "sleep_s": s, "failed": sum(j["status"] != "succeeded" for j in jobs),
        "submit_seconds": r2(t_sub),
        "makespan_s": r2(makespan), "client_makespan_s": r2(client_makespan),
        "ideal_makespan_s": r2(ideal),
        "jobs_per_worker": sorted(per_worker.values(), reverse=True),
        "ideal_from_busiest_worker_s": r2(max(per_worker.values()) * s),
        "mean_job_elapsed_s": r2(statistics.fmean(service)) if service else None,
        "overhead_per_job_s": r2(makespan * workers / n - s),
        "measure": meas,
    }
