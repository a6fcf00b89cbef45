"""QLD and GLD through `lpe run` on a tiny random model, redone in NumPy from the activations
and directions the run saves (save_activations = true).

  GLD   m = l_t - max_v l_v from the saved activations and the model's W_U (float64), then
        Phi(mean / std): must equal the run's estimate (float32 max logit vs float64: 1e-4).
  QLD   whitening in NumPy, z* = d_norm * d feasible, and the pair count by its O(n^2 V)
        definition (methods.md §4) for both variants: equal to the run's pair_count (+-1 for a pair
        within float32 rounding of a boundary), estimate = count / n^2.
  Also: QLD and GLD see the same activation samples, independent of the batch size; every
  target is charged `budget` model calls; a bad variant is an input error.
"""
import math
import os

import h5py
import numpy as np
import pytest

from conftest import run_lpe, write_ini

N = 256  # budget: activation samples


@pytest.fixture(scope="module")
def case(tmp_path_factory, tiny_model, tiny_dists):
    d = tmp_path_factory.mktemp("qldrun")
    os.symlink(tiny_model, d / "model.h5")
    os.symlink(tiny_dists, d / "dists.h5")
    with h5py.File(tiny_model, "r") as f:
        W = f["unembed/W_U"][()].astype(np.float64)
        b = f["unembed/b_U"][()].astype(np.float64) if "unembed/b_U" in f else np.zeros(W.shape[1])
    return dict(dir=d, W=W, b=b)


def run(case, name, methods, check=0):
    text = (f"[experiment]\nmodel = model.h5\ndistributions = dists.h5\nnames = a, b\n"
            f"truth = exact\nseed = 3\nbackend = cpu\nbudget = {N}\n\n"
            f"[targets]\ncount = 5\np_min = 1e-4\np_max = 0.3\n\n{methods}")
    ini = write_ini(case["dir"] / f"{name}.ini", text)
    out = case["dir"] / f"{name}.h5"
    r = run_lpe("run", ini, "--output", out, "--force", check=check)
    return out, r


def log_phi(x):
    return math.log(0.5 * math.erfc(-x / math.sqrt(2)))


def whiten(act):
    v = act.astype(np.float64)
    mu = v.mean(0)
    S = (v - mu).T @ (v - mu) / len(v)
    A = np.linalg.cholesky(S + 1e-5 * np.eye(len(mu)))
    return mu, A


def brute_count(z, d, P, c, t, variant):
    a = z @ d
    cnt = 0
    if variant == "paper":  # points a_i d + b_j
        B = z - np.outer(a, d)
        for ai in a:
            cnt += int(np.sum(np.argmax((ai * d + B) @ P.T + c, axis=1) == t))
    else:  # points u_i + a_j d
        for zi in z:
            cnt += int(np.sum(np.argmax((zi + np.outer(a, d)) @ P.T + c, axis=1) == t))
    return cnt


@pytest.fixture(scope="module")
def paper(case):
    methods = ("[method qld]\nsave_activations = true\n\n"
               "[method gld]\nsave_activations = true\n\n[method naive]\n")
    return run(case, "paper", methods)[0]


def test_gld_matches_numpy(case, paper):
    with h5py.File(paper, "r") as f:
        for dist in ("a", "b"):
            g = f[dist]
            act = g["gld/activations"][()]
            assert act.shape == (N, case["W"].shape[0]) and act.dtype == np.float32
            L = act.astype(np.float64) @ case["W"] + case["b"]
            for i, t in enumerate(g["targets"][()]):
                m = np.minimum(L[:, t] - L.max(1), 0)
                mu, sd = m.mean(), m.std(ddof=1)
                assert g["gld/mu"][i] == pytest.approx(mu, rel=1e-4, abs=1e-5)
                assert g["gld/sigma"][i] == pytest.approx(sd, rel=1e-4, abs=1e-5)
                assert g["gld/log10_estimate"][i] * math.log(10) == pytest.approx(
                    log_phi(mu / sd), rel=1e-4)
                assert g["gld/estimate"][i] == pytest.approx(math.exp(log_phi(mu / sd)), rel=1e-4)
            assert np.all(g["gld/model_calls"][()] == N)
            assert "shared by all targets" in g["gld"].attrs["note"]


def check_qld(case, path, variant):
    n_nontrivial = 0
    with h5py.File(path, "r") as f:
        for dist in ("a", "b"):
            g = f[dist]
            q = g["qld"]
            act, dirs = q["activations"][()], q["directions"][()]
            mu, A = whiten(act)
            P = case["W"].T @ A
            c = case["W"].T @ mu + case["b"]
            if variant == "paper":
                z = np.linalg.solve(A, (act.astype(np.float64) - mu).T).T
            else:
                z = act.astype(np.float64) - np.linalg.solve(A, mu)
            assert np.all(q["model_calls"][()] == N)
            assert f"variant={variant}" in q.attrs["note"]
            for i, t in enumerate(g["targets"][()]):
                d = dirs[i]
                assert abs(np.linalg.norm(d) - 1) < 1e-12
                assert q["feasible"][i] == 1
                # the accepting point itself: logits of z* have t as argmax (margins >= 0)
                zs = q["d_norm"][i] * d
                l = zs @ P.T + c
                margin = l[t] - np.delete(l, t).max()
                assert margin >= -1e-7 * (1 + np.abs(l).max()), (dist, t, margin)
                if variant == "paper":
                    assert q["converged"][i] == 1 and q["worst_margin"][i] >= -1e-9
                want = brute_count(z, d, P, c, t, variant)
                got = q["pair_count"][i]
                assert abs(got - want) <= 1, (dist, t, got, want)
                assert q["estimate"][i] == pytest.approx(got / N**2, rel=1e-15)
                n_nontrivial += 0 < want < N * N
    assert n_nontrivial >= 4


def test_qld_paper_matches_definition(case, paper):
    check_qld(case, paper, "paper")


def test_qld_arc_matches_definition(case):
    out, _ = run(case, "arc", "[method qld]\nvariant = arc\nsave_activations = true\n")
    check_qld(case, out, "arc")


def test_shared_samples_independent_of_batch(case, paper):
    out, _ = run(case, "batch7", "[method qld]\nbatch = 7\nsave_activations = true\n\n"
                                 "[method gld]\nbatch = 5\n")
    with h5py.File(paper, "r") as f, h5py.File(out, "r") as g:
        for dist in ("a", "b"):
            a0 = f[f"{dist}/qld/activations"][()]
            assert np.array_equal(a0, f[f"{dist}/gld/activations"][()])
            # the batch size changes which rows run together, not what each row computes;
            # a row's float32 results may differ in the last bits with the batch's blocking
            assert np.allclose(a0, g[f"{dist}/qld/activations"][()], rtol=1e-5, atol=1e-6)
            for m in ("qld", "gld"):
                np.testing.assert_allclose(g[f"{dist}/{m}/estimate"][()],
                                           f[f"{dist}/{m}/estimate"][()], rtol=1e-3)


def test_bad_variant(case):
    _, r = run(case, "bad", "[method qld]\nvariant = fancy\n", check=2)
    assert "variant" in r.stderr and "fancy" in r.stderr
