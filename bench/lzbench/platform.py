"""The platform under test: a frontend, N workers and an observer from
target/release, on a namespace of their own (topics, consumer groups,
MongoDB database), against the local stack (dev/stack.sh)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

from .client import Api
from .config import JOBS_PARTITIONS, RELEASE, STATE, STATUS_PARTITIONS, log

STACK_PROCS = {"tansu": "kafka", "secantusd-rs": "mongo", "weed": "s3", "oidc-provider": "oidc"}
# What `lanzadera-testkit namespace` must name, or a platform would share
# the stack's default topics or database with others.
NAMESPACE_VARS = ("LZ_JOBS_TOPIC", "LZ_STATUS_TOPIC", "LZ_IGNORE_TOPIC", "LZ_WORKERS_GROUP",
                  "LZ_RECORDER_GROUP", "LZ_OBSERVER_GROUP", "LZ_MONGO_DB")
PROVISION_WAIT_S = 30


def stack_env() -> dict[str, str]:
    """The variables dev/stack.sh wrote to .dev/stack.env (brokers, MongoDB,
    S3, OIDC)."""
    env = {}
    for line in (STATE / "stack.env").read_text().splitlines():
        m = re.match(r"^(?:export\s+)?([A-Z0-9_]+)=(.*)$", line.strip())
        if m:
            env[m.group(1)] = m.group(2).strip("'\"")
    return env


def stack_pids() -> dict[str, int]:
    """The stack's running servers, measured alongside the platform."""
    out = {}
    for name, file in STACK_PROCS.items():
        try:
            pid = int((STATE / "pids" / f"{file}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if Path(f"/proc/{pid}").exists():
            out[name] = pid
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def namespace_env(name: str) -> dict[str, str]:
    """Topics, groups and database of namespace `name`, as the shared test
    kit names them (so the e2e tests and the benchmark agree)."""
    cmd = [str(RELEASE / "lanzadera-testkit"), "namespace", name]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"lanzadera-testkit namespace {name}: {r.stderr.strip() or f'exit {r.returncode}'}")
    try:
        names = json.loads(r.stdout)
    except ValueError:
        names = None
    if not isinstance(names, dict):
        raise RuntimeError(f"lanzadera-testkit namespace {name}: not a JSON object: {r.stdout[:200]!r}")
    missing = [k for k in NAMESPACE_VARS if k not in names]
    if missing:
        raise RuntimeError(f"lanzadera-testkit namespace {name}: no {', '.join(missing)}")
    return {k: str(v) for k, v in names.items()}


class Service:
    def __init__(self, name: str, proc: subprocess.Popen, log: Path):
        self.name, self.proc, self.log = name, proc, log


class Platform:
    """A frontend, N workers and an observer from target/release, on topics,
    groups and a database of their own; `api` talks to its frontend."""

    def __init__(self, ns: str, directory: Path, stack: dict[str, str], workers: int,
                 extra: dict[str, str] | None = None):
        self.ns = ns
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.observer_url = f"http://127.0.0.1:{free_port()}"
        self.env = {**os.environ, **stack}
        self.env.update(namespace_env(ns))
        self.env.update({
            "LZ_JOBS_PARTITIONS": str(JOBS_PARTITIONS),
            "LZ_STATUS_PARTITIONS": str(STATUS_PARTITIONS),
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
        self.api = Api(self.url)
        self.workers = 0
        try:
            self.start(workers)
        except BaseException:
            # The caller never gets this platform to stop: stop what started.
            self.stop()
            raise

    # Processes ---------------------------------------------------------------

    def provision(self) -> None:
        """Topics, bucket and indexes, by the provisioner the services use
        (idempotent; waits for the stack up to PROVISION_WAIT_S)."""
        cmd = [str(RELEASE / "lanzadera-provision"), "--wait", str(PROVISION_WAIT_S)]
        try:
            r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=PROVISION_WAIT_S + 30)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"lanzadera-provision still running after {e.timeout} s") from e
        (self.dir / "provision.log").write_text(r.stderr)
        if r.returncode != 0:
            # Its stderr also carries its JSON log lines; the message is the rest.
            msg = "\n".join(l for l in r.stderr.splitlines() if l.strip() and not l.startswith("{"))
            raise RuntimeError(msg or f"lanzadera-provision exited {r.returncode}; log {self.dir / 'provision.log'}")

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
        self.provision()
        # The frontend logs warnings only: an info line per request would be
        # part of what is measured.
        self.spawn("frontend", "lanzadera-frontend", rust_log="warn,lanzadera_frontend=warn")
        self.wait_http(self.url + "/health/ready", "frontend")
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

    def worker_name(self, worker_id: str) -> str:
        """The service running as LZ_WORKER_ID `worker_id` (a job record's
        workerId): add_worker names them alike."""
        name = worker_id.removeprefix(f"{self.ns}-")
        if not any(s.name == name for s in self.services):
            raise RuntimeError(f"no running service for worker {worker_id!r}")
        return name

    def kill(self, name: str) -> None:
        """SIGKILL to one service, as a crash would (no shutdown, no last
        heartbeat, no hand-back), reaped and forgotten, so that check_alive
        and wait_assigned go on with the others."""
        s = next(s for s in self.services if s.name == name)
        s.proc.kill()
        s.proc.wait()
        self.services.remove(s)

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

    def wait_each_assigned(self, timeout: float = 60) -> None:
        """Until every live worker holds at least one partition."""
        deadline = time.monotonic() + timeout
        while True:
            a = self.assigned()
            if not a or all(v > 0 for v in a.values()):
                return
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"a worker never got a partition: {a}; logs in {self.dir}")
            time.sleep(0.1)

    def check_alive(self) -> None:
        for s in self.services:
            if s.proc.poll() is not None:
                raise RuntimeError(f"{s.name} exited with {s.proc.returncode}; log {s.log}")

    def pids(self) -> dict[str, int]:
        return {s.name: s.proc.pid for s in self.services}

    def stop(self, names: list[str] | None = None) -> None:
        """SIGTERM, then SIGKILL after 10 s, to the named services (all by
        default)."""
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

    # The observer ------------------------------------------------------------

    def desired(self) -> dict:
        u = urllib.parse.urlparse(self.observer_url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        c.request("GET", "/metrics/desired")
        return json.loads(c.getresponse().read())

    def fresh_desired(self, after: float, timeout: float = 15) -> dict:
        """The observer's latest decision from a window that ended after
        `after` (epoch seconds): its lag was probed after that moment."""
        deadline = time.monotonic() + timeout
        while True:
            d = self.desired()
            if d.get("timestamp", 0) > after * 1000 or time.monotonic() > deadline:
                return d
            time.sleep(0.1)
