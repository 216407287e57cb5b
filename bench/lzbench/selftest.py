"""Checks the report offline, without the stack or a build:

    PYTHONPATH=bench python3 -m lzbench.selftest [--against OLD_HARNESS.py]

1. The Markdown rendered from the committed docs/bench/latest.json equals
   the generated block of docs/benchmarks.md (`make bench-full` writes both
   from the same record, so they agree unless one was edited by hand).
2. The headline made from that record's scenarios is the one it holds.
3. Rendering the record read back from its JSON text gives the same text.
4. The template rules (continued lines, lines left out, missing values).
5. The ideal FIFO queue of the mixed-load scenario on a case worked by
   hand, its trace (seeded, exact share of long jobs) and its analysis of
   records made up for the purpose.
6. A record with the dispatch figures (scaling with slots, mixed load, jobs
   run twice, recovery from kill -9), made offline from the committed one:
   its headline and its rendering.
7. The recovery scenario's analysis of trials made up for the purpose (one
   too slow, one that ended at attempt 3).
8. With --against, a harness file with render_markdown / render_summary
   (e.g. `git show REV:bench/harness.py > /tmp/old.py`) renders the same
   report and summary from the committed record.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import importlib.util
import json
import sys
from datetime import datetime, timezone

from . import report
from .config import MODES, RECOVERY_TARGET_S, ROOT, SCALE_TARGET_PCT
from .scenarios import mixed, recovery
from .stats import fifo_waits

RECORD = ROOT / "docs/bench/latest.json"
DOCS = ROOT / "docs/benchmarks.md"


def docs_block() -> str:
    text = DOCS.read_text()
    return text[text.index(report.BEGIN) + len(report.BEGIN) + 1:text.index(report.END)]


def diff(want: str, got: str) -> str:
    return "\n".join(list(difflib.unified_diff(want.splitlines(), got.splitlines(), "expected", "rendered",
                                               lineterm="", n=1))[:30])


def template_rules() -> list[str]:
    f = report.Fragments("%% comment\n@@ a\none \\\ntwo $x\n$y\n${z}\n\n@@ b\n$x$y\n")
    problems = []
    if f.render("a", x=1, y=None, z="Z") != "one two 1\nZ\n":
        problems.append(f"fragment a: {f.render('a', x=1, y=None, z='Z')!r}")
    if f.render("a", x=1, y="", z=None) != "one two 1\n\n":
        problems.append("an empty value must keep its line")
    try:
        f.render("b", x=1)
        problems.append("a missing value must be an error")
    except KeyError:
        pass
    for bad in ("text before\n@@ a\n", "@@ a\ncontinued \\\n"):
        try:
            report.Fragments(bad)
            problems.append(f"accepted {bad!r}")
        except ValueError:
            pass
    return problems


def fifo_and_trace() -> list[str]:
    """The mixed-load scenario's pure parts: the FIFO queue, the trace, the
    analysis of the records."""
    problems = []
    # 2 servers: jobs 0 and 1 start at once, 2 waits for the first free
    # (t = 2), 3 arrives at 1 and waits for the next (t = 3), 4 finds one free.
    got = fifo_waits([0, 0, 0, 1, 5], [2, 3, 1, 1, 1], 2)
    if got != [0, 0, 2, 2, 0]:
        problems.append(f"fifo_waits, 2 servers: {got}")
    # The same jobs listed out of arrival order: waits follow the list.
    got = fifo_waits([5, 1, 0, 0, 0], [1, 1, 2, 3, 1], 2)
    if got != [0, 2, 0, 0, 2]:
        problems.append(f"fifo_waits, out of order: {got}")
    if fifo_waits([0, 0.5, 1], [2, 2, 2], 1) != [0, 1.5, 3]:
        problems.append("fifo_waits, 1 server")
    p = MODES["full"]
    args = (p["mixed_jobs"], mixed.arrival_rate(p), p["mixed_short_sleep"], p["mixed_long_sleep"],
            p["mixed_long_share"], p["mixed_seed"])
    tr = mixed.trace(*args)
    if tr != mixed.trace(*args):
        problems.append("the mixed trace differs between two calls")
    if sum(s == p["mixed_long_sleep"] for _, s in tr) != round(p["mixed_jobs"] * p["mixed_long_share"]):
        problems.append("the mixed trace's share of long jobs")
    rate = (len(tr) - 1) / tr[-1][0]
    if not 0.8 < rate / mixed.arrival_rate(p) < 1.25:
        problems.append(f"the mixed trace's rate: {rate:.2f}/s for {mixed.arrival_rate(p):.2f}/s")
    res = mixed.analyse(*made_up_jobs(tr, 4, 0.05), 4, p["mixed_short_sleep"], 0.03)
    # Ours is the ideal queue 50 ms late, the ideal 30 ms: 20 ms apart, job by job.
    if abs(res["short_wait"]["p95_ms"] - res["short_wait_ideal"]["p95_ms"] - 20) > 0.2 or res["not_run"]:
        problems.append(f"mixed analysis: {res['short_wait']} against {res['short_wait_ideal']}")
    return problems


def made_up_jobs(tr: list[tuple[float, float]], servers: int, dispatch: float) -> tuple[list[dict], dict]:
    """Records of a trace run by an ideal FIFO queue `dispatch` s late on
    every start, each job taking its sleep plus 40 ms; and job id -> sleep."""
    runs = [s + 0.04 for _, s in tr]
    waits = fifo_waits([a for a, _ in tr], runs, servers)
    t0 = 1.8e9

    def ts(x: float) -> str:
        return datetime.fromtimestamp(round(t0 + x, 3), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    jobs = [{"id": f"j{i}", "status": "succeeded", "attempt": 1, "workerId": f"w-{i % servers}",
             "submittedAt": ts(a), "startedAt": ts(a + w + dispatch), "finishedAt": ts(a + w + dispatch + r)}
            for i, ((a, _), w, r) in enumerate(zip(tr, waits, runs))]
    return jobs, {f"j{i}": s for i, (_, s) in enumerate(tr)}


def made_up_trials(n: int = 20) -> list[dict]:
    """Recovery trials as _trial records them: back after 5–7 s on the
    other worker, every third on the replacement; but trial 7 back after
    11.2 s, and trial 13 failed at attempt 3."""
    trials = []
    for i in range(1, n + 1):
        back = 11.2 if i == 7 else round(5 + (i % 5) * 0.5, 2)
        survivor, replacement = f"worker-{i % 2 + 1}", f"worker-{i + 2}"
        trials.append({"job": f"r{i}", "to_running_s": 0.35, "killed": f"worker-{(i + 1) % 2 + 1}",
                       "replacement": replacement, "requeued_s": round(back - 0.3, 2), "recovery_s": back,
                       "record_started_s": round(back - 0.02, 2),
                       "taken_by": replacement if i % 3 == 0 else survivor, "by_replacement": i % 3 == 0,
                       "status": "failed" if i == 13 else "succeeded", "attempt": 3 if i == 13 else 2})
    return trials


def recovery_analysis() -> list[str]:
    """analyse() on made_up_trials: nearest-rank percentiles, the count
    within the target, the jobs not succeeded at attempt 2."""
    res = recovery.analyse(made_up_trials(), RECOVERY_TARGET_S)
    want = {"within_target": 19, "within_target_text": "19/20", "not_recovered": 0, "by_replacement": 6,
            "requeued_s_max": 10.9}
    problems = [f"{k}: {res[k]!r}, not {v!r}" for k, v in want.items() if res[k] != v]
    if res["recovery_s"] != {"n": 20, "p50_s": 6.0, "p95_s": 7.0, "max_s": 11.2}:
        problems.append(f"recovery_s: {res['recovery_s']}")
    if [(u["trial"], u["status"], u["attempt"]) for u in res["unclean"]] != [(13, "failed", 3)]:
        problems.append(f"unclean: {res['unclean']}")
    lost = recovery.analyse([dict(made_up_trials(1)[0], requeued_s=None, recovery_s=None)], RECOVERY_TARGET_S)
    if lost["within_target_text"] != "0/1" or lost["not_recovered"] != 1 or lost["recovery_s"]["max_s"] is not None:
        problems.append(f"a trial never back: {lost}")
    return problems


def with_dispatch_figures(rep: dict) -> dict:
    """The committed record as the dispatch work's harness would write it:
    scaling runs with slots (and a 1 worker × 4 slots run), a mixed-load
    scenario, the books' jobs run twice, a recovery scenario."""
    rep = copy.deepcopy(rep)
    sc = {s["id"]: s for s in rep["scenarios"]}
    scaling = sc["scaling"]
    runs = scaling["results"]["runs"]
    four = dict(runs[0], slots=4, makespan_s=round(runs[0]["makespan_s"] / 3.9, 2), speedup=3.9)
    for r in runs:
        r.setdefault("slots", 1)
    runs.append(four)
    for r in runs:
        r["ideal_makespan_s"] = round(r["jobs"] * r["sleep_s"] / (r["workers"] * r["slots"]), 2)
        r["ideal_pct"] = round(100 * r["ideal_makespan_s"] / r["makespan_s"], 1)
    most = max(r["workers"] for r in runs)
    # Records name runs "4" (before slots) or "4x1".
    widest = scaling["measures"].get(f"{most}x1") or scaling["measures"][str(most)]
    scaling["measures"] = {f"{r['workers']}x{r['slots']}": widest for r in runs}
    scaling["settings"].update(worker_slots=[4], target_pct_of_ideal=SCALE_TARGET_PCT)
    sc["submit"]["results"].update(run_twice=0, run_twice_first=[])
    p = MODES["short"]
    tr = mixed.trace(p["mixed_jobs"], mixed.arrival_rate(p), p["mixed_short_sleep"], p["mixed_long_sleep"],
                     p["mixed_long_share"], p["mixed_seed"])
    res = mixed.analyse(*made_up_jobs(tr, 4, 0.05), 4, p["mixed_short_sleep"], 0.03)
    res.update(dispatch_ms=30.0, dispatch_from="made up", attempted=len(tr), accepted=len(tr), errors=0,
               errors_top=[], submit_late_max_ms=1.5)
    at = rep["scenarios"].index(scaling) + 1
    rep["scenarios"].insert(at, mixed.scenario_record(p, res, widest))
    steady = {k: v for k, v in widest["processes"].items() if not k.startswith("worker")}
    rep["scenarios"].insert(at + 1, recovery.scenario_record(
        MODES["full"], recovery.analyse(made_up_trials(), RECOVERY_TARGET_S), dict(widest, processes=steady)))
    rep["headline"] = report.headline(rep["scenarios"])
    return rep


def dispatch_figures(rep: dict) -> list[str]:
    """The new figures reach the headline and the report."""
    new = with_dispatch_figures(rep)
    h, problems = new["headline"], []
    scaling = next(s for s in new["scenarios"] if s["id"] == "scaling")
    runs = {(r["workers"], r["slots"]): r for r in scaling["results"]["runs"]}
    want = {"speedup_1_workers": 1.0, "speedup_2_workers": runs[2, 1]["speedup"],
            "speedup_4_workers": runs[4, 1]["speedup"], "speedup_slots_4": 3.9,
            "ideal_pct_min": min(r["ideal_pct"] for r in runs.values()), "accepted_jobs_run_twice": 0,
            "recovery_max_s": 11.2, "recovery_within_10s": "19/20"}
    problems += [f"headline {k}: {h.get(k)!r}, not {v!r}" for k, v in want.items() if h.get(k) != v]
    if not isinstance(h.get("mixed_short_wait_p95_ratio"), float):
        problems.append(f"headline mixed_short_wait_p95_ratio: {h.get('mixed_short_wait_p95_ratio')!r}")
    md = report.render_markdown(new)
    for text in ("### 4b. Mixed load", "| short jobs, ideal FIFO |", "| 1 × 4 |", "1 worker(s) × 4 slot(s)",
                 "`LZ_WORKER_SLOTS=4`", "No accepted job run twice", f"at least {SCALE_TARGET_PCT} %",
                 "### 4c. Recovery from kill -9", "Running again within 10 s: **19/20**", "max 11.2 s",
                 "| 3 | worker-1 | 6.2 s | 6.5 s | 6.48 s | worker-5 (replacement) | succeeded, attempt 2 |",
                 "**Not succeeded at attempt 2:** trial 13, `r13` failed at attempt 3."):
        if text not in md:
            problems.append(f"report without {text!r}")
    if report.render_markdown(json.loads(json.dumps(new, ensure_ascii=False))) != md:
        problems.append("rendering of the dispatch figures depends on more than the JSON")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(prog="python3 -m lzbench.selftest")
    ap.add_argument("--against", help="an older harness .py to compare the rendering with")
    args = ap.parse_args()
    rep = json.loads(RECORD.read_text())
    md = report.render_markdown(rep)
    failures = []
    if md != docs_block():
        failures.append("report differs from the block in docs/benchmarks.md:\n" + diff(docs_block(), md))
    # Keys added since the record was made are not in it.
    rebuilt = report.headline(rep["scenarios"])
    if {k: rebuilt.get(k) for k in rep["headline"]} != rep["headline"]:
        failures.append("headline differs from the record's")
    if report.render_markdown(json.loads(json.dumps(rep, ensure_ascii=False))) != md:
        failures.append("rendering depends on more than the JSON")
    failures += [f"template rules: {p}" for p in template_rules()]
    failures += [f"mixed load: {p}" for p in fifo_and_trace()]
    failures += [f"dispatch figures: {p}" for p in dispatch_figures(rep)]
    failures += [f"recovery: {p}" for p in recovery_analysis()]
    if args.against:
        spec = importlib.util.spec_from_file_location("old_harness", args.against)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        if old.render_markdown(rep) != md:
            failures.append(f"report differs from {args.against}'s:\n" + diff(old.render_markdown(rep), md))
        if old.render_summary(rep) != report.render_summary(rep):
            failures.append(f"summary differs from {args.against}'s")
    for f in failures:
        print("FAIL:", f)
    print(f"lzbench selftest: {len(failures)} failure(s)" if failures else
          f"lzbench selftest: all {8 if args.against else 7} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
