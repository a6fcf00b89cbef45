#!/usr/bin/env python3
"""heldout_targets.py: tuning experiments on targets kept apart from the scored ones (issue 12).

The rule (experiments/testbed/README.md, "Issue 12: tuning on held-out targets"):
  - eligible: the tokens whose true probability (truth counts / samples) lies in the protocol's
    [p_min, p_max] = [1e-6, 1e-4], as `lpe run` selects them;
  - scored: the targets of the protocol's results file (experiments/testbed/results/MODEL.h5,
    seed 1, 64 per family); every scored run of the testbed uses these same targets;
  - held out: eligible minus scored; COUNT of them per family drawn uniformly without
    replacement (numpy default_rng([SEED, family's index in sorted order])), families with fewer
    than COUNT spare tokens left out (icl: its 10 eligible tokens are all scored);
  - tuning families: the first FAMILIES of those in alphabetical order (a rule, not a choice
    made after seeing results).
Parameters are chosen on these experiments only; the scored targets are never run while tuning.

Writes one INI per family (lpe's `[targets] list` is one list for the experiment, so one family
per file), each with `names = FAMILY`, the held-out list and the method sections of METHODS (an
INI fragment of [method ...] sections), output results/testbed/tune/MODEL-FAMILY-TAG.h5.

Usage: heldout_targets.py --model gelu-1l --methods FRAG.ini --tag TAG [--count 16]
           [--families 4] [--seed 12] [--run-seed 1] [--out-dir experiments/testbed/tune]
           (--seed draws the held-out targets; --run-seed is the runs' [experiment] seed: one
           held-out run is noisy by about +-0.05 in fitted loss, so compare settings over
           several run seeds, one tag per seed)
       heldout_targets.py --table TAG [--model gelu-1l] [--reps 2000]
           (the fitted-loss table over the families of one tag's results, joined, with
           table.py's bootstrap; from results/testbed/tune/, else the committed copies in
           experiments/testbed/results/tune/)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TB = ROOT / "experiments" / "testbed"
RES = ROOT / "results" / "testbed" / "tune"
P_MIN, P_MAX = 1e-6, 1e-4


def heldout(model: str, count: int, n_fam: int, seed: int) -> dict[str, list[int]]:
    """{family: sorted held-out targets} by the rule above."""
    import h5py
    fams = sorted(f.stem for f in (TB / "truth" / model).glob("*.h5"))
    out = {}
    with h5py.File(TB / "results" / f"{model}.h5", "r") as res:
        for i, fam in enumerate(fams):
            with h5py.File(TB / "truth" / model / f"{fam}.h5", "r") as t:
                p = t["counts"][:] / float(t.attrs["n_samples"])
            eligible = np.flatnonzero((p >= P_MIN) & (p <= P_MAX))
            scored = set(int(v) for v in res[fam]["targets"][:])
            assert scored <= set(int(v) for v in eligible), f"{fam}: scored targets not eligible"
            spare = np.array([v for v in eligible if int(v) not in scored])
            if len(spare) < count:
                continue
            rng = np.random.default_rng([seed, i])
            pick = sorted(int(v) for v in rng.choice(spare, size=count, replace=False))
            assert not set(pick) & scored
            out[fam] = pick
            if len(out) == n_fam:
                break
    return out


def write_inis(a) -> None:
    frag = Path(a.methods).read_text()
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rel = lambda p: Path(*([".."] * len(out_dir.resolve().relative_to(ROOT).parts)), p)  # noqa: E731
    for fam, tg in heldout(a.model, a.count, a.families, a.seed).items():
        ini = out_dir / f"{a.model}-{fam}-{a.tag}.ini"
        ini.write_text(
            f"; held-out tuning run (tools/testbed/heldout_targets.py; rule in its docstring):\n"
            f"; {a.count} eligible {fam} targets of {a.model} that the scored protocol does not use\n"
            f"[experiment]\nmodel = {rel('experiments/testbed/models/' + a.model + '.h5')}\n"
            f"distributions = {rel('experiments/testbed/dists.h5')}\nnames = {fam}\n"
            f"truth = {rel('experiments/testbed/truth/' + a.model + '/{dist}.h5')}\n"
            f"output = {rel(f'results/testbed/tune/{a.model}-{fam}-{a.tag}.h5')}\n"
            f"seed = {a.run_seed}\nbackend = auto\nbudget = 2^12\n\n"
            f"[targets]\nlist = {', '.join(map(str, tg))}\n\n{frag}")
        print(ini)


def table(a) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    sys.path.insert(0, str(ROOT / "tools" / "testbed"))
    import plot_results as pr  # noqa: F401
    import table as tb
    files = sorted(RES.glob(f"{a.model}-*-{a.tag}.h5")) or \
        sorted((TB / "results" / "tune").glob(f"{a.model}-*-{a.tag}.h5"))  # the committed copies
    if not files:
        sys.exit(f"heldout_targets.py: no results/testbed/tune/{a.model}-*-{a.tag}.h5")
    joined = None
    for f in files:
        res = tb.load_joined(str(f))
        if joined is None:
            joined = res
        else:
            joined["dists"].update(res["dists"])
    methods, point, boot, cv, dists = tb.analyse(joined, a.reps, np.random.default_rng(1))
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    print(f"{a.model} held-out, tag {a.tag}: families {', '.join(dists)}")
    print("| method | fitted loss | 95% interval | zeros |")
    print("|---|---:|---|---:|")
    order = np.argsort(point)
    for j in order:
        m = methods[j]
        nz = sum(int(np.sum(v["methods"][m]["q"] == 0)) for v in joined["dists"].values())
        print(f"| {m} | {point[j]:.3f} | [{lo[j]:.3f}, {hi[j]:.3f}] | {nz} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gelu-1l")
    ap.add_argument("--methods")
    ap.add_argument("--tag")
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--families", type=int, default=4)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--run-seed", type=int, default=1)
    ap.add_argument("--out-dir", default=str(TB / "tune"))
    ap.add_argument("--table")
    ap.add_argument("--reps", type=int, default=2000)
    a = ap.parse_args()
    if a.table:
        a.tag = a.table
        table(a)
    elif a.methods and a.tag:
        write_inis(a)
    else:
        ap.error("--methods FRAG --tag TAG, or --table TAG")


if __name__ == "__main__":
    main()
