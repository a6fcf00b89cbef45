"""Distribution files (methods.md §8) through the command line: `lpe dist random` / `lpe dist show`,
and every malformed file giving exit code 2 with a message that names file, group and dataset.
"""
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LPE = str(ROOT / "bin" / "lpe")


def lpe(*args, check=None):
    r = subprocess.run([LPE, *map(str, args)], capture_output=True, text=True, timeout=60)
    if check is not None:
        assert r.returncode == check, f"exit {r.returncode}, wanted {check}\n{r.stdout}\n{r.stderr}"
    return r


DTYPES = {"values": np.int32, "probs": np.float64, "offsets": np.int64, "positions": np.int32}


def write_group(path, name, mode="a", **datasets):
    """Write /{name}: lists get the methods.md §8 dtype, arrays are stored as given (wrong dtype or
    shape on purpose), None leaves the dataset out."""
    with h5py.File(path, mode) as f:
        g = f.create_group(name)
        for k, v in datasets.items():
            if v is not None:
                g.create_dataset(k, data=np.asarray(v, DTYPES[k]) if isinstance(v, list) else v)
        g.attrs["description"] = "test"


GOOD = dict(values=[1, 2, 3, 7, 9], probs=[0.5, 0.25, 0.25, 1.0, 3.0], offsets=[0, 3, 5],
            positions=[0, 1, 1])


def test_random_and_show(tmp_path):
    f = tmp_path / "d.h5"
    r = lpe("dist", "random", "--out", f, "--name", "r", "--vocab", 64, "--k", 5, "--support", 6,
            "--factors", 2, "--const-first", 0, "--seed", 4, check=0)
    assert "sha256" in r.stdout
    with h5py.File(f, "r") as h:
        g = h["r"]
        values, probs = g["values"][:], g["probs"][:]
        offsets, positions = g["offsets"][:], g["positions"][:]
        assert values.dtype == np.int32 and probs.dtype == np.float64
        assert offsets.dtype == np.int64 and positions.dtype == np.int32
        assert list(offsets) == [0, 1, 7, 13]
        assert list(positions) == [0, 1, 2, 1, 2]  # constant first, then cycling over factors
        assert values[0] == 0 and probs[0] == 1
        for a, b in zip(offsets[:-1], offsets[1:]):
            assert len(set(values[a:b])) == b - a  # drawn without replacement
            assert abs(probs[a:b].sum() - 1) < 1e-15
            assert np.all((values[a:b] >= 0) & (values[a:b] < 64))
        # Zipf weights with exponent 1: the i-th drawn token has weight 1/i
        p = probs[1:7]
        assert np.allclose(p / p[0], 1 / np.arange(1, 7), rtol=1e-14)
        assert isinstance(g.attrs["description"], str) and g.attrs["description"]
    # show agrees with what random printed (same sha256 after the file round trip)
    sha = [l for l in r.stdout.splitlines() if "sha256" in l][0]
    s = lpe("dist", "show", f, check=0).stdout
    assert sha in s and "distinct inputs: 1296 " in s
    # second group appended; the same name twice is an error and leaves the file as it was
    lpe("dist", "random", "--out", f, "--name", "u", "--vocab", 64, "--k", 2, "--support", 3,
        "--zipf", 0, check=0)
    before = f.read_bytes()
    r = lpe("dist", "random", "--out", f, "--name", "u", "--vocab", 64, "--k", 2, "--support", 3,
            check=2)
    assert "exists" in r.stderr and f.read_bytes() == before
    with h5py.File(f, "r") as h:
        assert sorted(h) == ["r", "u"] and np.allclose(h["u/probs"][:], 1 / 3)
    s = lpe("dist", "show", f, "u", check=0).stdout
    assert "'u'" in s and "'r'" not in s


def test_random_is_seeded(tmp_path):
    def draw(seed, name):
        f = tmp_path / f"{name}.h5"
        lpe("dist", "random", "--out", f, "--name", "x", "--vocab", 1000, "--k", 3, "--support", 50,
            "--seed", seed, check=0)
        with h5py.File(f, "r") as h:
            return h["x/values"][:]
    a, b, c = draw(1, "a"), draw(1, "b"), draw(2, "c")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("args,msg", [
    (["--vocab", 10, "--k", 3, "--support", 11], "--support"),
    (["--vocab", 10, "--k", 3, "--support", 2, "--factors", 4], "--factors"),
    (["--vocab", 10, "--k", 1, "--support", 2, "--const-first", 3], "--k"),
    (["--vocab", 10, "--k", 3, "--support", 2, "--const-first", 10], "--const-first"),
    (["--vocab", 10, "--k", 3, "--support", 2, "--zipf", "nan"], "--zipf"),
    (["--vocab", "ten", "--k", 3, "--support", 2], "--vocab"),
    (["--k", 3, "--support", 2], "required"),
])
def test_random_bad_usage(tmp_path, args, msg):
    f = tmp_path / "d.h5"
    r = lpe("dist", "random", "--out", f, "--name", "x", *args, check=2)
    assert msg in r.stderr
    assert not f.exists()


# each case: (overrides of GOOD or replacement datasets, words the message must contain)
BAD = [
    (dict(probs=[0.5, float("nan"), 0.25, 1.0, 3.0]), ["probs", "nan"]),
    (dict(probs=[0.5, -0.25, 0.25, 1.0, 3.0]), ["probs", "-0.25"]),
    (dict(probs=[0.5, 0.25, 0.25, 0.0, 0.0]), ["probs", "factor 1", "total probability"]),
    (dict(probs=[0.5, float("inf"), 0.25, 1.0, 3.0]), ["probs", "inf"]),
    (dict(values=[1, 2, 1, 7, 9]), ["values", "token 1", "twice", "factor 0"]),
    (dict(values=[1, 2, 3, 7, 64]), ["values", "token 64", "vocabulary"]),
    (dict(values=[1, -2, 3, 7, 9]), ["values", "token -2"]),
    (dict(offsets=[0, 3, 3, 5], positions=[0, 1, 2]), ["offsets", "factor 1", "empty"]),
    (dict(offsets=[0, 3, 4]), ["offsets", "len(values)"]),
    (dict(offsets=[0, 4, 3, 5], positions=[0, 1, 2]), ["offsets", "increasing"]),
    (dict(offsets=[1, 3, 5]), ["offsets", "offsets[0]"]),
    (dict(offsets=[0]), ["offsets", "at least 2"]),
    (dict(positions=[0, 2, 1]), ["positions", "factor 2"]),
    (dict(positions=np.zeros(0, np.int32)), ["positions", "k >= 1"]),
    (dict(values=np.array([1, 2, 3, 7, 9], np.float64)), ["values"]),
    (dict(probs=np.ones((5, 1))), ["probs"]),
    (dict(probs=[0.5, 0.25, 0.25, 1.0]), ["probs"]),
    (dict(positions=None), ["positions"]),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_distribution(tmp_path, case):
    over, words = BAD[case]
    f = tmp_path / "bad.h5"
    write_group(f, "g", **{**GOOD, **over})
    r = lpe("dist", "show", f, "g", "--vocab", 64, check=2)
    err = r.stderr
    assert str(f) in err and "/g/" in err, err
    for w in words:
        assert w in err, f"{w!r} not in {err!r}"
    assert r.stdout == ""


def test_good_file_and_missing(tmp_path):
    f = tmp_path / "ok.h5"
    write_group(f, "g", **GOOD)
    s = lpe("dist", "show", f, "--vocab", 64, check=0).stdout
    # factor 1 weights 1 and 3 are normalised to 1/4, 3/4
    assert "factor 1: support 2" in s and "p = 0.75" in s
    r = lpe("dist", "show", f, "nope", check=2)
    assert "no distribution group /nope" in r.stderr and "g" in r.stderr
    r = lpe("dist", "show", tmp_path / "missing.h5", check=2)
    assert "missing.h5" in r.stderr
    (tmp_path / "text.h5").write_text("not hdf5")
    r = lpe("dist", "show", tmp_path / "text.h5", check=2)
    assert "text.h5" in r.stderr
    lpe("dist", "show", "--help", check=0)
    lpe("dist", "random", "--help", check=0)
    lpe("dist", "frobnicate", check=2)
