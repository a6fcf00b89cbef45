#!/usr/bin/env python3
"""plot_results.py: figures from lpe results files (docs/methods.md §6), as PNG.

usage: tools/plot_results.py RESULTS.h5 ... --out DIR [--metric fitted|unfitted|logsq|cv]

For each results file (one per model, labelled by its model file's name):
  DIR/{label}_scatter.png   fitted estimate against the true probability, one panel per method,
                            log-log axes with the diagonal, distributions coloured, targets whose
                            estimate was 0 (given the zero rule's constant) marked with x;
  DIR/{label}_losses.png    loss per distribution and method (bars), and the mean;
and, across files, DIR/mean_losses.png: the mean over distributions per (model, method).

The fitted estimates and losses are read from the files' evaluation (/{dist}/eval, written by
`lpe run`); where a file has none they are computed here with the same definitions (zero rule
`const`), by the NumPy reference below, which the tests also use as an independent check of the
C implementation (src/eval.c). Needs numpy, h5py, matplotlib (tools/setup.sh installs them).
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import h5py
import numpy as np

METRICS = ("fitted", "unfitted", "logsq", "cv")
ORDER = ("const", "naive", "itgis", "mhis", "qld", "gld")


# ---- NumPy reference of the scoring (docs/methods.md §6) ------------------------------------------------

def is_loss(p, q):
    """Itakura-Saito loss p/q - ln(p/q) - 1, elementwise (inf where q <= 0)."""
    p = np.asarray(p, float)
    q = np.asarray(q, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = p / q
        out = x - np.log(x) - 1
    return np.where(q > 0, out, np.inf)


def fit(p, q):
    """(a, b) minimising mean D(p, exp(a ln q + b)) over pairs with q > 0.

    Independent of the C code's Newton iteration: the profiled loss F(a) (b in closed form,
    e^b = mean(p / q^a)) is convex in a; minimise it by golden-section search on a bracket grown
    until it contains the minimum. When all q are equal: a = 1, q' = mean p."""
    x, y = np.log(np.asarray(q, float)), np.log(np.asarray(p, float))
    xbar = x.mean()
    xc = x - xbar
    if np.mean(xc * xc) <= 1e-24 * (1 + xbar * xbar):
        return 1.0, math.log(np.mean(np.exp(y))) - xbar

    def beta(a):
        t = y - a * xc
        m = t.max()
        return m + math.log(np.mean(np.exp(t - m)))

    def F(a):
        r = y - a * xc - beta(a)
        return float(np.mean(np.expm1(r) - r))

    lo, hi = 0.0, 2.0
    while F(lo) < F(1.0) or F(hi) < F(1.0):  # grow until F(1) is below both ends
        lo, hi = lo - 2 * (1 - lo), hi + 2 * (hi - 1)
        if hi > 1e6:
            break
    g = (math.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = F(c), F(d)
    for _ in range(200):
        if hi - lo < 1e-12 * (1 + abs(lo)):
            break
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = F(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = F(d)
    a = 0.5 * (lo + hi)
    return a, beta(a) - a * xbar


def _learn(p, q):
    """What the const zero rule learns from training pairs: (a, b) or None, c0 or None, mean p."""
    z = ~(q > 0) | ~np.isfinite(q)
    ab = fit(p[~z], q[~z]) if (~z).any() else None
    c0 = float(p[z].mean()) if z.any() else None
    return ab, c0, float(p.mean()) if len(p) else float("nan")


def _predict(learnt, qi):
    ab, c0, pm = learnt
    if qi > 0 and np.isfinite(qi):
        return math.exp(ab[0] * math.log(qi) + ab[1]) if ab else pm
    return c0 if c0 is not None else pm


def score(p, q):
    """Metrics of one (distribution, method) under the const zero rule; dict with fitted,
    unfitted, logsq, cv, n, n_zero, qfit (array, NaN where not scored)."""
    p = np.asarray(p, float)
    q = np.asarray(q, float)
    ok = (p > 0) & np.isfinite(p)
    pv, qv = p[ok], q[ok]
    learnt = _learn(pv, qv)
    qf = np.array([_predict(learnt, x) for x in qv])
    zero = ~(qv > 0) | ~np.isfinite(qv)
    qu = np.where(zero, qf, qv)
    cv = []
    for i in range(len(pv)):
        keep = np.arange(len(pv)) != i
        cv.append(is_loss(pv[i], _predict(_learn(pv[keep], qv[keep]), qv[i])))
    qfit = np.full(len(p), np.nan)
    qfit[ok] = qf
    n = len(pv)
    return {"fitted": float(np.mean(is_loss(pv, qf))) if n else float("nan"),
            "unfitted": float(np.mean(is_loss(pv, qu))) if n else float("nan"),
            "logsq": float(np.mean((np.log(qf) - np.log(pv)) ** 2)) if n else float("nan"),
            "cv": float(np.mean(cv)) if n else float("nan"),
            "n": n, "n_zero": int(zero.sum()), "qfit": qfit}


# ---- reading results files -----------------------------------------------------------------

def method_key(name):
    base = name.split("@", 1)[0]
    return (ORDER.index(base) if base in ORDER else len(ORDER), name)


def label_of(path, f):
    model = f.attrs.get("model", b"")
    model = model.decode() if isinstance(model, bytes) else str(model)
    src = model if model else path
    return os.path.splitext(os.path.basename(src))[0]


def load(path):
    """{"label", "path", "dists": {dist: {"p": array, "methods": {name: {metrics..., "qfit",
    "q"}}}}} with the file's evaluation where present, else the NumPy reference."""
    out = {"path": path, "dists": {}}
    with h5py.File(path, "r") as f:
        out["label"] = label_of(path, f)
        for dname, g in f.items():
            if dname == "eval" or not isinstance(g, h5py.Group) or "targets" not in g:
                continue
            if "true_prob" not in g:
                continue
            p = g["true_prob"][()]
            methods = {}
            for mname, mg in g.items():
                if not isinstance(mg, h5py.Group) or "estimate" not in mg:
                    continue
                q = mg["estimate"][()]
                ev = g.get(f"eval/{mname}")
                if ev is not None and "fitted_estimate" in ev:
                    m = {k: float(ev.attrs[k]) for k in METRICS}
                    m.update(n=int(ev.attrs["n"]), n_zero=int(ev.attrs["n_zero"]),
                             qfit=ev["fitted_estimate"][()])
                else:
                    m = score(p, q)
                m["q"] = q
                methods[mname] = m
            if "const" not in methods:
                q = np.full(len(p), p[(p > 0) & np.isfinite(p)].mean())
                methods["const"] = dict(score(p, q), q=q)
            out["dists"][dname] = {"p": p, "methods": methods}
    return out


def means(res, metric):
    """{method: mean over the distributions where it was scored}."""
    acc = {}
    for d in res["dists"].values():
        for name, m in d["methods"].items():
            if m["n"] > 0:
                acc.setdefault(name, []).append(m[metric])
    return {k: float(np.mean(v)) for k, v in acc.items()}


# ---- figures -----------------------------------------------------------------------------------

def plot_scatter(res, path):
    import matplotlib.pyplot as plt

    names = sorted({m for d in res["dists"].values() for m in d["methods"]}, key=method_key)
    ncol = min(3, len(names))
    nrow = (len(names) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 4 * nrow), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, name in enumerate(names):
        ax = axes[k // ncol][k % ncol]
        lo, hi, losses = np.inf, 0.0, []
        for j, (dname, d) in enumerate(sorted(res["dists"].items())):
            m = d["methods"].get(name)
            if m is None:
                continue
            p, qf, q = d["p"], m["qfit"], m["q"]
            ok = np.isfinite(qf) & (qf > 0) & (p > 0)
            zero = ok & ~((q > 0) & np.isfinite(q))
            c = colors[j % len(colors)]
            ax.scatter(p[ok & ~zero], qf[ok & ~zero], s=12, color=c, label=dname, alpha=0.8)
            if zero.any():
                ax.scatter(p[zero], qf[zero], s=18, color=c, marker="x", alpha=0.8)
            if ok.any():
                lo = min(lo, p[ok].min(), qf[ok].min())
                hi = max(hi, p[ok].max(), qf[ok].max())
            losses.append(m["fitted"])
        if hi > 0:
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_title(f"{name} (fitted loss {np.mean(losses):.3g})", fontsize=10)
        ax.set_xlabel("true probability")
        ax.set_ylabel("fitted estimate")
        if k == 0:
            ax.legend(fontsize=7, loc="upper left")
    for k in range(len(names), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.suptitle(f"{res['label']}: fitted estimate vs truth (x: estimate 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(ax, groups, names, value, ylabel):
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        xs, ys = [], []
        for g, grp in enumerate(groups):
            v = value(grp, name)
            if v is not None and np.isfinite(v) and v > 0:
                xs.append(g + (k - (len(names) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width=width, label=name)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def plot_losses(res, metric, path):
    import matplotlib.pyplot as plt

    dnames = sorted(res["dists"])
    names = sorted({m for d in res["dists"].values() for m in d["methods"]}, key=method_key)
    mean = means(res, metric)

    def value(grp, name):
        if grp == "mean":
            return mean.get(name)
        m = res["dists"][grp]["methods"].get(name)
        return m[metric] if m else None

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * (len(dnames) + 1) * max(1, len(names)) / 3), 4))
    _bars(ax, dnames + ["mean"], names, value, f"{metric} loss")
    ax.set_title(f"{res['label']}: {metric} loss per distribution")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mean_losses(results, metric, path):
    import matplotlib.pyplot as plt

    labels = [r["label"] for r in results]
    per = {r["label"]: means(r, metric) for r in results}
    names = sorted({m for v in per.values() for m in v}, key=method_key)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(labels) * max(1, len(names)) / 3), 4))
    _bars(ax, labels, names, lambda g, n: per[g].get(n), f"mean {metric} loss")
    ax.set_title(f"mean {metric} loss over distributions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results files (one per model)")
    ap.add_argument("--out", required=True, help="directory for the PNG files (created)")
    ap.add_argument("--metric", default="fitted", choices=METRICS)
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(args.out, exist_ok=True)
    results = []
    for path in args.results:
        if not os.path.exists(path):
            print(f"plot_results: {path}: file not found", file=sys.stderr)
            return 2
        try:
            res = load(path)
        except OSError as e:
            print(f"plot_results: {path}: cannot read as HDF5 ({e})", file=sys.stderr)
            return 2
        if not res["dists"]:
            print(f"plot_results: {path}: no distribution with ground truth", file=sys.stderr)
            return 2
        results.append(res)
    seen = {}
    for r in results:  # unique labels for several files of one model
        seen[r["label"]] = seen.get(r["label"], 0) + 1
    for r in results:
        if seen[r["label"]] > 1:
            r["label"] += "_" + os.path.splitext(os.path.basename(r["path"]))[0]
    written = []
    for r in results:
        p1 = os.path.join(args.out, f"{r['label']}_scatter.png")
        p2 = os.path.join(args.out, f"{r['label']}_losses.png")
        plot_scatter(r, p1)
        plot_losses(r, args.metric, p2)
        written += [p1, p2]
    p3 = os.path.join(args.out, "mean_losses.png")
    plot_mean_losses(results, args.metric, p3)
    written.append(p3)
    for w in written:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
