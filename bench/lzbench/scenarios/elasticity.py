"""Scenario 5, elasticity: a burst of sleeping jobs on one worker, and the
time until the observer's webhook asks for more workers (and, in full
mode, for one again once the burst has drained)."""

from __future__ import annotations

import random
import statistics
import time

from ..client import Webhook
from ..config import ELASTIC_ENV, log
from ..measure import Measure, bottleneck
from ..platform import Platform
from ..run import Run
from ..stats import r2


def elasticity(run: Run) -> dict:
    p = run.p
    hook = Webhook()
    plat = run.platform("elastic", 1, {"LZ_ACTUATOR": "webhook", "LZ_WEBHOOK_URL": hook.url, **ELASTIC_ENV})
    token = plat.api.tokens(1)["alice"][0]
    window = int(ELASTIC_ENV["REFRESH_RATE"]) / 1000
    trials = []
    phase_rng = random.Random(5)
    with Measure(run.procs(plat)) as m:
        for t in range(p["burst_trials"]):
            _settle(plat)
            # A random phase within the observer's window, so that the
            # trials sample the wait for the next tick instead of
            # locking onto one phase.
            time.sleep(window + phase_rng.uniform(0, window))
            trials.append(_trial(run, plat, hook, token, t))
    meas = m.result()
    hook.close()
    plat.stop()
    reactions = [t["reaction_s"] for t in trials if t["reaction_s"] is not None]
    res = {"trials": trials, "window_s": window,
           "reaction_s_median": r2(statistics.median(reactions)) if reactions else None,
           "reaction_s_max": r2(max(reactions)) if reactions else None,
           "reaction_in_windows_max": r2(max(reactions) / window) if reactions else None}
    return {
        "id": "elasticity", "title": "Elasticity: a burst on one worker, webhook actuator",
        "settings": {**ELASTIC_ENV, "LZ_ACTUATOR": "webhook", "burst_jobs": p["burst_jobs"],
                     "sleep_s": p["burst_sleep"], "trials": p["burst_trials"],
                     "LZ_OBSERVER_GRACE_MS": "1000 (default)"},
        "results": res, "measure": meas,
        "limited_by": ("The observer's tick: it decides once per REFRESH_RATE (at each window's end plus "
                       "the 1 s grace) from the Kafka lag probed at that tick, so the reaction is the wait "
                       "for the next tick — between 0 and REFRESH_RATE, bursts start at a random phase — "
                       "plus the probe and the webhook call. " + bottleneck(meas)),
    }


def _settle(plat: Platform) -> None:
    """Until the observer wants one worker and sees nothing waiting."""
    deadline = time.monotonic() + 60
    while True:
        d = plat.desired()
        if d.get("desiredReplicas") == 1 and not d.get("backlog"):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the observer never settled: {d}")
        time.sleep(0.2)


def _trial(run: Run, plat: Platform, hook: Webhook, token: str, t: int) -> dict:
    """Burst number t: the scale-up call's delay, the drain (waited for
    unless it is the last trial of a short run) and the scale-down call."""
    p = run.p
    log(f"5. Elasticity: burst {t + 1}/{p['burst_trials']}: {p['burst_jobs']} × sleep {p['burst_sleep']} s on 1 worker")
    url = run.repo(f"sleep-{p['burst_sleep']}")
    t0 = time.monotonic()
    ids = [plat.api.submit(token, {"url": url}) for _ in range(p["burst_jobs"])]
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
        plat.api.wait_terminal(token, ids, 30 + 2 * p["burst_jobs"] * p["burst_sleep"])
        trial["drained_s"] = r2(time.monotonic() - t0)
    if p["burst_scale_down"] and up:
        down = hook.wait_for(up[0], lambda b: b.get("desiredReplicas") == 1, 60)
        if down:
            trial["scale_down_after_up_s"] = r2(down[0] - up[0])
            trial["scale_down_after_drain_s"] = r2(down[0] - t0 - trial["drained_s"])
    return trial
