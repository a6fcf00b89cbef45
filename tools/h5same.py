#!/usr/bin/env python3
"""h5same.py A.h5 B.h5: are two lpe HDF5 files the same apart from timing?

Compares every group, dataset (values bit for bit, NaN equal to NaN, dtype and shape) and
attribute, except the attributes that record when or how long (`created`, `seconds`,
`seconds_per_target`) and any given with --ignore. Prints each difference; exit 0 when there is
none, 1 otherwise. Used to check that a refactor or a sharded run changes no result.
"""
import argparse
import sys

import h5py
import numpy as np

TIMING = {"created", "seconds", "seconds_per_target"}


def same_value(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare(fa, fb, ignore):
    diffs = []

    def attrs(name, oa, ob):
        ka = {k for k in oa.attrs if k not in ignore}
        kb = {k for k in ob.attrs if k not in ignore}
        for k in sorted(ka ^ kb):
            diffs.append(f"{name or '/'}: attribute {k} only in {'A' if k in ka else 'B'}")
        for k in sorted(ka & kb):
            if not same_value(oa.attrs[k], ob.attrs[k]):
                diffs.append(f"{name or '/'}: attribute {k}: {oa.attrs[k]!r} != {ob.attrs[k]!r}")

    def walk(name, ga, gb):
        attrs(name, ga, gb)
        ka, kb = set(ga.keys()), set(gb.keys())
        for k in sorted(ka ^ kb):
            diffs.append(f"{name}/{k}: only in {'A' if k in ka else 'B'}")
        for k in sorted(ka & kb):
            oa, ob = ga[k], gb[k]
            path = f"{name}/{k}"
            if isinstance(oa, h5py.Group) and isinstance(ob, h5py.Group):
                walk(path, oa, ob)
            elif isinstance(oa, h5py.Dataset) and isinstance(ob, h5py.Dataset):
                attrs(path, oa, ob)
                if not same_value(oa[()], ob[()]):
                    diffs.append(f"{path}: values differ")
            else:
                diffs.append(f"{path}: a group in one file, a dataset in the other")

    walk("", fa, fb)
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--ignore", action="append", default=[],
                    help="another attribute name to ignore (repeatable)")
    o = ap.parse_args()
    with h5py.File(o.a, "r") as fa, h5py.File(o.b, "r") as fb:
        diffs = compare(fa, fb, TIMING | set(o.ignore))
    for d in diffs:
        print(d)
    print(f"h5same: {'same' if not diffs else f'{len(diffs)} difference(s)'}")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
