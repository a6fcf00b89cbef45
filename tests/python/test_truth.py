"""Ground truth (`lpe truth`, methods.md §5, §8) on tiny random models:

- exact enumeration against an independent float64 NumPy enumeration (tests/python/reference.py);
- sampled counts against the exact probabilities (binomial bounds, chi-square);
- shards (uneven, different batch sizes and thread counts) merging to the unsharded counts bit
  for bit;
- resume after SIGKILL giving the same counts as an uninterrupted run;
- bad inputs: exit code 2, a message naming the problem, no output left.

The CPU backend runs single-threaded here (OMP_NUM_THREADS=1) except where a test asks for two
threads: these models are so small that thread start-up dominates, and the test machine is
shared.
"""
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LPE = str(ROOT / "bin" / "lpe")
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import lpefiles  # noqa: E402
import reference  # noqa: E402

ENV1 = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
ENV2 = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1")


def lpe(*args, check=None, env=ENV1, timeout=120):
    r = subprocess.run([LPE, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)
    if check is not None:
        assert r.returncode == check, f"exit {r.returncode}, wanted {check}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A 2-layer model (d_model 16, vocab 48, gelu_new) and a distribution with a constant first
    token and three positions over two factors of 9 tokens (729 inputs)."""
    d = tmp_path_factory.mktemp("truth")
    m, f = d / "m.h5", d / "d.h5"
    lpe("model", "init", "--out", m, "--layers", 2, "--d-model", 16, "--heads", 2, "--d-head", 8,
        "--d-mlp", 32, "--vocab", 48, "--ctx", 8, "--act", "gelu_new", "--seed", 3, check=0)
    lpe("dist", "random", "--out", f, "--name", "a", "--vocab", 48, "--k", 4, "--support", 9,
        "--factors", 2, "--const-first", 1, "--zipf", 1.2, "--seed", 5, check=0)
    exact = d / "exact.h5"
    lpe("truth", "--model", m, "--dist", f, "--name", "a", "--exact", "--out", exact, check=0)
    with h5py.File(exact, "r") as h:
        probs = h["probs"][:]
    return dict(dir=d, model=m, dist=f, exact=exact, probs=probs)


def read_counts(path):
    with h5py.File(path, "r") as h:
        return h["counts"][:], dict(h.attrs), h["ranges"][:]


def test_exact_against_numpy_enumeration(case):
    cfg, w = lpefiles.read_model(str(case["model"]))
    factors, positions = lpefiles.read_dist(str(case["dist"]), "a")
    V = cfg["d_vocab"]
    ref = np.zeros(V)
    slack = np.zeros(V)  # probability of inputs whose top two logits are too close to call
    n_inputs = 0
    for choice in itertools.product(*[range(len(factors[f][0])) for f in positions]):
        toks = [int(factors[f][0][c]) for f, c in zip(positions, choice)]
        p = float(np.prod([factors[f][1][c] for f, c in zip(positions, choice)]))
        logits, _ = reference.forward(cfg, w, toks)
        top2 = np.argsort(-logits)[:2]
        ref[top2[0]] += p
        # lpe computes in float32: a gap of 1e-3 between the top two logits is far beyond its
        # rounding (~1e-6 relative), so only genuinely near-tied inputs go to the slack
        if logits[top2[0]] - logits[top2[1]] < 1e-3:
            slack[top2] += p
        n_inputs += 1
    got = case["probs"]
    assert n_inputs == 729
    with h5py.File(case["exact"], "r") as h:
        a = dict(h.attrs)
        assert "counts" not in h and h["probs"].dtype == np.float64 and h["probs"].shape == (V,)
    assert a["exact"] == 1 and a["n_samples"] == 729 and a["distribution"] == "a"
    assert abs(got.sum() - 1) < 1e-12
    # sums of at most 729 products, float64 both sides: 1e-13 covers the rounding
    bad = np.abs(got - ref) > slack + 1e-13
    assert not bad.any(), (np.nonzero(bad), got[bad], ref[bad], slack[bad])
    assert (ref > 0).sum() >= 3  # the test is not trivial: several tokens win somewhere
    assert slack.sum() < 0.05


def test_sampled_against_exact(case):
    out = case["dir"] / "s.h5"
    N = 200000
    lpe("truth", "--model", case["model"], "--dist", case["dist"], "--name", "a", "--samples", N,
        "--seed", 11, "--out", out, check=0)
    c, a, ranges = read_counts(out)
    p = case["probs"]
    assert c.dtype == np.uint64 and c.sum() == N and a["n_samples"] == N and a["exact"] == 0
    assert ranges.tolist() == [[0, N]] and a["seed"] == 11
    # methods.md §8 attributes: the model's sha256 is that of its content (configuration and
    # weights, reference.model_content_sha256); the distribution's is the one `lpe dist show` prints
    assert a["model_sha256"] == reference.model_content_sha256(case["model"])
    show = lpe("dist", "show", case["dist"], "a", check=0).stdout
    assert f"sha256: {a['distribution_sha256']}" in show
    assert a["distribution"] == "a" and a["format_version"] == 1 and a["d_vocab"] == 48
    # per token within 5 binomial standard errors; no count where the exact probability is 0
    se = np.sqrt(N * p * (1 - p))
    z = np.abs(c - N * p)
    assert np.all(c[p == 0] == 0)
    assert np.all(z <= 5 * se + 1e-9), np.c_[c, N * p, se][z > 5 * se]
    # chi-square over the tokens expected at least 5 times (df + 6 sd of the statistic)
    top = N * p >= 5
    rest = N * p[~top].sum()
    chi2 = ((c[top] - N * p[top]) ** 2 / (N * p[top])).sum()
    df = top.sum() - 1
    if rest >= 5:
        chi2 += (c[~top].sum() - rest) ** 2 / rest
        df += 1
    assert chi2 <= df + 6 * np.sqrt(2 * df), (chi2, df)


def test_shards_merge_bit_for_bit(case):
    d = case["dir"]
    # uneven shards of whole 4096-sample blocks (LPE_TRUTH_SHARD_BLOCK): 3, 3 and 1.3 blocks;
    # batch sizes dividing the block, so every shard sees the unsharded run's batches
    N = 30001
    common = ["--model", case["model"], "--dist", case["dist"], "--name", "a", "--samples", N,
              "--seed", 7]
    lpe("truth", *common, "--out", d / "full.h5", "--batch", 256, check=0)
    lpe("truth", *common, "--shard", "0/3", "--out", d / "s0.h5", "--batch", 256, check=0)
    lpe("truth", *common, "--shard", "1/3", "--out", d / "s1.h5", "--batch", 256, check=0, env=ENV2)
    lpe("truth", *common, "--shard", "2/3", "--out", d / "s2.h5", "--batch", 256, check=0)
    full, _, _ = read_counts(d / "full.h5")
    parts = [read_counts(d / f"s{i}.h5") for i in range(3)]
    assert [p[2].tolist() for p in parts] == [[[0, 12288]], [[12288, 24576]], [[24576, 30001]]]
    assert np.array_equal(sum(p[0] for p in parts), full)
    # merge in any order; the result has the whole range
    lpe("truth", "merge", d / "merged.h5", d / "s2.h5", d / "s0.h5", d / "s1.h5", check=0)
    m, a, r = read_counts(d / "merged.h5")
    assert np.array_equal(m, full) and a["n_samples"] == N and r.tolist() == [[0, N]]
    # two of three shards: ranges kept apart
    lpe("truth", "merge", d / "m02.h5", d / "s0.h5", d / "s2.h5", check=0)
    _, a, r = read_counts(d / "m02.h5")
    assert r.tolist() == [[0, 12288], [24576, 30001]] and a["n_samples"] == 12288 + 5425
    # the same seed reproduces the counts; another seed does not
    lpe("truth", *common, "--out", d / "full_again.h5", check=0)
    assert np.array_equal(read_counts(d / "full_again.h5")[0], full)
    lpe("truth", *common[:-1], 8, "--out", d / "seed8.h5", check=0)
    assert not np.array_equal(read_counts(d / "seed8.h5")[0], full)
    # refused merges: overlap, another seed, an exact file; nothing written
    for files, word in [((d / "s0.h5", d / "full.h5"), "overlap"),
                        ((d / "s0.h5", d / "seed8.h5"), "not shards of the same run"),
                        ((d / "s0.h5", case["exact"]), "exact")]:
        r = lpe("truth", "merge", d / "bad_merge.h5", *files, check=2)
        assert word in r.stderr and not (d / "bad_merge.h5").exists()
    r = lpe("truth", "merge", d / "merged.h5", d / "s0.h5", check=2)
    assert "exists" in r.stderr


def test_resume_after_kill(case, tmp_path):
    common = ["--model", case["model"], "--dist", case["dist"], "--name", "a", "--seed", 3]
    # calibrate: a run of about 2 seconds on this machine, now
    t0 = time.time()
    lpe("truth", *common, "--samples", 100000, "--out", tmp_path / "cal.h5", check=0)
    rate = 100000 / max(time.time() - t0, 1e-3)
    N = int(min(max(2.0 * rate, 400000), 20000000))
    out = tmp_path / "out.h5"
    ckpt = Path(str(out) + ".ckpt")
    args = [LPE, "truth", *map(str, common), "--samples", str(N), "--out", str(out),
            "--checkpoint-seconds", "0.05", "--batch", "512"]
    proc = subprocess.Popen(args, env=ENV1, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)  # let a few more checkpoints pass: the kill may hit one being written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it could be killed: calibration too short"
    assert ckpt.exists()
    with h5py.File(ckpt, "r") as h:
        done = int(h.attrs["n_samples"])
        assert h.attrs["checkpoint_end"] == N and h["ranges"][:].tolist() == [[0, done]]
        assert h["counts"][:].sum() == done
    assert 0 < done < N
    # resuming with another seed is refused and keeps the checkpoint
    r = lpe("truth", *common[:-1], 4, "--samples", N, "--out", out, check=2)
    assert "checkpoint" in r.stderr and ckpt.exists() and not out.exists()
    # the same command resumes, finishes, and removes the checkpoint
    r = lpe("truth", *common, "--samples", N, "--out", out, check=0)
    assert "resuming" in r.stderr and not ckpt.exists()
    lpe("truth", *common, "--samples", N, "--out", tmp_path / "straight.h5", check=0)
    c1, a1, r1 = read_counts(out)
    c2, a2, r2 = read_counts(tmp_path / "straight.h5")
    assert np.array_equal(c1, c2) and a1["n_samples"] == N and r1.tolist() == r2.tolist() == [[0, N]]


def bad_dist(path, **over):
    data = dict(values=np.array([1, 2, 3], np.int32), probs=np.array([1.0, 1.0, 2.0]),
                offsets=np.array([0, 3], np.int64), positions=np.array([0, 0], np.int32))
    data.update(over)
    with h5py.File(path, "w") as h:
        g = h.create_group("a")
        for k, v in data.items():
            g.create_dataset(k, data=v)
    return path


def test_bad_inputs(case, tmp_path):
    m, f = case["model"], case["dist"]
    out = tmp_path / "o.h5"
    base = ["--model", m, "--dist", f, "--name", "a", "--out", out]
    cases = [
        (["--model", tmp_path / "nope.h5", "--dist", f, "--name", "a", "--out", out, "--samples", 10], "nope.h5"),
        (["--model", m, "--dist", tmp_path / "nod.h5", "--name", "a", "--out", out, "--samples", 10], "nod.h5"),
        (["--model", m, "--dist", f, "--name", "zz", "--out", out, "--samples", 10], "/zz"),
        (["--model", m, "--dist", bad_dist(tmp_path / "nan.h5", probs=np.array([1, np.nan, 1.0])),
          "--name", "a", "--out", out, "--samples", 10], "probs"),
        (["--model", m, "--dist", bad_dist(tmp_path / "dup.h5", values=np.array([1, 2, 1], np.int32)),
          "--name", "a", "--out", out, "--samples", 10], "twice"),
        (["--model", m, "--dist", bad_dist(tmp_path / "oov.h5", values=np.array([1, 2, 48], np.int32)),
          "--name", "a", "--out", out, "--samples", 10], "token 48"),
        (["--model", m, "--dist", bad_dist(tmp_path / "emp.h5", offsets=np.array([0, 0, 3], np.int64)),
          "--name", "a", "--out", out, "--samples", 10], "empty"),
        (["--model", m, "--dist", bad_dist(tmp_path / "dt.h5", probs=np.array([1, 1, 2], np.int32)),
          "--name", "a", "--out", out, "--samples", 10], "probs"),
        (["--model", m, "--dist", bad_dist(tmp_path / "sh.h5", positions=np.zeros((2, 1), np.int32)),
          "--name", "a", "--out", out, "--samples", 10], "positions"),
        (["--model", m, "--dist", bad_dist(tmp_path / "long.h5", positions=np.zeros(9, np.int32)),
          "--name", "a", "--out", out, "--samples", 10], "n_ctx"),
        (base + ["--samples", 10, "--shard", "3/3"], "--shard"),
        (base + ["--samples", 10, "--shard", "a/2"], "--shard"),
        (base + ["--samples", 10, "--shard", "1/0"], "--shard"),
        (base + ["--samples", 10, "--shard", "-1/2"], "--shard"),
        (base + ["--samples", 10, "--shard", "1"], "--shard"),
        (base + ["--samples", 10, "--shard", "1/2/3"], "--shard"),
        (base + ["--samples", 2, "--shard", "2/3"], "empty"),
        (base + ["--samples", 0], "--samples"),
        (base + ["--samples", "lots"], "--samples"),
        (base + ["--samples", 1.5], "--samples"),
        (base + ["--samples", 10, "--exact"], "exactly one"),
        (base, "exactly one"),
        (base + ["--exact", "--shard", "0/2"], "--shard"),
        (base + ["--exact", "--exact-limit", 100], "--exact-limit"),
        (base + ["--samples", 10, "--seed", -1], "--seed"),
        (base + ["--samples", 10, "--backend", "tpu"], "tpu"),
        (base + ["--samples", 10, "--frobnicate"], "--frobnicate"),
        (["--dist", f, "--name", "a", "--out", out, "--samples", 10], "--model"),
    ]
    for args, word in cases:
        r = lpe("truth", *args, check=None)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert word in r.stderr, (args, word, r.stderr)
        assert not out.exists() and not Path(str(out) + ".ckpt").exists(), args
        assert not list(tmp_path.glob("o.h5*")), args
    # an existing output is never overwritten without --force
    out.write_bytes(b"precious")
    r = lpe("truth", *base, "--samples", 10, check=2)
    assert "exists" in r.stderr and out.read_bytes() == b"precious"
    lpe("truth", *base, "--samples", 10, "--force", check=0)
    assert read_counts(out)[0].sum() == 10
    lpe("truth", "--help", check=0)
