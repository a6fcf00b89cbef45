"""Typed method options (estimator.h: parse at load, run reads ctx->opts): a method's own checks
of its options name FILE:LINE of the value in force for that distribution (its `key[dist]` line
when there is one), both those made at load time (qld's variant, before any work: no model is
read) and those only the run can make (ams's particles against the backend's batch)."""
from conftest import make_dist, make_model, run_lpe, write_ini

HEAD = """
[experiment]
model = model.h5
distributions = dists.h5
names = a, b
truth = exact
seed = 1
backend = cpu
budget = 512
[targets]
count = 2
p_min = 1e-3
p_max = 0.5
"""


def test_method_checks_name_the_line(tmp_path):
    make_model(tmp_path / "model.h5", seed=5)
    make_dist(tmp_path / "dists.h5", "a", vocab=64, k=4, support=8, seed=2)
    make_dist(tmp_path / "dists.h5", "b", vocab=64, k=4, support=6, seed=3)
    # load time: the model file is not even read (a broken one does not matter)
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    ini = write_ini(tmp_path / "q.ini", HEAD.replace("model.h5", "broken.h5") +
                    "[method qld]\nvariant = paper\nvariant[b] = fancy\n")
    r = run_lpe("run", ini, "--output", tmp_path / "q.h5", check=2)
    assert "q.ini:15: [method qld] variant: expected paper or arc, got 'fancy'" in r.stderr, r.stderr
    assert not (tmp_path / "q.h5").exists()
    # run time: the batch is known only once the backend exists; a's value is fine, b's is not
    ini = write_ini(tmp_path / "s.ini", HEAD.replace("budget = 512", "budget = 512\nbatch = 256") +
                    "[method ams]\nparticles = 16\nparticles[b] = 4096\n")
    r = run_lpe("run", ini, "--output", tmp_path / "s.h5", check=2)
    assert "s.ini:16: [method ams] particles: 4096 particles do not fit the backend's batch of " \
           "256 rows" in r.stderr, r.stderr
    assert not (tmp_path / "s.h5").exists()
