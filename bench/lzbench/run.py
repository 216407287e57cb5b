"""One benchmark run: its settings, its output directory, the job
repositories it serves over file://, the platforms it started and the
scenario records it collected (in the order the report shows them)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

from .config import BENCH, ROOT, mode_settings
from .platform import Platform, stack_env, stack_pids


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


class Run:
    def __init__(self, mode: str, locust: str, build_seconds: float | None, started: float | None):
        self.mode = mode
        self.overrides = os.environ.get("BENCH_SET", "")
        self.p = mode_settings(mode, self.overrides)
        self.locust = locust
        self.build_seconds = build_seconds
        self.started = started or time.time()
        self.run_id = "bench" + uuid.uuid4().hex[:8]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.out = BENCH / f"{self.mode}-{stamp}"
        self.out.mkdir(parents=True, exist_ok=True)
        self.repos = self.out / "repos"
        self.stack_env = stack_env()
        self.stack = stack_pids()
        self.scenarios: list[dict] = []
        self.platforms: list[Platform] = []
        self.quiet: dict | None = None  # full mode's wait_quiet() result
        publish_repos(self.repos, sorted({self.p["scale_sleep"], self.p["burst_sleep"],
                                          self.p["mixed_short_sleep"], self.p["mixed_long_sleep"],
                                          self.p["recovery_sleep"]}))

    def repo(self, name: str) -> str:
        return f"file://{self.repos / name}"

    def procs(self, plat: Platform) -> dict[str, int]:
        """What a scenario on `plat` measures: its services and the stack."""
        return {**plat.pids(), **self.stack}

    def platform(self, label: str, workers: int, extra: dict[str, str] | None = None) -> Platform:
        p = Platform(f"{self.run_id}-{label}", self.out / label, self.stack_env, workers, extra)
        self.platforms.append(p)
        return p

    def record(self, scenario: dict) -> None:
        self.scenarios.append(scenario)

    def stop_all(self) -> None:
        for p in self.platforms:
            p.stop()
