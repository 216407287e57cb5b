"""What every process costs while a scenario runs: CPU seconds and peak RSS
from /proc, the machine's busy CPU and TCP counters, and the load
generators' own rusage."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import threading
import time
from pathlib import Path

from .config import CORES, ROOT, log
from .stats import r1, r2

CLK = os.sysconf("SC_CLK_TCK")
TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPTimeouts", "TCPReqQFullDoCookies")


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
    """The `limited_by` sentence of a scenario: CPU-bound or not, the
    largest consumers, outside load, TCP trouble, then the scenario's note."""
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
        # wait4, not wait: the child's own rusage is its CPU figure.
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    peak = None
    if track:
        track[0].procs.pop(track[1], None)
        peak = track[0].peak.pop(track[1], None)
    return p.returncode, ru, peak or ru.ru_maxrss


def run_wrk(m: Measure, out: Path, name: str, script: str, args: list[str], env: dict) -> dict:
    """wrk with bench/<script>, measured in `m`; its results are the JSON
    line the script prints last (out/<name>.out, stderr in out/<name>.err)."""
    cmd = ["wrk", *args, "-s", str(ROOT / "bench" / script)]
    code, ru, peak = run_child(cmd, {**os.environ, **env}, out / f"{name}.out", out / f"{name}.err",
                               track=(m, "wrk"))
    m.add_external("wrk", ru, peak)
    lines = (out / f"{name}.out").read_text().strip().splitlines()
    if code != 0 or not lines:
        raise RuntimeError(f"wrk {name} failed ({code}); see {out}/{name}.err")
    return json.loads(lines[-1])


def wait_quiet(limit_s: float, max_other_cores: float = 0.35) -> dict:
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
