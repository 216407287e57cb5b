"""Scenario 1, API read load: many users polling their job's status,
GET /api/jobs/{id}. 1a with wrk (closed loop, 1,000 connections); 1b the
classic Locust scenario (N users spawned at R per second, each polling
every 1-5 s) against its pass line (errors < 1 %, p95 < 1 s)."""

from __future__ import annotations

import csv
import json
import os
import random
import statistics
import subprocess
import threading
from pathlib import Path

from ..config import LOCUST_WAIT, ROOT, USERS, log, run_text
from ..measure import Measure, bottleneck, established_to, run_child, run_wrk
from ..platform import Platform
from ..run import Run
from ..stats import r1, r2, histogram_quantiles, summary_ms

ROUTE = "/api/jobs/{id}"


def prepare(run: Run, plat: Platform) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Seed jobs for each user, run to the end, and a pool of tokens logged
    in once, each paired with a job of its owner (pool.txt for wrk,
    pool.json for Locust). Returns (one token per user, the pool)."""
    p = run.p
    tok = plat.api.tokens(1)
    seeds = {u: [plat.api.submit(tok[u][0], {"url": run.repo("hello"), "args": u})
                 for _ in range(p["seed_jobs_per_user"])]
             for u in USERS}
    for u in USERS:
        plat.api.wait_terminal(tok[u][0], seeds[u], 120)
    tokens = plat.api.tokens(p["tokens_per_user"])
    pool = [(t, seeds[u][i % len(seeds[u])]) for u in USERS for i, t in enumerate(tokens[u])]
    random.Random(7).shuffle(pool)
    (run.out / "pool.txt").write_text("".join(f"{t} {j}\n" for t, j in pool))
    (run.out / "pool.json").write_text(json.dumps(pool))
    return tok, pool


def wrk(run: Run, plat: Platform, pool_size: int) -> dict:
    """1a. wrk polling the pool's jobs over read_conns connections."""
    p = run.p
    log(f"1a. API read, wrk: {p['read_conns']} connections, {p['read_seconds']} s")
    env = {"BENCH_POOL": str(run.out / "pool.txt")}
    url = plat.url + "/"
    subprocess.run(["wrk", "-t2", "-c50", "-d1s", "-s", str(ROOT / "bench/poll.lua"), url],
                   env={**os.environ, **env}, capture_output=True)  # warm pools and caches
    h0 = plat.api.histogram(ROUTE)
    with Measure(run.procs(plat)) as m:
        res = run_wrk(m, run.out, "read-wrk", "poll.lua",
                      ["-t2", f"-c{p['read_conns']}", f"-d{p['read_seconds']}s", "--timeout", "5s", url], env)
    meas = m.result()
    res["server_side"] = histogram_quantiles(h0, plat.api.histogram(ROUTE))
    fe = meas["processes"]["frontend"]["cores"] or 0.01
    db = meas["processes"].get("secantusd-rs", {}).get("cores") or 0.01
    res.update(
        error_rate=r2(100 * res["errors"] / max(1, res["requests"] + res["errors"])),
        rps_per_frontend_core=round(res["rps"] / fe),
        rps_per_db_core=round(res["rps"] / db),
        frontend_cpu_us_per_request=r1(1e6 * fe / max(1, res["rps"])),
        db_cpu_us_per_request=r1(1e6 * db / max(1, res["rps"])),
        little_law_ms=r1(1000 * p["read_conns"] / max(1, res["rps"])),
    )
    log(f"   {res['rps']} req/s, p95 {res['p95_ms']} ms, errors {res['errors']}")
    return {
        "id": "read_wrk", "title": "API read load, closed loop (wrk)",
        "settings": {"route": "GET /api/jobs/{id}", "connections": p["read_conns"], "seconds": p["read_seconds"],
                     "threads": 2, "tokens": pool_size, "distinct_jobs": 2 * p["seed_jobs_per_user"]},
        "results": res, "measure": meas,
        "limited_by": bottleneck(meas, "Closed loop: latency ≈ connections ÷ throughput (Little's law)."),
    }


def locust(run: Run, plat: Platform, pool_size: int) -> dict:
    """1b. Locust's headless run, judged against the pass line."""
    p = run.p
    users, rate, secs = p["locust_users"], p["locust_rate"], p["locust_seconds"]
    log(f"1b. API read, Locust: {users} users spawned at {rate}/s, {secs} s")
    ru, meas, server_side, conns = _run_locust(run, plat, users, rate, secs)
    res = _locust_results(run.out, users, rate, secs, ru, conns, server_side)
    lc = meas["processes"]["locust"]["cores"]
    need = res["offered_rps_all_users"] * res["locust_cpu_us_per_request"] / 1e6
    note = ("The generator (Locust, one Python process) is part of the figure: at "
            f"{res['locust_cpu_us_per_request']:.0f} µs of its CPU per request, the offered "
            f"{res['offered_rps_all_users']:,} requests/s would need {need:.1f} cores of it; it got {lc:.2f}"
            + ("; it warned its CPU was above 90 %" if res["locust_cpu_warnings"] else "") + ".")
    log(f"   {res['rps']} req/s, p95 {res['p95_ms']} ms, errors {res['error_rate']} %: "
        f"{'PASS' if res['passed'] else 'FAIL'}")
    return {
        "id": "read_locust", "title": f"API read load, Locust: {users:,} users at {rate}/s",
        "settings": {"route": "GET /api/jobs/{id}", "user_class": "FastHttpUser",
                     "wait_between_polls_s": list(LOCUST_WAIT), "tokens": pool_size,
                     "locust": run_text([run.locust, "--version"]).split(" from ")[0]},
        "results": res, "measure": meas, "limited_by": bottleneck(meas, note),
    }


def _run_locust(run: Run, plat: Platform, users: int, rate: int, secs: int):
    """Locust to the end, measured, with the connections open to the
    frontend sampled every second. Returns (Locust's rusage, the measure,
    the frontend's own quantiles, the connection samples)."""
    env = {**os.environ, "BENCH_POOL_JSON": str(run.out / "pool.json"),
           "BENCH_LOCUST_SAMPLES": str(run.out / "locust-samples.json"),
           "BENCH_WAIT_MIN": str(LOCUST_WAIT[0]), "BENCH_WAIT_MAX": str(LOCUST_WAIT[1])}
    cmd = [run.locust, "-f", str(ROOT / "bench/locustfile.py"), "--headless", "-u", str(users), "-r", str(rate),
           "-t", f"{secs}s", "--host", plat.url, "--csv", str(run.out / "locust"), "--only-summary",
           "--stop-timeout", "5", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    h0 = plat.api.histogram(ROUTE)
    port = int(plat.url.rsplit(":", 1)[1])
    conns: list[int] = []
    stop = threading.Event()

    def count_connections():
        while not stop.wait(1.0):
            conns.append(established_to(port))

    counter = threading.Thread(target=count_connections, daemon=True)
    with Measure(run.procs(plat)) as m:
        counter.start()
        code, ru, peak = run_child(cmd, env, run.out / "locust.out", run.out / "locust.err", track=(m, "locust"))
        m.add_external("locust", ru, peak)
        stop.set()
        counter.join()
    server_side = histogram_quantiles(h0, plat.api.histogram(ROUTE))
    if code != 0:
        raise RuntimeError(f"locust exited {code}; see {run.out}/locust.err")
    return ru, m.result(), server_side, conns


def _locust_csv(prefix: Path, users: int) -> tuple[dict, list[float], list[dict]]:
    """Locust's CSV files: the aggregated row, the requests/s of every
    history row with all users running, and the failures."""
    with open(f"{prefix}_stats.csv") as f:
        agg = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    with open(f"{prefix}_stats_history.csv") as f:
        history = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
    full = [float(r["Requests/s"]) for r in history if int(r["User Count"]) >= users]
    failures = []
    try:
        with open(f"{prefix}_failures.csv") as f:
            failures = [{"error": r["Error"], "count": int(r["Occurrences"])} for r in csv.DictReader(f)]
    except OSError:
        pass
    return agg, full, failures


def _locust_phases(samples_path: Path) -> dict:
    """Latency by phase (spawning, running) from the locustfile's own
    record of every response (ms; negative = failed)."""
    phases = {}
    try:
        samples = json.loads(samples_path.read_text())
        for ph, v in samples.items():
            okv = [x / 1000 for x in v if x >= 0]
            phases[ph] = {**summary_ms(okv), "failures": sum(1 for x in v if x < 0)}
    except (OSError, ValueError):
        pass
    return phases


def _locust_results(out: Path, users, rate, secs, ru, conns: list[int], server_side: dict) -> dict:
    agg, full, failures = _locust_csv(out / "locust", users)
    err = (out / "locust.err").read_text(errors="replace")
    n, nf = int(agg["Request Count"]), int(agg["Failure Count"])
    p95 = float(agg["95%"])
    error_pct = 100 * nf / max(1, n)
    return {
        "users": users, "spawn_rate": rate, "seconds": secs,
        "requests": n, "failures": nf, "error_rate": r2(error_pct),
        "rps": r1(float(agg["Requests/s"])),
        "rps_all_users_running": r1(statistics.median(full)) if full else None,
        "offered_rps_all_users": round(users / statistics.fmean(LOCUST_WAIT)),
        "p50_ms": float(agg["50%"]), "p95_ms": p95, "p99_ms": float(agg["99%"]),
        "max_ms": float(agg["Max Response Time"]),
        "pass_line": {"error_rate_max": 1.0, "p95_max_ms": 1000},
        "passed": error_pct < 1.0 and p95 < 1000,
        # How far inside the line: >1 means that much margin.
        "p95_margin": r2(1000 / p95) if p95 else None,
        "failures_top": sorted(failures, key=lambda f: -f["count"])[:5],
        "by_phase": _locust_phases(out / "locust-samples.json"),
        "server_side": server_side,
        "locust_cpu_us_per_request": r1(1e6 * (ru.ru_utime + ru.ru_stime) / max(1, n)),
        # Connections open to the frontend, sampled every second.
        "frontend_connections_max": max(conns) if conns else None,
        "frontend_connections_median_last_half": (int(statistics.median(conns[len(conns) // 2:]))
                                                  if conns else None),
        "locust_cpu_warnings": err.count("CPU usage"),
    }
