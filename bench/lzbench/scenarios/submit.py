"""Scenario 2, submission load. 2a: POST /api/addJob at full speed with 2
workers draining, accepted jobs/s, then the books of every accepted job.
2b: a steady rate the workers keep up with, run to the end, and clients
that hang up mid-submit."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from ..config import JOBS_PARTITIONS, log
from ..measure import Measure, bottleneck, run_wrk
from ..platform import Platform
from ..run import Run
from ..stats import r1, r2, parse_ts, summary_ms
from .books import check_outputs, kafka_positions, settled_counts, worker_starts


def full_speed(run: Run, plat: Platform, token: str) -> dict:
    """2a. wrk submitting for submit_seconds, drain_seconds more of drain,
    then the books closed (wrk writes down every accepted id)."""
    p = run.p
    log(f"2a. Submissions at full speed: POST /api/addJob, {p['submit_conns']} connections, "
        f"{p['submit_seconds']} s, 2 workers draining")
    before_total = plat.api.count(token)
    before_ok = plat.api.count(token, "succeeded")
    res, ok_end, meas_submit = _hammer(run, plat, token, before_ok)
    accepted = set()
    for f in run.out.glob("submit-ids.*"):
        accepted |= set(f.read_text().split())
    t_drain = time.monotonic()
    with Measure(run.procs(plat)) as m2:
        time.sleep(p["drain_seconds"])
        ok_drain = plat.api.count(token, "succeeded") - before_ok
    meas_drain = m2.result()
    drain = {"ok_end": ok_end, "ok_drain": ok_drain, "elapsed": time.monotonic() - t_drain}
    books = _close_books(plat, token, accepted, before_total)
    sample = check_outputs(plat, token, p["output_samples"])
    r = _results(res, len(accepted), drain, books, sample, meas_submit, meas_drain)
    log(f"   accepted {len(accepted)} ({r['accepted_per_s']}/s), records {r['records_created']}, drain "
        f"{r['drain_jobs_per_s_after']} jobs/s, queued {r['queued_records']} vs lag "
        f"{r['kafka_lag_after_workers_stopped']}, extras {r['records_not_accepted']}, "
        f"not in Kafka {r['accepted_not_in_kafka']}, skipped by the workers {r['accepted_skipped']}, "
        f"run twice {r['run_twice']}")
    return {
        "id": "submit", "title": "Submission load at full speed, 2 workers draining",
        "settings": {"route": "POST /api/addJob", "job": "examples/hello over file://", "connections": p["submit_conns"],
                     "seconds": p["submit_seconds"], "drain_seconds": p["drain_seconds"], "workers": 2,
                     "jobs_partitions": JOBS_PARTITIONS},
        "results": r, "measure": meas_submit, "measure_drain": meas_drain,
        "limited_by": bottleneck(meas_submit, "Each submission waits for MongoDB's journaled majority insert and "
                                 "Kafka's acks=all produce.") + " Drain: " + bottleneck(meas_drain),
    }


def _hammer(run: Run, plat: Platform, token: str, before_ok: int) -> tuple[dict, int, dict]:
    """The submission window: (wrk's results, jobs succeeded meanwhile, the
    measure)."""
    p = run.p
    body = json.dumps({"url": run.repo("hello"), "args": "bench"})
    env = {"BENCH_BODY": body, "BENCH_TOKEN": token, "BENCH_IDS": str(run.out / "submit-ids")}
    with Measure(run.procs(plat)) as m:
        res = run_wrk(m, run.out, "submit-wrk", "submit.lua",
                      ["-t2", f"-c{p['submit_conns']}", f"-d{p['submit_seconds']}s", "--timeout", "10s",
                       plat.url + "/api/addJob"], env)
        ok_end = plat.api.count(token, "succeeded") - before_ok
    return res, ok_end, m.result()


def _close_books(plat: Platform, token: str, accepted: set[str], before_total: int) -> dict:
    """Stop the workers (each ends its job), let the recorder and the
    observer catch up, then compare the accepted ids with the records, the
    jobs topic and the offsets the workers started: an accepted job must be
    in Kafka, and a queued one must lie beyond the workers' position in its
    partition (else the group moved past it without running it)."""
    plat.stop([s.name for s in plat.services if s.name.startswith("worker")])
    stopped = time.time()
    settled_counts(plat, token)
    lag = plat.fresh_desired(stopped).get("backlog")
    t_books = time.monotonic()

    # Each accepted id looked up (paging through tens of thousands of
    # records costs more than fetching them one by one): its status, and
    # its attempt (1 for a job run once; 0 while queued).
    def status_of(job_id: str) -> tuple[str, int]:
        st, data = plat.api.request("GET", f"/api/jobs/{job_id}", token=token)
        if st != 200:
            return f"http {st}", 0
        rec = json.loads(data)
        return rec["status"], rec.get("attempt") or 0

    ids = sorted(accepted)
    with ThreadPoolExecutor(6) as ex:
        looked_up = dict(zip(ids, ex.map(status_of, ids)))
    statuses = {i: st for i, (st, _) in looked_up.items()}
    # A job started more than once, by a re-delivery or a second copy: under
    # normal operation (no worker lost) there must be none.
    run_twice = sorted(i for i, (_, attempt) in looked_up.items() if attempt > 1)
    by_status: dict[str, int] = {}
    for st in statuses.values():
        by_status[st] = by_status.get(st, 0) + 1
    missing = [i for i, st in statuses.items() if st.startswith("http")]
    records_new = plat.api.count(token) - before_total
    queued_all = plat.api.count(token, "queued") + plat.api.count(token, "running")
    pos = kafka_positions(plat.env["LZ_KAFKA_BROKERS"], plat.env["LZ_JOBS_TOPIC"], JOBS_PARTITIONS)
    starts = worker_starts(plat.dir)
    reach: dict[int, int] = {}
    for (part, off) in starts:
        reach[part] = max(reach.get(part, -1), off)
    not_in_kafka = [i for i in ids if i not in pos]
    skipped = sorted((pos[i][0], pos[i][1], i) for i in ids
                     if statuses[i] == "queued" and i in pos and pos[i][1] <= reach.get(pos[i][0], -1))
    return {
        "lag": lag, "by_status": by_status, "missing": len(missing), "records_new": records_new,
        "extras": records_new - (len(accepted) - len(missing)), "queued_all": queued_all,
        "messages": len(pos), "not_in_kafka": len(not_in_kafka), "starts": len(starts), "skipped": skipped,
        "committed_estimate": sum(v + 1 for v in reach.values()), "run_twice": run_twice,
        "lost_none": not missing and not not_in_kafka and not skipped and by_status.get("failed", 0) == 0,
        "seconds": time.monotonic() - t_books,
    }


def _results(res: dict, accepted: int, drain: dict, b: dict, sample: dict, meas_submit: dict,
             meas_drain: dict) -> dict:
    r = {
        "requests": res["requests"], "accepted": accepted, "rejected_non_2xx": res["non_2xx"],
        "socket_errors_or_timeouts": res["errors"] - res["non_2xx"],
        "accepted_per_s": round(accepted / res["seconds"]),
        "p50_ms": res["p50_ms"], "p95_ms": res["p95_ms"], "p99_ms": res["p99_ms"], "max_ms": res["max_ms"],
        "records_created": b["records_new"],
        "accepted_without_record": b["missing"],
        "records_not_accepted": b["extras"],
        "accepted_by_status": b["by_status"],
        "succeeded_during_submission": drain["ok_end"],
        "drain_jobs_per_s_during_submission": r2(drain["ok_end"] / res["seconds"]),
        "drain_jobs_per_s_after": r2((drain["ok_drain"] - drain["ok_end"]) / drain["elapsed"]),
        "queued_records": b["queued_all"],
        "kafka_messages": b["messages"],
        "accepted_not_in_kafka": b["not_in_kafka"],
        "jobs_started_by_workers": b["starts"],
        # Queued accepted jobs at offsets the workers had already passed
        # in their partition: never run, and never delivered again.
        "accepted_skipped": len(b["skipped"]),
        "accepted_skipped_first": [f"{part}:{off} {i}" for part, off, i in b["skipped"][:8]],
        "kafka_lag_after_workers_stopped": b["lag"],
        # Messages beyond the furthest started offset of each partition;
        # equals the observer's lag when commits follow the runs.
        "kafka_messages_beyond_workers": b["messages"] - b["committed_estimate"],
        "no_accepted_job_lost": b["lost_none"],
        # Accepted jobs whose record has attempt > 1 (started again).
        "run_twice": len(b["run_twice"]),
        "run_twice_first": b["run_twice"][:8],
        "output_sample": sample,
        "books_seconds": r2(b["seconds"]),
    }
    pr = meas_submit["processes"]
    r["cpu_us_per_accepted_job"] = {
        n: r1(1e6 * ((pr.get(n) or {}).get("cpu_s") or 0) / max(1, accepted))
        for n in ("frontend", "tansu", "secantusd-rs", "wrk")}
    fe = meas_submit["processes"]["frontend"]["cores"] or 0.01
    r["accepted_per_frontend_core"] = round(r["accepted_per_s"] / fe)
    wc = sum((v.get("cores") or 0) + (v.get("children_cores") or 0)
             for k, v in meas_drain["processes"].items() if k.startswith("worker"))
    r["drain_jobs_per_worker_core"] = r2(r["drain_jobs_per_s_after"] / max(0.01, wc))
    return r


def sustained(run: Run) -> dict:
    """2b. sustained_rate jobs/s for sustained_seconds on a fresh platform,
    every job waited for: every accepted one must succeed."""
    p = run.p
    rate, secs = p["sustained_rate"], p["sustained_seconds"]
    plat = run.platform("sustain", 2)
    token = plat.api.tokens(1)["alice"][0]
    warm = [plat.api.submit(token, {"url": run.repo("hello"), "args": "warm"}) for _ in range(2)]
    plat.api.wait_terminal(token, warm, 60)
    log(f"2b. Sustained submissions: {rate} jobs/s for {secs} s, 2 workers, run to the end")
    n = int(rate * secs)
    with Measure(run.procs(plat)) as m:
        t0 = time.monotonic() + 0.1
        ids, lat, errors = _send_paced(plat, token, {"url": run.repo("hello"), "args": "bench"}, rate, n, t0)
        t_sent = time.monotonic() - t0
        got = [i for i in ids if i]
        jobs = plat.api.wait_terminal(token, got, 60 + 2 * n)
        t_done = time.monotonic() - t0
    meas = m.result()
    ok = [j for j in jobs if j["status"] == "succeeded"]
    e2e = [parse_ts(j["finishedAt"]) - parse_ts(j["submittedAt"]) for j in ok]
    wait = [parse_ts(j["startedAt"]) - parse_ts(j["submittedAt"]) for j in ok if j.get("startedAt")]
    total = plat.api.count(token) - len(warm)
    sample = check_outputs(plat, token, p["output_samples"])
    disconnect = disconnect_check(run, plat, token)
    res = {
        "rate": rate, "seconds": secs, "attempted": n, "accepted": len(got), "errors": len(errors),
        "errors_top": errors[:3], "send_seconds": r2(t_sent), "all_done_seconds": r2(t_done),
        "submit_http": summary_ms(lat),
        "records": total, "succeeded": len(ok), "not_succeeded": len(jobs) - len(ok),
        "lost": len(got) - len(ok),
        "run_twice": sum((j.get("attempt") or 0) > 1 for j in jobs),
        "throughput_jobs_per_s": r2(len(ok) / t_done),
        "submitted_to_started": summary_ms(wait),
        "submitted_to_finished": summary_ms(e2e),
        "output_sample": sample,
        "client_disconnects": disconnect,
    }
    log(f"   accepted {len(got)}, succeeded {len(ok)}, lost {res['lost']}, job wait p95 "
        f"{res['submitted_to_started']['p95_ms']} ms; disconnects: {disconnect}")
    plat.stop()
    return {
        "id": "sustained", "title": f"Sustained submissions at {rate} jobs/s, drained to the end",
        "settings": {"route": "POST /api/addJob", "job": "examples/hello over file://", "rate": rate,
                     "seconds": secs, "workers": 2, "client": "harness, 4 threads, open loop"},
        "results": res, "measure": meas,
        "limited_by": bottleneck(meas, "Open loop below the workers' capacity: the figure is the latency "
                                       "a job sees when the workers keep up."),
    }


def _send_paced(plat: Platform, token: str, body: dict, rate: float, n: int, t0: float):
    """n submissions, the k-th due at t0 + k / rate (open loop: a slow
    answer does not delay the next), from 4 threads. Returns (job id or
    None per submission, latencies in s, error texts)."""
    ids: list[str | None] = [None] * n
    lat: list[float] = []
    errors = []
    lock = threading.Lock()

    def sender(k0: int):
        for k in range(k0, n, 4):
            delay = t0 + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            a = time.monotonic()
            try:
                jid = plat.api.submit(token, body, route="/api/addJob")
            except Exception as e:  # noqa: BLE001 - counted, reported
                with lock:
                    errors.append(str(e)[:200])
                continue
            with lock:
                lat.append(time.monotonic() - a)
            ids[k] = jid

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids, lat, errors


def disconnect_check(run: Run, plat: Platform, token: str, n: int = 40) -> dict:
    """Clients that hang up while their submission is being handled: a
    record must never stay queued without a message in Kafka."""
    body = json.dumps({"url": run.repo("hello"), "args": "disconnect-check"}).encode()
    u = urllib.parse.urlparse(plat.url)
    for k in range(n):
        s = socket.create_connection((u.hostname, u.port))
        s.sendall(b"POST /api/addJob HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer " + token.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                  + b"\r\n\r\n" + body)
        time.sleep(k * 0.0003)  # hang up 0-12 ms after sending, through the handler's phases
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST
    # Wait until the workers have run what reached Kafka.
    deadline = time.monotonic() + 30
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        recs = [j for j in plat.api.all_jobs(token) if j.get("args") == ["disconnect-check"]]
        key = sorted(j["status"] for j in recs)
        if key != last:
            last, since = key, time.monotonic()
        elif time.monotonic() - since > 1.5 and "running" not in key:
            break
        time.sleep(0.3)
    st: dict[str, int] = {}
    for j in recs:
        st[j["status"]] = st.get(j["status"], 0) + 1
    pos = kafka_positions(plat.env["LZ_KAFKA_BROKERS"], plat.env["LZ_JOBS_TOPIC"], JOBS_PARTITIONS)
    stuck = [j["id"] for j in recs if j["status"] == "queued"]
    return {"sent": n, "records": len(recs), "by_status": st,
            "kafka_lag": plat.fresh_desired(time.time()).get("backlog"),
            "stuck_queued_not_in_kafka": sum(1 for i in stuck if i not in pos),
            "stuck_queued": [j["id"] for j in recs if j["status"] == "queued"][:5]}
