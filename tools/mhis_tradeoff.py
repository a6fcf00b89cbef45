#!/usr/bin/env python3
"""mhis_tradeoff.py: MHIS's walkers against chain length at a fixed budget, measured against
exact enumeration (issue 10: "document the trade-off of walkers against steps").

A small random model and a random distribution whose inputs are enumerated (`lpe truth
--exact`) give exact probabilities. For each number of walkers W, the same total of model calls
C per target is split into W chains of C/W - 1 steps (one call starts each chain); a fraction
`burn` of the steps is burn-in, the rest is recorded. Every configuration runs R seeds on the
same targets, so the table gives, per configuration:

  bias    mean over targets of (mean over seeds of P_hat / P) - 1, with its standard error
          (from the spread over seeds, combined over targets);
  zeros   the fraction of runs that gave 0 (no walker ever hit the target);
  rmse    root mean square of log10(P_hat / P) over the runs that did not give 0;
  rhat    median over targets of R-hat of the score, over all recorded steps and over their
          first half (rhat_score, rhat_score_first_half).

Usage: tools/mhis_tradeoff.py [--calls 2^15] [--seeds 6] [--walkers 16,64,256,1024]
                              [--burn 0.5,0.125] [--workdir DIR] [--lpe bin/lpe]
Prints a markdown table (and the command line) on stdout. About 5 minutes on one core at the
defaults.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

TOP = Path(__file__).resolve().parent.parent


def lpe(exe, *args):
    r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"mhis_tradeoff: lpe {' '.join(map(str, args))} failed ({r.returncode}):\n"
                 f"{r.stderr}")
    return r.stdout


def world(exe, wd):
    """Model, distribution (BOS + 5 positions over 12 tokens: 248,832 inputs) and exact truth;
    returns 6 targets with exact P in [1e-5, 1e-3] and their probabilities."""
    m, d, t = wd / "m.h5", wd / "d.h5", wd / "truth.h5"
    if not t.exists():
        lpe(exe, "model", "init", "--out", m, "--layers", 2, "--d-model", 32, "--heads", 2,
            "--d-head", 16, "--d-mlp", 64, "--vocab", 128, "--ctx", 8, "--seed", 7, "--force")
        d.unlink(missing_ok=True)
        lpe(exe, "dist", "random", "--out", d, "--name", "d", "--vocab", 128, "--k", 6,
            "--support", 12, "--zipf", 1.0, "--seed", 3, "--const-first", 0)
        lpe(exe, "truth", "--model", m, "--dist", d, "--name", "d", "--out", t, "--exact",
            "--force")
    with h5py.File(t, "r") as f:
        p = f["probs"][()]  # exact truth: the probability of every token
    cand = np.flatnonzero((p >= 1e-5) & (p <= 1e-3))
    if len(cand) < 6:
        sys.exit(f"mhis_tradeoff: only {len(cand)} targets in [1e-5, 1e-3]")
    pick = cand[np.linspace(0, len(cand) - 1, 6).round().astype(int)]
    return m, d, t, pick, p[pick]


def run_one(exe, wd, m, d, t, targets, W, burn, rec, seed, T):
    out = wd / f"r_W{W}_b{burn}_s{seed}.h5"
    if not out.exists():
        ini = wd / "e.ini"
        ini.write_text(f"""[experiment]
model = {m}
distributions = {d}
names = d
truth = {t}
output = {out}
seed = {seed}
backend = cpu
budget = {W * rec}
[targets]
list = {", ".join(str(int(x)) for x in targets)}
[method mhis]
temperature = {T}
walkers = {W}
burn_in = {burn}
""")
        lpe(exe, "--quiet", "run", ini)
    with h5py.File(out, "r") as f:
        g = f["d/mhis"]
        return (g["estimate"][()], g["rhat_score"][()],
                g["rhat_score_first_half"][()], g["model_calls"][()])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", default="2^15")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--walkers", default="16,64,256,1024")
    ap.add_argument("--burn", default="0.5,0.125")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--workdir")
    ap.add_argument("--lpe", default=str(TOP / "bin" / "lpe"))
    a = ap.parse_args()
    C = int(eval(a.calls.replace("^", "**"), {}))
    wd = Path(a.workdir or tempfile.mkdtemp(prefix="mhis_tradeoff."))
    wd.mkdir(parents=True, exist_ok=True)
    m, d, t, targets, P = world(a.lpe, wd)
    print(f"# MHIS: walkers against steps at {C} model calls per target "
          f"(tools/mhis_tradeoff.py --calls {a.calls} --seeds {a.seeds} --walkers {a.walkers} "
          f"--burn {a.burn} --temperature {a.temperature})\n")
    print(f"targets {list(map(int, targets))}, exact P {', '.join(f'{x:.3g}' for x in P)}; "
          f"{a.seeds} seeds each\n")
    print("| walkers | steps | burn-in | recorded | bias (se) | zeros | rmse log10 | R-hat first half "
          "| R-hat |")
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for W in map(int, a.walkers.split(",")):
        steps = C // W - 1
        for frac in map(float, a.burn.split(",")):
            burn = int(round(frac * steps))
            rec = steps - burn
            if rec < 1:
                continue
            est, rh, rh1 = [], [], []
            for s in range(1, a.seeds + 1):
                e, r, r1, calls = run_one(a.lpe, wd, m, d, t, targets, W, burn, rec, s,
                                          a.temperature)
                assert np.all(calls == W * (1 + steps)), calls
                est.append(e), rh.append(r), rh1.append(r1)
            ratio = np.array(est) / P            # [seeds, targets]
            bias_t = ratio.mean(0) - 1
            se_t = ratio.std(0, ddof=1) / np.sqrt(a.seeds)
            bias, se = bias_t.mean(), np.sqrt((se_t ** 2).sum()) / len(P)
            pos = ratio[ratio > 0]
            rmse = np.sqrt(np.mean(np.log10(pos) ** 2)) if pos.size else np.nan
            print(f"| {W} | {steps} | {burn} | {rec} | {bias:+.3f} ({se:.3f}) | "
                  f"{np.mean(ratio == 0):.2f} | {rmse:.3f} | "
                  f"{np.nanmedian(rh1):.3f} | {np.nanmedian(rh):.3f} |", flush=True)


if __name__ == "__main__":
    main()
