#!/usr/bin/env python3
"""The hot loop of a function in two callgrind runs: the instructions executed at least FRACTION of
the function's most-executed instruction, in address order; are they the same instructions?
usage: hotloop.py WORKLOAD TAG_A BIN_A TAG_B BIN_B FRACTION SYMBOL_SUBSTRING..."""
import os, re, sys, subprocess
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
CG = os.environ.get("CG_DIR", ".")  # where the callgrind outputs TAG-WORKLOAD.out are
from cgparse import parse
from compare import disasm, is_check

wl, ta, ba, tb, bb, frac = sys.argv[1:7]
frac = float(frac)
A, B = parse(f"{CG}/{ta}-{wl}.out"), parse(f"{CG}/{tb}-{wl}.out")
DA, DB = disasm(ba), disasm(bb)

def hot(S, D, fn):
    counts = {a: v for (o, a), v in S[1].items() if S[3].get((o, a)) == fn and o and "colocate" in o}
    if not counts: return [], 0, 0
    top = max(counts.values())
    sel = sorted(a for a, v in counts.items() if v >= frac * top)
    ins = [(a, D[0].get(a, "?"), counts[a]) for a in sel]
    return ins, sum(counts.values()), sum(counts[a] for a in sel)

def norm(t):
    t = re.sub(r"\s+[0-9a-f]+ <[^>]*>", " TARGET", t)
    t = re.sub(r"0x[0-9a-f]+\(%rip\)", "RIP", t)
    return t.split("#")[0].strip()

fns = set(f for (o, f) in A[0] if f) & set(f for (o, f) in B[0] if f)
for pat in sys.argv[7:]:
    for fn in sorted(f for f in fns if pat in f):
        ia, tota, hota = hot(A, DA, fn)
        ib, totb, hotb = hot(B, DB, fn)
        if not ia: continue
        name = subprocess.run(["swift", "demangle", "--simplified", "--compact", fn], capture_output=True, text=True).stdout.strip()
        ma = [norm(t) for _, t, _ in ia]; mb = [norm(t) for _, t, _ in ib]
        opa = [t.split()[0] for t in ma]; opb = [t.split()[0] for t in mb]
        checks = [t for a, t, _ in ia if is_check(a, *DA)]
        print(f"== {name[:110]}")
        print(f"   {ta}: hot set {len(ia)} instructions = {100 * hota / tota:.1f}% of the function's Ir; {tb}: {len(ib)} = {100 * hotb / totb:.1f}%")
        print(f"   same instructions (operands, registers): {ma == mb}; same opcodes in order: {opa == opb}; check branches in {ta}'s hot set: {checks}")
        if ma != mb and len(ia) <= 80:
            import difflib
            for line in difflib.unified_diff(ma, mb, ta, tb, lineterm="", n=1):
                print("     " + line)
