#!/usr/bin/env python3
"""structure.py [ROOT]: the shape of lpe's C code, as a reviewer checks it.

Prints
  - the longest functions in src/ and kernels/ (lines from the opening to the closing brace);
  - the module graph from #include "..." lines: a module is a header's name (include/lpe/X.h and
    src/X.c are module X; src/cmd_*.c are `cmd`; src/estimators/ is `estimators`; src/cpu/ is
    `cpu`; kernels/ is `cuda`), its layer (0: includes no other module; else 1 + the highest
    layer it includes) and any cycle;
  - private includes: a file that includes a header of another folder's private implementation
    (src/cpu/*.h, kernels/*.cuh) from outside that folder.
--check exits 1 on a cycle, a private include, or a function longer than --max-lines (default:
no limit).
"""
import argparse
import os
import re
import sys

INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
FUNC = re.compile(r'^[A-Za-z_][\w \*\(\),\[\]]*?\b(\w+)\s*\([^;{]*\)\s*\{\s*$', re.M)


def module_of(path):
    p = path.replace(os.sep, "/")
    base = os.path.splitext(os.path.basename(p))[0]
    if p.startswith("kernels/"):
        return "cuda"
    if p.startswith("src/cpu/"):
        return "cpu"
    if p.startswith("src/estimators/") or base == "estimator":
        return "estimators"
    if base == "model_flops":  # declared in model.h
        return "model"
    if base == "config_runs":  # declared in config.h
        return "config"
    if base.startswith("cmd_") or base in ("cmd", "main"):
        return "cmd"
    return base


def sources(root):
    for d in ("src", "include", "kernels"):
        for dp, _, fs in os.walk(os.path.join(root, d)):
            for f in fs:
                if f.endswith((".c", ".h", ".cu", ".cuh")):
                    yield os.path.relpath(os.path.join(dp, f), root)


LITERAL = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)


def blank_literals(text):
    """text with string and character literals and comments blanked (newlines kept), so that a
    brace inside "{\"id\": %d" or a comment does not count."""
    return LITERAL.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def functions(text):
    """(name, lines) of each top-level function definition, by brace matching."""
    out = []
    text = blank_literals(text)
    for m in FUNC.finditer(text):
        start = text.count("\n", 0, m.start())
        depth, i = 0, m.start() + m.group(0).rindex("{")  # \s* may run past the brace
        while i < len(text):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        out.append((m.group(1), text.count("\n", 0, i) - start + 1))
    return out


def analyse(root):
    edges, private, funcs = {}, [], []
    for f in sources(root):
        text = open(os.path.join(root, f), errors="replace").read()
        a = module_of(f)
        edges.setdefault(a, set())
        folder = os.path.dirname(f)
        for inc in INC.findall(text):
            target = os.path.normpath(os.path.join(folder, inc)) if not inc.startswith("lpe/") \
                else os.path.join("include", inc)
            target = target.replace(os.sep, "/")
            tdir = os.path.dirname(target)
            if (tdir.startswith("src/") or tdir == "kernels") and tdir != folder and \
                    not f.startswith("tests/"):
                private.append(f"{f} includes {target}")
            b = module_of(target)
            if b != a:
                edges[a].add(b)
        if f.endswith((".c", ".cu")):
            funcs += [(n, l, f) for n, l in functions(text)]
    return edges, private, funcs


def layers(edges):
    layer, cycles, state = {}, [], {}

    def visit(m, stack):
        if state.get(m) == 1:
            cycles.append(stack[stack.index(m):] + [m])
            return 0
        if state.get(m) == 2:
            return layer[m]
        state[m] = 1
        deps = [visit(d, stack + [m]) for d in sorted(edges.get(m, ()))]
        state[m] = 2
        layer[m] = 1 + max(deps) if deps else 0
        return layer[m]

    for m in sorted(edges):
        visit(m, [])
    return layer, cycles


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--max-lines", type=int, default=0)
    o = ap.parse_args()
    edges, private, funcs = analyse(o.root)
    layer, cycles = layers(edges)
    funcs.sort(key=lambda t: -t[1])
    print(f"longest functions (of {len(funcs)}):")
    for n, l, f in funcs[:o.top]:
        print(f"  {l:4d}  {n}  ({f})")
    print(f"modules: {len(layer)} on {1 + max(layer.values(), default=0)} layers")
    for m in sorted(layer, key=lambda m: (layer[m], m)):
        print(f"  {layer[m]}  {m:12s} -> {', '.join(sorted(edges[m])) or '-'}")
    print("cycles: " + ("; ".join(" -> ".join(c) for c in cycles) if cycles else "none"))
    print("private includes: " + ("; ".join(private) if private else "none"))
    long = [t for t in funcs if o.max_lines and t[1] > o.max_lines]
    if o.check and (cycles or private or long):
        for n, l, f in long:
            print(f"too long: {n} ({f}) {l} lines > {o.max_lines}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
