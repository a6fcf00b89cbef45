"""Functions short enough to read at once (house rule: aim below 60-80 lines): no function in
src/ is longer than MAX_LINES, as tools/structure.py counts them (opening to closing brace)."""
import os
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import structure  # noqa: E402

MAX_LINES = 90


def src_functions():
    out = []
    for dp, _, fs in os.walk(os.path.join(ROOT, "src")):
        for f in fs:
            if f.endswith(".c"):
                path = os.path.join(dp, f)
                out += [(n, l, os.path.relpath(path, ROOT))
                        for n, l in structure.functions(open(path, errors="replace").read())]
    return out


def test_no_long_function_in_src():
    funcs = src_functions()
    assert len(funcs) > 100, len(funcs)  # the scan found the code
    long = sorted((l, n, f) for n, l, f in funcs if l > MAX_LINES)
    assert not long, "functions longer than %d lines: %s" % (MAX_LINES, long)


def test_counter_sees_braces_in_code_only():
    """The count can fail: a long function is measured whole, and braces in strings, character
    literals and comments do not end it early or run it on."""
    body = "".join('    printf("{ %%d", %d); /* } */ putchar(\'}\');\n' % i for i in range(100))
    text = "static int f(void) {\n" + body + "    return 0;\n}\n\nint g(void) {\n    return 1;\n}\n"
    assert structure.functions(text) == [("f", 103), ("g", 3)]
