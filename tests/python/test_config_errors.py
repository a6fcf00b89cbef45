"""`lpe run` on bad experiment files: every case exits 2 with a message naming the INI file and
line (where there is one) and what was wrong, and leaves no output (nor a temporary file)
behind. An existing results file is refused without --force, before any work, and left as it
was. The base experiment is valid: test_base_is_valid shows each case fails for its own reason.
"""
import os

import pytest

from conftest import make_dist, run_lpe, write_ini

BASE = """\
[experiment]
model = model.h5
distributions = dists.h5
truth = exact
output = out/res.h5
budget = 64
[targets]
count = 4
p_min = 1e-4
p_max = 0.5
[method naive]
"""


@pytest.fixture
def work(tmp_path, tiny_model, tiny_dists):
    os.symlink(tiny_model, tmp_path / "model.h5")
    os.symlink(tiny_dists, tmp_path / "dists.h5")
    return tmp_path


@pytest.fixture(scope="module")
def big_dist(tmp_path_factory):
    """40^6 inputs: too many to enumerate (limit 2^24)."""
    p = tmp_path_factory.mktemp("big") / "big.h5"
    make_dist(p, "big", vocab=64, k=6, support=40, seed=4)
    return p


def edit(old, new, text=BASE):
    assert old in text, old
    return text.replace(old, new, 1)


# (id, INI text, message fragment, line the message must name or None)
CASES = [
    ("syntax", edit("[targets]", "[targets"), "syntax error", 7),
    ("no_equals", BASE + "just words\n", "syntax error", 12),
    ("unknown_section", edit("[targets]", "[targetz]"), "unknown section [targetz]", 7),
    ("unknown_key", edit("budget = 64", "budget = 64\nmodle = x.h5"), "unknown key 'modle'", 7),
    ("unknown_method_key", BASE + "temprature = 1\n", "unknown key 'temprature'", 12),
    ("bad_number", edit("budget = 64", "budget = 6x4"), "expected an integer", 6),
    ("bad_double", edit("p_min = 1e-4", "p_min = small"), "expected a number", 9),
    ("negative_budget", BASE + "budget = -5\n", "out of range", 12),
    ("zero_count", edit("count = 4", "count = 0"), "out of range", 8),
    ("missing_model", edit("model.h5", "nope.h5"), "file not found", 2),
    ("missing_distributions", edit("dists.h5", "nope.h5"), "file not found", 3),
    ("unknown_distribution", edit("truth = exact", "truth = exact\nnames = a, zz"),
     "distribution 'zz' not in", 5),
    ("target_out_of_vocab", edit("count = 4", "list = 3, 64"), "outside the vocabulary", 8),
    ("target_not_integer", edit("count = 4", "list = 3, x"), "expected token ids", 8),
    ("target_twice", edit("count = 4", "list = 3, 3"), "listed twice", 8),
    ("unknown_method", edit("[method naive]", "[method magic]"), "unknown method 'magic'", 11),
    ("duplicate_key", edit("budget = 64", "budget = 64\nbudget = 65"), "set twice (first at line 6)", 7),
    ("repeated_section", BASE + "[method naive]\n", "repeated (first at line 11)", 12),
    ("key_outside_section", "seed = 1\n" + BASE, "outside any section", 1),
    ("p_range", edit("p_max = 0.5", "p_max = 1e-5"), "below p_min", 10),
    ("truth_without_dist", edit("truth = exact", "truth = t.h5"), "{dist}", 4),
    ("truth_missing_file", edit("truth = exact", "truth = t_{dist}.h5"), "file not found", 4),
    ("truth_key_missing", edit("truth = exact\n", ""), "required key 'truth'", None),
    ("truth_none_no_list", edit("truth = exact", "truth = none"), "needs explicit targets", 4),
    ("bad_backend", edit("budget = 64", "budget = 64\nbackend = tpu"), "expected cpu, cuda or auto", 7),
    ("no_method", BASE.replace("[method naive]\n", ""), "no [method NAME] section", None),
    ("no_budget", edit("budget = 64\n", ""), "no budget", 10),
    ("list_not_allowed", edit("budget = 64", "budget = 64\nseed = 1, 2"), "takes one value", 7),
    ("line_too_long", edit("count = 4", "list = " + ", ".join(["1"] * 120)), "line longer than", 8),
    ("empty_file", "", "no [experiment] section", None),
]


@pytest.mark.parametrize("text,fragment,line", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config(work, text, fragment, line):
    ini = write_ini(work / "cfg.ini", text)
    r = run_lpe("run", ini)
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert fragment in r.stderr, r.stderr
    if line is not None:
        assert f"cfg.ini:{line}:" in r.stderr, r.stderr
    out = work / "out"
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_exact_too_large(work, big_dist):
    os.symlink(big_dist, work / "big.h5")
    ini = write_ini(work / "cfg.ini", edit("dists.h5", "big.h5"))
    r = run_lpe("run", ini, check=2)
    assert "exact enumeration of big" in r.stderr and "cfg.ini:4:" in r.stderr, r.stderr
    assert not (work / "out").exists() or not any((work / "out").iterdir())


def test_truth_of_another_distribution(work, tiny_model):
    """A ground-truth file made for distribution b, given for a: refused (sha256 mismatch)."""
    run_lpe("truth", "--model", tiny_model, "--dist", work / "dists.h5", "--name", "b", "--exact",
            "--out", work / "truth_b.h5", check=0)
    os.symlink(work / "truth_b.h5", work / "truth_a.h5")
    ini = write_ini(work / "cfg.ini", edit("truth = exact", "truth = truth_{dist}.h5\nnames = a"))
    r = run_lpe("run", ini, check=2)
    assert "truth_a.h5" in r.stderr, r.stderr
    assert not (work / "out").exists() or not any((work / "out").iterdir())


def test_base_is_valid(work):
    ini = write_ini(work / "cfg.ini", BASE)
    run_lpe("run", ini, check=0)
    assert (work / "out" / "res.h5").exists()


def test_existing_output_needs_force(work):
    out = work / "out"
    out.mkdir()
    (out / "res.h5").write_bytes(b"precious")
    # enumeration of this experiment takes far longer than the check: it must fail first
    ini = write_ini(work / "cfg.ini", BASE)
    r = run_lpe("run", ini, check=2)
    assert "exists already" in r.stderr and "--force" in r.stderr, r.stderr
    assert (out / "res.h5").read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == ["res.h5"]
    # --output elsewhere: fine; --force: overwritten with a results file
    run_lpe("run", ini, "--output", work / "other.h5", check=0)
    run_lpe("run", ini, "--force", check=0)
    assert (out / "res.h5").read_bytes()[:4] == b"\x89HDF"


def test_bad_command_line(work):
    ini = write_ini(work / "cfg.ini", BASE)
    assert run_lpe("run").returncode == 2
    assert run_lpe("run", ini, "--bogus").returncode == 2
    assert run_lpe("run", ini, ini).returncode == 2
    r = run_lpe("run", ini, "--backend", "tpu", check=2)
    assert "tpu" in r.stderr
    assert run_lpe("run", work / "nope.ini", check=2).stderr.count("nope.ini") >= 1
    r = run_lpe("run", "--help", check=0)
    assert "naive" in r.stdout and "budget" in r.stdout
    assert not (work / "out").exists()


def test_indented_file_and_continuations(work):
    """Indented keys are keys (inih alone would read them as continuation lines); an indented
    line without '=' continues the value above it; inline comments are dropped."""
    text = "".join(("  " + l if l and not l.startswith("[") else l) + "\n" for l in BASE.splitlines())
    text = text.replace("  count = 4\n", "  list = 1,   ; comment\n      2,\n    3\n")
    ini = write_ini(work / "cfg.ini", text)
    run_lpe("run", ini, check=0)
    import h5py
    with h5py.File(work / "out" / "res.h5", "r") as f:
        assert list(f["a"]["targets"][:]) == [1, 2, 3]
        assert f["a"]["naive"].attrs["budget"] == 64
