"""`lpe run --shard i/N` and `lpe merge` (no Slurm): the merged shards equal the unsharded
results file bit for bit (every dataset and attribute but timing), and merge refuses shards of
different experiments, overlapping shards and missing ones (exit 2, nothing written)."""
import h5py
import numpy as np
import pytest

from conftest import h5_tree, make_dist, make_model, run_lpe, trees_equal, write_ini

TIMING = ("created", "seconds", "seconds_per_target")

# every method; an [experiment] batch of 40 rows cuts the methods' batches across targets, so a
# target's rows share backend calls with other targets' rows (what run_blocks.c is for)
INI = """
[experiment]
model = model.h5
distributions = dists.h5
truth = exact
seed = {seed}
backend = cpu
budget = 600
batch = 40
[targets]
count = {count}
p_min = 1e-4
p_max = 0.5
[method const]
[method naive]
[method itgis]
temperature = 0.5, 1.0
batch = 96
[method mhis]
burn_in = 32
walkers = 8
save_chains = true
chain_stride = 4
[method qld]
save_activations = true
[method gld]
[method ams]
particles = 16
[method smc]
particles = 16
"""


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    d = tmp_path_factory.mktemp("shard")
    make_model(d / "model.h5", layers=2, seed=3)
    make_dist(d / "dists.h5", "a", vocab=64, k=4, support=8, seed=2, const_first=0)
    make_dist(d / "dists.h5", "b", vocab=64, k=4, support=6, factors=2, seed=3)
    ini = write_ini(d / "e.ini", INI.format(seed=1, count=40))
    ref = d / "ref.h5"
    run_lpe("--quiet", "run", ini, "--output", ref, check=0)
    return d, ini, ref


def shards(d, ini, n, tag="s", only=None):
    out = []
    for i in range(n) if only is None else only:
        o = d / f"{tag}{i}of{n}.h5"
        if not o.exists():
            run_lpe("--quiet", "run", ini, "--shard", f"{i}/{n}", "--output", o, check=0)
        out.append(o)
    return out


def assert_same(a, b):
    ta, tb = h5_tree(a, skip_attrs=TIMING), h5_tree(b, skip_attrs=TIMING)
    assert trees_equal(ta, tb) == []
    return ta


@pytest.mark.parametrize("n", [3, 5])
def test_merged_shards_equal_unsharded(exp, n):
    d, ini, ref = exp
    parts = shards(d, ini, n)
    with h5py.File(parts[1], "r") as f:  # a shard holds its share of the targets only
        assert f.attrs["shard"] == f"1/{n}"
        with h5py.File(ref, "r") as g:
            T = g["a"].attrs["n_targets"]
        assert T > 16 and 0 < f["a"].attrs["n_targets"] < T and f["a"].attrs["shard_total"] == T
    out = d / f"merged{n}.h5"
    run_lpe("merge", out, *reversed(parts), check=0)  # any order
    tree = assert_same(ref, out)
    # the comparison covered what matters: per-target estimates, diagnostics, chains, evaluation
    for key in ("a/itgis@temperature=0.5/estimate", "a/mhis/rhat_score", "b/qld/pair_count",
                "a/mhis/chains/score", "a/qld/activations", "b/gld/mu", "eval@n_dists",
                "a/eval/mhis/loss", "b/const/estimate", "a/ams/estimate", "b/smc/estimate"):
        assert key in tree, key
    assert np.all(np.isfinite(tree["a/naive/estimate"]))
    with h5py.File(out, "r") as f, h5py.File(ref, "r") as g:
        assert "shard" not in f.attrs and "shard_first" not in f["a"].attrs
        assert f["a/itgis@temperature=0.5"].attrs["seconds"] > 0
        assert f["a"].attrs["n_targets"] == g["a"].attrs["n_targets"] == T


def test_more_shards_than_blocks(exp, tmp_path):
    """a's 22 targets run as 3 blocks (8, 8, 6): shards 3..19 of 20 hold none of a's."""
    d, ini, ref = exp
    parts = shards(d, ini, 20, only=range(12, 20))
    with h5py.File(parts[-1], "r") as f:
        assert f["a"].attrs["n_targets"] == 0 and "naive" not in f["a"]
    parts = shards(d, ini, 20)
    out = tmp_path / "m.h5"
    run_lpe("merge", out, *parts, check=0)
    assert_same(ref, out)


def test_default_shard_output_name(exp, tmp_path):
    d, _, _ = exp
    ini = write_ini(tmp_path / "small.ini", INI.format(seed=1, count=4).replace("model.h5", str(d / "model.h5")).replace("dists.h5", str(d / "dists.h5")))
    run_lpe("--quiet", "run", ini, "--shard", "1/2", check=0, cwd=tmp_path)
    assert (tmp_path / "results" / "small.shard-1-of-2.h5").exists()
    r = run_lpe("--quiet", "run", ini, "--shard", "1/2", check=2, cwd=tmp_path)
    assert "exists already" in r.stderr


@pytest.mark.parametrize("bad", ["2/2", "1", "a/3", "-1/2", "0/0"])
def test_bad_shard_argument(exp, bad):
    _, ini, _ = exp
    r = run_lpe("run", ini, "--shard", bad, check=2)
    assert "--shard" in r.stderr and "i/N" in r.stderr


def refused(out, parts, words):
    r = run_lpe("merge", out, *parts, check=2)
    for w in words:
        assert w in r.stderr, r.stderr
    assert not out.exists()
    return r


def test_merge_refuses_gaps_and_overlaps(exp, tmp_path):
    d, ini, _ = exp
    p3 = shards(d, ini, 3)
    p2 = shards(d, ini, 2)
    out = tmp_path / "m.h5"
    refused(out, [p3[0], p3[2]], ["missing shard", "targets"])
    refused(out, [p3[0], p3[1]], ["missing shard"])
    refused(out, [p3[0], p3[1], p3[2], p3[1]], ["overlapping shards", "shard 1/3"])
    refused(out, [p3[0], p3[1], p3[2], p2[1]], ["overlapping shards", "target"])


def test_merge_refuses_mixed_experiments(exp, tmp_path):
    d, ini, ref = exp
    p3 = shards(d, ini, 3)
    other = write_ini(d / "e2.ini", INI.format(seed=2, count=40))
    q3 = shards(d, other, 3, tag="seed2-")
    out = tmp_path / "m.h5"
    refused(out, [p3[0], q3[1], p3[2]], ["different experiments", "config"])
    # the same config text against another model file of the same name: model_sha256 differs
    alt = tmp_path / "alt"
    alt.mkdir()
    make_model(alt / "model.h5", layers=2, seed=4)
    (alt / "dists.h5").write_bytes((d / "dists.h5").read_bytes())
    (alt / "e.ini").write_text(ini.read_text())
    r3 = shards(alt, alt / "e.ini", 3)
    refused(out, [p3[0], p3[1], r3[2]], ["different experiments", "model"])
    refused(out, [p3[0], p3[1], ref], ["not a shard"])
    # another ground truth gives other targets or true probabilities: the fingerprint differs
    t2 = tmp_path / "truth2.h5"
    t2.write_bytes(p3[2].read_bytes())
    with h5py.File(t2, "r+") as f:
        f["a"].attrs["shard_fingerprint"] = "0" * 64
    refused(out, [p3[0], p3[1], t2], ["different experiments", "shard_fingerprint"])


def test_merge_refuses_malformed_shards(exp, tmp_path):
    """a block outside [0, shard_total) (the overlap check dereferenced no previous shard) and a
    dataset of rank above 8 (read into 8-entry arrays): exit 2 naming the file, not a crash"""
    d, ini, _ = exp
    p3 = shards(d, ini, 3)
    out = tmp_path / "m.h5"
    neg = tmp_path / "neg.h5"
    neg.write_bytes(p3[0].read_bytes())
    with h5py.File(neg, "r+") as f:
        f["a"].attrs["shard_first"] = -1
    refused(out, [neg, p3[1], p3[2]], [str(neg), "holds targets [-1,"])
    deep = tmp_path / "deep.h5"
    deep.write_bytes(p3[1].read_bytes())
    with h5py.File(deep, "r+") as f:
        ts = f["a"].attrs["n_targets"]
        del f["a/naive/estimate"]
        f["a/naive"].create_dataset("estimate", data=np.zeros((ts,) + (1,) * 9))
    refused(out, [p3[0], deep, p3[2]], [str(deep), "rank 10"])


def test_merge_never_overwrites(exp, tmp_path):
    d, ini, ref = exp
    parts = shards(d, ini, 3)
    out = tmp_path / "m.h5"
    out.write_text("keep me")
    r = run_lpe("merge", out, *parts, check=2)
    assert "exists already" in r.stderr and out.read_text() == "keep me"
    run_lpe("merge", out, *parts, "--force", check=0)
    assert_same(ref, out)
    assert not list(tmp_path.glob("m.h5.*")), "temporary files left behind"
