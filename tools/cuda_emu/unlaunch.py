#!/usr/bin/env python3
"""unlaunch.py: rewrites CUDA kernel launches `k<<<grid, block>>>(args);` of a .cu file into
`emu_launch(grid, block, [&] { k(args); });` so that the CPU emulation (cuda_emu.h) can compile
the backend with a host C++ compiler. Development tool only (tools/cuda_emu/README in run.sh)."""
import re
import sys

src = open(sys.argv[1]).read()
out, i = [], 0
pat = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;]*>)?)<<<")
while True:
    m = pat.search(src, i)
    if not m:
        out.append(src[i:])
        break
    out.append(src[i:m.start()])
    name = m.group(1)
    j = src.index(">>>", m.end())
    cfg = src[m.end():j]
    k = j + 3
    assert src[k] == "(", src[k:k + 40]
    depth, p = 0, k
    while True:
        if src[p] == "(":
            depth += 1
        elif src[p] == ")":
            depth -= 1
            if depth == 0:
                break
        p += 1
    args = src[k + 1:p]
    out.append(f"emu_launch({cfg}, [&] {{ {name}({args}); }})")
    i = p + 1
print('#include "cuda_emu_kernel.h"\n' + "".join(out), end="")
