"""The CPU backend's forward, input gradient and gradient scores against the float64 reference
(tests/python/reference.py), driven through `lpe forward`, on random models of many shapes.

Tolerances. lpe computes in float32 (LayerNorm statistics and softmax normalisers in float64).
Each value is a sum of O(D) products passed through a few layers, so its rounding error is a few
float32 ulps of the *magnitudes involved*, not of the (possibly cancelling) result: we allow
|lpe - ref| <= ATOL * scale + RTOL * |ref|, with scale = max |ref| over the compared vector,
ATOL = 2e-5 (~150 float32 ulps of the scale; observed errors are ~3e-7 * scale) and RTOL = 1e-4.
A wrong term (a bias, a scale, a mask, a transposed weight) moves results by >= 1e-2 * scale
on these random models, so the tests can fail; test_tolerance_catches_a_wrong_model checks that.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LPE = str(ROOT / "bin" / "lpe")
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import lpefiles  # noqa: E402
import reference  # noqa: E402

ATOL, RTOL = 2e-5, 1e-4


def lpe(*args, check=0):
    r = subprocess.run([LPE, *map(str, args)], capture_output=True, text=True, timeout=60)
    if check is not None:
        assert r.returncode == check, f"exit {r.returncode}, wanted {check}\n{r.stdout}\n{r.stderr}"
    return r


def close(got, want, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    scale = np.abs(want).max() if want.size else 0.0
    err = np.abs(got - want)
    bound = ATOL * scale + RTOL * np.abs(want)
    worst = np.argmax(err - bound) if err.size else 0
    assert np.all(err <= bound), (f"{what}: max error {err.max():.3g} at {np.unravel_index(worst, err.shape)} "
                                  f"(scale {scale:.3g}, bound {bound.flat[worst]:.3g})")


# (name, config overrides, k): 1-4 layers, every activation, attention-only, odd sizes
SHAPES = [
    ("1l-gelu", dict(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=50, act_fn="gelu", has_b_U=1), 5),
    ("2l-gelu_new", dict(n_layers=2, d_model=24, n_heads=3, d_head=8, d_mlp=40, d_vocab=64, act_fn="gelu_new"), 6),
    ("3l-relu", dict(n_layers=3, d_model=20, n_heads=4, d_head=5, d_mlp=48, d_vocab=40, act_fn="relu"), 7),
    ("4l-gelu", dict(n_layers=4, d_model=32, n_heads=2, d_head=16, d_mlp=64, d_vocab=96, act_fn="gelu"), 4),
    ("2l-attn-only", dict(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=1, d_vocab=30, attn_only=1), 6),
    ("odd-dh3-v7", dict(n_layers=2, d_model=5, n_heads=3, d_head=3, d_mlp=7, d_vocab=7, act_fn="gelu_new", has_b_U=1), 3),
    ("odd-k1", dict(n_layers=2, d_model=6, n_heads=2, d_head=3, d_mlp=9, d_vocab=7, act_fn="relu"), 1),
    ("1l-k1-attn-only", dict(n_layers=1, d_model=8, n_heads=1, d_head=3, d_mlp=1, d_vocab=11, attn_only=1), 1),
]


def make_case(tmp_path, name, over, k, seed):
    cfg = dict(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=50, n_ctx=max(k, 8),
               act_fn="gelu", ln_eps=1e-5, attn_only=0, has_b_U=0)
    cfg.update(over)
    w = lpefiles.random_model(cfg, seed=seed)
    path = tmp_path / f"{name}.h5"
    lpefiles.write_model(str(path), cfg, w)
    rng = np.random.default_rng(seed)
    V = cfg["d_vocab"]
    tokens = rng.integers(0, V, size=k)
    target = int(rng.integers(0, V))
    # a support per position that contains the input's own token, plus a shared factor
    factors, positions = [], []
    for j in range(k):
        others = rng.choice(V, size=min(V, 5), replace=False)
        vals = np.unique(np.concatenate([[tokens[j]], others]))
        factors.append((vals.tolist(), rng.random(len(vals)) + 0.1))
        positions.append(j)
    dpath = tmp_path / f"{name}-dist.h5"
    lpefiles.write_dist(str(dpath), "d", factors, positions, description="test")
    return cfg, w, path, dpath, tokens, target


def run_forward(path, tokens, target, dpath=None):
    args = ["forward", "--model", path, "--tokens", ",".join(map(str, tokens)), "--target", target,
            "--logits", "--grad", "--top", 3]
    if dpath is not None:
        args += ["--dist", dpath, "--dist-name", "d"]
    return json.loads(lpe(*args).stdout)


@pytest.mark.parametrize("name,over,k", SHAPES, ids=[s[0] for s in SHAPES])
def test_forward_and_gradient(tmp_path, name, over, k):
    cfg, w, path, dpath, tokens, target = make_case(tmp_path, name, over, k, seed=len(name))
    out = run_forward(path, tokens, target, dpath)
    ref_logits, ref_grad = reference.grad_r0(cfg, w, tokens, target)

    close(out["logits"], ref_logits, "logits")
    close(out["target_logit"], ref_logits[target], "target logit")
    close(out["max_logit"], ref_logits.max(), "max logit")
    # argmax: exact unless the two best logits are within float32 noise of each other
    tol = ATOL * np.abs(ref_logits).max()
    assert ref_logits[out["argmax"]] >= ref_logits.max() - tol
    top_ids = [t["id"] for t in out["top"]]
    assert out["argmax"] == top_ids[0]
    close(np.array(out["grad"]), ref_grad, "d logit / d r0")
    close(out["grad_norms"], np.linalg.norm(ref_grad, axis=1), "gradient norms")

    # without a target: the forward-only backend (activation slots reused between layers)
    plain = json.loads(lpe("forward", "--model", path, "--tokens", ",".join(map(str, tokens)),
                           "--logits").stdout)
    close(plain["logits"], ref_logits, "logits (no target)")
    assert "grad_norms" not in plain and "target_logit" not in plain

    # scores over each position's support: W_E[y] . grad_j
    WE = np.asarray(w["embed/W_E"], dtype=np.float64)
    for j in range(k):
        sup = np.array(out["support"][j])
        close(out["scores"][j], WE[sup] @ ref_grad[j], f"scores at position {j}")


@pytest.mark.parametrize("name,over,k", [SHAPES[1], SHAPES[5], SHAPES[3]], ids=["2l", "odd", "4l"])
def test_scores_against_finite_differences(tmp_path, name, over, k):
    """g_j(y) - g_j(x_j) is the derivative of the target logit along r0_j += t (W_E[y] - W_E[x_j])
    at t = 0; central differences of the float64 reference (h = 1e-4, error O(h^2) ~ 1e-8)."""
    cfg, w, path, dpath, tokens, target = make_case(tmp_path, name, over, k, seed=7 + len(name))
    out = run_forward(path, tokens, target, dpath)
    W = reference._W(w)
    r0 = reference.embed(cfg, W, tokens)
    WE = W["embed/W_E"]
    h = 1e-4
    for j in range(k):
        sup = out["support"][j]
        sc = np.array(out["scores"][j])
        g_x = sc[sup.index(int(tokens[j]))]
        fd, got = [], []
        for s, y in enumerate(sup):
            dr = np.zeros_like(r0)
            dr[j] = WE[y] - WE[tokens[j]]
            fd.append((reference.logit_of_r0(cfg, W, r0 + h * dr, target)
                       - reference.logit_of_r0(cfg, W, r0 - h * dr, target)) / (2 * h))
            got.append(sc[s] - g_x)
        # the difference of two float32 scores: error relative to the scores' scale
        scale = max(np.abs(sc).max(), np.abs(fd).max())
        assert np.all(np.abs(np.array(got) - np.array(fd)) <= 4 * ATOL * scale + 1e-7), (j, got, fd)


def test_reference_backward_matches_finite_differences():
    """The reference's manual backprop against central differences of its own forward (float64:
    agreement to ~1e-8 relative), on a model with every kind of block."""
    for over in (SHAPES[3][1], SHAPES[1][1], SHAPES[4][1]):
        cfg = dict(n_ctx=8, ln_eps=1e-5, attn_only=0, has_b_U=0, act_fn="gelu")
        cfg.update(over)
        w = reference._W(lpefiles.random_model(cfg, seed=3))
        tokens = [1, 4, 2, 0, 3]
        _, g = reference.grad_r0(cfg, w, tokens, 2)
        r0 = reference.embed(cfg, w, tokens)
        rng = np.random.default_rng(0)
        for _ in range(3):
            d = rng.standard_normal(r0.shape)
            h = 1e-5
            fd = (reference.logit_of_r0(cfg, w, r0 + h * d, 2) - reference.logit_of_r0(cfg, w, r0 - h * d, 2)) / (2 * h)
            assert abs(fd - (g * d).sum()) <= 1e-7 * (1 + abs(fd)), (fd, (g * d).sum())


def test_tolerance_catches_a_wrong_model(tmp_path):
    """A small perturbation of one weight (b_O of block 0, by 1e-2 * N(0, 1) per entry; a
    constant shift would be invisible behind LayerNorm) must be detected: the tolerance is tight
    enough to fail on a wrong term."""
    name, over, k = SHAPES[1]
    cfg, w, path, dpath, tokens, target = make_case(tmp_path, name, over, k, seed=1)
    out = run_forward(path, tokens, target)
    w2 = dict(w)
    w2["blocks/0/attn/b_O"] = w["blocks/0/attn/b_O"] + np.float32(1e-2) * np.random.default_rng(0).standard_normal(
        w["blocks/0/attn/b_O"].shape).astype(np.float32)
    ref_logits, ref_grad = reference.grad_r0(cfg, w2, tokens, target)
    with pytest.raises(AssertionError):
        close(out["logits"], ref_logits, "logits")
    with pytest.raises(AssertionError):
        close(np.array(out["grad"]), ref_grad, "grad")


def test_bad_inputs(tmp_path):
    name, over, k = SHAPES[0]
    cfg, w, path, dpath, tokens, target = make_case(tmp_path, name, over, k, seed=2)
    V = cfg["d_vocab"]
    r = lpe("forward", "--model", path, "--tokens", f"1,{V},2", check=2)
    assert "position 1" in r.stderr and "vocabulary" in r.stderr
    r = lpe("forward", "--model", path, "--tokens", "1,-1", check=2)
    assert "position 1" in r.stderr
    r = lpe("forward", "--model", path, "--tokens", "1,x", check=2)
    assert "--tokens" in r.stderr
    r = lpe("forward", "--model", path, "--tokens", "1,2", "--target", V, check=2)
    assert "--target" in r.stderr
    r = lpe("forward", "--model", path, "--tokens", ",".join(["1"] * (cfg["n_ctx"] + 1)), check=2)
    assert "n_ctx" in r.stderr
    # distribution of the wrong length
    r = lpe("forward", "--model", path, "--tokens", "1,2", "--target", 0, "--dist", dpath, check=2)
    assert "positions" in r.stderr
    r = lpe("forward", "--model", path, "--tokens", "1", "--backend", "nope", check=2)
    assert "backend" in r.stderr
    r = lpe("forward", "--model", tmp_path / "missing.h5", "--tokens", "1", check=2)
    r = lpe("forward", "--help", check=0)
    assert "usage" in r.stdout


def test_cuda_backend_missing_says_so(tmp_path):
    name, over, k = SHAPES[0]
    cfg, w, path, dpath, tokens, target = make_case(tmp_path, name, over, k, seed=2)
    r = lpe("forward", "--model", path, "--tokens", "1", "--backend", "cuda", check=None)
    if r.returncode == 0:
        pytest.skip("this lpe has CUDA and a device")
    assert r.returncode == 2 and "CUDA" in r.stderr
