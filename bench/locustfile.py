"""Locust users for the API read scenario (the harness, bench/lzbench, runs it headless).

Each simulated user takes one (token, job) pair of the pool written by the
harness (tokens logged in once for alice and bob, each paired with a job of
its owner) and polls that job's status, waiting BENCH_WAIT_MIN..BENCH_WAIT_MAX
seconds between polls (default 1..5 s, Locust's tutorial value).
"""

import itertools
import json
import os

from locust import FastHttpUser, between, task

with open(os.environ["BENCH_POOL_JSON"], encoding="utf-8") as f:
    POOL = json.load(f)
NEXT = itertools.count()
WAIT_MIN = float(os.environ.get("BENCH_WAIT_MIN", "1"))
WAIT_MAX = float(os.environ.get("BENCH_WAIT_MAX", "5"))


class PollingUser(FastHttpUser):
    wait_time = between(WAIT_MIN, WAIT_MAX)
    connection_timeout = 10.0
    network_timeout = 10.0

    def on_start(self):
        token, job = POOL[next(NEXT) % len(POOL)]
        self.job = job
        self.headers = {"Authorization": f"Bearer {token}"}

    @task
    def poll(self):
        self.client.get(f"/api/jobs/{self.job}", headers=self.headers, name="/api/jobs/{id}")


# Every response time, split by phase (users still being spawned, or all of
# them running), so the harness can report both: the classic figure covers
# the whole run, spawn included.
from locust import events  # noqa: E402
from locust.runners import STATE_SPAWNING  # noqa: E402

SAMPLES = {"spawning": [], "running": []}
RUNNER = {}


@events.init.add_listener
def _init(environment, **_kw):
    RUNNER["env"] = environment


@events.request.add_listener
def _request(response_time, exception, **_kw):
    runner = RUNNER["env"].runner
    phase = "spawning" if runner is not None and runner.state == STATE_SPAWNING else "running"
    SAMPLES[phase].append(round(response_time, 2) if exception is None else -1)


@events.quitting.add_listener
def _quitting(**_kw):
    path = os.environ.get("BENCH_LOCUST_SAMPLES")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(SAMPLES, f)
