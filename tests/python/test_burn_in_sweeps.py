"""MHIS's burn-in in sweeps per position (`burn_in_sweeps`): ceil(S m) steps for the m positions
whose support has more than one token, counted in model_calls; given with `burn_in` it is an
error naming the line."""
import h5py
import numpy as np

from conftest import make_dist, make_model, run_lpe, write_ini


def movable(dist_path, name):
    with h5py.File(dist_path, "r") as f:
        g = f[name]
        off, pos = g["offsets"][()], g["positions"][()]
    return int(np.sum((off[pos + 1] - off[pos]) > 1))


def test_burn_in_sweeps_sets_the_steps(tmp_path):
    make_model(tmp_path / "m.h5")
    make_dist(tmp_path / "d.h5", "d", 64, 5, 6, const_first=0)
    m = movable(tmp_path / "d.h5", "d")
    ini = write_ini(tmp_path / "e.ini", """
        [experiment]
        model = m.h5
        distributions = d.h5
        truth = exact
        output = out.h5
        budget = 64
        [targets]
        list = 3, 5
        [method mhis]
        walkers = 8
        burn_in_sweeps = 2.5
        """)
    run_lpe("run", ini, "--quiet", check=0)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        calls = f["d/mhis/model_calls"][()]
    steps = int(np.ceil(2.5 * m)) + 64 // 8
    assert m >= 1 and np.all(calls == 8 * (1 + steps)), (m, calls)


def test_burn_in_given_twice_is_refused(tmp_path):
    make_model(tmp_path / "m.h5")
    make_dist(tmp_path / "d.h5", "d", 64, 4, 6)
    ini = write_ini(tmp_path / "e.ini", """
        [experiment]
        model = m.h5
        distributions = d.h5
        truth = exact
        output = out.h5
        budget = 64
        [targets]
        list = 3
        [method mhis]
        burn_in = 10
        burn_in_sweeps = 2
        """)
    r = run_lpe("run", ini, check=2)
    assert "e.ini:11" in r.stderr and "not both" in r.stderr, r.stderr
    assert not (tmp_path / "out.h5").exists()
