"""Issue 12's tuning rule (tools/testbed/heldout_targets.py): the held-out targets are eligible
(true probability in the protocol's range), never among the scored targets of any testbed
results file on the same model, deterministic, and the committed tuning INIs hold exactly them.
A deliberately overlapping list must be caught by the same check. numpy/h5py only."""
import configparser
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TB = ROOT / "experiments" / "testbed"
sys.path.insert(0, str(ROOT / "tools" / "testbed"))
import heldout_targets as ht  # noqa: E402


def overlaps(model, lists):
    """{family: scored targets also in the list} over every results file of the model"""
    bad = {}
    for f in sorted((TB / "results").glob(f"{model}*.h5")):
        with h5py.File(f, "r") as h:
            for fam, tg in lists.items():
                if fam in h and "targets" in h[fam]:
                    common = set(tg) & set(int(v) for v in h[fam]["targets"][:])
                    if common:
                        bad.setdefault(fam, set()).update(common)
    return bad


def test_heldout_disjoint_eligible_deterministic():
    lists = ht.heldout("gelu-1l", 16, 4, 12)
    assert sorted(lists) == ["camel", "caps", "colon", "english"]
    assert lists == ht.heldout("gelu-1l", 16, 4, 12)
    assert overlaps("gelu-1l", lists) == {}
    for fam, tg in lists.items():
        assert len(tg) == len(set(tg)) == 16
        with h5py.File(TB / "truth" / "gelu-1l" / f"{fam}.h5", "r") as t:
            p = t["counts"][:] / float(t.attrs["n_samples"])
        assert np.all((p[tg] >= ht.P_MIN) & (p[tg] <= ht.P_MAX)), fam
    # the check can fail: a list with one scored target in it is caught
    with h5py.File(TB / "results" / "gelu-1l.h5", "r") as h:
        scored = int(h["camel"]["targets"][0])
    assert overlaps("gelu-1l", {"camel": lists["camel"] + [scored]}) == {"camel": {scored}}


def test_committed_tuning_inis_hold_the_rule_lists():
    lists = ht.heldout("gelu-1l", 16, 4, 12)
    inis = sorted((TB / "tune").glob("gelu-1l-*.ini"))
    assert inis
    for ini in inis:
        cp = configparser.ConfigParser(inline_comment_prefixes=(";",), strict=False)
        cp.read(ini)
        fam = cp["experiment"]["names"].strip()
        tg = [int(v) for v in cp["targets"]["list"].split(",")]
        assert tg == lists[fam], ini
