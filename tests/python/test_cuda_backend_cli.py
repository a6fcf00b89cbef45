"""The CUDA backend from the command line (skipped, with the reason, without a CUDA device):

- `lpe truth --backend cuda` counts equal `--backend cpu` counts over the same samples, except
  rows whose top-two logits are within float32 rounding of each other (near ties: the two
  backends sum products in different orders); the number of such rows is printed;
- CUDA shards merge to the unsharded CUDA run bit for bit (same batch size, as on the CPU);
- `lpe forward --backend cuda`: logits and gradient within the float32 bound of the CPU's
  (tests/c/test_cuda_backend.c derives it), and the device is named in the output;
- `lpe run` with ITGIS (issue 10: its inner loop on the device) close to the CPU's estimates.

The numerics at many shapes are in tests/c/test_cuda_backend.c; this file checks the commands.
"""
import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LPE = str(ROOT / "bin" / "lpe")
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
EPS32 = 2.0 ** -24


def lpe(*args, check=None, timeout=300):
    r = subprocess.run([LPE, *map(str, args)], capture_output=True, text=True, env=ENV,
                       timeout=timeout)
    if check is not None:
        assert r.returncode == check, f"exit {r.returncode}, wanted {check}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A 2-layer gelu_new model (d_model 32, vocab 96) and a distribution of 6 positions; the
    whole module is skipped when the CUDA backend is not usable here."""
    d = tmp_path_factory.mktemp("cuda")
    m, f = d / "m.h5", d / "d.h5"
    lpe("model", "init", "--out", m, "--layers", 2, "--d-model", 32, "--heads", 4, "--d-head", 8,
        "--d-mlp", 64, "--vocab", 96, "--ctx", 8, "--act", "gelu_new", "--seed", 4, check=0)
    lpe("dist", "random", "--out", f, "--name", "a", "--vocab", 96, "--k", 6, "--support", 20,
        "--factors", 2, "--zipf", 1.1, "--seed", 6, check=0)
    probe = lpe("forward", "--model", m, "--tokens", "1,2", "--backend", "cuda")
    if probe.returncode != 0:
        msg = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "?"
        if probe.returncode == 2 and ("no usable device" in msg or "without CUDA" in msg):
            pytest.skip(f"no CUDA device ({msg})")
        pytest.fail(f"lpe forward --backend cuda: exit {probe.returncode}: {probe.stderr}")
    return dict(dir=d, model=m, dist=f)


def counts(path):
    with h5py.File(path, "r") as h:
        return h["counts"][:]


def truth(case, out, backend, *extra):
    lpe("truth", "--model", case["model"], "--dist", case["dist"], "--name", "a", "--seed", 3,
        "--out", out, "--backend", backend, *extra, check=0)
    return counts(out)


def test_truth_cuda_equals_cpu(case):
    N = 200000
    c_cpu = truth(case, case["dir"] / "cpu.h5", "cpu", "--samples", N)
    c_gpu = truth(case, case["dir"] / "gpu.h5", "cuda", "--samples", N)
    assert c_gpu.sum() == N and c_cpu.sum() == N
    moved = int(np.abs(c_cpu.astype(np.int64) - c_gpu.astype(np.int64)).sum()) // 2
    print(f"truth: {moved} of {N} rows counted in another bin (near ties)")
    # a near tie needs a top-two gap within ~1e-6 of the logits' scale: a few per 1e5 at most
    assert moved <= N // 10000, (moved, np.nonzero(c_cpu != c_gpu))
    assert (c_gpu > 0).sum() >= 3  # not trivial: several tokens win


def test_truth_cuda_shards_merge_bit_for_bit(case):
    d = case["dir"]
    N = 30001
    whole = truth(case, d / "w.h5", "cuda", "--samples", N, "--batch", 512)
    parts = []
    for i in range(3):
        out = d / f"s{i}.h5"
        truth(case, out, "cuda", "--samples", N, "--batch", 512, "--shard", f"{i}/3")
        parts.append(out)
    lpe("truth", "merge", d / "merged.h5", *parts, check=0)
    assert np.array_equal(counts(d / "merged.h5"), whole)


def forward(case, backend):
    r = lpe("forward", "--model", case["model"], "--tokens", "5,7,11,13,17,19", "--target", 9,
            "--logits", "--grad", "--backend", backend, check=0)
    return json.loads(r.stdout)


def test_forward_cuda_close_to_cpu(case):
    a, b = forward(case, "cpu"), forward(case, "cuda")
    assert b["backend"] == "cuda" and b["device"] and b["device"] != a["device"]
    la, lb = np.array(a["logits"]), np.array(b["logits"])
    # the bound of test_cuda_backend.c, 2 (L+1) Kmax eps32 S_v (L = 2, Kmax = d_mlp = 64), with
    # S_v = sum_d |lnf_d W_U[d, v]| (not printed by `lpe forward`) stood in for by
    # d_model * max |l|: a looser check; the C test applies the exact bound per logit
    bound = 2 * 3 * 64 * EPS32 * np.abs(la).max() * 32
    assert np.abs(la - lb).max() <= bound, (np.abs(la - lb).max(), bound)
    ga, gb = np.array(a["grad"]), np.array(b["grad"])
    assert np.abs(ga - gb).max() <= 4 * 3 * 64 * EPS32 * np.abs(ga).max() * 32
    if a["argmax"] != b["argmax"]:  # only at a near tie
        assert abs(la[a["argmax"]] - la[b["argmax"]]) <= bound


# ---- ITGIS operations (issue 10) --------------------------------------------------------------
def test_itgis_run_cuda_close_to_cpu(case):
    """`lpe run` with ITGIS on both backends: the whole estimator through the device operations
    (kernels/cuda_itgis.cu). The estimates differ by rounding (log-weights ~1e-6 relative through
    the float32 score products in S) unless a near-tie argmax or a token at a cdf boundary moves
    one sample (rare: supports of 20, a few thousand draws); 1% and one hit catch gross errors
    (a wrong weight, a lost score tile) without failing on such a move."""
    d = case["dir"]
    c = truth(case, d / "itgis_t.h5", "cpu", "--samples", 20000)
    targets = [int(v) for v in np.flatnonzero((c >= 20) & (c <= 2000))[:3]]
    assert targets, "no target with 1e-3 <= p <= 1e-1 in the test model"
    ini = d / "itgis.ini"
    ini.write_text(f"[experiment]\nmodel = {case['model']}\ndistributions = {case['dist']}\n"
                   f"names = a\ntruth = none\nseed = 1\nbudget = 256\n[targets]\n"
                   f"list = {', '.join(map(str, targets))}\n[method itgis]\nbatch = 32\n"
                   "temperature = 1.0\n")
    res = {}
    for b in ("cpu", "cuda"):
        lpe("--quiet", "run", ini, "--force", "--backend", b, "--output", d / f"itgis_{b}.h5",
            check=0)
        with h5py.File(d / f"itgis_{b}.h5", "r") as f:
            res[b] = f["a/itgis/estimate"][()], f["a/itgis/hits"][()]
    (ea, ha), (eb, hb) = res["cpu"], res["cuda"]
    print("itgis cpu", ea, ha, "cuda", eb, hb)
    assert np.all(np.isfinite(eb)) and ha.sum() > 0
    assert np.all(np.abs(ha - hb) <= 1), (ha, hb)
    assert np.all(np.abs(ea - eb) <= 1e-2 * np.abs(ea)), (ea, eb)


# ---- walker operations (issue 10) -------------------------------------------------------------
def walker_run(case, backend):
    d = case["dir"]
    out = d / f"walk-{backend}.h5"
    ini = d / f"walk-{backend}.ini"
    ini.write_text(f"""[experiment]
model = {case['model']}
distributions = {case['dist']}
truth = none
output = {out}
seed = 5
backend = {backend}
budget = 16384
[targets]
list = 9, 32
[method mhis]
walkers = 4096
burn_in = 3
temperature = 1.5
save_chains = true
chain_stride = 2
[method ams]
particles = 64
[method smc]
particles = 128
""")
    lpe("run", ini, "--quiet", "--force", check=0, timeout=600)
    return h5py.File(out, "r")


def test_walker_methods_cuda_like_cpu(case):
    """MHIS with 4096 walkers per target (the fused step at scale; save_chains through the
    asynchronous snapshots), ams and smc on CUDA against the CPU. The chains are the CPU's but
    for near-ties (tests/c/test_cuda_backend.c: a pick or decision whose uniform falls within
    float32 rounding of a threshold), so the saved chains agree in all but a few rows and MHIS's
    estimate moves by far less than its standard error. smc's estimate is a smooth function of
    all its particles: close. ams is not: its levels are margins of states that recur exactly in
    a small discrete space, so a proposal whose margin equals the level is a near-tie that float
    rounding decides, and one diverged particle changes the kills after it (in the emulation the
    estimates differed up to 6x at N = 32); its checks are a sane run and a close acceptance
    rate."""
    with walker_run(case, "cpu") as a, walker_run(case, "cuda") as b:
        ta, tb = a["a/mhis/chains/tokens"][()], b["a/mhis/chains/tokens"][()]
        assert ta.shape == tb.shape and ta.shape[0] == 2 * 4096 * 2
        same = np.all(ta == tb, axis=1).mean()
        print(f"mhis chains: {same:.5f} of the saved rows identical")
        assert same >= 0.99, same
        pa, pb = a["a/mhis/estimate"][()], b["a/mhis/estimate"][()]
        se = a["a/mhis/std_error"][()]
        assert np.all(np.isfinite(pb)) and np.all(np.abs(pa - pb) <= 0.25 * se + 1e-12), (pa, pb, se)
        ea, eb = a["a/smc/estimate"][()], b["a/smc/estimate"][()]
        assert np.all(np.isfinite(eb)) and np.all(np.abs(ea - eb) <= 0.3 * np.abs(ea) + 1e-12), (ea, eb)
        ea, eb = a["a/ams/estimate"][()], b["a/ams/estimate"][()]
        ra, rb = a["a/ams/acceptance_rate"][()], b["a/ams/acceptance_rate"][()]
        assert np.all((eb >= 0) & (eb <= 1)) and np.all(b["a/ams/iterations"][()] > 0), eb
        assert np.all(np.abs(ra - rb) <= 0.1), (ra, rb)
