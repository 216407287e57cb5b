"""The books: what became of the jobs, read back from the jobs topic, the
workers' logs, the API's records and the jobs' outputs."""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

from ..config import TANSU, TERMINAL
from ..platform import Platform


def kafka_positions(brokers: str, topic: str, partitions: int) -> dict[str, tuple[int, int]]:
    """Job id -> (partition, offset) of every message of a jobs topic, read
    with the stack's own `tansu cat consume` (the local stack's broker keeps
    every message: memory storage, no retention)."""
    pos: dict[str, tuple[int, int]] = {}
    for part in range(partitions):
        out = subprocess.run([str(TANSU), "cat", "consume", "--broker", f"tcp://{brokers}", "--partition", str(part),
                              "--max-wait-time-ms", "300", topic],
                             capture_output=True, text=True, timeout=300).stdout
        off = 0
        for line in out.splitlines():
            try:
                batch = json.loads(line)
            except ValueError:
                continue
            for rec in batch if isinstance(batch, list) else [batch]:
                jid = (rec.get("value") or {}).get("id") if isinstance(rec, dict) else None
                if jid:
                    pos[jid] = (part, off)
                off += 1
    return pos


def worker_starts(log_dir: Path) -> dict[tuple[int, int], str]:
    """(partition, offset) -> job id of every job a worker started, from
    the workers' JSON logs (`job started`, with the job span)."""
    out = {}
    for f in sorted(log_dir.glob("worker-*.log")):
        for line in f.read_text(errors="replace").splitlines():
            if "job started" not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            sp = rec.get("span") or {}
            if rec.get("fields", {}).get("message") == "job started" and "offset" in sp:
                out[(int(sp["partition"]), int(sp["offset"]))] = sp.get("job_id")
    return out


def settled_counts(plat: Platform, token: str) -> dict:
    """The user's job counts by state once they have not changed for 2 s
    (or after 30 s)."""
    last, stable_since = None, time.monotonic()
    deadline = time.monotonic() + 30
    while True:
        c = {"total": plat.api.count(token)}
        for s in ("queued", "running", *TERMINAL):
            c[s] = plat.api.count(token, s)
        if c != last:
            last, stable_since = c, time.monotonic()
        elif time.monotonic() - stable_since >= 2 or time.monotonic() > deadline:
            return c
        time.sleep(0.5)


def check_outputs(plat: Platform, token: str, n: int) -> dict:
    """A sample of n succeeded `bench` jobs: has each its greeting.txt?"""
    jobs = plat.api.json("GET", "/api/jobs?status=succeeded&per_page=100", token=token)["jobs"]
    jobs = [j for j in jobs if j.get("args") == ["bench"]]
    sample = random.Random(3).sample(jobs, min(n, len(jobs)))
    ok = 0
    bad = []
    for j in sample:
        status, data = plat.api.request("GET", f"/api/jobs/{j['id']}/files/greeting.txt", token=token)
        if status == 200 and data == b"Hello, bench!\n":
            ok += 1
        else:
            bad.append({"id": j["id"], "status": status})
    return {"checked": len(sample), "ok": ok, "bad": bad[:5]}
