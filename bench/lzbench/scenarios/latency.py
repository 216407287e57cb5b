"""Scenario 3, job latency on an idle system: trivial jobs one at a time on
one worker, seen by a polling client and by the job records, with the
worker's own phases (clone, script, upload) from its log."""

from __future__ import annotations

import json
import time

from ..config import POLL_INTERVAL, TERMINAL, log
from ..measure import Measure, bottleneck
from ..platform import Platform
from ..run import Run
from ..stats import parse_ts, summary_ms

PHASES = {"repository cloned": "clone", "scripts ended": "script", "results stored": "upload"}


def job_latency(run: Run, plat: Platform, token: str) -> dict:
    """latency_jobs `hello` jobs, each polled every POLL_INTERVAL until it
    ends, 0.2 s apart."""
    n = run.p["latency_jobs"]
    log(f"3. Job latency: {n} hello jobs one at a time, 1 worker, polling every {POLL_INTERVAL * 1000:.0f} ms")
    warm = plat.api.submit(token, {"url": run.repo("hello"), "args": "warm"})
    plat.api.wait_terminal(token, [warm], 60)
    time.sleep(1)
    marks = log_lines(plat)
    rows = []
    with Measure(run.procs(plat)) as m:
        for i in range(n):
            rows.append(_one_job(plat, token, run.repo("hello"), i))
            time.sleep(0.2)
    meas = m.result()
    ok = [r for r in rows if r["status"] == "succeeded"]
    res = {
        "jobs": n, "succeeded": len(ok),
        "submit_http": summary_ms([r["submit_http"] for r in rows]),
        "polled_submit_to_running": summary_ms([r["poll_running"] for r in ok]),
        "polled_submit_to_succeeded": summary_ms([r["poll_done"] for r in ok]),
        "record_submitted_to_started": summary_ms([r["rec_running"] for r in ok if r["rec_running"] is not None]),
        "record_submitted_to_finished": summary_ms([r["rec_done"] for r in ok if r["rec_done"] is not None]),
        "worker_phases": worker_phases(plat, marks),
        "poll_interval_ms": POLL_INTERVAL * 1000,
    }
    ph = res["worker_phases"]
    note = ("Per job on the worker (medians): clone {c} ms, start script (node) {s} ms, upload {u} ms; "
            "the rest is Kafka dispatch and the status events' trip through the recorder."
            .format(c=ph["clone"]["p50_ms"], s=ph["script"]["p50_ms"], u=ph["upload"]["p50_ms"]))
    log(f"   submit→running p50 {res['polled_submit_to_running']['p50_ms']} ms (record "
        f"{res['record_submitted_to_started']['p50_ms']} ms), submit→succeeded p50 "
        f"{res['polled_submit_to_succeeded']['p50_ms']} ms (record {res['record_submitted_to_finished']['p50_ms']} ms)")
    return {
        "id": "latency", "title": "Job latency on an idle system (hello, one at a time)",
        "settings": {"job": "examples/hello over file://", "workers": 1, "jobs": n,
                     "poll": f"GET /api/jobs/{{id}} every {POLL_INTERVAL * 1000:.0f} ms",
                     "record": "startedAt / finishedAt minus submittedAt"},
        "results": res, "measure": meas, "limited_by": bottleneck(meas, note),
    }


def _one_job(plat: Platform, token: str, url: str, i: int) -> dict:
    """Submit one job and poll it to its end: the client's times (from the
    submit being sent) and the record's (from submittedAt), in seconds."""
    t0 = time.monotonic()
    jid = plat.api.submit(token, {"url": url, "args": f"run-{i}"})
    t_accept = time.monotonic()
    running = None
    while True:
        j = plat.api.job(token, jid)
        now = time.monotonic()
        if running is None and j["status"] != "queued":
            running = now
        if j["status"] in TERMINAL:
            break
        if now - t0 > 60:
            raise RuntimeError(f"job {jid} did not finish")
        time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - now)))
    sub = parse_ts(j["submittedAt"])
    return {
        "status": j["status"], "submit_http": t_accept - t0,
        "poll_running": running - t0, "poll_done": now - t0,
        "rec_running": parse_ts(j.get("startedAt")) - sub if j.get("startedAt") else None,
        "rec_done": parse_ts(j.get("finishedAt")) - sub if j.get("finishedAt") else None,
        "saw_running": j["status"] != "queued" and running < now,
    }


def log_lines(plat: Platform) -> dict[str, int]:
    """Lines in each worker's log so far (where worker_phases starts)."""
    return {s.name: len(s.log.read_text(errors="replace").splitlines())
            for s in plat.services if s.name.startswith("worker")}


def worker_phases(plat: Platform, since_lines: dict[str, int]) -> dict:
    """Durations of the workers' job phases logged after `since_lines`."""
    phases = {k: [] for k in PHASES}
    for s in plat.services:
        if not s.name.startswith("worker"):
            continue
        lines = s.log.read_text(errors="replace").splitlines()[since_lines.get(s.name, 0):]
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            f = rec.get("fields", rec)
            msg = f.get("message")
            if msg in phases and "ms" in f:
                phases[msg].append(float(f["ms"]) / 1000)
    return {PHASES[k]: summary_ms(v) for k, v in phases.items()}
