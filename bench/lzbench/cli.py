"""Argument parsing and the run: the quiet check (full mode), the scenario
groups, then the reports written where `make bench` / `make bench-full`
promise them."""

from __future__ import annotations

import argparse
import json
import time

from . import report
from .config import BENCH, MODES, ROOT, log
from .measure import wait_quiet
from .run import Run
from .scenarios import GROUPS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python3 -m lzbench", description="Lanzadera benchmark harness "
                                 "(run through bench/bench.sh: make bench, make bench-full).")
    ap.add_argument("--mode", choices=MODES, default="short")
    ap.add_argument("--locust", required=True)
    ap.add_argument("--build-seconds", type=float, default=None)
    ap.add_argument("--started", type=float, default=None)
    ap.add_argument("--only", default="", help=f"comma-separated: {','.join(GROUPS)} (for development)")
    args = ap.parse_args(argv)
    unknown = set(filter(None, args.only.split(","))) - set(GROUPS)
    if unknown:
        ap.error(f"--only: unknown {', '.join(sorted(unknown))} (choose from {', '.join(GROUPS)})")
    return args


def run_groups(run: Run, names: set[str]) -> None:
    """The named groups in their usual order; every platform stopped at the
    end, whatever happened."""
    try:
        for name, group in GROUPS.items():
            if name in names:
                group(run)
    finally:
        run.stop_all()


def to_json(rep: dict) -> str:
    return json.dumps(rep, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run = Run(args.mode, args.locust, args.build_seconds, args.started)
    if args.only:
        run_groups(run, set(args.only.split(",")))
        rep = report.build(run, time.time() - run.started)
        (run.out / "report.json").write_text(to_json(rep))
        (run.out / "report.md").write_text(report.render_markdown(rep))
        print(report.render_summary(rep))
        log(f"partial run: {run.out}")
        return
    run.quiet = wait_quiet(600) if run.mode == "full" else None
    # "reads" is part of "api", alone for before/after runs only.
    run_groups(run, set(GROUPS) - {"reads"})
    wall = time.time() - run.started
    rep = report.build(run, wall)
    text = to_json(rep)
    (run.out / "report.json").write_text(text)
    md = report.render_markdown(rep)
    (run.out / "report.md").write_text(md)
    (BENCH / f"latest-{run.mode}.json").write_text(text)
    if run.mode == "full":
        (ROOT / "docs/bench").mkdir(parents=True, exist_ok=True)
        (ROOT / "docs/bench/latest.json").write_text(text)
        report.update_docs(md)
        log("wrote docs/bench/latest.json and the Harness section of docs/benchmarks.md")
    print(report.render_summary(rep))
    log(f"report: {run.out}/report.md, {run.out}/report.json; wall {wall:.0f} s "
        f"(of which build {run.build_seconds} s)")
