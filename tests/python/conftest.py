"""Shared fixtures and helpers for the Python tests (pytest finds this file by itself).

Fixtures:
  root          the repository root (Path)
  lpe_bin       path of bin/lpe (tests fail with a clear message when it is not built)
  lpe           run_lpe as a fixture: lpe("run", ini, check=0) -> CompletedProcess (text)
  tiny_model    a session-wide 1-layer random model (d_model 16, vocab 64, ctx 8)
  tiny_dists    a session-wide distribution file over tiny_model's vocabulary: groups
                "a" (BOS + 3 positions of 8 tokens, 512 inputs) and "b" (4 positions of 6
                tokens, 1296 inputs)
Helpers (import from conftest):
  run_lpe(*args, check=None, cwd=None, env=None, timeout=300)
  make_model(path, layers=1, d_model=16, heads=2, d_head=8, d_mlp=32, vocab=64, ctx=8,
             act="gelu", seed=1, attn_only=False)
  make_dist(path, name, vocab, k, support, factors=1, zipf=1.0, seed=1, const_first=None)
  write_ini(path, text)    writes a dedented INI file
  h5_tree(path, skip_attrs=(), skip_datasets=())   {name: value} of every dataset and
                attribute ("name@attr"), for comparing result files

The CPU backend runs single-threaded (OMP_NUM_THREADS=1): the models here are tiny, thread
start-up would dominate, and the test machine is shared.
"""
import os
import subprocess
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LPE = ROOT / "bin" / "lpe"
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def run_lpe(*args, check=None, cwd=None, env=None, timeout=300):
    """Run bin/lpe with args (str()-converted); assert the exit code when check is given."""
    if not LPE.exists():
        pytest.fail(f"{LPE} is not built (run make)")
    r = subprocess.run([str(LPE), *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, env=env or ENV, timeout=timeout)
    if check is not None:
        assert r.returncode == check, (f"lpe {' '.join(map(str, args))}: exit {r.returncode}, "
                                       f"wanted {check}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def make_model(path, layers=1, d_model=16, heads=2, d_head=8, d_mlp=32, vocab=64, ctx=8,
               act="gelu", seed=1, attn_only=False):
    args = ["model", "init", "--out", path, "--layers", layers, "--d-model", d_model,
            "--heads", heads, "--d-head", d_head, "--d-mlp", d_mlp, "--vocab", vocab,
            "--ctx", ctx, "--act", act, "--seed", seed]
    if attn_only:
        args.append("--attn-only")
    run_lpe(*args, check=0)
    return Path(path)


def make_dist(path, name, vocab, k, support, factors=1, zipf=1.0, seed=1, const_first=None):
    args = ["dist", "random", "--out", path, "--name", name, "--vocab", vocab, "--k", k,
            "--support", support, "--factors", factors, "--zipf", zipf, "--seed", seed]
    if const_first is not None:
        args += ["--const-first", const_first]
    run_lpe(*args, check=0)
    return Path(path)


def write_ini(path, text):
    path = Path(path)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def h5_tree(path, skip_attrs=(), skip_datasets=()):
    """Every dataset (name -> array) and attribute ("name@attr" -> value) of an HDF5 file."""
    out = {}

    def attrs(name, obj):
        for k, v in obj.attrs.items():
            if k not in skip_attrs:
                out[f"{name}@{k}"] = v

    with h5py.File(path, "r") as f:
        attrs("/", f)

        def visit(name, obj):
            attrs(name, obj)
            if isinstance(obj, h5py.Dataset) and name.split("/")[-1] not in skip_datasets:
                out[name] = obj[()]

        f.visititems(visit)
    return out


def trees_equal(a, b):
    """Names of entries that differ (NaN == NaN) between two h5_tree results."""
    diff = sorted(set(a) ^ set(b))
    for k in set(a) & set(b):
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            x, y = np.asarray(x), np.asarray(y)
            same = x.shape == y.shape and x.dtype == y.dtype and (
                np.array_equal(x, y, equal_nan=x.dtype.kind == "f"))
        else:
            same = (x == y) or (isinstance(x, float) and np.isnan(x) and np.isnan(y))
        if not same:
            diff.append(k)
    return sorted(diff)


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def lpe_bin():
    if not LPE.exists():
        pytest.fail(f"{LPE} is not built (run make)")
    return LPE


@pytest.fixture
def lpe():
    return run_lpe


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("tiny") / "model.h5", seed=7)


@pytest.fixture(scope="session")
def tiny_dists(tmp_path_factory):
    p = tmp_path_factory.mktemp("tinyd") / "dists.h5"
    make_dist(p, "a", vocab=64, k=4, support=8, factors=1, zipf=1.0, seed=2, const_first=0)
    make_dist(p, "b", vocab=64, k=4, support=6, factors=2, zipf=0.5, seed=3)
    return p
