"""tools/mhis_tradeoff.py (docs/mhis_tradeoff.md) keeps working: a tiny run prints one table row
per (walkers, burn-in) with finite numbers, and every run costs exactly the fixed budget (the
script asserts model_calls itself)."""
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]


def test_tradeoff_table(tmp_path):
    r = subprocess.run([sys.executable, str(TOP / "tools" / "mhis_tradeoff.py"), "--calls", "2^9",
                        "--seeds", "2", "--walkers", "8,32", "--burn", "0.5",
                        "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [l for l in r.stdout.splitlines() if l.startswith("| ") and l[2].isdigit()]
    assert len(rows) == 2, r.stdout
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        W, steps = int(cells[0]), int(cells[1])
        assert W * (steps + 1) == 512, row
        bias = float(cells[4].split()[0])
        assert bias == bias and -1 <= bias < 50, row  # finite (not NaN), P_hat >= 0
