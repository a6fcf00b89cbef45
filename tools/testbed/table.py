#!/usr/bin/env python3
"""table.py: the testbed table (issue 4): per model and method, the fitted Itakura-Saito loss
(docs/methods.md §6, zero rule `const`) averaged over the distributions, with a 95% bootstrap interval over
targets: each replicate resamples every distribution's targets with replacement and averages
their losses (under the fit made on all the targets: refitting on a resample with repeated
targets flatters every method, the more so the more flexible its estimates) and then over the
distributions; methods share the replicate's targets, so that differences between methods are
paired. Also the leave-one-out (cross-validated) fitted loss, docs/methods.md §6's honest number, and the
share of replicates in which each method's mean beats the next one's.

Usage: table.py RESULTS.h5 ... [--reps 2000] [--seed 1] [--csv OUT.csv] [--versus itgis,mhis]
         (A.h5+B.h5 joins the runs of one model on the same targets into one table, so that
         methods from different files are compared paired; a method in both is named
         method[B's file stem] for B's run)
       table.py --tuned SWEEP.h5 ...
         (a temperature sweep, `temperature = a, b, ...`: per method and family the fitted loss
         at each temperature, the best one per family as the paper tuned on its own ground
         truth, and the best single temperature for all families)
       table.py --truth experiments/testbed/truth [--range 1e-6 1e-4]
         (the number of tokens with a true probability in the range, per model and family)
Scoring: tools/plot_results.py (the NumPy reference of lpe's evaluation).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import plot_results as pr  # noqa: E402


def fitted_losses(p, q):
    """Per-target loss D(p, q') under the fit of docs/methods.md §6 on all the targets (zero rule const)."""
    learnt = pr._learn(p, q)
    qf = np.array([pr._predict(learnt, x) for x in q])
    return pr.is_loss(p, qf)


def analyse(res, reps, rng):
    """(methods, point [M], boot [reps, M], cv [M], dists) for one results file."""
    dists = {d: v for d, v in res["dists"].items() if len(v["p"])}
    methods = sorted({m for v in dists.values() for m in v["methods"]}, key=pr.method_key)
    methods = [m for m in methods if all(m in v["methods"] for v in dists.values())]
    loss = {d: np.array([fitted_losses(v["p"], v["methods"][m]["q"]) for m in methods])
            for d, v in dists.items()}  # [M, T_d]
    point = np.mean([l.mean(1) for l in loss.values()], axis=0)
    cv = np.array([np.mean([v["methods"][m]["cv"] for v in dists.values()]) for m in methods])
    boot = np.zeros((reps, len(methods)))
    for r in range(reps):
        boot[r] = np.mean([l[:, rng.integers(0, l.shape[1], l.shape[1])].mean(1)
                           for l in loss.values()], axis=0)
    return methods, point, boot, cv, sorted(dists)


def load_joined(spec: str):
    """pr.load of one file, or of several joined with '+': same distributions and targets (true
    probabilities equal), methods united; a repeated method is renamed method[stem]."""
    parts = spec.split("+")
    res = pr.load(parts[0])
    for path in parts[1:]:
        other = pr.load(path)
        stem = Path(path).stem
        for d, v in res["dists"].items():
            if d not in other["dists"] or not np.array_equal(other["dists"][d]["p"], v["p"]):
                sys.exit(f"table.py: {path}: distribution {d} missing or with other targets than "
                         f"{parts[0]}'s; only runs on the same targets can be joined")
            for m, mv in other["dists"][d]["methods"].items():
                if m == "const":
                    continue
                v["methods"][m if m not in v["methods"] else f"{m}[{stem}]"] = mv
    return res


def truth_table(root: Path, lo: float, hi: float) -> None:
    import h5py
    models = sorted(p.name for p in root.iterdir() if p.is_dir())
    fams = sorted({f.stem for m in models for f in (root / m).glob("*.h5")})
    print("| model | " + " | ".join(fams) + " |")
    print("|---|" + "---:|" * len(fams))
    for m in models:
        cells = []
        for d in fams:
            f = root / m / f"{d}.h5"
            if not f.exists():
                cells.append("")
                continue
            with h5py.File(f, "r") as h:
                p = h["counts"][:] / float(h.attrs["n_samples"])
            cells.append(str(int(np.count_nonzero((p >= lo) & (p <= hi)))))
        print(f"| {m} | " + " | ".join(cells) + " |")


def tuned_table(path: str) -> None:
    """Per swept method: loss per family at each value, best per family, best overall."""
    res = pr.load(path)
    dists = {d: v for d, v in res["dists"].items() if len(v["p"])}
    names = sorted({m for v in dists.values() for m in v["methods"] if "@" in m}, key=pr.method_key)
    bases = sorted({m.split("@", 1)[0] for m in names})
    fams = sorted(dists)
    for base in bases:
        variants = [m for m in names if m.split("@", 1)[0] == base]
        loss = np.array([[fitted_losses(dists[d]["p"], dists[d]["methods"][m]["q"]).mean()
                          for d in fams] for m in variants])  # [variants, families]
        print(f"\n{res['label']} {base}: fitted loss per family\n")
        print(f"| {base} | " + " | ".join(fams) + " | mean |")
        print("|---|" + "---:|" * (len(fams) + 1))
        for m, row in zip(variants, loss):
            cells = [f"**{x:.3f}**" if x == loss[:, j].min() else f"{x:.3f}" for j, x in enumerate(row)]
            print(f"| {m.split('@', 1)[1]} | " + " | ".join(cells) + f" | {row.mean():.3f} |")
        best = loss.argmin(0)
        one = loss.mean(1).argmin()
        print(f"| best per family | " + " | ".join(variants[b].split("=", 1)[-1] for b in best)
              + f" | {loss.min(0).mean():.3f} |")
        print(f"\n{base}: best single value {variants[one].split('@', 1)[1]} "
              f"(mean {loss[one].mean():.3f}); best per family, tuned on the evaluation's own "
              f"targets as the paper did, mean {loss.min(0).mean():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="*")
    ap.add_argument("--truth", help="directory of {model}/{family}.h5 ground-truth files")
    ap.add_argument("--range", nargs=2, type=float, default=(1e-6, 1e-4))
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--csv")
    ap.add_argument("--tuned", action="store_true", help="temperature-sweep table (see above)")
    ap.add_argument("--versus", default="",
                    help="comma-separated methods (e.g. itgis,mhis): also print, for every other "
                         "method, the difference of its loss from each and the share of paired "
                         "replicates in which it is lower")
    a = ap.parse_args()
    if a.tuned:
        for path in a.results:
            tuned_table(path)
        return
    if a.truth:
        truth_table(Path(a.truth), *a.range)
        return
    rng = np.random.default_rng(a.seed)
    rows = []
    print("| model | method | fitted loss (mean over distributions) | 95% bootstrap interval "
          "| leave-one-out fitted loss |")
    print("|---|---|---:|---|---:|")
    for path in a.results:
        res = load_joined(path)
        methods, point, boot, cv, dists = analyse(res, a.reps, rng)
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        for j in np.argsort(point):
            print(f"| {res['label']} | {methods[j]} | {point[j]:.3f} | [{lo[j]:.3f}, {hi[j]:.3f}] "
                  f"| {cv[j]:.3f} |")
            rows.append((res["label"], methods[j], point[j], lo[j], hi[j], cv[j]))
        order = np.argsort(point)
        wins = [f"{methods[order[i]]} < {methods[order[i + 1]]} in "
                f"{np.mean(boot[:, order[i]] < boot[:, order[i + 1]]):.0%}"
                for i in range(len(order) - 1)]
        print(f"|  | *{res['label']}: {len(dists)} distributions; paired bootstrap: "
              f"{'; '.join(wins)}* | | | |")
        for ref in [v for v in a.versus.split(",") if v in methods]:
            r = methods.index(ref)
            vs = [f"{methods[j]} {point[j] - point[r]:+.3f} (lower in "
                  f"{np.mean(boot[:, j] < boot[:, r]):.0%})" for j in order if j != r]
            print(f"|  | *{res['label']}, paired against {ref} (loss difference, share of "
                  f"replicates lower): {'; '.join(vs)}* | | | |")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("model,method,fitted_loss,lo95,hi95,cv_loss\n")
            for r in rows:
                f.write(f"{r[0]},{r[1]},{r[2]:.6g},{r[3]:.6g},{r[4]:.6g},{r[5]:.6g}\n")


if __name__ == "__main__":
    main()
