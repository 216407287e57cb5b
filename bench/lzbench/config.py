"""Where things are, the two modes' settings, the constants the scenarios
share, and the two helpers every module uses (log, run_text)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("LANZADERA_STATE", ROOT / ".dev"))
CACHE = Path(os.environ.get("LANZADERA_CACHE", Path.home() / ".cache/lanzadera"))

def _versions() -> dict[str, str]:
    """The server pins of dev/versions.env (the one place they are written)."""
    pins = {}
    for line in (ROOT / "dev/versions.env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            pins[name.strip()] = value.strip()
    return pins


VERSIONS = _versions()
TANSU = CACHE / f"tansu-{VERSIONS['TANSU_VERSION']}/bin/tansu"
SECANTUS = CACHE / f"secantus-{VERSIONS['SECANTUS_VERSION']}/bin/secantusd-rs"
WEED = CACHE / f"seaweedfs-{VERSIONS['SEAWEED_VERSION']}/bin/weed"
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
BENCH = ROOT / "target/bench"
CORES = os.cpu_count() or 1
USERS = {"alice": "alice-pass", "bob": "bob-pass"}
JOBS_PARTITIONS = 8
STATUS_PARTITIONS = 4
TERMINAL = ("succeeded", "failed", "cancelled")

# scale_workers run with LZ_WORKER_SLOTS=1 each, then one worker with each
# of scale_worker_slots; mixed_* is the mixed-load scenario's trace (the same
# in both modes but for its length). A recovery trial takes about 12 s (the
# lease, then the rerun's sleep), so short mode runs 8 of them, not 20.
MODES = {
    "short": dict(
        tokens_per_user=20, seed_jobs_per_user=6,
        read_conns=1000, read_seconds=6,
        locust_users=2000, locust_rate=500, locust_seconds=20,
        submit_conns=64, submit_seconds=6, drain_seconds=4, output_samples=10,
        sustained_rate=10, sustained_seconds=6,
        latency_jobs=8,
        scale_jobs=12, scale_sleep=0.5, scale_workers=[1, 2, 4], scale_worker_slots=[4],
        mixed_jobs=120, mixed_workers=4, mixed_load=0.7, mixed_short_sleep=0.2, mixed_long_sleep=5.0,
        mixed_long_share=0.1, mixed_seed=12,
        recovery_trials=8, recovery_sleep=4.0,
        burst_jobs=20, burst_sleep=0.5, burst_trials=1, burst_scale_down=False,
    ),
    "full": dict(
        tokens_per_user=100, seed_jobs_per_user=20,
        read_conns=1000, read_seconds=30,
        locust_users=10000, locust_rate=500, locust_seconds=60,
        submit_conns=64, submit_seconds=30, drain_seconds=30, output_samples=50,
        sustained_rate=10, sustained_seconds=30,
        latency_jobs=40,
        scale_jobs=24, scale_sleep=1.0, scale_workers=[1, 2, 4], scale_worker_slots=[4],
        mixed_jobs=300, mixed_workers=4, mixed_load=0.7, mixed_short_sleep=0.2, mixed_long_sleep=5.0,
        mixed_long_share=0.1, mixed_seed=12,
        recovery_trials=20, recovery_sleep=4.0,
        burst_jobs=30, burst_sleep=0.5, burst_trials=5, burst_scale_down=True,
    ),
}
# Targets of the dispatch work (docs/dispatch.md), written into the records
# so that the report states them from the record alone.
SCALE_TARGET_PCT = 97
MIXED_TARGET_RATIO = 1.5
RECOVERY_TARGET_S = 10
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


def mode_settings(mode: str, overrides: str) -> dict:
    """MODES[mode] with BENCH_SET's `key=json,key=json` applied (for
    development runs; the report records them)."""
    p = dict(MODES[mode])
    for kv in filter(None, overrides.split(",")):
        k, v = kv.split("=", 1)
        p[k] = type(p[k])(json.loads(v)) if not isinstance(p[k], list) else json.loads(v)
    return p


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_text(cmd: list[str], **kw) -> str:
    """A command's stdout, stripped; "" when it cannot run (a version probe
    must not end the run)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, **kw).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
