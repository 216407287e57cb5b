"""Checks the report offline, without the stack or a build:

    PYTHONPATH=bench python3 -m lzbench.selftest [--against OLD_HARNESS.py]

1. The Markdown rendered from the committed docs/bench/latest.json equals
   the generated block of docs/benchmarks.md (`make bench-full` writes both
   from the same record, so they agree unless one was edited by hand).
2. The headline made from that record's scenarios is the one it holds.
3. Rendering the record read back from its JSON text gives the same text.
4. The template rules (continued lines, lines left out, missing values).
5. With --against, a harness file with render_markdown / render_summary
   (e.g. `git show REV:bench/harness.py > /tmp/old.py`) renders the same
   report and summary from the committed record.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import sys

from . import report
from .config import ROOT

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


def main() -> int:
    ap = argparse.ArgumentParser(prog="python3 -m lzbench.selftest")
    ap.add_argument("--against", help="an older harness .py to compare the rendering with")
    args = ap.parse_args()
    rep = json.loads(RECORD.read_text())
    md = report.render_markdown(rep)
    failures = []
    if md != docs_block():
        failures.append("report differs from the block in docs/benchmarks.md:\n" + diff(docs_block(), md))
    if report.headline(rep["scenarios"]) != rep["headline"]:
        failures.append("headline differs from the record's")
    if report.render_markdown(json.loads(json.dumps(rep, ensure_ascii=False))) != md:
        failures.append("rendering depends on more than the JSON")
    failures += [f"template rules: {p}" for p in template_rules()]
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
          f"lzbench selftest: all {5 if args.against else 4} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
