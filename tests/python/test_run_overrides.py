"""Per-distribution values in a method section (`temperature[b] = 0.5`): the run for that
distribution uses and records them, equal to a run with that value for every distribution; bad
uses are errors with FILE:LINE and exit 2."""
import h5py
import numpy as np
import pytest

from conftest import make_dist, make_model, run_lpe, write_ini

HEAD = """
[experiment]
model = model.h5
distributions = dists.h5
names = {names}
truth = exact
seed = 1
backend = cpu
budget = 512
[targets]
count = 4
p_min = 1e-3
p_max = 0.5
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("over")
    make_model(d / "model.h5", seed=5)
    make_dist(d / "dists.h5", "a", vocab=64, k=4, support=8, seed=2, const_first=0)
    make_dist(d / "dists.h5", "b", vocab=64, k=4, support=6, factors=2, seed=3)
    return d


def test_per_distribution_value(d):
    ini = write_ini(d / "o.ini", HEAD.format(names="a, b") +
                    "[method itgis]\ntemperature = 1.0\ntemperature[b] = 0.5\nbatch[a] = 128\n")
    run_lpe("run", ini, "--output", d / "o.h5", "--force", check=0)
    ref = write_ini(d / "r.ini", HEAD.format(names="b") + "[method itgis]\ntemperature = 0.5\n")
    run_lpe("run", ref, "--output", d / "r.h5", "--force", check=0)
    with h5py.File(d / "o.h5", "r") as f, h5py.File(d / "r.h5", "r") as r:
        assert f["a/itgis"].attrs["temperature"] == 1.0 and f["a/itgis"].attrs["batch"] == 128
        assert f["b/itgis"].attrs["temperature"] == 0.5 and f["b/itgis"].attrs["batch"] == 256
        assert np.array_equal(f["b/itgis/estimate"][:], r["b/itgis/estimate"][:])
        assert not np.array_equal(f["a/itgis/estimate"][:], f["b/itgis/estimate"][:])


@pytest.mark.parametrize("line,msg", [
    ("temperature[zz] = 0.5", "'zz' is not one of the distributions run"),
    ("temperature[b] = 0.5, 1.0", "one value, not a list"),
    ("temperature[b] = -1", "out of range"),
    ("tempo[b] = 1", "unknown key 'tempo'"),
    ("temperature[b = 1", "expected key[distribution]"),
])
def test_bad_per_distribution_values(d, line, msg):
    ini = write_ini(d / "bad.ini", HEAD.format(names="a, b") + "[method itgis]\n" + line + "\n")
    r = run_lpe("run", ini, "--output", d / "bad.h5", "--force", check=2)
    assert msg in r.stderr and "bad.ini:14:" in r.stderr, r.stderr
    assert not (d / "bad.h5").exists()


def test_swept_key_cannot_have_per_distribution_values(d):
    ini = write_ini(d / "sw.ini", HEAD.format(names="a, b") +
                    "[method itgis]\ntemperature = 0.5, 1\ntemperature[a] = 2\n")
    r = run_lpe("run", ini, "--output", d / "sw.h5", "--force", check=2)
    assert "cannot also have per-distribution values" in r.stderr


def test_per_distribution_budget_sizes_the_batch(d):
    """The backend's batch is capped by the rows a method can use at once (budget x targets);
    a larger `budget[a]` counts, so its runs are not cut into needlessly small calls."""
    def batch(extra):
        ini = write_ini(d / "bb.ini", HEAD.format(names="a, b") + "[method naive]\n" + extra)
        r = run_lpe("run", ini, "--output", d / "bb.h5", "--force", check=0)
        return int(r.stderr.split(", batch ")[1].split(",")[0])
    small, large = batch(""), batch("budget[a] = 2^14\n")
    assert small <= 512 * 4 * 2 < large, (small, large)
