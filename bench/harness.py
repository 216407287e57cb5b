#!/usr/bin/env python3
"""Lanzadera benchmark harness (issue 7). Run through bench/bench.sh
(`make bench`, `make bench-full`), which starts the stack, builds and installs
the load tools first.

Starts release frontend / workers / observer processes from target/release on
a namespace of their own (topics, consumer groups, MongoDB database), like the
e2e tests do, runs five scenarios and measures, for every process, the CPU
seconds and the peak RSS from /proc while the scenario runs:

  1. API read load: many users polling their job (wrk, closed loop), and the
     classic Locust scenario (N users spawned at R per second) against its
     pass line (errors < 1 %, p95 < 1 s).
  2. Submission load: POST /api/addJob at full speed with 2 workers draining;
     accepted jobs/s, then the accounting of every accepted job.
  3. Job latency on an idle system: trivial jobs one at a time.
  4. Scaling: the same batch of sleeping jobs with 1, 2 and 4 workers.
  5. Elasticity: a burst, and the time until the observer's webhook decision.

Only Python's standard library: the harness must not need the load tool's
virtual environment.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import platform as pyplatform
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("LANZADERA_STATE", ROOT / ".dev"))
CACHE = Path(os.environ.get("LANZADERA_CACHE", Path.home() / ".cache/lanzadera"))
TANSU = CACHE / "tansu-0.6.0/bin/tansu"
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
CLK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
USERS = {"alice": "alice-pass", "bob": "bob-pass"}
JOBS_PARTITIONS = 8
STATUS_PARTITIONS = 4
TERMINAL = ("succeeded", "failed", "cancelled")

MODES = {
    "short": dict(
        tokens_per_user=20, seed_jobs_per_user=6,
        read_conns=1000, read_seconds=6,
        locust_users=2000, locust_rate=500, locust_seconds=20,
        submit_conns=64, submit_seconds=6, drain_seconds=4, output_samples=10,
        sustained_rate=10, sustained_seconds=6,
        latency_jobs=8,
        scale_jobs=12, scale_sleep=0.5, scale_workers=[1, 2, 4],
        burst_jobs=20, burst_sleep=0.5, burst_trials=1, burst_scale_down=False,
    ),
    "full": dict(
        tokens_per_user=100, seed_jobs_per_user=20,
        read_conns=1000, read_seconds=30,
        locust_users=10000, locust_rate=500, locust_seconds=60,
        submit_conns=64, submit_seconds=30, drain_seconds=30, output_samples=50,
        sustained_rate=10, sustained_seconds=30,
        latency_jobs=40,
        scale_jobs=24, scale_sleep=1.0, scale_workers=[1, 2, 4],
        burst_jobs=30, burst_sleep=0.5, burst_trials=5, burst_scale_down=True,
    ),
}
LOCUST_WAIT = (1.0, 5.0)
POLL_INTERVAL = 0.020
# The elasticity scenario's observer settings (the e2e test's, with the
# default 2 s window).
ELASTIC_ENV = {
    "LZ_MIN_WORKERS": "1",
    "LZ_MAX_WORKERS": "4",
    "LZ_SCALE_DOWN_STABILISATION_MS": "5000",
    "LZ_TARGET_DRAIN_SECONDS": "10",
    "REFRESH_RATE": "2000",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def r1(x):
    return None if x is None else round(x, 1)


def r2(x):
    return None if x is None else round(x, 2)


def parse_ts(s: str | None) -> float | None:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def run_text(cmd: list[str], **kw) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, **kw).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# --------------------------------------------------------------------------
# HTTP


class Http:
    """A keep-alive HTTP/1.1 client, one connection per thread."""

    def __init__(self, base: str):
        u = urllib.parse.urlparse(base)
        self.host, self.port = u.hostname, u.port
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self.local.conn = c
        return c

    def request(self, method, path, body=None, token=None, headers=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        for attempt in (0, 1):
            c = self._conn()
            try:
                c.request(method, path, body=body, headers=h)
                r = c.getresponse()
                data = r.read()
                return r.status, data
            except (http.client.HTTPException, ConnectionError, OSError):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, path, body=None, token=None, expect=(200, 201, 202)):
        status, data = self.request(method, path, body, token)
        if status not in expect:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None


# --------------------------------------------------------------------------
# /proc measurement


def proc_cpu(pid: int) -> tuple[float, float] | None:
    """(own user+system, reaped children user+system) CPU seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK, (int(rest[13]) + int(rest[14])) / CLK


def proc_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return 0


def machine_busy() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / CLK


TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPTimeouts", "TCPReqQFullDoCookies")


def tcp_counters() -> dict[str, int]:
    """Machine-wide TCP counters from /proc/net/netstat: listen-queue
    overflows (a server not accepting fast enough) and SYN retransmissions
    (a client waiting 1, 2, 4, … s to connect) explain latencies that no
    process's CPU does."""
    out = {}
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for head, vals in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            for k, v in zip(head.split()[1:], vals.split()[1:]):
                if k in TCP_COUNTERS:
                    out[k] = int(v)
    return out


class Measure:
    """CPU seconds (from /proc/<pid>/stat) and peak RSS (VmRSS sampled every
    200 ms) of each tracked process over a scenario, the machine's busy CPU
    (/proc/stat), the harness's own CPU, and load generators that ran as
    child processes (their wait4 rusage)."""

    def __init__(self, procs: dict[str, int], interval: float = 0.2):
        self.procs = dict(procs)
        self.interval = interval
        self.peak: dict[str, int] = {}
        self.external: dict[str, dict] = {}
        self.stop_event = threading.Event()

    def _sample(self):
        for name, pid in self.procs.items():
            rss = proc_rss_kib(pid)
            if rss is not None:
                self.peak[name] = max(self.peak.get(name, 0), rss)

    def _loop(self):
        while not self.stop_event.wait(self.interval):
            self._sample()

    def __enter__(self):
        self.cpu0 = {n: proc_cpu(p) for n, p in self.procs.items()}
        self.self0 = resource.getrusage(resource.RUSAGE_SELF)
        self.busy0 = machine_busy()
        self.tcp0 = tcp_counters()
        self.t0 = time.monotonic()
        self._sample()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()
        self._sample()
        self.seconds = time.monotonic() - self.t0
        self.busy1 = machine_busy()
        self.tcp1 = tcp_counters()
        self.cpu1 = {n: proc_cpu(p) for n, p in self.procs.items()}
        self.self1 = resource.getrusage(resource.RUSAGE_SELF)
        return False

    def add_external(self, name: str, rusage: resource.struct_rusage, peak_kib: int | None = None):
        self.external[name] = {
            "cpu_s": rusage.ru_utime + rusage.ru_stime,
            "peak_kib": peak_kib if peak_kib is not None else rusage.ru_maxrss,
        }

    def result(self) -> dict:
        secs = self.seconds
        out: dict[str, dict] = {}
        accounted = 0.0
        for name in self.procs:
            a, b = self.cpu0.get(name), self.cpu1.get(name)
            if a is None or b is None:
                continue
            own, kids = b[0] - a[0], b[1] - a[1]
            accounted += own + kids
            entry = {"cpu_s": r2(own), "cores": r2(own / secs), "peak_rss_mib": r1(self.peak.get(name, 0) / 1024)}
            if kids > 0.005 or name.startswith("worker"):
                entry["children_cpu_s"] = r2(kids)
                entry["children_cores"] = r2(kids / secs)
            out[name] = entry
        for name, e in self.external.items():
            accounted += e["cpu_s"]
            out[name] = {"cpu_s": r2(e["cpu_s"]), "cores": r2(e["cpu_s"] / secs),
                         "peak_rss_mib": r1(e["peak_kib"] / 1024)}
        mine = (self.self1.ru_utime + self.self1.ru_stime) - (self.self0.ru_utime + self.self0.ru_stime)
        accounted += mine
        out["harness"] = {"cpu_s": r2(mine), "cores": r2(mine / secs),
                          "peak_rss_mib": r1(self.self1.ru_maxrss / 1024)}
        busy = self.busy1 - self.busy0
        return {
            "seconds": r2(secs),
            "processes": out,
            "machine": {
                "busy_cpu_s": r2(busy), "busy_cores": r2(busy / secs), "cores": CORES,
                # CPU used by processes the harness did not start or track
                # (other sessions' tests on a shared machine, the kernel).
                "other_cpu_s": r2(max(0.0, busy - accounted)),
                "other_cores": r2(max(0.0, busy - accounted) / secs),
                "tcp": {k: self.tcp1.get(k, 0) - self.tcp0.get(k, 0) for k in TCP_COUNTERS},
            },
        }


def bottleneck(meas: dict, note: str = "") -> str:
    procs = meas["processes"]
    total = {n: (p.get("cores") or 0) + (p.get("children_cores") or 0) for n, p in procs.items()}
    top = sorted(total.items(), key=lambda kv: -kv[1])[:4]
    tops = ", ".join(f"{n} {c:.2f}" for n, c in top if c >= 0.01)
    busy = meas["machine"]["busy_cores"]
    other = meas["machine"]["other_cores"]
    if busy >= 0.87 * CORES:
        head = f"CPU: both cores busy ({busy:.2f} of {CORES}); largest: {tops} cores"
    else:
        head = f"Not CPU-bound ({busy:.2f} of {CORES} cores busy; largest: {tops})"
    if other >= 0.15:
        head += f"; {other:.2f} cores went to processes outside the benchmark"
    tcp = meas["machine"].get("tcp") or {}
    if tcp.get("ListenOverflows") or tcp.get("TCPSynRetrans"):
        head += (f"; TCP: {tcp.get('ListenOverflows', 0):,} listen-queue overflows, "
                 f"{tcp.get('TCPSynRetrans', 0):,} SYN retransmissions (clients waiting 1 s, 3 s, 7 s, … to connect)")
    return head + (f". {note}" if note else "")


def run_child(cmd: list[str], env: dict, stdout_path: Path, stderr_path: Path,
              track: tuple[Measure, str] | None = None) -> tuple[int, resource.struct_rusage, int]:
    """Runs a load generator to completion; returns (exit code, rusage, peak
    RSS KiB sampled from /proc while it ran)."""
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        if track:
            track[0].procs[track[1]] = p.pid
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    peak = None
    if track:
        track[0].procs.pop(track[1], None)
        peak = track[0].peak.pop(track[1], None)
    return p.returncode, ru, peak or ru.ru_maxrss


# --------------------------------------------------------------------------
# The stack and the platform


def stack_env() -> dict[str, str]:
    env = {}
    for line in (STATE / "stack.env").read_text().splitlines():
        m = re.match(r"^(?:export\s+)?([A-Z0-9_]+)=(.*)$", line.strip())
        if m:
            env[m.group(1)] = m.group(2).strip("'\"")
    return env


STACK_PROCS = {"tansu": "kafka", "secantusd-rs": "mongo", "weed": "s3", "oidc-provider": "oidc"}


def stack_pids() -> dict[str, int]:
    out = {}
    for name, file in STACK_PROCS.items():
        try:
            pid = int((STATE / "pids" / f"{file}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if Path(f"/proc/{pid}").exists():
            out[name] = pid
    return out


def git_repo(path: Path, message: str) -> None:
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=bench", "-c", "user.email=bench@lanzadera.local", "commit", "-qm", message]):
        subprocess.run(["git", "-C", str(path), *args], check=True)


def publish_repos(repos: Path, sleeps: list[float]) -> None:
    """The examples, and sleeping jobs, as git repositories (file:// jobs)."""
    for src in sorted((ROOT / "examples").iterdir()):
        dst = repos / src.name
        dst.mkdir(parents=True)
        subprocess.run(["cp", "-R", f"{src}/.", str(dst)], check=True)
        git_repo(dst, f"example {src.name}")
    for s in sleeps:
        d = repos / f"sleep-{s}"
        d.mkdir(parents=True)
        (d / "package.json").write_text(json.dumps({
            "name": "sleeper", "version": "1.0.0",
            "scripts": {"start": f"echo started; sleep {s}; echo done > output/done.txt"},
        }))
        git_repo(d, "sleeper")


class Service:
    def __init__(self, name: str, proc: subprocess.Popen, log: Path):
        self.name, self.proc, self.log = name, proc, log


class Platform:
    """A frontend, N workers and an observer from target/release, on topics,
    groups and a database of their own."""

    def __init__(self, h: "Harness", label: str, workers: int, extra: dict[str, str] | None = None):
        self.h = h
        self.ns = f"{h.run_id}-{label}"
        self.dir = h.out / label
        self.dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.api = f"http://127.0.0.1:{port}"
        self.observer_url = f"http://127.0.0.1:{free_port()}"
        self.env = {**os.environ, **h.stack_env}
        self.env.update({
            "LZ_JOBS_TOPIC": f"{self.ns}.jobs",
            "LZ_STATUS_TOPIC": f"{self.ns}.status",
            "LZ_IGNORE_TOPIC": f"{self.ns}.ignore",
            "LZ_JOBS_PARTITIONS": str(JOBS_PARTITIONS),
            "LZ_STATUS_PARTITIONS": str(STATUS_PARTITIONS),
            "LZ_WORKERS_GROUP": f"{self.ns}-workers",
            "LZ_RECORDER_GROUP": f"{self.ns}-recorder",
            "LZ_OBSERVER_GROUP": f"{self.ns}-observer",
            "LZ_MONGO_DB": self.ns,
            "LZ_ALLOW_INSECURE_REPOS": "true",
            "LZ_HTTP_ADDR": f"127.0.0.1:{port}",
            "LZ_OBSERVER_ADDR": self.observer_url.removeprefix("http://"),
            "LZ_SHUTDOWN_GRACE_SECS": "2",
            # 1 s windows (as in e2e) so the books can read a fresh lag soon;
            # the elasticity scenario sets the default 2 s back.
            "REFRESH_RATE": "1000",
            "LZ_LOG_FORMAT": "json",
            "RUST_LOG": "info,rdkafka=warn,mongodb=warn",
        })
        self.env.update(extra or {})
        self.services: list[Service] = []
        self.http = Http(self.api)
        self.workers = 0
        self.start(workers)

    def spawn(self, name: str, binary: str, env: dict | None = None, rust_log: str | None = None) -> Service:
        log_path = self.dir / f"{name}.log"
        e = {**self.env, **(env or {})}
        if rust_log:
            e["RUST_LOG"] = rust_log
        proc = subprocess.Popen([str(RELEASE / binary)], env=e, stdout=subprocess.DEVNULL,
                                stderr=open(log_path, "wb"), start_new_session=True)
        s = Service(name, proc, log_path)
        self.services.append(s)
        return s

    def start(self, workers: int) -> None:
        t0 = time.monotonic()
        for topic, parts in ((f"{self.ns}.jobs", JOBS_PARTITIONS), (f"{self.ns}.status", STATUS_PARTITIONS),
                             (f"{self.ns}.ignore", 1)):
            r = subprocess.run([str(TANSU), "topic", "create", "--broker", "tcp://" + self.env["LZ_KAFKA_BROKERS"],
                                "--partitions", str(parts), topic], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"topic {topic}: {r.stderr.strip()}")
        # The frontend logs warnings only: an info line per request would be
        # part of what is measured.
        self.spawn("frontend", "lanzadera-frontend", rust_log="warn,lanzadera_frontend=warn")
        self.wait_http(self.api + "/health/ready", "frontend")
        for _ in range(workers):
            self.add_worker(wait=False)
        self.spawn("observer", "lanzadera-observer")
        self.wait_http(self.observer_url + "/health", "observer")
        self.wait_assigned()
        self.startup_seconds = time.monotonic() - t0
        log(f"platform {self.ns}: frontend, {workers} worker(s), observer up in {self.startup_seconds:.1f} s")

    def add_worker(self, wait: bool = True) -> None:
        self.workers += 1
        i = self.workers
        self.spawn(f"worker-{i}", "lanzadera-worker", {
            "LZ_WORKER_ID": f"{self.ns}-worker-{i}",
            "LZ_WORK_DIR": str(self.dir / f"work-{i}"),
        })
        if wait:
            self.wait_assigned()

    def wait_http(self, url: str, name: str, timeout: float = 60) -> None:
        u = urllib.parse.urlparse(url)
        deadline = time.monotonic() + timeout
        while True:
            try:
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
                c.request("GET", u.path)
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout} s; logs in {self.dir}")
            time.sleep(0.1)

    def assigned(self) -> dict[str, int]:
        """Partitions each worker holds, from its latest `partitions
        assigned` / revoked log line."""
        out = {}
        for s in self.services:
            if not s.name.startswith("worker"):
                continue
            n = 0
            try:
                text = s.log.read_text(errors="replace")
            except OSError:
                text = ""
            for line in text.splitlines():
                if "partitions assigned" in line or "partitions revoked" in line:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    f = rec.get("fields", rec)
                    if "assigned" in str(f.get("message", "")):
                        n = int(f.get("partitions", 0))
                    else:
                        n = 0
            out[s.name] = n
        return out

    def wait_assigned(self, timeout: float = 60) -> None:
        """Until every worker holds partitions and together they hold all."""
        deadline = time.monotonic() + timeout
        while True:
            a = self.assigned()
            if a and all(v > 0 for v in a.values()) and sum(a.values()) == JOBS_PARTITIONS:
                return
            if not a:
                return
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers never got all partitions: {a}; logs in {self.dir}")
            time.sleep(0.1)

    def check_alive(self) -> None:
        for s in self.services:
            if s.proc.poll() is not None:
                raise RuntimeError(f"{s.name} exited with {s.proc.returncode}; log {s.log}")

    def pids(self) -> dict[str, int]:
        return {s.name: s.proc.pid for s in self.services}

    def fresh_desired(self, after: float, timeout: float = 15) -> dict:
        """The observer's latest decision from a window that ended after
        `after` (epoch seconds): its lag was probed after that moment."""
        deadline = time.monotonic() + timeout
        while True:
            d = self.desired()
            if d.get("timestamp", 0) > after * 1000 or time.monotonic() > deadline:
                return d
            time.sleep(0.1)

    def desired(self) -> dict:
        u = urllib.parse.urlparse(self.observer_url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        c.request("GET", "/metrics/desired")
        return json.loads(c.getresponse().read())

    def stop(self, names: list[str] | None = None) -> None:
        targets = [s for s in self.services if names is None or s.name in names]
        for s in targets:
            if s.proc.poll() is None:
                s.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for s in targets:
            try:
                s.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()
        self.services = [s for s in self.services if s not in targets]

    # API helpers -----------------------------------------------------------

    def submit(self, token: str, body: dict, route: str = "/api/jobs") -> str:
        return self.http.json("POST", route, body, token)["jobId"]

    def job(self, token: str, job_id: str) -> dict:
        return self.http.json("GET", f"/api/jobs/{job_id}", token=token)

    def count(self, token: str, status: str | None = None) -> int:
        q = "?per_page=1" + (f"&status={status}" if status else "")
        return self.http.json("GET", "/api/jobs" + q, token=token)["total"]

    def all_jobs(self, token: str, status: str | None = None) -> list[dict]:
        out, page = [], 1
        while True:
            q = f"?per_page=100&page={page}" + (f"&status={status}" if status else "")
            r = self.http.json("GET", "/api/jobs" + q, token=token)
            out += r["jobs"]
            if len(r["jobs"]) < 100:
                return out
            page += 1

    def wait_terminal(self, token: str, ids: list[str], timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        pending = set(ids)
        done = {}
        while pending:
            for i in list(pending):
                j = self.job(token, i)
                if j["status"] in TERMINAL:
                    done[i] = j
                    pending.discard(i)
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(pending)} job(s) not finished after {timeout} s")
                time.sleep(0.1)
        return [done[i] for i in ids]


def established_to(port: int) -> int:
    """Established TCP connections whose local port is `port` (the server
    side), from /proc/net/tcp{,6}."""
    hexport = f":{port:04X}"
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split(None, 4)
                    if parts[1].endswith(hexport) and parts[3] == "01":
                        n += 1
        except OSError:
            pass
    return n


def frontend_histogram(plat: "Platform", route: str) -> dict[float, float]:
    """Cumulative bucket counts of the frontend's own latency histogram
    (`http_request_duration_seconds`, handler time) for one route."""
    st, data = plat.http.request("GET", "/metrics")
    out = {}
    if st != 200:
        return out
    pat = re.compile(r'^(?:[a-z]+_)?http_request_duration_seconds_bucket\{(.*)\} (\S+)$')
    for line in data.decode(errors="replace").splitlines():
        m = pat.match(line)
        if not m or f'route="{route}"' not in m.group(1):
            continue
        le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
        out[float("inf") if le == "+Inf" else float(le)] = float(m.group(2))
    return out


def histogram_quantiles(before: dict, after: dict) -> dict:
    """p50/p95/p99 in ms of the requests between two snapshots, interpolated
    inside buckets like Prometheus' histogram_quantile()."""
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


class Webhook:
    """Receives the observer's scale decisions, with their arrival time."""

    def __init__(self):
        calls = self.calls = []
        lock = self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                at = time.monotonic()
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {"raw": body.decode(errors="replace")}
                with lock:
                    calls.append((at, data))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/scale"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def since(self, t: float) -> list[tuple[float, dict]]:
        with self.lock:
            return [c for c in self.calls if c[0] >= t]

    def wait_for(self, t: float, pred, timeout: float) -> tuple[float, dict] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for c in self.since(t):
                if pred(c[1]):
                    return c
            time.sleep(0.01)
        return None

    def close(self):
        self.server.shutdown()


# --------------------------------------------------------------------------
# The harness


class Harness:
    def __init__(self, args):
        self.mode = args.mode
        self.p = dict(MODES[args.mode])
        for kv in filter(None, os.environ.get("BENCH_SET", "").split(",")):
            k, v = kv.split("=", 1)
            self.p[k] = type(self.p[k])(json.loads(v)) if not isinstance(self.p[k], list) else json.loads(v)
        self.overrides = os.environ.get("BENCH_SET", "")
        self.locust = args.locust
        self.build_seconds = args.build_seconds
        self.started = args.started or time.time()
        self.run_id = "bench" + uuid.uuid4().hex[:8]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.out = ROOT / "target/bench" / f"{self.mode}-{stamp}"
        self.out.mkdir(parents=True, exist_ok=True)
        self.repos = self.out / "repos"
        self.stack_env = stack_env()
        self.stack = stack_pids()
        self.scenarios: list[dict] = []
        self.platforms: list[Platform] = []
        publish_repos(self.repos, sorted({self.p["scale_sleep"], self.p["burst_sleep"]}))

    def repo(self, name: str) -> str:
        return f"file://{self.repos / name}"

    def procs(self, plat: Platform) -> dict[str, int]:
        return {**plat.pids(), **self.stack}

    def platform(self, label: str, workers: int, extra=None) -> Platform:
        p = Platform(self, label, workers, extra)
        self.platforms.append(p)
        return p

    def tokens(self, plat: Platform, per_user: int) -> dict[str, list[str]]:
        def login(user):
            r = plat.http.request("POST", "/auth/token",
                                  body=urllib.parse.urlencode({"username": user, "password": USERS[user]}).encode(),
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
            if r[0] != 200:
                raise RuntimeError(f"login {user}: {r[0]} {r[1][:200]!r}")
            return json.loads(r[1])["token"]

        with ThreadPoolExecutor(4) as ex:
            return {u: list(ex.map(login, [u] * per_user)) for u in USERS}

    # 1 + 2 ------------------------------------------------------------------

    def api_scenarios(self) -> None:
        p = self.p
        plat = self.platform("api", 2)
        tok = self.tokens(plat, 1)
        seeds = {u: [plat.submit(tok[u][0], {"url": self.repo("hello"), "args": u}) for _ in range(p["seed_jobs_per_user"])]
                 for u in USERS}
        for u in USERS:
            plat.wait_terminal(tok[u][0], seeds[u], 120)
        # A pool of tokens logged in once, each paired with a job of its owner.
        tokens = self.tokens(plat, p["tokens_per_user"])
        pool = [(t, seeds[u][i % len(seeds[u])]) for u in USERS for i, t in enumerate(tokens[u])]
        random.Random(7).shuffle(pool)
        (self.out / "pool.txt").write_text("".join(f"{t} {j}\n" for t, j in pool))
        (self.out / "pool.json").write_text(json.dumps(pool))
        self.scenario_read_wrk(plat, len(pool))
        self.scenario_read_locust(plat, len(pool))
        self.scenario_submit(plat, tok["alice"][0])
        plat.stop()
        self.scenario_sustained()

    def wrk(self, m: Measure, name: str, script: str, args: list[str], env: dict) -> dict:
        cmd = ["wrk", *args, "-s", str(ROOT / "bench" / script)]
        code, ru, peak = run_child(cmd, {**os.environ, **env}, self.out / f"{name}.out", self.out / f"{name}.err",
                                   track=(m, "wrk"))
        m.add_external("wrk", ru, peak)
        lines = (self.out / f"{name}.out").read_text().strip().splitlines()
        if code != 0 or not lines:
            raise RuntimeError(f"wrk {name} failed ({code}); see {self.out}/{name}.err")
        return json.loads(lines[-1])

    def scenario_read_wrk(self, plat: Platform, pool_size: int) -> None:
        p = self.p
        log(f"1a. API read, wrk: {p['read_conns']} connections, {p['read_seconds']} s")
        env = {"BENCH_POOL": str(self.out / "pool.txt")}
        url = plat.api + "/"
        subprocess.run(["wrk", "-t2", "-c50", "-d1s", "-s", str(ROOT / "bench/poll.lua"), url],
                       env={**os.environ, **env}, capture_output=True)  # warm pools and caches
        h0 = frontend_histogram(plat, "/api/jobs/{id}")
        with Measure(self.procs(plat)) as m:
            res = self.wrk(m, "read-wrk", "poll.lua",
                           ["-t2", f"-c{p['read_conns']}", f"-d{p['read_seconds']}s", "--timeout", "5s", url], env)
        meas = m.result()
        res["server_side"] = histogram_quantiles(h0, frontend_histogram(plat, "/api/jobs/{id}"))
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
        self.scenarios.append({
            "id": "read_wrk", "title": "API read load, closed loop (wrk)",
            "settings": {"route": "GET /api/jobs/{id}", "connections": p["read_conns"], "seconds": p["read_seconds"],
                         "threads": 2, "tokens": pool_size, "distinct_jobs": 2 * p["seed_jobs_per_user"]},
            "results": res, "measure": meas,
            "limited_by": bottleneck(meas, "Closed loop: latency ≈ connections ÷ throughput (Little's law)."),
        })
        log(f"   {res['rps']} req/s, p95 {res['p95_ms']} ms, errors {res['errors']}")

    def scenario_read_locust(self, plat: Platform, pool_size: int) -> None:
        p = self.p
        users, rate, secs = p["locust_users"], p["locust_rate"], p["locust_seconds"]
        log(f"1b. API read, Locust: {users} users spawned at {rate}/s, {secs} s")
        prefix = self.out / "locust"
        env = {**os.environ, "BENCH_POOL_JSON": str(self.out / "pool.json"),
               "BENCH_LOCUST_SAMPLES": str(self.out / "locust-samples.json"),
               "BENCH_WAIT_MIN": str(LOCUST_WAIT[0]), "BENCH_WAIT_MAX": str(LOCUST_WAIT[1])}
        cmd = [self.locust, "-f", str(ROOT / "bench/locustfile.py"), "--headless", "-u", str(users), "-r", str(rate),
               "-t", f"{secs}s", "--host", plat.api, "--csv", str(prefix), "--only-summary",
               "--stop-timeout", "5", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
        h0 = frontend_histogram(plat, "/api/jobs/{id}")
        port = int(plat.api.rsplit(":", 1)[1])
        conns: list[int] = []
        stop = threading.Event()

        def count_connections():
            while not stop.wait(1.0):
                conns.append(established_to(port))

        counter = threading.Thread(target=count_connections, daemon=True)
        with Measure(self.procs(plat)) as m:
            counter.start()
            code, ru, peak = run_child(cmd, env, self.out / "locust.out", self.out / "locust.err", track=(m, "locust"))
            m.add_external("locust", ru, peak)
            stop.set()
            counter.join()
        server_side = histogram_quantiles(h0, frontend_histogram(plat, "/api/jobs/{id}"))
        if code != 0:
            raise RuntimeError(f"locust exited {code}; see {self.out}/locust.err")
        meas = m.result()
        with open(f"{prefix}_stats.csv") as f:
            agg = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
        history = []
        with open(f"{prefix}_stats_history.csv") as f:
            for r in csv.DictReader(f):
                if r["Name"] == "Aggregated":
                    history.append(r)
        full = [float(r["Requests/s"]) for r in history if int(r["User Count"]) >= users]
        failures = []
        try:
            with open(f"{prefix}_failures.csv") as f:
                failures = [{"error": r["Error"], "count": int(r["Occurrences"])} for r in csv.DictReader(f)]
        except OSError:
            pass
        err = (self.out / "locust.err").read_text(errors="replace")
        phases = {}
        try:
            samples = json.loads((self.out / "locust-samples.json").read_text())
            for ph, v in samples.items():
                okv = [x / 1000 for x in v if x >= 0]
                phases[ph] = {**summary_ms(okv), "failures": sum(1 for x in v if x < 0)}
        except (OSError, ValueError):
            pass
        n, nf = int(agg["Request Count"]), int(agg["Failure Count"])
        p95 = float(agg["95%"])
        error_pct = 100 * nf / max(1, n)
        res = {
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
            "by_phase": phases,
            "server_side": server_side,
            "locust_cpu_us_per_request": r1(1e6 * (ru.ru_utime + ru.ru_stime) / max(1, n)),
            # Connections open to the frontend, sampled every second.
            "frontend_connections_max": max(conns) if conns else None,
            "frontend_connections_median_last_half": (int(statistics.median(conns[len(conns) // 2:]))
                                                      if conns else None),
            "locust_cpu_warnings": err.count("CPU usage"),
        }
        lc = meas["processes"]["locust"]["cores"]
        need = res["offered_rps_all_users"] * res["locust_cpu_us_per_request"] / 1e6
        note = ("The generator (Locust, one Python process) is part of the figure: at "
                f"{res['locust_cpu_us_per_request']:.0f} µs of its CPU per request, the offered "
                f"{res['offered_rps_all_users']:,} requests/s would need {need:.1f} cores of it; it got {lc:.2f}"
                + ("; it warned its CPU was above 90 %" if res["locust_cpu_warnings"] else "") + ".")
        self.scenarios.append({
            "id": "read_locust", "title": f"API read load, Locust: {users:,} users at {rate}/s",
            "settings": {"route": "GET /api/jobs/{id}", "user_class": "FastHttpUser",
                         "wait_between_polls_s": list(LOCUST_WAIT), "tokens": pool_size,
                         "locust": run_text([self.locust, "--version"]).split(" from ")[0]},
            "results": res, "measure": meas, "limited_by": bottleneck(meas, note),
        })
        log(f"   {res['rps']} req/s, p95 {p95} ms, errors {res['error_rate']} %: "
            f"{'PASS' if res['passed'] else 'FAIL'}")

    def scenario_submit(self, plat: Platform, token: str) -> None:
        """2a. POST /api/addJob at full speed, 2 workers draining; then the
        books of every accepted job id (wrk writes them down)."""
        p = self.p
        log(f"2a. Submissions at full speed: POST /api/addJob, {p['submit_conns']} connections, "
            f"{p['submit_seconds']} s, 2 workers draining")
        before_total = plat.count(token)
        before_ok = plat.count(token, "succeeded")
        body = json.dumps({"url": self.repo("hello"), "args": "bench"})
        ids_prefix = self.out / "submit-ids"
        env = {"BENCH_BODY": body, "BENCH_TOKEN": token, "BENCH_IDS": str(ids_prefix)}
        with Measure(self.procs(plat)) as m:
            res = self.wrk(m, "submit-wrk", "submit.lua",
                           ["-t2", f"-c{p['submit_conns']}", f"-d{p['submit_seconds']}s", "--timeout", "10s",
                            plat.api + "/api/addJob"], env)
            ok_end = plat.count(token, "succeeded") - before_ok
        meas_submit = m.result()
        accepted = set()
        for f in self.out.glob("submit-ids.*"):
            accepted |= set(f.read_text().split())
        t_drain = time.monotonic()
        with Measure(self.procs(plat)) as m2:
            time.sleep(p["drain_seconds"])
            ok_drain = plat.count(token, "succeeded") - before_ok
        meas_drain = m2.result()
        drain_elapsed = time.monotonic() - t_drain
        # Close the books: stop the workers (each ends its job), let the
        # recorder and the observer catch up, then compare the accepted ids
        # with the records, and the queued records with the workers' Kafka lag.
        plat.stop([s.name for s in plat.services if s.name.startswith("worker")])
        stopped = time.time()
        self.settled_counts(plat, token)
        lag = plat.fresh_desired(stopped).get("backlog")
        # Each accepted id looked up (paging through tens of thousands of
        # records costs more than fetching them one by one).
        t_books = time.monotonic()

        def status_of(job_id: str) -> str:
            st, data = plat.http.request("GET", f"/api/jobs/{job_id}", token=token)
            return json.loads(data)["status"] if st == 200 else f"http {st}"

        ids = sorted(accepted)
        with ThreadPoolExecutor(6) as ex:
            statuses = dict(zip(ids, ex.map(status_of, ids)))
        by_status: dict[str, int] = {}
        for st in statuses.values():
            by_status[st] = by_status.get(st, 0) + 1
        missing = [i for i, st in statuses.items() if st.startswith("http")]
        records_new = plat.count(token) - before_total
        extras = records_new - (len(accepted) - len(missing))
        queued_all = plat.count(token, "queued") + plat.count(token, "running")
        # The jobs topic itself, and what the workers started: an accepted
        # job must be in Kafka, and a queued one must lie beyond the
        # workers' position in its partition (else the group moved past it
        # without running it).
        pos = kafka_positions(plat.env["LZ_KAFKA_BROKERS"], plat.env["LZ_JOBS_TOPIC"], JOBS_PARTITIONS)
        starts = worker_starts(plat.dir)
        reach: dict[int, int] = {}
        for (part, off) in starts:
            reach[part] = max(reach.get(part, -1), off)
        not_in_kafka = [i for i in ids if i not in pos]
        skipped = sorted((pos[i][0], pos[i][1], i) for i in ids
                         if statuses[i] == "queued" and i in pos and pos[i][1] <= reach.get(pos[i][0], -1))
        committed_estimate = sum(v + 1 for v in reach.values())
        books_seconds = time.monotonic() - t_books
        sample = self.check_outputs(plat, token, p["output_samples"])
        r = {
            "requests": res["requests"], "accepted": len(accepted), "rejected_non_2xx": res["non_2xx"],
            "socket_errors_or_timeouts": res["errors"] - res["non_2xx"],
            "accepted_per_s": round(len(accepted) / res["seconds"]),
            "p50_ms": res["p50_ms"], "p95_ms": res["p95_ms"], "p99_ms": res["p99_ms"], "max_ms": res["max_ms"],
            "records_created": records_new,
            "accepted_without_record": len(missing),
            "records_not_accepted": extras,
            "accepted_by_status": by_status,
            "succeeded_during_submission": ok_end,
            "drain_jobs_per_s_during_submission": r2(ok_end / res["seconds"]),
            "drain_jobs_per_s_after": r2((ok_drain - ok_end) / drain_elapsed),
            "queued_records": queued_all,
            "kafka_messages": len(pos),
            "accepted_not_in_kafka": len(not_in_kafka),
            "jobs_started_by_workers": len(starts),
            # Queued accepted jobs at offsets the workers had already passed
            # in their partition: never run, and never delivered again.
            "accepted_skipped": len(skipped),
            "accepted_skipped_first": [f"{part}:{off} {i}" for part, off, i in skipped[:8]],
            "kafka_lag_after_workers_stopped": lag,
            # Messages beyond the furthest started offset of each partition;
            # equals the observer's lag when commits follow the runs.
            "kafka_messages_beyond_workers": len(pos) - committed_estimate,
            "no_accepted_job_lost": (not missing and not not_in_kafka and not skipped
                                     and by_status.get("failed", 0) == 0),
            "output_sample": sample,
            "books_seconds": r2(books_seconds),
        }
        pr = meas_submit["processes"]
        r["cpu_us_per_accepted_job"] = {
            n: r1(1e6 * ((pr.get(n) or {}).get("cpu_s") or 0) / max(1, len(accepted)))
            for n in ("frontend", "tansu", "secantusd-rs", "wrk")}
        fe = meas_submit["processes"]["frontend"]["cores"] or 0.01
        r["accepted_per_frontend_core"] = round(r["accepted_per_s"] / fe)
        wc = sum((v.get("cores") or 0) + (v.get("children_cores") or 0)
                 for k, v in meas_drain["processes"].items() if k.startswith("worker"))
        r["drain_jobs_per_worker_core"] = r2(r["drain_jobs_per_s_after"] / max(0.01, wc))
        self.scenarios.append({
            "id": "submit", "title": "Submission load at full speed, 2 workers draining",
            "settings": {"route": "POST /api/addJob", "job": "examples/hello over file://", "connections": p["submit_conns"],
                         "seconds": p["submit_seconds"], "drain_seconds": p["drain_seconds"], "workers": 2,
                         "jobs_partitions": JOBS_PARTITIONS},
            "results": r, "measure": meas_submit, "measure_drain": meas_drain,
            "limited_by": bottleneck(meas_submit, "Each submission waits for MongoDB's journaled majority insert and "
                                     "Kafka's acks=all produce.") + " Drain: " + bottleneck(meas_drain),
        })
        log(f"   accepted {len(accepted)} ({r['accepted_per_s']}/s), records {records_new}, drain "
            f"{r['drain_jobs_per_s_after']} jobs/s, queued {queued_all} vs lag {lag}, extras {extras}, "
            f"not in Kafka {len(not_in_kafka)}, skipped by the workers {len(skipped)}")

    def scenario_sustained(self) -> None:
        """2b. A steady submission rate the two workers can keep up with, run
        to the end: every accepted job must succeed."""
        p = self.p
        rate, secs = p["sustained_rate"], p["sustained_seconds"]
        plat = self.platform("sustain", 2)
        token = self.tokens(plat, 1)["alice"][0]
        warm = [plat.submit(token, {"url": self.repo("hello"), "args": "warm"}) for _ in range(2)]
        plat.wait_terminal(token, warm, 60)
        log(f"2b. Sustained submissions: {rate} jobs/s for {secs} s, 2 workers, run to the end")
        n = int(rate * secs)
        ids: list[str | None] = [None] * n
        lat: list[float] = []
        errors = []
        lock = threading.Lock()
        body = {"url": self.repo("hello"), "args": "bench"}

        def sender(k0: int, t0: float):
            for k in range(k0, n, 4):
                delay = t0 + k / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                a = time.monotonic()
                try:
                    jid = plat.submit(token, body, route="/api/addJob")
                except Exception as e:  # noqa: BLE001 - counted, reported
                    with lock:
                        errors.append(str(e)[:200])
                    continue
                with lock:
                    lat.append(time.monotonic() - a)
                ids[k] = jid

        with Measure(self.procs(plat)) as m:
            t0 = time.monotonic() + 0.1
            threads = [threading.Thread(target=sender, args=(i, t0)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            t_sent = time.monotonic() - t0
            got = [i for i in ids if i]
            jobs = plat.wait_terminal(token, got, 60 + 2 * n)
            t_done = time.monotonic() - t0
        meas = m.result()
        ok = [j for j in jobs if j["status"] == "succeeded"]
        e2e = [parse_ts(j["finishedAt"]) - parse_ts(j["submittedAt"]) for j in ok]
        wait = [parse_ts(j["startedAt"]) - parse_ts(j["submittedAt"]) for j in ok if j.get("startedAt")]
        total = plat.count(token) - len(warm)
        sample = self.check_outputs(plat, token, p["output_samples"])
        disconnect = self.disconnect_check(plat, token)
        res = {
            "rate": rate, "seconds": secs, "attempted": n, "accepted": len(got), "errors": len(errors),
            "errors_top": errors[:3], "send_seconds": r2(t_sent), "all_done_seconds": r2(t_done),
            "submit_http": summary_ms(lat),
            "records": total, "succeeded": len(ok), "not_succeeded": len(jobs) - len(ok),
            "lost": len(got) - len(ok),
            "throughput_jobs_per_s": r2(len(ok) / t_done),
            "submitted_to_started": summary_ms(wait),
            "submitted_to_finished": summary_ms(e2e),
            "output_sample": sample,
            "client_disconnects": disconnect,
        }
        self.scenarios.append({
            "id": "sustained", "title": f"Sustained submissions at {rate} jobs/s, drained to the end",
            "settings": {"route": "POST /api/addJob", "job": "examples/hello over file://", "rate": rate,
                         "seconds": secs, "workers": 2, "client": "harness, 4 threads, open loop"},
            "results": res, "measure": meas,
            "limited_by": bottleneck(meas, "Open loop below the workers' capacity: the figure is the latency "
                                           "a job sees when the workers keep up."),
        })
        log(f"   accepted {len(got)}, succeeded {len(ok)}, lost {res['lost']}, job wait p95 "
            f"{res['submitted_to_started']['p95_ms']} ms; disconnects: {disconnect}")
        plat.stop()

    def disconnect_check(self, plat: Platform, token: str, n: int = 40) -> dict:
        """Clients that hang up while their submission is being handled: a
        record must never stay queued without a message in Kafka."""
        body = json.dumps({"url": self.repo("hello"), "args": "disconnect-check"}).encode()
        u = urllib.parse.urlparse(plat.api)
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
            recs = [j for j in plat.all_jobs(token) if j.get("args") == ["disconnect-check"]]
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

    def settled_counts(self, plat: Platform, token: str) -> dict:
        last, stable_since = None, time.monotonic()
        deadline = time.monotonic() + 30
        while True:
            c = {"total": plat.count(token)}
            for s in ("queued", "running", *TERMINAL):
                c[s] = plat.count(token, s)
            if c != last:
                last, stable_since = c, time.monotonic()
            elif time.monotonic() - stable_since >= 2 or time.monotonic() > deadline:
                return c
            time.sleep(0.5)

    def check_outputs(self, plat: Platform, token: str, n: int) -> dict:
        jobs = plat.http.json("GET", "/api/jobs?status=succeeded&per_page=100", token=token)["jobs"]
        jobs = [j for j in jobs if j.get("args") == ["bench"]]
        sample = random.Random(3).sample(jobs, min(n, len(jobs)))
        ok = 0
        bad = []
        for j in sample:
            status, data = plat.http.request("GET", f"/api/jobs/{j['id']}/files/greeting.txt", token=token)
            if status == 200 and data == b"Hello, bench!\n":
                ok += 1
            else:
                bad.append({"id": j["id"], "status": status})
        return {"checked": len(sample), "ok": ok, "bad": bad[:5]}

    # 3 + 4 ------------------------------------------------------------------

    def worker_phases(self, plat: Platform, since_lines: dict[str, int]) -> dict:
        phases = {"repository cloned": [], "scripts ended": [], "results stored": []}
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
        names = {"repository cloned": "clone", "scripts ended": "script", "results stored": "upload"}
        return {names[k]: summary_ms(v) for k, v in phases.items()}

    def log_lines(self, plat: Platform) -> dict[str, int]:
        return {s.name: len(s.log.read_text(errors="replace").splitlines())
                for s in plat.services if s.name.startswith("worker")}

    def scenario_latency(self, plat: Platform, token: str) -> None:
        n = self.p["latency_jobs"]
        log(f"3. Job latency: {n} hello jobs one at a time, 1 worker, polling every {POLL_INTERVAL * 1000:.0f} ms")
        warm = plat.submit(token, {"url": self.repo("hello"), "args": "warm"})
        plat.wait_terminal(token, [warm], 60)
        time.sleep(1)
        marks = self.log_lines(plat)
        rows = []
        with Measure(self.procs(plat)) as m:
            for i in range(n):
                t0 = time.monotonic()
                jid = plat.submit(token, {"url": self.repo("hello"), "args": f"run-{i}"})
                t_accept = time.monotonic()
                running = None
                while True:
                    j = plat.job(token, jid)
                    now = time.monotonic()
                    if running is None and j["status"] != "queued":
                        running = now
                    if j["status"] in TERMINAL:
                        break
                    if now - t0 > 60:
                        raise RuntimeError(f"job {jid} did not finish")
                    time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - now)))
                sub = parse_ts(j["submittedAt"])
                rows.append({
                    "status": j["status"], "submit_http": t_accept - t0,
                    "poll_running": running - t0, "poll_done": now - t0,
                    "rec_running": parse_ts(j.get("startedAt")) - sub if j.get("startedAt") else None,
                    "rec_done": parse_ts(j.get("finishedAt")) - sub if j.get("finishedAt") else None,
                    "saw_running": j["status"] != "queued" and running < now,
                })
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
            "worker_phases": self.worker_phases(plat, marks),
            "poll_interval_ms": POLL_INTERVAL * 1000,
        }
        ph = res["worker_phases"]
        note = ("Per job on the worker (medians): clone {c} ms, start script (node) {s} ms, upload {u} ms; "
                "the rest is Kafka dispatch and the status events' trip through the recorder."
                .format(c=ph["clone"]["p50_ms"], s=ph["script"]["p50_ms"], u=ph["upload"]["p50_ms"]))
        self.scenarios.append({
            "id": "latency", "title": "Job latency on an idle system (hello, one at a time)",
            "settings": {"job": "examples/hello over file://", "workers": 1, "jobs": n,
                         "poll": f"GET /api/jobs/{{id}} every {POLL_INTERVAL * 1000:.0f} ms",
                         "record": "startedAt / finishedAt minus submittedAt"},
            "results": res, "measure": meas, "limited_by": bottleneck(meas, note),
        })
        log(f"   submit→running p50 {res['polled_submit_to_running']['p50_ms']} ms (record "
            f"{res['record_submitted_to_started']['p50_ms']} ms), submit→succeeded p50 "
            f"{res['polled_submit_to_succeeded']['p50_ms']} ms (record {res['record_submitted_to_finished']['p50_ms']} ms)")

    def scale_batch(self, plat: Platform, token: str, workers: int) -> dict:
        p = self.p
        n, s = p["scale_jobs"], p["scale_sleep"]
        url = self.repo(f"sleep-{s}")
        with Measure(self.procs(plat)) as m:
            t0 = time.monotonic()
            ids = [plat.submit(token, {"url": url}) for _ in range(n)]
            t_sub = time.monotonic() - t0
            while plat.count(token, "succeeded") + plat.count(token, "failed") < n + self.scale_base:
                if time.monotonic() - t0 > 30 + 3 * n * s:
                    raise RuntimeError("scaling batch did not finish")
                time.sleep(0.05)
            client_makespan = time.monotonic() - t0
        self.scale_base += n
        jobs = plat.wait_terminal(token, ids, 30)
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

    def scenario_scaling_and_latency(self) -> None:
        p = self.p
        runs = []
        for w in p["scale_workers"]:
            plat = self.platform(f"scale{w}", w)
            token = self.tokens(plat, 1)["alice"][0]
            self.scale_base = 0
            if w == 1:
                self.scenario_latency(plat, token)
                self.scale_base = plat.count(token, "succeeded") + plat.count(token, "failed")
            else:
                # One job per worker first, so every worker has cloned once.
                warm = [plat.submit(token, {"url": self.repo(f"sleep-{p['scale_sleep']}")}) for _ in range(w)]
                plat.wait_terminal(token, warm, 60)
                self.scale_base = plat.count(token, "succeeded") + plat.count(token, "failed")
            log(f"4. Scaling: {p['scale_jobs']} × sleep {p['scale_sleep']} s on {w} worker(s)")
            r = self.scale_batch(plat, token, w)
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
        self.scenarios.append({
            "id": "scaling", "title": f"Scaling: {p['scale_jobs']} × sleep {p['scale_sleep']} s",
            "settings": {"jobs": p["scale_jobs"], "sleep_s": p["scale_sleep"], "workers": p["scale_workers"],
                         "jobs_partitions": JOBS_PARTITIONS,
                         "makespan": "last finishedAt minus first submittedAt (records)"},
            "results": {"runs": [{k: v for k, v in r.items() if k != "measure"} for r in runs]},
            "measure": runs[-1]["measure"], "measures": {str(r["workers"]): r["measure"] for r in runs},
            "limited_by": note + " Machine at 4 workers: " + bottleneck(runs[-1]["measure"]),
        })

    # 5 ----------------------------------------------------------------------

    def scenario_elasticity(self) -> None:
        p = self.p
        hook = Webhook()
        plat = self.platform("elastic", 1, {"LZ_ACTUATOR": "webhook", "LZ_WEBHOOK_URL": hook.url, **ELASTIC_ENV})
        token = self.tokens(plat, 1)["alice"][0]
        url = self.repo(f"sleep-{p['burst_sleep']}")
        window = int(ELASTIC_ENV["REFRESH_RATE"]) / 1000
        trials = []
        phase_rng = random.Random(5)
        with Measure(self.procs(plat)) as m:
            for t in range(p["burst_trials"]):
                # Settled: one worker wanted, nothing waiting.
                deadline = time.monotonic() + 60
                while True:
                    d = plat.desired()
                    if d.get("desiredReplicas") == 1 and not d.get("backlog"):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the observer never settled: {d}")
                    time.sleep(0.2)
                # A random phase within the observer's window, so that the
                # trials sample the wait for the next tick instead of
                # locking onto one phase.
                time.sleep(window + phase_rng.uniform(0, window))
                log(f"5. Elasticity: burst {t + 1}/{p['burst_trials']}: {p['burst_jobs']} × sleep {p['burst_sleep']} s on 1 worker")
                t0 = time.monotonic()
                ids = [plat.submit(token, {"url": url}) for _ in range(p["burst_jobs"])]
                t_sub = time.monotonic() - t0
                up = hook.wait_for(t0, lambda b: (b.get("desiredReplicas") or 0) > 1, 30)
                trial = {"burst_jobs": p["burst_jobs"], "submit_seconds": r2(t_sub)}
                if up:
                    obs = up[1].get("observation", {})
                    trial.update(reaction_s=r2(up[0] - t0), desired=up[1].get("desiredReplicas"),
                                 backlog=obs.get("backlog"), reason=up[1].get("reason"))
                    log(f"   scale-up webhook after {trial['reaction_s']} s: desired {trial['desired']}")
                else:
                    trial["reaction_s"] = None
                    log("   no scale-up decision within 30 s")
                if p["burst_scale_down"] or t + 1 < p["burst_trials"]:
                    plat.wait_terminal(token, ids, 30 + 2 * p["burst_jobs"] * p["burst_sleep"])
                    trial["drained_s"] = r2(time.monotonic() - t0)
                if p["burst_scale_down"] and up:
                    down = hook.wait_for(up[0], lambda b: b.get("desiredReplicas") == 1, 60)
                    if down:
                        trial["scale_down_after_up_s"] = r2(down[0] - up[0])
                        trial["scale_down_after_drain_s"] = r2(down[0] - t0 - trial["drained_s"])
                trials.append(trial)
        meas = m.result()
        hook.close()
        plat.stop()
        reactions = [t["reaction_s"] for t in trials if t["reaction_s"] is not None]
        res = {"trials": trials, "window_s": window,
               "reaction_s_median": r2(statistics.median(reactions)) if reactions else None,
               "reaction_s_max": r2(max(reactions)) if reactions else None,
               "reaction_in_windows_max": r2(max(reactions) / window) if reactions else None}
        self.scenarios.append({
            "id": "elasticity", "title": "Elasticity: a burst on one worker, webhook actuator",
            "settings": {**ELASTIC_ENV, "LZ_ACTUATOR": "webhook", "burst_jobs": p["burst_jobs"],
                         "sleep_s": p["burst_sleep"], "trials": p["burst_trials"],
                         "LZ_OBSERVER_GRACE_MS": "1000 (default)"},
            "results": res, "measure": meas,
            "limited_by": ("The observer's tick: it decides once per REFRESH_RATE (at each window's end plus "
                           "the 1 s grace) from the Kafka lag probed at that tick, so the reaction is the wait "
                           "for the next tick — between 0 and REFRESH_RATE, bursts start at a random phase — "
                           "plus the probe and the webhook call. " + bottleneck(meas)),
        })

    # Report -----------------------------------------------------------------

    def environment(self) -> tuple[dict, dict]:
        lscpu = run_text(["lscpu"])
        model = re.search(r"Model name:\s*(.+)", lscpu)
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
        machine = {
            "cpu_model": model.group(1).strip() if model else pyplatform.processor(),
            "cores": CORES, "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": pyplatform.release(),
            "hypervisor": (re.search(r"Hypervisor vendor:\s*(.+)", lscpu) or [None, None])[1],
        }
        dirty = run_text(["git", "-C", str(ROOT), "status", "--porcelain", "--", "common", "frontend", "worker",
                          "observer", "Cargo.toml", "Cargo.lock"])
        versions = {
            "git_rev": run_text(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"]),
            "git_subject": run_text(["git", "-C", str(ROOT), "log", "-1", "--format=%s"]),
            "uncommitted_service_files": [l.split(None, 1)[-1] for l in dirty.splitlines() if l.strip()],
            "rustc": run_text(["rustc", "--version"]),
            "tansu": run_text([str(TANSU), "--version"]),
            "secantusd-rs": run_text([str(CACHE / "secantus-0.5.3-beta.196/bin/secantusd-rs"), "--version"]).splitlines()[0:1],
            "seaweedfs": next((l for l in run_text([str(CACHE / "seaweedfs-4.48/bin/weed"), "version"]).splitlines()
                               if l.startswith("version")), ""),
            "oidc-provider": "9.13.3",
            "node": run_text(["node", "--version"]),
            "wrk": run_text(["sh", "-c", "wrk -v 2>&1 | head -n1"]).split(" Copyright")[0],
            "locust": run_text([self.locust, "--version"]).split(" from ")[0],
            "python": pyplatform.python_version(),
        }
        versions["secantusd-rs"] = versions["secantusd-rs"][0] if versions["secantusd-rs"] else ""
        return machine, versions

    def report(self, wall: float) -> dict:
        machine, versions = self.environment()
        sc = {s["id"]: s for s in self.scenarios}
        head = {}
        if "read_wrk" in sc:
            r = sc["read_wrk"]["results"]
            head["read_rps"] = r["rps"]
            head["read_p95_ms"] = r["p95_ms"]
            head["read_rps_per_frontend_core"] = r["rps_per_frontend_core"]
        if "read_locust" in sc:
            r = sc["read_locust"]["results"]
            head.update(locust_users=r["users"], locust_error_rate=r["error_rate"], locust_p95_ms=r["p95_ms"],
                        locust_passed=r["passed"], locust_rps=r["rps_all_users_running"])
        if "submit" in sc:
            r = sc["submit"]["results"]
            head.update(accepted_jobs_per_s=r["accepted_per_s"], accepted_jobs_lost=(
                            r["accepted_without_record"] + r["accepted_not_in_kafka"] + r["accepted_skipped"]),
                        drain_jobs_per_s=r["drain_jobs_per_s_after"])
        if "sustained" in sc:
            r = sc["sustained"]["results"]
            head.update(sustained_lost=r["lost"], sustained_job_wait_p95_ms=r["submitted_to_started"]["p95_ms"],
                        disconnect_stuck_queued=r["client_disconnects"]["by_status"].get("queued", 0))
        if "latency" in sc:
            r = sc["latency"]["results"]
            head.update(submit_to_running_p50_ms=r["polled_submit_to_running"]["p50_ms"],
                        submit_to_succeeded_p50_ms=r["polled_submit_to_succeeded"]["p50_ms"])
        if "scaling" in sc:
            for r in sc["scaling"]["results"]["runs"]:
                head[f"speedup_{r['workers']}_workers"] = r["speedup"]
        if "elasticity" in sc:
            head["scale_reaction_s"] = sc["elasticity"]["results"]["reaction_s_median"]
        return {
            "schema": 1, "mode": self.mode,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "wall_seconds": round(wall, 1), "build_seconds": self.build_seconds,
            "machine": machine, "versions": versions,
            "settings": {**self.p, "jobs_partitions": JOBS_PARTITIONS, "status_partitions": STATUS_PARTITIONS,
                         "frontend_http_workers": "default (one per CPU)", "locust_wait_s": list(LOCUST_WAIT),
                         "namespace": self.run_id},
            "headline": head,
            "quiet_check": getattr(self, "quiet", None),
            "overrides": self.overrides,
            "scenarios": self.scenarios,
        }

    def wait_quiet(self, limit_s: float, max_other_cores: float = 0.35) -> dict:
        """Full mode: wait (up to limit_s) for a 5 s stretch in which the
        machine, stack included, is close to idle, so that other sessions'
        builds and tests stay out of the published figures. Goes on anyway
        after limit_s, and says so in the report."""
        t0 = time.monotonic()
        while True:
            b0 = machine_busy()
            time.sleep(5)
            cores = (machine_busy() - b0) / 5
            if cores <= max_other_cores or time.monotonic() - t0 >= limit_s:
                res = {"busy_cores_before_start": r2(cores), "waited_s": r1(time.monotonic() - t0),
                       "quiet": cores <= max_other_cores}
                log(f"machine {'quiet' if res['quiet'] else 'still busy'}: {cores:.2f} cores busy "
                    f"(waited {res['waited_s']} s)")
                return res
            log(f"machine busy ({cores:.2f} cores used by others): waiting for quiet")

    def run(self) -> None:
        self.quiet = self.wait_quiet(600) if self.mode == "full" else None
        try:
            self.api_scenarios()
            self.scenario_scaling_and_latency()
            self.scenario_elasticity()
        finally:
            for p in self.platforms:
                p.stop()
        wall = time.time() - self.started
        rep = self.report(wall)
        text = json.dumps(rep, indent=2, ensure_ascii=False) + "\n"
        (self.out / "report.json").write_text(text)
        md = render_markdown(rep)
        (self.out / "report.md").write_text(md)
        (ROOT / "target/bench" / f"latest-{self.mode}.json").write_text(text)
        if self.mode == "full":
            (ROOT / "docs/bench").mkdir(parents=True, exist_ok=True)
            (ROOT / "docs/bench/latest.json").write_text(text)
            update_docs(md)
            log("wrote docs/bench/latest.json and the Harness section of docs/benchmarks.md")
        print(render_summary(rep))
        log(f"report: {self.out}/report.md, {self.out}/report.json; wall {wall:.0f} s "
            f"(of which build {self.build_seconds} s)")


# --------------------------------------------------------------------------
# Markdown


def fmt(x, unit="", nd=None):
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float) and nd is not None:
        x = round(x, nd)
    if isinstance(x, (int, float)) and abs(x) >= 1000:
        s = f"{x:,.0f}"
    else:
        s = f"{x:g}" if isinstance(x, float) else str(x)
    return s + unit


PROC_ORDER = ["frontend", "worker-1", "worker-2", "worker-3", "worker-4", "observer", "secantusd-rs", "tansu", "weed",
              "oidc-provider", "wrk", "locust", "harness"]


def process_table(columns: list[tuple[str, dict]]) -> str:
    names = []
    for _, meas in columns:
        for n in meas["processes"]:
            if n not in names:
                names.append(n)
    names.sort(key=lambda n: PROC_ORDER.index(n) if n in PROC_ORDER else 99)
    head = "| process | " + " | ".join(c for c, _ in columns) + " |\n|---|" + "---|" * len(columns) + "\n"
    rows = []
    for n in names:
        cells = []
        for _, meas in columns:
            e = meas["processes"].get(n)
            if not e:
                cells.append("")
                continue
            cell = f"{e['cpu_s']:.1f} s ({e['cores']:.2f}) · {e['peak_rss_mib']:.0f} MiB"
            if "children_cpu_s" in e:
                cell += f" + jobs {e['children_cpu_s']:.1f} s ({e['children_cores']:.2f})"
            cells.append(cell)
        label = {"harness": "harness (client, poller)", "locust": "Locust (load)", "wrk": "wrk (load)"}.get(n, n)
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    machine = " | ".join(f"{m['machine']['busy_cpu_s']:.1f} s ({m['machine']['busy_cores']:.2f} of {m['machine']['cores']})"
                         for _, m in columns)
    other = " | ".join(f"{m['machine']['other_cpu_s']:.1f} s ({m['machine']['other_cores']:.2f})" for _, m in columns)
    secs = " | ".join(f"{m['seconds']:.1f} s" for _, m in columns)
    rows.append(f"| *outside the benchmark* | {other} |")
    rows.append(f"| **machine busy** | {machine} |")
    rows.append(f"| *window* | {secs} |")
    if any((m["machine"].get("tcp") or {}).get("ListenOverflows") or (m["machine"].get("tcp") or {}).get("TCPSynRetrans")
           for _, m in columns):
        tcp = " | ".join(f"{m['machine']['tcp'].get('ListenOverflows', 0):,} / {m['machine']['tcp'].get('TCPSynRetrans', 0):,}"
                         for _, m in columns)
        rows.append(f"| *TCP listen overflows / SYN retransmits* | {tcp} |")
    return head + "\n".join(rows) + "\n"


def render_markdown(rep: dict) -> str:
    sc = {s["id"]: s for s in rep["scenarios"]}
    m, v = rep["machine"], rep["versions"]
    out = []
    w = out.append
    dirty = v["uncommitted_service_files"]
    w(f"Run of {rep['date']}, `{rep['mode']}` mode: {rep['wall_seconds']:.0f} s of wall time "
      f"(release build {rep['build_seconds']} s of it).\n")
    w(f"- Machine: {m['cores']} cores, {m['cpu_model']}" + (f" ({m['hypervisor']} guest)" if m.get("hypervisor") else "")
      + f", {m['memory_gib']} GiB, Linux {m['kernel']}. The load generators and every service share the two cores.")
    w(f"- Versions: `{v['git_rev']}` ({v['git_subject']})"
      + (f", with uncommitted changes in {', '.join('`' + d + '`' for d in dirty)}" if dirty else ", clean tree")
      + f"; {v['rustc']}; {v['tansu']}; {v['secantusd-rs']}; SeaweedFS {v['seaweedfs']}; oidc-provider "
      f"{v['oidc-provider']} on Node {v['node']}; {v['wrk']}; {v['locust']}; Python {v['python']}.")
    s = rep["settings"]
    w(f"- Settings: release binaries; jobs topic {s['jobs_partitions']} partitions, status topic "
      f"{s['status_partitions']}; frontend with its default HTTP workers (one per CPU) and `RUST_LOG=warn`; "
      "workers and observer at `info` with JSON logs; `LZ_KAFKA_FETCH_WAIT_MAX_MS` and `LZ_KAFKA_LINGER_MS` "
      "at their defaults (20 ms, 0); each platform on topics, groups and a database of its own "
      f"(`{s['namespace']}-*`).")
    w("- CPU cells: CPU seconds in the window (cores = CPU seconds ÷ window) · peak RSS sampled every 200 ms. "
      "A worker's `+ jobs` is the CPU of the job processes it ran (reaped children). *Outside the benchmark*: "
      "machine CPU (from `/proc/stat`) that no measured process used — other sessions on the shared machine, the "
      "kernel.\n")

    if "read_wrk" in sc or "read_locust" in sc:
        w("### 1. API read load\n")
        w("| load | requests/s | p50 | p95 | p99 | errors | requests/s per frontend core | frontend µs CPU / request | secantusd-rs µs CPU / request |")
        w("|---|---|---|---|---|---|---|---|---|")
        if "read_wrk" in sc:
            x = sc["read_wrk"]
            r, st = x["results"], x["settings"]
            w(f"| wrk, {st['connections']:,} connections, {st['seconds']} s, {st['tokens']} tokens over {st['distinct_jobs']} jobs "
              f"| {fmt(r['rps'])} | {fmt(r['p50_ms'], ' ms', 1)} | {fmt(r['p95_ms'], ' ms', 1)} | {fmt(r['p99_ms'], ' ms', 1)} "
              f"| {r['errors']} ({r['error_rate']} %) | {fmt(r['rps_per_frontend_core'])} | {fmt(r['frontend_cpu_us_per_request'])} "
              f"| {fmt(r['db_cpu_us_per_request'])} |")
        if "read_locust" in sc:
            x = sc["read_locust"]
            r = x["results"]
            meas = x["measure"]
            fe = meas["processes"]["frontend"]["cores"] or 0.01
            db = meas["processes"].get("secantusd-rs", {}).get("cores") or 0.01
            rps = r["rps_all_users_running"] or r["rps"]
            w(f"| Locust, {r['users']:,} users spawned at {r['spawn_rate']}/s, {r['seconds']} s, poll every "
              f"{x['settings']['wait_between_polls_s'][0]:g}–{x['settings']['wait_between_polls_s'][1]:g} s "
              f"| {fmt(rps)} (whole run {fmt(r['rps'])}) | {fmt(r['p50_ms'], ' ms')} | {fmt(r['p95_ms'], ' ms')} | {fmt(r['p99_ms'], ' ms')} "
              f"| {r['failures']} ({r['error_rate']} %) | {fmt(round(r['rps'] / fe))} | {fmt(round(1e6 * fe / max(1, r['rps']), 1))} "
              f"| {fmt(round(1e6 * db / max(1, r['rps']), 1))} |")
            w("")
            verdict = "passes" if r["passed"] else "fails"
            w(f"Pass line of the classic scenario (errors < 1 %, p95 < 1 s): **{verdict}** — errors {r['error_rate']} % "
              f"(line 1 %), p95 {fmt(r['p95_ms'], ' ms')} (line 1,000 ms, "
              + (f"{r['p95_margin']:g}× inside it" if r["passed"] and r["p95_margin"] else f"{fmt(r['p95_ms'] / 1000, '', 2)}× the line")
              + f"). Offered load with every user running: ≈ {fmt(r['offered_rps_all_users'])} requests/s; "
              f"served {fmt(rps)}/s."
              + (f" Locust warned {r['locust_cpu_warnings']} time(s) that its CPU was above 90 %." if r["locust_cpu_warnings"] else "")
              + (" Failures: " + "; ".join(f"{f['count']} × {f['error']}" for f in r["failures_top"]) if r["failures_top"] else ""))
            bp = r.get("by_phase") or {}
            if bp:
                w("")
                w("By phase (the harness's own record of every response): "
                  + "; ".join(f"{ph} {q['n']:,} requests, p50 {fmt(q['p50_ms'], ' ms')}, p95 {fmt(q['p95_ms'], ' ms')}, "
                              f"p99 {fmt(q['p99_ms'], ' ms')}, {q['failures']} failed"
                              for ph, q in bp.items() if q["n"] or q["failures"]) + ".")
        w("")
        srv = []
        for k, label in (("read_wrk", "wrk"), ("read_locust", "Locust")):
            q = sc[k]["results"].get("server_side") if k in sc else None
            if q:
                srv.append(f"{label} run: p50 {fmt(q.get('p50_ms'), ' ms')}, p95 {fmt(q.get('p95_ms'), ' ms')}, "
                           f"p99 {fmt(q.get('p99_ms'), ' ms')}, {q['over_1s']} of {q['n']:,} over 1 s")
        if srv:
            w("Server side, from the frontend's own histogram (`http_request_duration_seconds`, handler time, "
              "interpolated within buckets): " + "; ".join(srv) + ". Client latency above it is time in sockets, "
              "in the kernel's queues, and in the load generator waiting for CPU.")
        if "read_locust" in sc:
            r = sc["read_locust"]["results"]
            w(f"Locust spent {fmt(r['locust_cpu_us_per_request'])} µs of CPU per request. Connections open to the "
              f"frontend (sampled every second): at most {fmt(r.get('frontend_connections_max'))}, median over the "
              f"second half {fmt(r.get('frontend_connections_median_last_half'))}, for {r['users']:,} users.")
        w("")
        cols = [(n, sc[k]["measure"]) for k, n in (("read_wrk", "wrk"), ("read_locust", "Locust")) if k in sc]
        w(process_table(cols))
        for k in ("read_wrk", "read_locust"):
            if k in sc:
                w(f"- Limited by ({'wrk' if k == 'read_wrk' else 'Locust'}): {sc[k]['limited_by']}")
        w("")

    if "submit" in sc:
        x = sc["submit"]
        r, st = x["results"], x["settings"]
        w("### 2. Submission load\n")
        w(f"**2a. Full speed.** `POST /api/addJob` (the `hello` example over `file://`), {st['connections']} connections "
          f"for {st['seconds']} s, 2 workers draining meanwhile; then {st['drain_seconds']} s more of drain; then the "
          "workers are stopped and the books closed: wrk writes down the id of every accepted job, and each is looked "
          "up through the API, in the jobs topic (read back with `tansu cat consume`) and against the offsets the "
          "workers started (their logs; the group's committed offsets follow them).\n")
        w("| accepted jobs/s | p50 | p95 | p99 | rejected | accepted per frontend core | drained jobs/s during / after submission | drained jobs/s per worker core |")
        w("|---|---|---|---|---|---|---|---|")
        w(f"| {fmt(r['accepted_per_s'])} ({fmt(r['accepted'])} in {st['seconds']} s) | {fmt(r['p50_ms'], ' ms', 1)} | {fmt(r['p95_ms'], ' ms', 1)} "
          f"| {fmt(r['p99_ms'], ' ms', 1)} | {r['rejected_non_2xx']} + {r['socket_errors_or_timeouts']} socket errors "
          f"| {fmt(r['accepted_per_frontend_core'])} | {r['drain_jobs_per_s_during_submission']} / {r['drain_jobs_per_s_after']} "
          f"| {r['drain_jobs_per_worker_core']} |")
        w("")
        bs = r["accepted_by_status"]
        smp = r["output_sample"]
        lost = r["accepted_without_record"] + r["accepted_not_in_kafka"] + r["accepted_skipped"]
        w(f"Books: {fmt(r['accepted'])} accepted ids, {r['accepted_without_record']} of them without a record, "
          f"{r['accepted_not_in_kafka']} of them missing from the jobs topic (read back with `tansu cat consume`: "
          f"{fmt(r['kafka_messages'])} messages); {fmt(r['records_created'])} records, {r['records_not_accepted']} of them "
          "not accepted (requests in flight when wrk stopped). Accepted jobs by state at the end: "
          + ", ".join(f"{fmt(v)} {k}" for k, v in sorted(bs.items(), key=lambda kv: -kv[1]))
          + f". The workers started {fmt(r['jobs_started_by_workers'])} jobs; **{r['accepted_skipped']} accepted jobs are "
          "still queued at offsets their partition's worker had already passed** (never run, never delivered again)"
          + (f", e.g. partition:offset {', '.join(r['accepted_skipped_first'][:3])}" if r["accepted_skipped"] else "")
          + f". Workers' Kafka lag after they stopped: {fmt(r['kafka_lag_after_workers_stopped'])}; messages beyond the "
          f"furthest job each partition's worker started: {fmt(r['kafka_messages_beyond_workers'])}. "
          + (f"**Accepted jobs lost: {lost}.**" if lost else "**No accepted job lost.**")
          + f" Outputs: {smp['ok']} of {smp['checked']} sampled succeeded jobs have `greeting.txt` with the expected text.\n")
        cu = r.get("cpu_us_per_accepted_job") or {}
        w("CPU per accepted job during the submission window: " + ", ".join(f"{k} {fmt(v)} µs" for k, v in cu.items()) + ".\n")
        w(process_table([("submission", x["measure"]), ("drain only", x["measure_drain"])]))
        w(f"- Limited by: {x['limited_by']}\n")
    if "sustained" in sc:
        x = sc["sustained"]
        r, st = x["results"], x["settings"]
        smp = r["output_sample"]
        w(f"**2b. Sustained, run to the end.** {st['rate']} jobs/s for {st['seconds']} s (open loop, the harness's "
          "client), 2 workers, then every job waited for.\n")
        w("| accepted | succeeded | lost | throughput | submit request p50 / p95 | submitted → started p50 / p95 / p99 | submitted → finished p50 / p95 / p99 |")
        w("|---|---|---|---|---|---|---|")
        q, a, b = r["submit_http"], r["submitted_to_started"], r["submitted_to_finished"]
        w(f"| {r['accepted']} of {r['attempted']} | {r['succeeded']} | **{r['lost']}** | {r['throughput_jobs_per_s']} jobs/s "
          f"| {fmt(q['p50_ms'], ' ms')} / {fmt(q['p95_ms'], ' ms')} | {fmt(a['p50_ms'], ' ms')} / {fmt(a['p95_ms'], ' ms')} / {fmt(a['p99_ms'], ' ms')} "
          f"| {fmt(b['p50_ms'], ' ms')} / {fmt(b['p95_ms'], ' ms')} / {fmt(b['p99_ms'], ' ms')} |")
        w("")
        d = r["client_disconnects"]
        w(f"Records {r['records']} (= accepted: {'yes' if r['records'] == r['accepted'] else 'no'}); outputs: {smp['ok']} of "
          f"{smp['checked']} sampled jobs have the expected `greeting.txt`.\n")
        w(f"Clients that hang up mid-submit (raw socket, reset 0–12 ms after sending the request, {d['sent']} times, on the "
          f"idle platform): {d['records']} records created — "
          + ", ".join(f"{v} {k}" for k, v in d["by_status"].items())
          + f" — with the workers' Kafka lag at {fmt(d['kafka_lag'])}"
          + (f"; {d.get('stuck_queued_not_in_kafka', '–')} of the queued ones have no message in the jobs topic. "
             "**A record left queued with no message never runs and never leaves `queued`.**"
             if d["by_status"].get("queued") else ".") + "\n")
        w(process_table([("sustained", x["measure"])]))
        w(f"- Limited by: {x['limited_by']}\n")

    if "latency" in sc:
        x = sc["latency"]
        r = x["results"]
        w("### 3. Job latency on an idle system\n")
        w(f"{r['jobs']} `hello` jobs (Node) one at a time on 1 worker. *Polled*: the client's view, "
          f"`GET /api/jobs/{{id}}` every {r['poll_interval_ms']:g} ms from the moment the submit was sent. "
          "*Record*: `startedAt` / `finishedAt` minus `submittedAt` from the job record (the frontend's clock at "
          "acceptance, the worker's at its status events; same machine).\n")
        w("| interval | p50 | p95 | p99 | max | n |")
        w("|---|---|---|---|---|---|")
        for key, label in (("submit_http", "submit request (POST answered)"),
                           ("polled_submit_to_running", "submit → running, polled"),
                           ("record_submitted_to_started", "submit → running, record"),
                           ("polled_submit_to_succeeded", "submit → succeeded, polled"),
                           ("record_submitted_to_finished", "submit → succeeded, record")):
            q = r[key]
            w(f"| {label} | {fmt(q['p50_ms'], ' ms')} | {fmt(q['p95_ms'], ' ms')} | {fmt(q['p99_ms'], ' ms')} | {fmt(q['max_ms'], ' ms')} | {q['n']} |")
        for k, q in r["worker_phases"].items():
            w(f"| worker: {k} | {fmt(q['p50_ms'], ' ms')} | {fmt(q['p95_ms'], ' ms')} | {fmt(q['p99_ms'], ' ms')} | {fmt(q['max_ms'], ' ms')} | {q['n']} |")
        w("")
        w(process_table([("latency", x["measure"])]))
        w(f"- Limited by: {x['limited_by']}\n")

    if "scaling" in sc:
        x = sc["scaling"]
        runs = x["results"]["runs"]
        w("### 4. Scaling\n")
        w(f"The same batch, {x['settings']['jobs']} jobs × `sleep {x['settings']['sleep_s']:g}`, submitted at once to a fresh "
          "platform with 1, 2 and 4 workers. Makespan: last `finishedAt` − first `submittedAt`.\n")
        w("| workers | makespan | ideal (jobs × sleep ÷ workers) | speed-up | ideal speed-up | efficiency | jobs per worker | overhead per job |")
        w("|---|---|---|---|---|---|---|---|")
        for q in runs:
            w(f"| {q['workers']} | {q['makespan_s']} s | {q['ideal_makespan_s']} s | {q['speedup']}× | {q['workers']}× "
              f"| {round(100 * q['efficiency'])} % | {', '.join(map(str, q['jobs_per_worker']))} | {fmt(round(q['overhead_per_job_s'] * 1000), ' ms')} |")
        w("")
        w(process_table([(f"{k} worker(s)", mm) for k, mm in x["measures"].items()]))
        w(f"- Limited by: {x['limited_by']}\n")

    if "elasticity" in sc:
        x = sc["elasticity"]
        r = x["results"]
        st = x["settings"]
        w("### 5. Elasticity\n")
        w(f"A burst of {st['burst_jobs']} × `sleep {st['sleep_s']:g}` on 1 worker; observer with `LZ_ACTUATOR=webhook` into a "
          f"receiver in the harness, `REFRESH_RATE={st['REFRESH_RATE']}`, min 1 / max 4 workers, target drain "
          f"{st['LZ_TARGET_DRAIN_SECONDS']} s, scale-down stabilisation {st['LZ_SCALE_DOWN_STABILISATION_MS']} ms. Reaction: "
          "first job submitted → webhook call with `desiredReplicas > 1` received.\n")
        w("| trial | reaction | in windows | desired | backlog seen | burst drained by 1 worker | scale-down after scale-up |")
        w("|---|---|---|---|---|---|---|")
        for i, t in enumerate(r["trials"], 1):
            w(f"| {i} | {fmt(t.get('reaction_s'), ' s')} | {fmt(r2(t['reaction_s'] / r['window_s']) if t.get('reaction_s') else None)} "
              f"| {fmt(t.get('desired'))} | {fmt(t.get('backlog'))} | {fmt(t.get('drained_s'), ' s')} | {fmt(t.get('scale_down_after_up_s'), ' s')} |")
        w("")
        w(process_table([("elasticity", x["measure"])]))
        w(f"- Limited by: {x['limited_by']}\n")
    return "\n".join(out) + "\n"


def render_summary(rep: dict) -> str:
    h = rep["headline"]
    lines = [f"== Lanzadera bench ({rep['mode']}, {rep['versions']['git_rev']}"
             + (", dirty" if rep["versions"]["uncommitted_service_files"] else "") + f"): {rep['wall_seconds']:.0f} s"]
    for k, val in h.items():
        lines.append(f"  {k:32} {val}")
    return "\n".join(lines)


BEGIN = "<!-- bench:begin (generated by bench/harness.py --mode full; edits inside are overwritten) -->"
END = "<!-- bench:end -->"


def update_docs(md: str) -> None:
    path = ROOT / "docs/benchmarks.md"
    text = path.read_text()
    block = f"{BEGIN}\n{md}{END}"
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip() + "\n\n## Harness (issue 7) — `make bench`, `make bench-full`\n\n" + block + "\n"
    path.write_text(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=MODES, default="short")
    ap.add_argument("--locust", required=True)
    ap.add_argument("--build-seconds", type=float, default=None)
    ap.add_argument("--started", type=float, default=None)
    ap.add_argument("--only", default="", help="comma-separated: api,scaling,elasticity (for development)")
    args = ap.parse_args()
    h = Harness(args)
    if args.only:
        parts = set(args.only.split(","))
        try:
            if "api" in parts:
                h.api_scenarios()
            if "scaling" in parts:
                h.scenario_scaling_and_latency()
            if "elasticity" in parts:
                h.scenario_elasticity()
        finally:
            for p in h.platforms:
                p.stop()
        rep = h.report(time.time() - h.started)
        (h.out / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
        (h.out / "report.md").write_text(render_markdown(rep))
        print(render_summary(rep))
        log(f"partial run: {h.out}")
        return
    h.run()


if __name__ == "__main__":
    main()
