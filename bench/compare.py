#!/usr/bin/env python3
"""Compares two harness reports (before / after a change):

    bench/compare.py target/bench/latest-short.json NEW.json

Prints each headline figure of both runs and the ratio new ÷ old, and the
CPU the machine spent outside the benchmark in each (a busy machine makes a
comparison worth less). Runs of the same mode compare best.
"""

import json
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def outside(rep):
    vals = [s["measure"]["machine"]["other_cores"] for s in rep["scenarios"] if "measure" in s]
    return max(vals) if vals else None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = load(sys.argv[1]), load(sys.argv[2])
    print(f"old: {a['mode']} {a['versions']['git_rev']} {a['date']}  (outside load up to {outside(a)} cores)")
    print(f"new: {b['mode']} {b['versions']['git_rev']} {b['date']}  (outside load up to {outside(b)} cores)")
    print(f"{'figure':34} {'old':>12} {'new':>12} {'new/old':>8}")
    for k in dict.fromkeys([*a["headline"], *b["headline"]]):
        x, y = a["headline"].get(k), b["headline"].get(k)
        ratio = ""
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool) and x:
            ratio = f"{y / x:.2f}"
        print(f"{k:34} {str(x):>12} {str(y):>12} {ratio:>8}")


if __name__ == "__main__":
    main()
