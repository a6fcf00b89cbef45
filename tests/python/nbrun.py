#!/usr/bin/env python3
"""nbrun.py: run a Jupyter notebook's code cells in order, headless, without a kernel.

usage: python3 tests/python/nbrun.py NOTEBOOK.ipynb   (environment variables pass parameters)

The project's notebooks are plain Python (no IPython magics, no widgets), so executing their
cells in one namespace is what a kernel would do, without jupyter's dependencies (a kernel,
ZeroMQ, tornado): the tests run a notebook this way so that it never rots. Figures use the Agg
backend; plt.show() is a no-op there. A failing cell raises with the cell's number in the
traceback (file name NOTEBOOK#cellN).
"""
from __future__ import annotations

import json
import os
import sys
import warnings


def check_format(nb: dict, path: str) -> None:
    """The nbformat-4 structure Jupyter needs to open the file."""
    if nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path}: not an nbformat 4 notebook")
    for i, c in enumerate(nb["cells"]):
        if c.get("cell_type") not in ("code", "markdown", "raw") or "source" not in c or "metadata" not in c:
            raise ValueError(f"{path}: cell {i} lacks cell_type/source/metadata")
        if c["cell_type"] == "code" and ("outputs" not in c or "execution_count" not in c):
            raise ValueError(f"{path}: code cell {i} lacks outputs/execution_count")


def cell_sources(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    check_format(nb, path)
    out = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code":
            continue
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for line in src.splitlines():
            if line.lstrip().startswith(("%", "!")):
                raise ValueError(f"{path}: cell {i} uses IPython syntax ({line.strip()!r}); "
                                 "keep notebooks plain Python")
        out.append((i, src))
    return out


def run_notebook(path: str, env: dict | None = None, cwd: str | None = None) -> dict:
    """Execute the code cells of `path`; returns the namespace (for the tests to inspect)."""
    import matplotlib
    matplotlib.use("Agg")
    old_env, old_cwd = dict(os.environ), os.getcwd()
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    ns = {"__name__": "__main__", "__file__": os.path.abspath(path)}
    try:
        if cwd:
            os.chdir(cwd)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-interactive.*")
            for i, src in cell_sources(path):
                exec(compile(src, f"{path}#cell{i}", "exec"), ns)  # noqa: S102 - our own notebook
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
        import matplotlib.pyplot as plt
        plt.close("all")
    return ns


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    run_notebook(sys.argv[1])
    print(f"nbrun: {sys.argv[1]}: all cells ran")
