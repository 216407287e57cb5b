"""A numeric Lanzadera job.

Reads the polynomial and search interval from config.json, takes the
tolerance from the arguments (``--tol 1e-10``), brackets every sign change on
a grid, refines each root by bisection then Newton's method, and writes
``output/roots.csv`` plus ``output/summary.json``.
"""
import argparse
import csv
import json
import os

DEFAULT = {"coefficients": [1, 0, -2], "interval": [-3, 3], "grid": 600}


def poly(c, x):
    y = 0.0
    for a in c:
        y = y * x + a
    return y


def dpoly(c, x):
    n = len(c) - 1
    return poly([a * (n - i) for i, a in enumerate(c[:-1])], x) if n > 0 else 0.0


def bisect(c, lo, hi, tol):
    steps = 0
    while hi - lo > tol and steps < 200:
        mid = (lo + hi) / 2
        if poly(c, lo) * poly(c, mid) <= 0:
            hi = mid
        else:
            lo = mid
        steps += 1
    return (lo + hi) / 2, steps


def newton(c, x, tol):
    for step in range(1, 50):
        d = dpoly(c, x)
        if d == 0:
            return x, step
        nxt = x - poly(c, x) / d
        if abs(nxt - x) < tol:
            return nxt, step
        x = nxt
    return x, 50


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tol", type=float, default=1e-12)
    parser.add_argument("--label", default="run")
    args = parser.parse_args()
    config = dict(DEFAULT)
    if os.path.exists("config.json"):
        with open("config.json") as f:
            text = f.read().strip()
            if text:
                config.update(json.loads(text))
    c = [float(a) for a in config["coefficients"]]
    lo, hi = (float(v) for v in config["interval"])
    n = int(config["grid"])
    xs = [lo + (hi - lo) * i / n for i in range(n + 1)]
    rows = []
    for a, b in zip(xs, xs[1:]):
        if poly(c, a) == 0 or poly(c, a) * poly(c, b) < 0:
            coarse, bsteps = bisect(c, a, b, 1e-3)
            root, nsteps = newton(c, coarse, args.tol)
            rows.append({"root": f"{root:.15g}", "residual": f"{abs(poly(c, root)):.3e}",
                         "bisection_steps": bsteps, "newton_steps": nsteps})
    os.makedirs("output", exist_ok=True)
    with open("output/roots.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["root", "residual", "bisection_steps", "newton_steps"])
        w.writeheader()
        w.writerows(rows)
    with open("output/summary.json", "w") as f:
        json.dump({"label": args.label, "coefficients": c, "roots": len(rows), "tol": args.tol}, f, indent=2)
    print(f"{args.label}: {len(rows)} root(s) of {c} in [{lo}, {hi}]")


if __name__ == "__main__":
    main()
