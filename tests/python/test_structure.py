"""The code's shape (tools/structure.py): no include cycles between modules, and no file that
includes another folder's private implementation header (a backend's insides stay its own)."""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_no_cycles_no_private_includes():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "structure.py"), ROOT,
                        "--check"], capture_output=True, text=True)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cycles: none" in r.stdout and "private includes: none" in r.stdout


def test_structure_tool_finds_a_cycle(tmp_path):
    """The check can fail: a header pair that includes each other is a cycle."""
    inc = tmp_path / "include" / "lpe"
    inc.mkdir(parents=True)
    (inc / "alpha.h").write_text('#include "lpe/beta.h"\n')
    (inc / "beta.h").write_text('#include "lpe/alpha.h"\n')
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "alpha.c").write_text('#include "lpe/alpha.h"\nint f(void) {\n  return 0;\n}\n')
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "structure.py"), str(tmp_path),
                        "--check"], capture_output=True, text=True)
    assert r.returncode == 1 and "alpha -> beta -> alpha" in r.stdout, r.stdout
