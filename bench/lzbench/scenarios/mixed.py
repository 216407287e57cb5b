"""Scenario 4b, mixed load: short jobs among a few long ones, arriving as a
Poisson process below capacity, on 4 one-slot workers. A short job should
not wait behind a long one while another worker is idle; the measure is its
queue wait against an ideal shared FIFO queue fed the same arrivals and run
times (the best any dispatch could do without knowing run times ahead)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ..config import MIXED_TARGET_RATIO, log
from ..measure import Measure, bottleneck
from ..platform import Platform
from ..run import Run
from ..stats import fifo_waits, parse_ts, r1, r2, summary_ms

# The idle dispatch latency added to the ideal's waits when the latency
# scenario did not run (--only mixed): its usual p50, in seconds.
DISPATCH_FALLBACK_S = 0.03
SUBMIT_THREADS = 4


def trace(n: int, rate: float, short_s: float, long_s: float, long_share: float,
          seed: int) -> list[tuple[float, float]]:
    """(arrival offset in s, sleep in s) of n jobs: exponential gaps at
    `rate` jobs/s, exactly round(n × long_share) of them long, placed at
    random. Seeded, so every run (and both sides of a comparison) replays
    the same trace."""
    rng = random.Random(seed)
    at, offsets = 0.0, []
    for _ in range(n):
        offsets.append(at)
        at += rng.expovariate(rate)
    long_ids = set(rng.sample(range(n), round(n * long_share)))
    return [(offsets[i], long_s if i in long_ids else short_s) for i in range(n)]


def arrival_rate(p: dict) -> float:
    """Jobs/s that keep the workers (one slot each) mixed_load busy: slots ÷
    mean sleep × load."""
    return p["mixed_load"] * p["mixed_workers"] / mean_sleep(p)


def mean_sleep(p: dict) -> float:
    return (1 - p["mixed_long_share"]) * p["mixed_short_sleep"] + p["mixed_long_share"] * p["mixed_long_sleep"]


def dispatch_latency(scenarios: list[dict]) -> tuple[float, str]:
    """Our idle dispatch latency p50 in s (the latency scenario's record
    submitted → started, when it ran before), and where it came from."""
    for s in scenarios:
        if s["id"] == "latency":
            p50 = s["results"]["record_submitted_to_started"]["p50_ms"]
            if p50 is not None:
                return p50 / 1000, "latency scenario, record submitted → started p50"
    return DISPATCH_FALLBACK_S, "default, the latency scenario did not run"


def mixed(run: Run) -> dict:
    p = run.p
    n, workers = p["mixed_jobs"], p["mixed_workers"]
    rate = arrival_rate(p)
    jobs_trace = trace(n, rate, p["mixed_short_sleep"], p["mixed_long_sleep"], p["mixed_long_share"],
                       p["mixed_seed"])
    plat = run.platform("mixed", workers, {"LZ_WORKER_SLOTS": "1"})
    token = plat.api.tokens(1)["alice"][0]
    # One job per worker first, so every worker has cloned once.
    warm = [plat.api.submit(token, {"url": run.repo(f"sleep-{p['mixed_short_sleep']}")}) for _ in range(workers)]
    plat.api.wait_terminal(token, warm, 60)
    log(f"4b. Mixed load: {n} jobs, {rate:.2f}/s ({p['mixed_load']:.0%} of {workers} workers × 1 slot), "
        f"{p['mixed_long_share']:.0%} sleep {p['mixed_long_sleep']:g}, the rest sleep {p['mixed_short_sleep']:g}")
    with Measure(run.procs(plat)) as m:
        t0 = time.monotonic() + 0.1
        ids, late, errors = _submit_on_schedule(run, plat, token, jobs_trace, t0)
        sent = {i: s for i, (_, s) in zip(ids, jobs_trace) if i}
        jobs = plat.api.wait_terminal(token, list(sent), 60 + sum(s for _, s in jobs_trace))
    meas = m.result()
    plat.stop()
    dispatch, source = dispatch_latency(run.scenarios)
    res = analyse(jobs, sent, workers, p["mixed_short_sleep"], dispatch)
    res.update(dispatch_ms=r1(1000 * dispatch), dispatch_from=source, attempted=n, accepted=len(sent),
               errors=len(errors), errors_top=errors[:3], submit_late_max_ms=r1(1000 * max(late, default=0)))
    log(f"   short-job wait p95 {res['short_wait']['p95_ms']} ms, ideal FIFO {res['short_wait_ideal']['p95_ms']} ms "
        f"(ratio {res['short_wait_p95_ratio']}), long ones {res['long_wait']['p95_ms']} ms")
    return scenario_record(p, res, meas)


def scenario_record(p: dict, res: dict, meas: dict) -> dict:
    """The scenario's record from its results (apart, so that the selftest
    renders one made offline)."""
    workers = p["mixed_workers"]
    return {
        "id": "mixed", "title": "Mixed load: short jobs among long ones, Poisson arrivals",
        "settings": {"jobs": p["mixed_jobs"], "workers": workers, "slots_per_worker": 1, "load": p["mixed_load"],
                     "arrival_rate_per_s": r2(arrival_rate(p)), "short_sleep_s": p["mixed_short_sleep"],
                     "long_sleep_s": p["mixed_long_sleep"], "long_share": p["mixed_long_share"],
                     "seed": p["mixed_seed"], "client": f"harness, {SUBMIT_THREADS} threads, open loop",
                     "wait": "startedAt minus submittedAt (records)",
                     "ideal": f"shared FIFO queue, {workers} servers, the records' submittedAt and "
                              "finishedAt − startedAt, plus the idle dispatch latency p50 on each wait",
                     "target_p95_ratio": MIXED_TARGET_RATIO},
        "results": res, "measure": meas,
        "limited_by": bottleneck(meas, "Below capacity the waits are dispatch: which worker a job lands on, "
                                       "and whether it waits there behind a long job."),
    }


def _submit_on_schedule(run: Run, plat: Platform, token: str, jobs_trace: list[tuple[float, float]],
                        t0: float) -> tuple[list[str | None], list[float], list[str]]:
    """Each job of the trace submitted at t0 + its offset (open loop: a slow
    answer does not delay the next, up to SUBMIT_THREADS at once). Returns
    (job id or None per job, how late each send started in s, error texts)."""
    ids: list[str | None] = [None] * len(jobs_trace)
    late: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def send(k: int, due: float, sleep_s: float):
        behind = time.monotonic() - due
        try:
            jid = plat.api.submit(token, {"url": run.repo(f"sleep-{sleep_s}")})
        except Exception as e:  # noqa: BLE001 - counted, reported
            with lock:
                errors.append(str(e)[:200])
            return
        with lock:
            late.append(behind)
        ids[k] = jid

    with ThreadPoolExecutor(SUBMIT_THREADS) as ex:
        for k, (offset, sleep_s) in enumerate(jobs_trace):
            delay = t0 + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ex.submit(send, k, t0 + offset, sleep_s)
    return ids, late, errors


def analyse(jobs: list[dict], sleeps: dict[str, float], servers: int, short_s: float, dispatch_s: float) -> dict:
    """Queue waits of the records against the ideal FIFO queue: the same
    arrivals (submittedAt) and run times (finishedAt − startedAt), `servers`
    servers, `dispatch_s` added to every ideal wait. Jobs that never ran are
    counted, not timed."""
    ran = [j for j in jobs if j.get("startedAt") and j.get("finishedAt")]
    arrivals = [parse_ts(j["submittedAt"]) for j in ran]
    started = [parse_ts(j["startedAt"]) for j in ran]
    runs = [parse_ts(j["finishedAt"]) - s for j, s in zip(ran, started)]
    ours = [s - a for s, a in zip(started, arrivals)]
    ideal = [w + dispatch_s for w in fifo_waits(arrivals, runs, servers)]
    short = [sleeps[j["id"]] == short_s for j in ran]
    res = {
        "jobs": len(jobs), "succeeded": sum(j["status"] == "succeeded" for j in jobs),
        "not_run": len(jobs) - len(ran),
        "run_twice": sum((j.get("attempt") or 0) > 1 for j in jobs),
        "short_wait": summary_ms([w for w, s in zip(ours, short) if s]),
        "short_wait_ideal": summary_ms([w for w, s in zip(ideal, short) if s]),
        "long_wait": summary_ms([w for w, s in zip(ours, short) if not s]),
        "long_wait_ideal": summary_ms([w for w, s in zip(ideal, short) if not s]),
    }
    p95, p95_ideal = res["short_wait"]["p95_ms"], res["short_wait_ideal"]["p95_ms"]
    res["short_wait_p95_ratio"] = r2(p95 / p95_ideal) if p95 is not None and p95_ideal else None
    res.update(_offered(arrivals, runs, servers))
    per_worker: dict[str, int] = {}
    for j in ran:
        per_worker[j.get("workerId") or "?"] = per_worker.get(j.get("workerId") or "?", 0) + 1
    res["jobs_per_worker"] = sorted(per_worker.values(), reverse=True)
    return res


def _offered(arrivals: list[float], runs: list[float], servers: int) -> dict:
    """The load the trace really offered: the arrival rate the records show
    and the measured run times (sleep plus the worker's own time per job)."""
    if len(arrivals) < 2 or max(arrivals) == min(arrivals):
        return {"arrival_rate_measured_per_s": None, "mean_run_s": None, "offered_load_measured": None}
    rate = (len(arrivals) - 1) / (max(arrivals) - min(arrivals))
    mean_run = sum(runs) / len(runs)
    return {"arrival_rate_measured_per_s": r2(rate), "mean_run_s": r2(mean_run),
            "offered_load_measured": r2(rate * mean_run / servers)}
