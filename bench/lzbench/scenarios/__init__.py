"""The seven scenarios, in five groups that each start the platforms they
need. Each scenario returns its record (id, title, settings, results,
measure, limited_by); the run keeps them in the order they ran, which is
the report's.

  api         1a read load with wrk, 1b with Locust, 2a submissions at full
              speed (one platform, 2 workers); 2b sustained submissions
              (a fresh one)
  scaling     3 job latency (1 worker), 4 scaling (1, 2, 4 workers of one
              slot, then 1 worker of 4 slots)
  mixed       4b mixed load: Poisson arrivals of short and long jobs on 4
              workers, against an ideal FIFO queue (after scaling, whose
              latency figure it uses)
  recovery    4c recovery from kill -9: a running job's worker killed, on 2
              workers of one slot (and a replacement per kill)
  elasticity  5 a burst on 1 worker, the observer's webhook
"""

from __future__ import annotations

from ..run import Run
from . import elasticity, mixed, read, recovery, scaling, submit


def api_and_submissions(run: Run) -> None:
    # One slot per worker, as in the records before slots: the drain's
    # jobs share the two cores with the broker and the load generator.
    plat = run.platform("api", 2, {"LZ_WORKER_SLOTS": "1"})
    tok, pool = read.prepare(run, plat)
    run.record(read.wrk(run, plat, len(pool)))
    run.record(read.locust(run, plat, len(pool)))
    run.record(submit.full_speed(run, plat, tok["alice"][0]))
    plat.stop()
    run.record(submit.sustained(run))


def reads_only(run: Run) -> None:
    """Scenario 1a alone (its jobs have all ended): for before/after runs
    of the read path with bench/compare.py."""
    plat = run.platform("api", 2, {"LZ_WORKER_SLOTS": "1"})
    _, pool = read.prepare(run, plat)
    run.record(read.wrk(run, plat, len(pool)))
    plat.stop()


def latency_and_scaling(run: Run) -> None:
    run.record(scaling.scaling(run))  # records the latency scenario first


def mixed_load(run: Run) -> None:
    run.record(mixed.mixed(run))


def kill_recovery(run: Run) -> None:
    run.record(recovery.recovery(run))


def burst(run: Run) -> None:
    run.record(elasticity.elasticity(run))


# --only's names, in the order of a full run.
GROUPS = {"api": api_and_submissions, "scaling": latency_and_scaling, "mixed": mixed_load,
          "recovery": kill_recovery, "elasticity": burst, "reads": reads_only}
