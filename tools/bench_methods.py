#!/usr/bin/env python3
"""Benchmark every method: seconds per target and model calls per second, with all targets of a
distribution batched together (one `lpe run`) against one target at a time (one `lpe run` per
target), on random models of a small shape and of the gelu-1l shape (d_model 512, 8 heads,
d_mlp 2048, d_vocab 48262) and a k = 33 distribution (BOS + 32 positions).

    tools/bench_methods.py [--shapes small,gelu-1l] [--targets 8] [--budget 4096] [--burn-in 64]

Timing comes from the results files' `seconds` attributes (the method's own wall time, without
model loading). The work done is the methods' recorded model calls (forward + backward passes
for ITGIS and MHIS, forward passes for naive, QLD and GLD). `lpe bench` gives the ceiling: the
backend's samples/s beside this machine's sgemm rate.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LPE = ROOT / "bin" / "lpe"
METHODS = ["naive", "itgis", "mhis", "qld", "gld"]
SHAPES = {
    "small": dict(preset="small", vocab=512, k=9, support=24),
    "gelu-1l": dict(preset="gelu-1l", vocab=48262, k=33, support=256),
}


def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{r.stderr}")
    return r.stdout


def write_ini(path, model, dists, targets, out, budget, burn_in):
    sections = "\n".join(f"[method {m}]" + ("\nwalkers = 32\nburn_in = %d" % burn_in if m == "mhis" else "")
                         for m in METHODS)
    path.write_text(f"""[experiment]
model = {model}
distributions = {dists}
truth = none
output = {out}
seed = 1
budget = {budget}
[targets]
list = {", ".join(map(str, targets))}
{sections}
""")


def timings(path):
    """method -> (seconds, model calls) summed over the file's one distribution."""
    res = {}
    with h5py.File(path, "r") as f:
        for d in f:
            if not isinstance(f[d], h5py.Group) or "targets" not in f[d]:
                continue
            for m in METHODS:
                g = f[d][m]
                res[m] = (float(g.attrs["seconds"]), float(np.sum(g["model_calls"][()])))
    return res


def bench_shape(name, spec, T, budget, burn_in, tmp):
    model, dists = tmp / f"{name}.h5", tmp / f"{name}_dists.h5"
    run(LPE, "model", "init", "--preset", spec["preset"], "--out", model, "--seed", 1, "--force")
    run(LPE, "dist", "random", "--out", dists, "--name", "d", "--vocab", spec["vocab"], "--k", spec["k"],
        "--support", spec["support"], "--zipf", 1, "--const-first", 0, "--seed", 3)
    rng = np.random.default_rng(0)
    targets = sorted(rng.choice(spec["vocab"], size=T, replace=False).tolist())
    ini = tmp / f"{name}_all.ini"
    write_ini(ini, model, dists, targets, tmp / f"{name}_all.h5", budget, burn_in)
    run(LPE, "--quiet", "run", ini, "--force")
    together = timings(tmp / f"{name}_all.h5")
    single = {m: [0.0, 0.0] for m in METHODS}
    for t in targets:
        ini = tmp / f"{name}_{t}.ini"
        write_ini(ini, model, dists, [t], tmp / f"{name}_{t}.h5", budget, burn_in)
        run(LPE, "--quiet", "run", ini, "--force")
        for m, (s, c) in timings(tmp / f"{name}_{t}.h5").items():
            single[m][0] += s
            single[m][1] += c
    print(f"\n### {name}: {T} targets, budget {budget}, k = {spec['k']}, vocab {spec['vocab']}\n")
    print("| method | together: s/target | calls/s | one at a time: s/target | calls/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for m in METHODS:
        s_all, c_all = together[m]
        s_one, c_one = single[m]
        print(f"| {m} | {s_all / T:.3g} | {c_all / s_all:.3g} | {s_one / T:.3g} | {c_one / s_one:.3g} | "
              f"{s_one / s_all:.2f}x |")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="small,gelu-1l")
    ap.add_argument("--targets", type=int, default=8)
    ap.add_argument("--budget", type=int, default=4096)
    ap.add_argument("--burn-in", type=int, default=64)
    a = ap.parse_args()
    if not LPE.exists():
        sys.exit("build first: make")
    with tempfile.TemporaryDirectory(prefix="lpe_bench_") as d:
        for name in a.shapes.split(","):
            bench_shape(name, SHAPES[name], a.targets, a.budget, a.burn_in, Path(d))


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    main()
